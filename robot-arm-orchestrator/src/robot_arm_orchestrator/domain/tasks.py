"""Robot tasks: their kinds, the task state machine, planning from a `ready`, and what runs next.

A task is one robot motion (take, replace or homing). Its life cycle (``robot_tasks.status``)::

    pending --(system: published)--> sent --(system: robot done)--> done
    pending --(system: no clean plate)--> waiting --(system: plate reserved)--> pending
    sent --(system: error, timeout, restart, publish doubt)--> held
    pending --(system: interlock failed, e.g. printer printing, wrong plate in it)--> held
    (recorded) --(system: the door interlock refused at intake)--> held
    held --(print_end: re-armed, the print it waited for ended; never sent)--> pending
    pending --(system: impossible before anything moved)--> failed
    held --(person: done)--> done
    pending --(person: done, a take, or a replace naming the plate loaded)--> done
    waiting --(person: done, a replace naming the plate loaded)--> done
    held --(person: retry)--> pending
    held --(person: abort)--> aborted
    pending|waiting --(person: abort)--> aborted

done, failed and aborted are final. ``sent`` never goes back to ``pending`` by itself: a motion
that may have started is only sent again after a person chose ``retry`` (at most once per
decision). ``held`` is left only by a person's action, with one exception that moved nothing:
a task held *before it was ever sent* only because its own print had not ended yet
(``hold.until == print_end``) is re-armed by the system once printer-service records that end,
and the door interlock is checked again before it is published.

A hold has a scope (:class:`HoldScope`): ``printer`` stops only that printer's tasks (the
interlock refused, nothing moved, the arm is free); ``arm`` stops every task (the task was sent
and its outcome is in doubt: the arm may be holding a plate, in error, or somewhere unknown).
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from pantheon_contracts.robot import RobotJobKind
from pantheon_contracts.store import PrinterBed, RobotTaskStatus

TaskKind = RobotJobKind
"""take, replace or homing (the same three as robot jobs)."""


class HoldScope(StrEnum):
    """What a held task stops until a person resolves it (architecture.md 3.2)."""

    PRINTER = "printer"
    """Only the tasks of its printer: it was held before anything was sent."""
    ARM = "arm"
    """Every task: it was sent and its outcome is in doubt (or a homing)."""


class HoldUntil(StrEnum):
    """What releases a hold besides a person."""

    PRINT_END = "print_end"
    """The task's own print ends (printer-service records it): the system re-arms it."""


class Actor(StrEnum):
    """Who makes a transition happen."""

    SYSTEM = "system"
    """The orchestrator itself (dispatcher, correlator, restart recovery)."""
    PERSON = "person"
    """An operator through the API (resolve done/retry/abort)."""
    PRINT_END = "print_end"
    """The system on printer-service's record that a print ended: re-arms a task held before
    it was ever sent only because that print had not ended yet."""


FINAL_STATUSES: Final = frozenset(
    {RobotTaskStatus.DONE, RobotTaskStatus.FAILED, RobotTaskStatus.ABORTED}
)
"""No transition leaves these."""
OPEN_STATUSES: Final = frozenset(
    {
        RobotTaskStatus.PENDING,
        RobotTaskStatus.WAITING,
        RobotTaskStatus.SENT,
        RobotTaskStatus.HELD,
    }
)
"""Not finished: the dispatcher still has to do something, or a person has to decide."""

_S = RobotTaskStatus
ALLOWED: Final[frozenset[tuple[RobotTaskStatus, RobotTaskStatus, Actor]]] = frozenset(
    {
        (_S.PENDING, _S.SENT, Actor.SYSTEM),
        (_S.PENDING, _S.WAITING, Actor.SYSTEM),
        (_S.PENDING, _S.HELD, Actor.SYSTEM),
        (_S.PENDING, _S.FAILED, Actor.SYSTEM),
        (_S.WAITING, _S.PENDING, Actor.SYSTEM),
        (_S.SENT, _S.DONE, Actor.SYSTEM),
        (_S.SENT, _S.HELD, Actor.SYSTEM),
        (_S.HELD, _S.DONE, Actor.PERSON),
        (_S.HELD, _S.PENDING, Actor.PERSON),
        # Re-armed: held before it was ever sent, only because its print had not ended; it
        # has ended now (the dispatcher checks hold.until and attempts before it moves it).
        (_S.HELD, _S.PENDING, Actor.PRINT_END),
        (_S.HELD, _S.ABORTED, Actor.PERSON),
        (_S.PENDING, _S.ABORTED, Actor.PERSON),
        # An operator did the motion by hand before the robot was sent: took the plate out, or
        # loaded a clean plate, saying which (person_may_mark_done).
        (_S.PENDING, _S.DONE, Actor.PERSON),
        (_S.WAITING, _S.DONE, Actor.PERSON),
        (_S.WAITING, _S.ABORTED, Actor.PERSON),
    }
)
"""Every allowed (from, to, actor); anything else is refused."""


class InvalidTransition(ValueError):
    """A task may not go from its status to the requested one (by that actor)."""


def can_transition(current: RobotTaskStatus, target: RobotTaskStatus, actor: Actor) -> bool:
    """True when ``actor`` may move a task from ``current`` to ``target``."""
    return (current, target, actor) in ALLOWED


def transition(current: RobotTaskStatus, target: RobotTaskStatus, actor: Actor) -> RobotTaskStatus:
    """Return ``target`` if allowed, else raise :class:`InvalidTransition` saying why."""
    if not can_transition(current, target, actor):
        if current in FINAL_STATUSES:
            why = f"{current} is final"
        elif current is RobotTaskStatus.HELD:
            why = "a held task is only resolved by a person (done, retry or abort)"
        else:
            why = "not an allowed transition"
        raise InvalidTransition(f"{actor} cannot move a task from {current} to {target}: {why}")
    return target


class Resolution(StrEnum):
    """What a person decides for a held task (POST /tasks/{id}/resolve)."""

    DONE = "done"
    """The motion happened (a held task), or a person did it by hand (a pending take; a pending
    or waiting replace, naming the plate they loaded): apply its effect on the plate
    inventory."""
    RETRY = "retry"
    """Send the motion again (a new job id), by this decision only."""
    ABORT = "abort"
    """Drop the task (a take's replace is aborted with it)."""


def person_may_mark_done(
    status: RobotTaskStatus, kind: TaskKind, *, plate_named: bool = False
) -> bool:
    """A person may say a task happened: a held one (the robot did it, or not: they checked),
    a pending take they did by hand, or a pending or waiting replace they did by hand when they
    name the plate they loaded (``plate_named``): a replace's plate is only chosen when it is
    sent, so a bare "done" would not say which plate went in."""
    if status is RobotTaskStatus.HELD:
        return True
    if kind is TaskKind.TAKE:
        return status is RobotTaskStatus.PENDING
    if kind is TaskKind.REPLACE:
        return plate_named and status in (RobotTaskStatus.PENDING, RobotTaskStatus.WAITING)
    return False


RESOLUTION_TARGET: Final = {
    Resolution.DONE: RobotTaskStatus.DONE,
    Resolution.RETRY: RobotTaskStatus.PENDING,
    Resolution.ABORT: RobotTaskStatus.ABORTED,
}


@dataclass(frozen=True)
class TaskPlan:
    """One task to record for a finished print (or a homing request)."""

    task_id: str
    kind: TaskKind
    printer_id: int | None
    bed_id: int | None
    """take: the plate in the printer; replace: None until a plate is reserved."""
    step: int
    """Position inside its group: take 0, replace 1."""
    print_id: str | None
    """The print this task serves (the ``ready`` message id); None for homing."""


def task_id_for(print_id: str, kind: TaskKind) -> str:
    """Deterministic id, so a redelivered or repeated ``ready`` maps to the same task."""
    return f"{print_id}:{kind.value}"


def plan_tasks(printer_id: int, bed: PrinterBed | None, print_id: str) -> list[TaskPlan]:
    """The tasks one finished print on ``printer_id`` needs: take (if a plate is in), replace.

    With no plate in the printer (``bed`` None) only a replace is planned. A plate of unknown
    id is planned as a take with ``bed_id`` None; the dispatcher holds it for a person.
    """
    plans: list[TaskPlan] = []
    if bed is not None:
        plans.append(
            TaskPlan(
                task_id=task_id_for(print_id, TaskKind.TAKE),
                kind=TaskKind.TAKE,
                printer_id=printer_id,
                bed_id=bed.bed_id,
                step=0,
                print_id=print_id,
            )
        )
    plans.append(
        TaskPlan(
            task_id=task_id_for(print_id, TaskKind.REPLACE),
            kind=TaskKind.REPLACE,
            printer_id=printer_id,
            bed_id=None,
            step=1,
            print_id=print_id,
        )
    )
    return plans


def plan_homing(request_id: str) -> TaskPlan:
    """One homing task; ``request_id`` is the message id, or a daily slot id."""
    return TaskPlan(
        task_id=f"homing:{request_id}",
        kind=TaskKind.HOMING,
        printer_id=None,
        bed_id=None,
        step=0,
        print_id=None,
    )


@dataclass(frozen=True)
class TaskView:
    """What the dispatcher needs to know about an open task to pick the next one."""

    task_id: str
    kind: TaskKind
    status: RobotTaskStatus
    order: int
    """Recording order (all tasks of one ``ready`` share it)."""
    step: int
    group: str | None
    """The print id of a take/replace pair; None for homing."""
    bed_id: int | None
    load_next: bool = False
    """take only: a plate was reserved for its replace when it was sent, so the replace goes
    right after it (nothing else comes between)."""
    printer_id: int | None = None
    hold_scope: HoldScope | None = None
    """For a held task: what it stops (None: recorded before scopes existed, read as ARM)."""


@dataclass(frozen=True)
class Blocked:
    """Nothing may be sent now, and why."""

    reason: str


@dataclass(frozen=True)
class Idle:
    """Nothing to do."""


NextStep = TaskView | Blocked | Idle


def _sort_key(task: TaskView) -> tuple[int, int, str]:
    return (task.order, task.step, task.task_id)


def blocked_printers(open_tasks: Iterable[TaskView]) -> frozenset[int]:
    """Printers whose tasks wait because one of their tasks is held for the printer."""
    return frozenset(
        t.printer_id
        for t in open_tasks
        if t.status is RobotTaskStatus.HELD
        and t.hold_scope is HoldScope.PRINTER
        and t.printer_id is not None
    )


def next_task(open_tasks: Iterable[TaskView], closed_takes: Sequence[TaskView] = ()) -> NextStep:
    """Pick the task to dispatch now, one at a time.

    - a ``sent`` task is in flight, and a task held for the arm (``hold_scope`` arm, or none
      recorded) stops everything: a person must look;
    - a task held for its printer stops only the tasks of that printer; the others go on;
    - a replace whose take was sent with a plate reserved for it goes first, so nothing
      (homing, another printer) comes between a take and its replace;
    - otherwise the oldest pending task; a replace only once its take is done (or there is
      none) and it has a reserved plate or can look for one (``waiting`` ones are re-checked
      by the caller and turned pending when a plate was reserved).

    ``closed_takes`` are the finished takes of open replaces (to know whether a take is done).
    """
    tasks = sorted(open_tasks, key=_sort_key)
    in_flight = [t for t in tasks if t.status is RobotTaskStatus.SENT]
    if in_flight:
        return Blocked(f"task {in_flight[0].task_id} is in flight")
    arm_held = [
        t
        for t in tasks
        if t.status is RobotTaskStatus.HELD and t.hold_scope is not HoldScope.PRINTER
    ]
    if arm_held:
        return Blocked(f"task {arm_held[0].task_id} is held: the arm waits for a person")
    stopped = blocked_printers(tasks)
    tasks = [t for t in tasks if t.printer_id is None or t.printer_id not in stopped]
    takes = {t.group: t for t in [*closed_takes, *tasks] if t.kind is TaskKind.TAKE}

    def take_state(replace: TaskView) -> RobotTaskStatus | None:
        take = takes.get(replace.group)
        return None if take is None else take.status

    for task in tasks:
        if task.kind is TaskKind.REPLACE and task.status is RobotTaskStatus.PENDING:
            take = takes.get(task.group)
            if take is not None and take.status is RobotTaskStatus.DONE and take.load_next:
                return task
    for task in tasks:
        if task.status is not RobotTaskStatus.PENDING:
            continue
        if task.kind is TaskKind.REPLACE and take_state(task) not in (None, RobotTaskStatus.DONE):
            continue
        return task
    return Idle()
