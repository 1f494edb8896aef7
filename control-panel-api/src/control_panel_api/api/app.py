"""HTTP routes of control-panel-api: service status and control, logs, queue purges, hosts."""

# No "from __future__ import annotations": FastAPI must resolve the route annotations, and
# some use objects local to create_app (the limits come from the settings).

import asyncio
import json
import re
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from control_panel_api.adapters.ssh import CommandTimedOut, SshError
from control_panel_api.domain.commands import InvalidParameter
from control_panel_api.domain.config import NAME_PATTERN
from control_panel_api.domain.panel import (
    ActionInProgress,
    CommandFailed,
    ControlPanel,
    NotConfigured,
    PanelError,
    ServiceAction,
    ServiceStatus,
    UnknownService,
)
from pantheon_common.auth import Authenticator, Principal, Role, install_auth, require_role
from pantheon_common.errors import BrokerUnavailable
from pantheon_common.http import ReadinessCheck, add_observability

__all__ = ["create_app"]

SERVICE_NAME = "control-panel-api"

Viewer = Annotated[Principal, Depends(require_role(Role.VIEWER))]
Operator = Annotated[Principal, Depends(require_role(Role.OPERATOR))]
ServiceName = Annotated[
    str,
    Path(pattern=NAME_PATTERN, max_length=40, description="a configured service, e.g. robot-arm"),
]
QueueName = Literal["ready", "homing"]


def _ascii_digits(value: object) -> object:
    # pydantic accepts " 5", "+5", "5_0" or full-width digits; a count is ASCII digits only.
    if isinstance(value, str) and not _DIGITS_RE.fullmatch(value):
        raise ValueError("must be a positive integer in plain digits (no sign, no leading zero)")
    return value


_DIGITS_RE = re.compile(r"[1-9][0-9]{0,8}")
_DIGITS = BeforeValidator(_ascii_digits)


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class ServiceStatusOut(_Out):
    """State of one managed service."""

    name: str
    host: str
    description: str
    state: Literal["running", "stopped", "unknown"]
    since: datetime | None = Field(description="when it started, if the host reports it")
    detail: str | None = None

    @classmethod
    def of(cls, s: ServiceStatus) -> "ServiceStatusOut":
        return cls(
            name=s.name,
            host=s.host,
            description=s.description,
            state=s.state.value,
            since=s.since,
            detail=s.detail,
        )


class CommandOut(_Out):
    """One command run for an action."""

    exit_status: int
    stdout: str
    stderr: str
    duration_s: float


class ActionOut(_Out):
    """Outcome of start, stop or restart."""

    service: str
    action: Literal["start", "stop", "restart"]
    commands: list[CommandOut]
    status: ServiceStatusOut


class LogsOut(_Out):
    """The last lines of a service's log."""

    service: str
    lines: list[str]


class PurgeRequest(BaseModel):
    """Queues to empty."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    queues: list[QueueName] = Field(min_length=1, max_length=2)


class PurgeOut(_Out):
    """Messages dropped per queue."""

    purged: dict[str, int]


class HostOut(_Out):
    """Reachability of one host."""

    name: str
    address: str
    port: int
    reachable: bool
    host_key_ok: bool | None
    latency_ms: float | None
    error: str | None


class ErrorOut(_Out):
    """An error with a machine-readable code."""

    detail: str
    code: str


_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "Unknown service"},
    502: {"model": ErrorOut, "description": "Host unreachable, host key refused, command failed"},
    504: {"model": ErrorOut, "description": "Command timed out"},
}


def _error(status_code: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail, "code": code}, status_code=status_code)


def create_app(
    panel: ControlPanel,
    authenticator: Authenticator,
    *,
    readiness: Mapping[str, ReadinessCheck] | None = None,
) -> FastAPI:
    """The FastAPI app; every route needs a viewer at least, actions an operator."""
    app = FastAPI(
        title="Pantheon control panel API",
        description="Starts, stops and watches the robot arm and the orchestrator over SSH, "
        "and purges the ready and homing queues. Only configured commands ever run.",
        version="0.1.0",
        dependencies=[Depends(require_role(Role.VIEWER))],
    )
    install_auth(app, authenticator)
    add_observability(app, service=SERVICE_NAME, checks=readiness)
    limits = panel.limits

    @app.exception_handler(UnknownService)
    async def unknown_service(_: Request, exc: UnknownService) -> JSONResponse:
        return _error(404, "unknown_service", str(exc))

    @app.exception_handler(ActionInProgress)
    async def in_progress(_: Request, exc: ActionInProgress) -> JSONResponse:
        return _error(409, "action_in_progress", str(exc))

    @app.exception_handler(NotConfigured)
    async def not_configured(_: Request, exc: NotConfigured) -> JSONResponse:
        return _error(404, "not_configured", str(exc))

    @app.exception_handler(InvalidParameter)
    async def invalid_parameter(_: Request, exc: InvalidParameter) -> JSONResponse:
        return _error(422, "invalid_parameter", str(exc))

    @app.exception_handler(CommandFailed)
    async def command_failed(_: Request, exc: CommandFailed) -> JSONResponse:
        return _error(502, "command_failed", str(exc))

    @app.exception_handler(PanelError)
    async def panel_error(_: Request, exc: PanelError) -> JSONResponse:
        return _error(400, "refused", str(exc))

    @app.exception_handler(SshError)
    async def ssh_error(_: Request, exc: SshError) -> JSONResponse:
        return _error(504 if isinstance(exc, CommandTimedOut) else 502, exc.code, str(exc))

    @app.exception_handler(BrokerUnavailable)
    async def broker_error(_: Request, exc: BrokerUnavailable) -> JSONResponse:
        return _error(503, "broker_unavailable", str(exc))

    @app.get("/services", response_model=list[ServiceStatusOut], responses=_ERRORS)
    def list_services(_: Viewer) -> list[ServiceStatusOut]:
        """Every configured service with its state (one status command per service)."""
        return [ServiceStatusOut.of(panel.status(name)) for name in panel.service_names()]

    @app.get("/services/{service}", response_model=ServiceStatusOut, responses=_ERRORS)
    def get_service(service: ServiceName, _: Viewer) -> ServiceStatusOut:
        """Whether the service runs, and since when."""
        return ServiceStatusOut.of(panel.status(service))

    def _act(service: str, action: ServiceAction, who: Principal) -> ActionOut:
        outcome = panel.act(service, action, who)
        return ActionOut(
            service=service,
            action=action.value,
            commands=[
                CommandOut(
                    exit_status=r.exit_status,
                    stdout=r.stdout[-4000:],
                    stderr=r.stderr[-4000:],
                    duration_s=round(r.duration_s, 3),
                )
                for r in outcome.results
            ],
            status=ServiceStatusOut.of(panel.status(service)),
        )

    @app.post("/services/{service}/start", response_model=ActionOut, responses=_ERRORS)
    def start_service(service: ServiceName, who: Operator) -> ActionOut:
        """Run the service's start command (operator)."""
        return _act(service, ServiceAction.START, who)

    @app.post("/services/{service}/stop", response_model=ActionOut, responses=_ERRORS)
    def stop_service(service: ServiceName, who: Operator) -> ActionOut:
        """Run the service's stop command (operator)."""
        return _act(service, ServiceAction.STOP, who)

    @app.post("/services/{service}/restart", response_model=ActionOut, responses=_ERRORS)
    def restart_service(service: ServiceName, who: Operator) -> ActionOut:
        """Stop, then start the service (operator); start is skipped if stop fails."""
        return _act(service, ServiceAction.RESTART, who)

    lines_query = Query(ge=1, le=limits.max_log_lines, description="how many lines, from the end")
    duration_query = Query(ge=1, le=limits.max_follow_s, description="stop following after this")

    @app.get("/services/{service}/logs", response_model=LogsOut, responses=_ERRORS)
    def get_logs(
        service: ServiceName, who: Viewer, lines: Annotated[int, _DIGITS, lines_query] = 100
    ) -> LogsOut:
        """The last ``lines`` lines of the service's log."""
        return LogsOut(service=service, lines=panel.logs(service, lines, who))

    @app.get(
        "/services/{service}/logs/follow",
        response_class=StreamingResponse,
        responses={
            **_ERRORS,
            200: {"content": {"text/event-stream": {}}, "description": "Server-sent events"},
        },
    )
    async def follow_logs(
        service: ServiceName,
        who: Viewer,
        lines: Annotated[int, _DIGITS, lines_query] = 20,
        duration_s: Annotated[int, _DIGITS, duration_query] = 60,
    ) -> StreamingResponse:
        """Server-sent events: one ``data:`` event per log line, ending after ``duration_s``."""
        source = await asyncio.to_thread(panel.follow, service, lines, duration_s, who)
        return StreamingResponse(
            _sse(source),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @app.post(
        "/queues/purge",
        response_model=PurgeOut,
        responses={503: {"model": ErrorOut, "description": "RabbitMQ unreachable"}},
    )
    def purge_queues(body: PurgeRequest, who: Operator) -> PurgeOut:
        """Drop every waiting message of the named queues (ready, homing); report how many."""
        return PurgeOut(purged=panel.purge(body.queues, who))

    @app.get("/hosts", response_model=list[HostOut])
    def list_hosts(_: Viewer) -> list[HostOut]:
        """Each host: reachable, host key accepted, round-trip latency."""
        return [
            HostOut(
                name=h.host,
                address=h.address,
                port=h.port,
                reachable=h.reachable,
                host_key_ok=h.host_key_ok,
                latency_ms=h.latency_ms,
                error=h.error,
            )
            for h in panel.hosts_health()
        ]

    return app


def _sse(lines: Iterator[str]) -> Iterator[str]:
    yield ": following\n\n"
    for line in lines:
        yield f"data: {json.dumps(line)}\n\n"
    yield "event: end\ndata: {}\n\n"
