"""HTTP API of the orchestrator: task log, held tasks and their resolution, pause/resume,
dead letters. Everything but /healthz, /readyz and /metrics needs the service token."""

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, Field

from pantheon_common.amqp import peek_dead_letters
from pantheon_common.auth import service_token_guard
from pantheon_common.errors import BrokerUnavailable, StoreUnavailable
from pantheon_common.http import add_observability, run_blocking_check
from pantheon_contracts.names import HOMING_QUEUE, READY_QUEUE
from pantheon_contracts.store import RobotTaskStatus
from robot_arm_orchestrator.adapters.robot import RobotLink
from robot_arm_orchestrator.adapters.store import TaskStore
from robot_arm_orchestrator.dispatcher import Dispatcher, ResolveError
from robot_arm_orchestrator.domain.tasks import Resolution, TaskKind

SERVICE = "robot-arm-orchestrator"


class TaskOut(BaseModel):
    """One robot task of the log (``robot_tasks``)."""

    id: str = Field(description="<print_id>:take, <print_id>:replace or homing:<id>")
    kind: TaskKind
    status: RobotTaskStatus
    printer_id: int | None = None
    bed_id: int | None = Field(default=None, description="take: plate out; replace: plate in")
    bed_type: str | None = None
    print_id: str | None = Field(default=None, description="the ready message id it serves")
    print_id_synthetic: bool = False
    source: str | None = None
    job_id: str | None = Field(default=None, description="correlation id of the last attempt")
    attempts: int = 0
    load_next: bool = False
    payload: str | None = Field(default=None, description="last JSON sent to robot_arm/job")
    error: str | None = Field(default=None, description="why it is held, waiting or failed")
    hold: dict[str, Any] | None = Field(
        default=None,
        description="while held: scope (printer: only its printer waits, nothing was sent; "
        "arm: everything waits, the outcome of a sent job is in doubt) and until (print_end: "
        "re-armed by itself when its print ends; null: only a person releases it)",
    )
    created_at: datetime | None = None
    updated_at: datetime | None = None
    sent_at: datetime | None = None
    finished_at: datetime | None = None
    history: list[dict[str, Any]] = Field(default_factory=list)


def task_out(doc: dict[str, Any]) -> TaskOut:
    """A stored document as the API shows it."""
    data = dict(doc)
    data["id"] = str(data.pop("_id"))
    for key in ("print_id_synthetic", "load_next"):
        data[key] = bool(data.get(key))
    return TaskOut.model_validate({k: v for k, v in data.items() if k in TaskOut.model_fields})


class ResolveIn(BaseModel):
    """A person's decision for a held task."""

    action: Resolution = Field(description="done: it happened; retry: send again; abort")
    note: str = Field(default="", max_length=500, description="why (kept in the history)")
    bed_id: int | None = Field(
        default=None,
        description="done on a pending or waiting replace: the clean plate loaded by hand",
    )


class PauseIn(BaseModel):
    """Why dispatching is paused."""

    reason: str = Field(default="", max_length=500)


class DispatchOut(BaseModel):
    """The dispatcher's state."""

    paused: bool
    pause_reason: str
    state: str = Field(description="idle, in flight, blocked, paused, waiting for ...")
    detail: str
    current_task: str | None
    robot_status: str | None = Field(description="last robot_arm/status received")
    mqtt_connected: bool
    held: int
    blocked_printers: list[int] = Field(
        default_factory=list,
        description="printers whose swaps wait for a person (a task held for that printer); "
        "the other printers are served",
    )


class DeadLetterOut(BaseModel):
    """A dead-lettered message."""

    queue: str
    body: str = Field(description="the body as text (undecodable bytes replaced)")
    reason: str
    message_id: str | None
    dead_lettered_at: str | None


def create_app(
    *,
    store: TaskStore,
    dispatcher: Dispatcher,
    robot: RobotLink,
    amqp_url: str,
    service_token: str,
    registry: CollectorRegistry,
) -> FastAPI:
    """The FastAPI app; every dependency is passed in (built once by ``main()``)."""
    app = FastAPI(
        title="robot-arm-orchestrator",
        description="Robot task log, held tasks, dispatch control and dead letters.",
    )
    add_observability(
        app,
        service=SERVICE,
        registry=registry,
        checks={
            "mongodb": run_blocking_check(store.ping),
            "mqtt": _mqtt_check(robot),
        },
    )
    require_token = service_token_guard(service_token, detail="a valid service token is required")
    router = APIRouter(dependencies=[Depends(require_token)])

    def _store_call(fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except StoreUnavailable as err:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(err)) from err

    @router.get("/tasks", response_model=list[TaskOut])
    def list_tasks(
        status_: Annotated[RobotTaskStatus | None, Query(alias="status")] = None,
        kind: TaskKind | None = None,
        printer_id: int | None = None,
        print_id: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[TaskOut]:
        """The task log, newest first, filtered by status, kind, printer or print."""
        docs = _store_call(
            store.list_tasks,
            status=status_.value if status_ else None,
            kind=kind.value if kind else None,
            printer_id=printer_id,
            print_id=print_id,
            limit=limit,
        )
        return [task_out(d) for d in docs]

    @router.get("/tasks/held", response_model=list[TaskOut])
    def held_tasks() -> list[TaskOut]:
        """Tasks waiting for a person's decision (POST /tasks/{id}/resolve)."""
        docs = _store_call(store.list_tasks, status=RobotTaskStatus.HELD.value, limit=1000)
        return [task_out(d) for d in docs]

    @router.get("/tasks/{task_id}", response_model=TaskOut)
    def get_task(task_id: str) -> TaskOut:
        """One task with its history."""
        doc = _store_call(store.get, task_id)
        if doc is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no task {task_id}")
        return task_out(doc)

    @router.post("/tasks/{task_id}/resolve", response_model=TaskOut)
    def resolve(task_id: str, body: ResolveIn) -> TaskOut:
        """A person's decision: ``done`` (the motion happened; the plate inventory is updated),
        ``retry`` (send it again, once), ``abort`` (drop it; a take's replace goes with it).
        done for held tasks, for a pending take the operator did by hand (the plate is out
        of the printer, back in its slot with its part; the replace follows as usual) and for
        a pending or waiting replace the operator did by hand, with ``bed_id`` = the clean plate
        they loaded (the printer must be empty in the inventory, the plate clean and not
        reserved for another replace); retry only for held tasks; abort also for pending or
        waiting ones."""
        try:
            doc = _store_call(dispatcher.resolve, task_id, body.action, body.note, body.bed_id)
        except ResolveError as err:
            raise HTTPException(err.status, str(err)) from err
        return task_out(doc)

    def _dispatch_state() -> DispatchOut:
        paused, reason = store.paused()
        held = len(store.list_tasks(status=RobotTaskStatus.HELD.value, limit=1000))
        last = robot.last_status
        info = dispatcher.info
        return DispatchOut(
            paused=paused,
            pause_reason=reason,
            state=info.state,
            detail=info.detail,
            current_task=info.current_task,
            robot_status=last.status if last else None,
            mqtt_connected=robot.connected,
            held=held,
            blocked_printers=list(info.blocked_printers),
        )

    @router.get("/dispatch", response_model=DispatchOut)
    def dispatch_state() -> DispatchOut:
        """Whether dispatching runs, what it waits for, the robot's last status."""
        result: DispatchOut = _store_call(_dispatch_state)
        return result

    @router.post("/dispatch/pause", response_model=DispatchOut)
    def pause(body: PauseIn | None = None) -> DispatchOut:
        """Stop sending new tasks (kept across restarts); a task in flight still completes."""
        _store_call(dispatcher.pause, body.reason if body else "")
        result: DispatchOut = _store_call(_dispatch_state)
        return result

    @router.post("/dispatch/resume", response_model=DispatchOut)
    def resume() -> DispatchOut:
        """Send tasks again."""
        _store_call(dispatcher.resume)
        result: DispatchOut = _store_call(_dispatch_state)
        return result

    @router.post("/dispatch/nudge", status_code=status.HTTP_202_ACCEPTED)
    def nudge() -> dict[str, str]:
        """Look at the task log now: call after marking a plate clean, so a waiting replace
        takes it without waiting for the next poll."""
        dispatcher.nudge()
        return {"status": "nudged"}

    @router.get("/dead-letters", response_model=list[DeadLetterOut])
    async def dead_letters(
        queue: Literal["ready", "homing"] = READY_QUEUE,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[DeadLetterOut]:
        """Messages of ``ready.dlq`` or ``homing.dlq`` with the reason (left in the queue)."""
        name = READY_QUEUE if queue == READY_QUEUE else HOMING_QUEUE
        try:
            letters = await run_in_threadpool(peek_dead_letters, amqp_url, name, limit)
        except BrokerUnavailable as err:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(err)) from err
        return [
            DeadLetterOut(
                queue=letter.queue,
                body=letter.body.decode("utf-8", "replace"),
                reason=letter.reason,
                message_id=letter.message_id,
                dead_lettered_at=letter.dead_lettered_at,
            )
            for letter in letters
        ]

    app.include_router(router)

    @app.middleware("http")
    async def no_store(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    return app


def _mqtt_check(robot: RobotLink) -> Any:
    async def check() -> None:
        if not robot.connected:
            raise BrokerUnavailable("MQTT broker not connected")

    return check
