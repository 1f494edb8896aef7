"""The print queue (``jobs``) and the print history (``prints``).

Creating a job is inserting a queued JobDoc with a monotonic ``seq``: printer-services claim
queued jobs themselves (highest priority first, then lowest seq).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status

from pantheon_api.adapters.store import utcnow
from pantheon_api.api.common import ERRORS, IdQuery, conflict, doc_out, not_found
from pantheon_api.api.deps import Context, Ctx, Operator, Viewer
from pantheon_api.api.schemas import JobCreate, JobOut, JobUpdate, PrintOut
from pantheon_api.domain.jobs import (
    JobRuleError,
    check_cancel,
    check_reorder,
    check_retry,
    check_target,
    choose_bed_type,
)
from pantheon_common.auth import Principal
from pantheon_common.gcode_store import InvalidGcodeName, validate_gcode_name
from pantheon_contracts.beds import BedType
from pantheon_contracts.names import Collections
from pantheon_contracts.printer import PrinterModel
from pantheon_contracts.store import JobStatus

router = APIRouter(prefix="/api", responses=ERRORS)

JOB_SEQ = "jobs_seq"


def _job_out(doc: dict[str, Any]) -> JobOut:
    data = doc_out(doc)
    data["id"] = str(data["id"])
    if not isinstance(data.get("target"), dict):
        data["target"] = {}
    return JobOut.model_validate(data)


def _rule(err: JobRuleError) -> HTTPException:
    code = status.HTTP_409_CONFLICT if err.conflict else status.HTTP_422_UNPROCESSABLE_CONTENT
    return HTTPException(code, str(err))


def _model(value: object) -> PrinterModel | None:
    try:
        return PrinterModel(str(value)) if value else None
    except ValueError:
        return None


def create_job_doc(ctx: Context, body: JobCreate, who: Principal) -> dict[str, Any]:
    """Validate ``body`` against the file and the farm, then queue it."""
    try:
        validate_gcode_name(body.file)
    except InvalidGcodeName as err:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, err.reason) from err
    file_doc = ctx.store.get(Collections.GCODE_FILES, body.file)
    if file_doc is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"no uploaded file {body.file!r}"
        )
    printer_model = None
    if body.target.printer_id is not None:
        printer = ctx.store.get(Collections.PRINTERS, body.target.printer_id)
        printer_model = _model(printer.get("model")) if printer else None
        if printer is not None and printer_model is None:
            raise HTTPException(422, f"printer {body.target.printer_id} has no known model")
    file_bed = None
    if file_doc.get("bed_type"):
        try:
            file_bed = BedType(str(file_doc["bed_type"]))
        except ValueError:
            file_bed = None
    try:
        target = check_target(
            body.target.printer_id,
            body.target.model,
            printer_model,
            _model(file_doc.get("printer_model")),
        )
        bed_type = choose_bed_type(body.bed_type, file_bed)
    except JobRuleError as err:
        raise _rule(err) from err
    now = utcnow()
    doc: dict[str, Any] = {
        "_id": uuid.uuid4().hex,
        "file": body.file,
        "copies": body.copies,
        "copies_done": 0,
        "priority": body.priority,
        "seq": ctx.store.next_seq(JOB_SEQ),
        "target": {
            "printer_id": target.printer_id,
            "model": target.model.value if target.model else None,
        },
        "bed_type": bed_type.value,
        "status": JobStatus.QUEUED.value,
        "printer_id": None,
        "attempts": 0,
        "max_attempts": body.max_attempts,
        "last_error": None,
        "created_by": who.subject,
        "created_at": now,
        "updated_at": now,
    }
    ctx.store.insert(Collections.JOBS, doc)
    return doc


@router.post(
    "/jobs",
    response_model=JobOut,
    status_code=201,
    tags=["jobs"],
    responses={422: {"description": "Unknown file or printer, or a model/plate mismatch"}},
)
def create_job(body: JobCreate, ctx: Ctx, who: Operator) -> JobOut:
    """Queue ``copies`` prints of an uploaded file on a printer, on any printer of a model, or
    anywhere (then: any printer of the file's model). ``bed_type`` defaults to the file's."""
    return _job_out(create_job_doc(ctx, body, who))


@router.get("/jobs", response_model=list[JobOut], tags=["jobs"])
def list_jobs(
    ctx: Ctx,
    _: Viewer,
    status_: Annotated[list[JobStatus] | None, Query(alias="status")] = None,
    printer_id: IdQuery = None,
    model: PrinterModel | None = None,
    file: Annotated[str | None, Query(max_length=255)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[JobOut]:
    """The queue in claim order (priority desc, then seq), filtered; repeat ``status``."""
    query: dict[str, Any] = {}
    if status_:
        query["status"] = {"$in": [s.value for s in status_]}
    if printer_id is not None:
        query["$or"] = [{"printer_id": printer_id}, {"target.printer_id": printer_id}]
    if model is not None:
        query["target.model"] = model.value
    if file is not None:
        query["file"] = file
    docs = ctx.store.find(
        Collections.JOBS, query, sort=[("priority", -1), ("seq", 1)], limit=limit, skip=offset
    )
    return [_job_out(d) for d in docs]


def _job(ctx: Ctx, job_id: str) -> dict[str, Any]:
    doc = ctx.store.get(Collections.JOBS, job_id)
    if doc is None:
        raise not_found(f"job {job_id}")
    return doc


def _status(doc: dict[str, Any]) -> JobStatus:
    try:
        return JobStatus(str(doc.get("status")))
    except ValueError as err:
        raise conflict(f"job has an unknown status {doc.get('status')!r}") from err


@router.get("/jobs/{job_id}", response_model=JobOut, tags=["jobs"])
def get_job(job_id: str, ctx: Ctx, _: Viewer) -> JobOut:
    """One job."""
    return _job_out(_job(ctx, job_id))


def _guarded_update(
    ctx: Ctx, job_id: str, expected: JobStatus, changes: dict[str, Any]
) -> dict[str, Any]:
    # Conditional on the status read: a printer-service claiming the job in between wins.
    changes["updated_at"] = utcnow()
    doc = ctx.store.update(
        Collections.JOBS, {"_id": job_id, "status": expected.value}, {"$set": changes}
    )
    if doc is None:
        raise conflict(f"job {job_id} changed meanwhile (claimed by a printer?); look again")
    return doc


@router.patch("/jobs/{job_id}", response_model=JobOut, tags=["jobs"])
def reorder_job(job_id: str, body: JobUpdate, ctx: Ctx, _: Operator) -> JobOut:
    """Change a queued job's priority and/or move it to the front or back of its priority."""
    doc = _job(ctx, job_id)
    current = _status(doc)
    try:
        check_reorder(current)
    except JobRuleError as err:
        raise _rule(err) from err
    changes: dict[str, Any] = {}
    priority = body.priority if body.priority is not None else int(doc.get("priority", 0))
    if body.priority is not None:
        changes["priority"] = body.priority
    if body.position == "back":
        changes["seq"] = ctx.store.next_seq(JOB_SEQ)
    elif body.position == "front":
        first = ctx.store.find(
            Collections.JOBS,
            {"status": JobStatus.QUEUED.value, "priority": priority},
            sort=[("seq", 1)],
            limit=1,
        )
        lowest = int(first[0].get("seq", 0)) if first else int(doc.get("seq", 0))
        changes["seq"] = min(lowest - 1, int(doc.get("seq", 0)))
    if not changes:
        return _job_out(doc)
    return _job_out(_guarded_update(ctx, job_id, current, changes))


@router.post("/jobs/{job_id}/cancel", response_model=JobOut, tags=["jobs"])
def cancel_job(job_id: str, ctx: Ctx, _: Operator) -> JobOut:
    """Cancel a queued (or failed) job. A job on a printer: stop the print there first."""
    doc = _job(ctx, job_id)
    current = _status(doc)
    try:
        check_cancel(current)
    except JobRuleError as err:
        raise _rule(err) from err
    return _job_out(_guarded_update(ctx, job_id, current, {"status": JobStatus.CANCELLED.value}))


@router.post("/jobs/{job_id}/retry", response_model=JobOut, tags=["jobs"])
def retry_job(job_id: str, ctx: Ctx, _: Operator) -> JobOut:
    """Queue a failed (or cancelled) job again: attempts reset, back of its priority."""
    doc = _job(ctx, job_id)
    current = _status(doc)
    try:
        check_retry(current)
    except JobRuleError as err:
        raise _rule(err) from err
    if not ctx.gcode.exists(str(doc.get("file"))):
        raise conflict(f"file {doc.get('file')} is no longer in the store")
    changes = {
        "status": JobStatus.QUEUED.value,
        "attempts": 0,
        "printer_id": None,
        "last_error": None,
        "seq": ctx.store.next_seq(JOB_SEQ),
    }
    return _job_out(_guarded_update(ctx, job_id, current, changes))


@router.get("/prints", response_model=list[PrintOut], tags=["jobs"])
def list_prints(
    ctx: Ctx,
    _: Viewer,
    printer_id: IdQuery = None,
    job_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[PrintOut]:
    """Print history, newest first."""
    query: dict[str, Any] = {}
    if printer_id is not None:
        query["printer_id"] = printer_id
    if job_id is not None:
        query["job_id"] = job_id
    docs = ctx.store.find(
        Collections.PRINTS, query, sort=[("started_at", -1)], limit=limit, skip=offset
    )
    out = []
    for doc in docs:
        data = doc_out(doc)
        data["id"] = str(data["id"])
        out.append(PrintOut.model_validate(data))
    return out


__all__ = ["create_job_doc", "router"]
