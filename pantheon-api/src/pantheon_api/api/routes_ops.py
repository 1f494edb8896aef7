"""Robot and orchestrator (proxy + homing), control panel (proxy), utilization (proxy)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import Field

from pantheon_api.adapters.upstream import UpstreamError
from pantheon_api.api.common import ERRORS, ID_MAX, IdQuery, PrinterIdPath, threaded
from pantheon_api.api.deps import Admin, Ctx, Operator, Viewer
from pantheon_api.api.routes_farm import UPSTREAM_ERRORS
from pantheon_api.api.schemas import HomingOut, PauseIn, PurgeIn, ResolveIn
from pantheon_common.errors import BrokerUnavailable, PublishFailed

router = APIRouter(prefix="/api", responses={**ERRORS, **UPSTREAM_ERRORS})

Json = Any
TaskId = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9:._-]+$")]
ServiceName = Annotated[str, Path(pattern=r"^[a-z][a-z0-9-]{0,39}$")]


def _body(value: Any, default: Any) -> Any:
    """The service's JSON if it has the documented shape (object or list), else 502."""
    if value is None:
        return default
    if not isinstance(value, type(default)):
        raise UpstreamError(502, f"unexpected answer shape: {type(value).__name__}")
    return value


# -- robot and orchestrator ------------------------------------------------------------------


@router.get("/robot/status", response_model=dict[str, Any], tags=["robot"])
async def robot_status(ctx: Ctx, _: Viewer) -> Json:
    """Dispatcher state and the robot's last status (orchestrator ``GET /dispatch``)."""
    reply = await ctx.orchestrator.call("GET", "/dispatch")
    return _body(reply.body, {})


@router.get("/robot/tasks", response_model=list[dict[str, Any]], tags=["robot"])
async def robot_tasks(
    ctx: Ctx,
    _: Viewer,
    status_: Annotated[
        Literal["pending", "sent", "done", "failed", "held", "aborted", "waiting"] | None,
        Query(alias="status"),
    ] = None,
    kind: Literal["take", "replace", "homing"] | None = None,
    printer_id: IdQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Json:
    """The robot task log, newest first."""
    params: dict[str, Any] = {"limit": limit}
    if status_:
        params["status"] = status_
    if kind:
        params["kind"] = kind
    if printer_id is not None:
        params["printer_id"] = printer_id
    reply = await ctx.orchestrator.call("GET", "/tasks", params=params)
    return _body(reply.body, [])


@router.get("/robot/tasks/held", response_model=list[dict[str, Any]], tags=["robot"])
async def robot_held_tasks(ctx: Ctx, _: Viewer) -> Json:
    """Tasks in doubt, waiting for a person's decision."""
    reply = await ctx.orchestrator.call("GET", "/tasks/held")
    return _body(reply.body, [])


@router.post("/robot/tasks/{task_id}/resolve", response_model=dict[str, Any], tags=["robot"])
async def resolve_task(task_id: TaskId, body: ResolveIn, ctx: Ctx, _: Operator) -> Json:
    """Decide a held task: ``done`` (it happened), ``retry`` (send once more) or ``abort``.
    ``done`` also for a pending take the operator did by hand (pause dispatching first, take
    the plate out, put it in its rack slot): the replace then loads a clean plate as usual."""
    reply = await ctx.orchestrator.call("POST", f"/tasks/{task_id}/resolve", json=body.model_dump())
    return _body(reply.body, {})


@router.post("/robot/dispatch/pause", response_model=dict[str, Any], tags=["robot"])
async def pause_dispatch(ctx: Ctx, _: Operator, body: PauseIn | None = None) -> Json:
    """Stop sending robot tasks (a task in flight completes)."""
    reply = await ctx.orchestrator.call(
        "POST", "/dispatch/pause", json=(body or PauseIn()).model_dump()
    )
    return _body(reply.body, {})


@router.post("/robot/dispatch/resume", response_model=dict[str, Any], tags=["robot"])
async def resume_dispatch(ctx: Ctx, _: Operator) -> Json:
    """Send robot tasks again."""
    reply = await ctx.orchestrator.call("POST", "/dispatch/resume")
    return _body(reply.body, {})


@router.get("/robot/dead-letters", response_model=list[dict[str, Any]], tags=["robot"])
async def dead_letters(
    ctx: Ctx,
    _: Viewer,
    queue: Literal["ready", "homing"] = "ready",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Json:
    """Dead-lettered ``ready``/``homing`` messages with the reason."""
    reply = await ctx.orchestrator.call(
        "GET", "/dead-letters", params={"queue": queue, "limit": limit}
    )
    return _body(reply.body, [])


@router.post(
    "/robot/homing",
    response_model=HomingOut,
    status_code=202,
    tags=["robot"],
    responses={503: {"description": "RabbitMQ unreachable"}},
)
async def send_homing(ctx: Ctx, _: Operator) -> HomingOut:
    """Queue one homing (a message in ``homing``); the robot homes between jobs."""
    message_id = uuid.uuid4().hex
    try:
        await threaded(ctx.publish_homing, message_id)
    except (BrokerUnavailable, PublishFailed) as err:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(err)) from err
    return HomingOut(queued=True, message_id=message_id)


# -- control panel (SSH start/stop/logs: admin) ------------------------------------------------


@router.get("/control/services", response_model=list[dict[str, Any]], tags=["control panel"])
async def control_services(ctx: Ctx, _: Viewer) -> Json:
    """State of the robot arm and orchestrator processes (control-panel-api)."""
    reply = await ctx.control_panel.call("GET", "/services")
    return _body(reply.body, [])


@router.get("/control/services/{service}", response_model=dict[str, Any], tags=["control panel"])
async def control_service(service: ServiceName, ctx: Ctx, _: Viewer) -> Json:
    """State of one managed service."""
    reply = await ctx.control_panel.call("GET", f"/services/{service}")
    return _body(reply.body, {})


@router.post(
    "/control/services/{service}/{action}",
    response_model=dict[str, Any],
    tags=["control panel"],
)
async def control_action(
    service: ServiceName,
    action: Literal["start", "stop", "restart"],
    ctx: Ctx,
    _: Admin,
) -> Json:
    """Start, stop or restart a managed service over SSH (admin)."""
    reply = await ctx.control_panel.call("POST", f"/services/{service}/{action}")
    return _body(reply.body, {})


@router.get(
    "/control/services/{service}/logs", response_model=dict[str, Any], tags=["control panel"]
)
async def control_logs(
    service: ServiceName,
    ctx: Ctx,
    _: Admin,
    lines: Annotated[int, Query(ge=1, le=5000)] = 100,
) -> Json:
    """The last lines of a managed service's log (admin)."""
    reply = await ctx.control_panel.call(
        "GET", f"/services/{service}/logs", params={"lines": lines}
    )
    return _body(reply.body, {})


@router.post("/control/queues/purge", response_model=dict[str, Any], tags=["control panel"])
async def purge_queues(body: PurgeIn, ctx: Ctx, _: Admin) -> Json:
    """Drop every waiting message of ``ready`` and/or ``homing`` (admin)."""
    reply = await ctx.control_panel.call("POST", "/queues/purge", json=body.model_dump())
    return _body(reply.body, {})


@router.get("/control/hosts", response_model=list[dict[str, Any]], tags=["control panel"])
async def control_hosts(ctx: Ctx, _: Viewer) -> Json:
    """Reachability and host-key check of the managed hosts."""
    reply = await ctx.control_panel.call("GET", "/hosts")
    return _body(reply.body, [])


# -- utilization ---------------------------------------------------------------------------

FromQ = Annotated[datetime | None, Query(alias="from", description="range start (ISO 8601)")]
ToQ = Annotated[datetime | None, Query(alias="to", description="range end (ISO 8601)")]
GroupQ = Annotated[Literal["none", "day", "week"], Query(description="buckets (UTC)")]


def _range_params(start: datetime | None, end: datetime | None, group: str) -> dict[str, Any]:
    params: dict[str, Any] = {"group": group}
    if start is not None:
        params["from"] = start.isoformat()
    if end is not None:
        params["to"] = end.isoformat()
    if start is not None and end is not None and end <= start:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "'to' must be after 'from'")
    return params


@router.get("/utilization", response_model=dict[str, Any], tags=["utilization"])
async def utilization(
    ctx: Ctx,
    _: Viewer,
    start: FromQ = None,
    end: ToQ = None,
    group: GroupQ = "day",
    printer_id: Annotated[list[Annotated[int, Field(ge=1, le=ID_MAX)]] | None, Query()] = None,
) -> Json:
    """Printing/idle/error/offline hours and % per printer and for the farm, per day or week."""
    params = _range_params(start, end, group)
    if printer_id:
        params["printer_id"] = printer_id
    reply = await ctx.utilization.call("GET", "/utilization", params=params)
    return _body(reply.body, {})


@router.get(
    "/utilization/printers/{printer_id}", response_model=dict[str, Any], tags=["utilization"]
)
async def printer_utilization(
    printer_id: PrinterIdPath,
    ctx: Ctx,
    _: Viewer,
    start: FromQ = None,
    end: ToQ = None,
    group: GroupQ = "day",
) -> Json:
    """Utilization of one printer."""
    params = _range_params(start, end, group)
    reply = await ctx.utilization.call("GET", f"/utilization/printers/{printer_id}", params=params)
    return _body(reply.body, {})


__all__ = ["router"]
