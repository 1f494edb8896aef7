"""Printers (live state, control, layout edits) and beds (inventory, mark clean, retire)."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from pantheon_api.adapters.store import Duplicate, utcnow
from pantheon_api.adapters.upstream import UpstreamError
from pantheon_api.api.common import (
    ERRORS,
    BedIdPath,
    IdQuery,
    PrinterIdPath,
    conflict,
    doc_out,
    not_found,
)
from pantheon_api.api.deps import Admin, Ctx, Operator, Viewer
from pantheon_api.api.schemas import (
    BedCleanOut,
    BedCreate,
    BedOut,
    BedUpdate,
    CommandOut,
    PrinterCreate,
    PrinterOut,
    PrinterUpdate,
    PrintFileIn,
)
from pantheon_api.domain.beds import BedRuleError, check_mark_clean, check_retire
from pantheon_api.domain.farm import (
    HomeSlotRefused,
    NoServiceAddress,
    UnknownPrinter,
    check_home_slot,
)
from pantheon_common.gcode_store import InvalidGcodeName, validate_gcode_name
from pantheon_contracts.beds import BedState, BedType
from pantheon_contracts.names import Collections
from pantheon_contracts.printer import PrinterModel, PrinterState
from pantheon_contracts.store import OPEN_JOB_STATUSES

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api", responses=ERRORS)

UPSTREAM_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such printer in MongoDB or in the farm layout (no printer-service)"},
    502: {"description": "The service failed or is unreachable"},
    504: {"description": "The service did not answer in time"},
}


def _printer_out(doc: dict[str, Any]) -> PrinterOut:
    data = doc_out(doc)
    data["id"] = int(data["id"])
    if not isinstance(data.get("bed"), dict):
        data["bed"] = None
    try:
        return PrinterOut.model_validate(data)
    except ValidationError:
        # A half-written or foreign document still lists, with the fields that parse.
        keep = {k: data.get(k) for k in ("id", "model", "host", "serial", "driver")}
        return PrinterOut.model_validate(
            {k: v for k, v in keep.items() if isinstance(v, (int, str))}
        )


@router.get("/printers", response_model=list[PrinterOut], tags=["printers"])
def list_printers(
    ctx: Ctx,
    _: Viewer,
    response: Response,
    state: PrinterState | None = None,
    model: PrinterModel | None = None,
    row: Annotated[int | None, Query(ge=0, le=1_000_000)] = None,
    limit: Annotated[
        int | None, Query(ge=1, le=10_000, description="at most this many (default: all)")
    ] = None,
    offset: Annotated[int, Query(ge=0, le=1_000_000, description="skip this many first")] = 0,
) -> list[PrinterOut]:
    """Printers by id with their live state, filtered by state, model and shelf row; a page
    with ``limit``/``offset`` (``X-Total-Count``: how many match the filters)."""
    query: dict[str, Any] = {}
    if state is not None:
        query["state"] = state.value
    if model is not None:
        query["model"] = model.value
    if row is not None:
        query["location.row"] = row
    docs = ctx.store.find(
        Collections.PRINTERS, query, sort=[("_id", 1)], limit=limit or 0, skip=offset
    )
    paged = limit is not None or offset > 0
    total = ctx.store.count(Collections.PRINTERS, query) if paged else len(docs)
    response.headers["X-Total-Count"] = str(total)
    return [_printer_out(d) for d in docs]


def _printer(ctx: Ctx, printer_id: int) -> dict[str, Any]:
    doc = ctx.store.get(Collections.PRINTERS, printer_id)
    if doc is None:
        raise not_found(f"printer {printer_id}")
    return doc


@router.get("/printers/{printer_id}", response_model=PrinterOut, tags=["printers"])
def get_printer(printer_id: PrinterIdPath, ctx: Ctx, _: Viewer) -> PrinterOut:
    """One printer with its live state (as mirrored in MongoDB by its printer-service)."""
    return _printer_out(_printer(ctx, printer_id))


@router.get(
    "/printers/{printer_id}/status",
    response_model=dict[str, Any],
    tags=["printers"],
    responses=UPSTREAM_ERRORS,
)
async def printer_live_status(printer_id: PrinterIdPath, ctx: Ctx, _: Viewer) -> Any:
    """The printer-service's own ``GET /status`` (fresher than MongoDB, with link details)."""
    url = await _service_url(ctx, printer_id)
    reply = await ctx.printer_service.call("GET", "/status", base_url=url)
    return reply.body if isinstance(reply.body, dict) else {}


async def _service_url(ctx: Ctx, printer_id: int) -> str:
    """The printer's printer-service URL, checked before any call: 404 for a printer that is
    not in the layout (it has no printer-service) or not in MongoDB, 502 when its address
    cannot be built (e.g. a port past 65535 from PRINTER_SERVICE_URL_TEMPLATE)."""
    no_address: NoServiceAddress | None = None
    try:
        url = ctx.printer_url(printer_id)
    except UnknownPrinter as err:
        raise HTTPException(404, str(err)) from err
    except NoServiceAddress as err:
        no_address = err
    await run_in_threadpool(_printer, ctx, printer_id)
    if no_address is not None:
        log.warning("%s", no_address)
        raise HTTPException(502, str(no_address)) from no_address
    return url


async def _command(
    ctx: Ctx, printer_id: PrinterIdPath, command: str, body: dict[str, Any] | None = None
) -> CommandOut:
    url = await _service_url(ctx, printer_id)
    reply = await ctx.printer_service.call("POST", f"/{command}", json=body, base_url=url)
    result = reply.body if isinstance(reply.body, dict) else {}
    return CommandOut(printer_id=printer_id, command=command, result=result)


for _name, _doc in (
    ("pause", "Pause the running print (forwarded to the printer's printer-service)."),
    ("resume", "Resume a paused print."),
    ("stop", "Stop (cancel) the running print."),
):

    def _make(name: str, doc: str) -> Any:
        async def control(printer_id: PrinterIdPath, ctx: Ctx, _: Operator) -> CommandOut:
            return await _command(ctx, printer_id, name)

        control.__doc__ = doc
        control.__name__ = f"printer_{name}"
        return control

    router.add_api_route(
        f"/printers/{{printer_id}}/{_name}",
        _make(_name, _doc),
        methods=["POST"],
        response_model=CommandOut,
        status_code=202,
        tags=["printers"],
        responses={**UPSTREAM_ERRORS, 409: {"description": "The printer refused"}},
    )


@router.post(
    "/printers/{printer_id}/print",
    response_model=CommandOut,
    status_code=201,
    tags=["printers"],
    responses={**UPSTREAM_ERRORS, 409: {"description": "Printer or plate not ready"}},
)
async def print_now(
    printer_id: PrinterIdPath, body: PrintFileIn, ctx: Ctx, _: Operator
) -> CommandOut:
    """Start a stored file now on this printer (outside the queue)."""
    try:
        validate_gcode_name(body.file)
    except InvalidGcodeName as err:
        raise _unprocessable(err.reason) from err
    return await _command(ctx, printer_id, "print", {"file": body.file})


def _unprocessable(detail: str) -> Exception:
    return HTTPException(422, detail)


@router.post("/printers", response_model=PrinterOut, status_code=201, tags=["printers"])
def create_printer(body: PrinterCreate, ctx: Ctx, _: Admin) -> PrinterOut:
    """Add a printer to the farm (admin). farm.yaml stays the seed source: add it there too,
    and run its printer-service (one per printer)."""
    location = body.location or {"row": body.id // 10, "col": body.id % 10}
    doc = {
        "_id": body.id,
        "model": body.model.value,
        "driver": body.driver,
        "host": body.host,
        "serial": body.serial,
        "mqtt_port": body.mqtt_port,
        "ftps_port": body.ftps_port,
        "default_bed_type": body.default_bed_type.value,
        "location": location if isinstance(location, dict) else location.model_dump(),
        # Only a printer of the farm layout has a printer-service (until farm.yaml lists it).
        "in_layout": body.id in ctx.layout.printer_ids,
        "state": PrinterState.UNKNOWN.value,
        "online": False,
        "bed": None,
        "created_at": utcnow(),
        "updated_at": utcnow(),
    }
    try:
        ctx.store.insert(Collections.PRINTERS, doc)
    except Duplicate as err:
        raise conflict(f"printer {body.id} already exists") from err
    return _printer_out(doc)


@router.patch("/printers/{printer_id}", response_model=PrinterOut, tags=["printers"])
def update_printer(
    printer_id: PrinterIdPath, body: PrinterUpdate, ctx: Ctx, _: Admin
) -> PrinterOut:
    """Edit a printer's static fields (admin); live state belongs to its printer-service."""
    changes = {
        k: (v.value if hasattr(v, "value") else v)
        for k, v in body.model_dump(exclude_unset=True, exclude_none=True).items()
    }
    if body.location is not None:
        changes["location"] = body.location.model_dump()
    if not changes:
        return _printer_out(_printer(ctx, printer_id))
    changes["updated_at"] = utcnow()
    doc = ctx.store.update(Collections.PRINTERS, {"_id": printer_id}, {"$set": changes})
    if doc is None:
        raise not_found(f"printer {printer_id}")
    return _printer_out(doc)


@router.delete("/printers/{printer_id}", status_code=204, tags=["printers"])
def delete_printer(printer_id: PrinterIdPath, ctx: Ctx, _: Admin) -> Response:
    """Remove a printer (admin); refused while it holds a plate or an open job targets it.
    Remove it from farm.yaml too, or the next seed adds it back."""
    doc = _printer(ctx, printer_id)
    if isinstance(doc.get("bed"), dict):
        raise conflict(f"printer {printer_id} still holds plate {doc['bed'].get('bed_id')}")
    open_jobs = ctx.store.count(
        Collections.JOBS,
        {
            "$or": [{"printer_id": printer_id}, {"target.printer_id": printer_id}],
            "status": {"$in": [s.value for s in OPEN_JOB_STATUSES]},
        },
    )
    if open_jobs:
        raise conflict(f"{open_jobs} open job(s) use printer {printer_id}")
    ctx.store.delete(Collections.PRINTERS, {"_id": printer_id})
    return Response(status_code=204)


# -- beds ----------------------------------------------------------------------------------


def _bed_out(doc: dict[str, Any]) -> BedOut:
    data = doc_out(doc)
    data["id"] = int(data["id"])
    return BedOut.model_validate(data)


def _bed(ctx: Ctx, bed_id: int) -> dict[str, Any]:
    doc = ctx.store.get(Collections.BEDS, bed_id)
    if doc is None:
        raise not_found(f"bed {bed_id}")
    return doc


@router.get("/beds", response_model=list[BedOut], tags=["beds"])
def list_beds(
    ctx: Ctx,
    _: Viewer,
    state: BedState | None = None,
    type: BedType | None = None,
    rack: Annotated[str | None, Query(max_length=16)] = None,
    printer_id: IdQuery = None,
) -> list[BedOut]:
    """Every plate with its type, home slot, where it is and its state."""
    query: dict[str, Any] = {}
    if state is not None:
        query["state"] = state.value
    if type is not None:
        query["type"] = type.value
    if rack is not None:
        query["home.rack"] = rack
    if printer_id is not None:
        query["location.printer_id"] = printer_id
    return sorted(
        (_bed_out(d) for d in ctx.store.find(Collections.BEDS, query)), key=lambda b: b.id
    )


@router.get("/beds/{bed_id}", response_model=BedOut, tags=["beds"])
def get_bed(bed_id: BedIdPath, ctx: Ctx, _: Viewer) -> BedOut:
    """One plate."""
    return _bed_out(_bed(ctx, bed_id))


def _check_home(ctx: Ctx, bed_id: int, rack: str, slot: int) -> None:
    """422 unless ``rack``/``slot`` is a slot of the layout that is no other plate's home."""
    taken_by = [
        int(doc["_id"])
        for doc in ctx.store.find(
            Collections.BEDS,
            {"home.rack": rack, "home.slot": slot, "_id": {"$ne": bed_id}},
            projection={"_id": 1},
        )
    ]
    try:
        check_home_slot(ctx.layout, bed_id, rack, slot, taken_by)
    except HomeSlotRefused as err:
        raise _unprocessable(str(err)) from err


@router.post(
    "/beds",
    response_model=BedOut,
    status_code=201,
    tags=["beds"],
    responses={
        409: {"description": "A plate with this id exists"},
        422: {"description": "The home slot is not in the farm layout, or another plate's"},
    },
)
def create_bed(body: BedCreate, ctx: Ctx, _: Admin) -> BedOut:
    """Add a plate, clean, in its home slot (admin). The home must be a slot of a rack of the
    farm layout (1..slots) that is no other plate's home: the robot fetches plates from there."""
    _check_home(ctx, body.id, body.home.rack, body.home.slot)
    now = utcnow()
    doc = {
        "_id": body.id,
        "type": body.type.value,
        "home": body.home.model_dump(),
        "in_layout": True,
        "state": BedState.CLEAN.value,
        "location": {"rack": body.home.rack, "slot": body.home.slot, "printer_id": None},
        "cycles": 0,
        "created_at": now,
        "updated_at": now,
    }
    try:
        ctx.store.insert(Collections.BEDS, doc)
    except Duplicate as err:
        raise conflict(f"bed {body.id} already exists (or its slot is taken)") from err
    return _bed_out(doc)


@router.patch(
    "/beds/{bed_id}",
    response_model=BedOut,
    tags=["beds"],
    responses={422: {"description": "The home slot is not in the farm layout, or another plate's"}},
)
def update_bed(bed_id: BedIdPath, body: BedUpdate, ctx: Ctx, _: Admin) -> BedOut:
    """Change a plate's type or home slot (admin; the same rules for the slot as when adding)."""
    doc = _bed(ctx, bed_id)
    changes: dict[str, Any] = {}
    if body.type is not None:
        changes["type"] = body.type.value
    if body.home is not None:
        _check_home(ctx, bed_id, body.home.rack, body.home.slot)
        changes["home"] = body.home.model_dump()
        location = doc.get("location") or {}
        if location.get("printer_id") is None:
            changes["location"] = {**body.home.model_dump(), "printer_id": None}
    if not changes:
        return _bed_out(doc)
    changes["updated_at"] = utcnow()
    try:
        updated = ctx.store.update(Collections.BEDS, {"_id": bed_id}, {"$set": changes})
    except Duplicate as err:
        raise conflict("that slot is another plate's home") from err
    if updated is None:
        raise not_found(f"bed {bed_id}")
    return _bed_out(updated)


def _bed_state(doc: dict[str, Any]) -> tuple[BedState, int | None]:
    try:
        state = BedState(str(doc.get("state")))
    except ValueError:
        state = BedState.DIRTY
    location = doc.get("location") if isinstance(doc.get("location"), dict) else {}
    printer_id = location.get("printer_id") if location else None
    return state, int(printer_id) if printer_id is not None else None


@router.post(
    "/beds/{bed_id}/clean",
    response_model=BedCleanOut,
    tags=["beds"],
    responses={409: {"description": "The plate is in a printer or retired"}},
)
async def mark_clean(bed_id: BedIdPath, ctx: Ctx, _: Operator) -> BedCleanOut:
    """The part is off and the plate is clean, in its rack slot: the robot may load it again.
    Then the orchestrator is nudged so a waiting replace takes it at once."""

    def update() -> dict[str, Any]:
        doc = _bed(ctx, bed_id)
        state, printer_id = _bed_state(doc)
        try:
            check_mark_clean(state, printer_id)
        except BedRuleError as err:
            raise conflict(str(err)) from err
        # Conditional on the state read: a robot move in between makes this a 409, not a lie.
        updated = ctx.store.update(
            Collections.BEDS,
            {"_id": bed_id, "state": state.value, "location.printer_id": None},
            {"$set": {"state": BedState.CLEAN.value, "updated_at": utcnow()}},
        )
        if updated is None:
            raise conflict(f"bed {bed_id} changed meanwhile; look again")
        return updated

    doc = await run_in_threadpool(update)
    try:
        await ctx.orchestrator.call("POST", "/dispatch/nudge")
    except UpstreamError as err:
        # The orchestrator polls anyway (PLATE_POLL_S): the plate is clean either way.
        return BedCleanOut(bed=_bed_out(doc), orchestrator_nudged=False, detail=err.detail)
    return BedCleanOut(bed=_bed_out(doc), orchestrator_nudged=True)


@router.post(
    "/beds/{bed_id}/retire",
    response_model=BedOut,
    tags=["beds"],
    responses={409: {"description": "The plate is in a printer"}},
)
def retire_bed(bed_id: BedIdPath, ctx: Ctx, _: Operator) -> BedOut:
    """Take a plate out of service (never loaded again until edited back)."""
    doc = _bed(ctx, bed_id)
    state, printer_id = _bed_state(doc)
    try:
        check_retire(state, printer_id)
    except BedRuleError as err:
        raise conflict(str(err)) from err
    updated = ctx.store.update(
        Collections.BEDS,
        {"_id": bed_id, "state": state.value},
        {"$set": {"state": BedState.RETIRED.value, "updated_at": utcnow()}},
    )
    if updated is None:
        raise conflict(f"bed {bed_id} changed meanwhile; look again")
    return _bed_out(updated)


__all__ = ["router"]
