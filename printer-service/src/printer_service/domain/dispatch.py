"""Dispatch decisions: when a printer may take a job, which jobs match, what a failure does.

Everything here is pure: the service reads the printer, its plate and the job, asks these
functions what to do, and performs it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pantheon_contracts.beds import PRINTABLE_STATES, BedType
from pantheon_contracts.printer import BUSY_STATES, DISPATCHABLE_STATES, PrinterState
from pantheon_contracts.store import (
    ACTIVE_JOB_STATUSES,
    JobStatus,
    PrinterBed,
    PrinterStart,
    PrinterSwap,
)
from printer_service.domain.ports import Transition


@dataclass(frozen=True)
class DispatchDecision:
    """Whether to claim a job now; ``reason`` says why not (shown in /status)."""

    go: bool
    reason: str

    @classmethod
    def no(cls, reason: str) -> DispatchDecision:
        return cls(False, reason)


def swap_refusal(swap: PrinterSwap) -> str:
    """Why nothing starts while the robot swaps the plate (/status, the 409 of POST /print)."""
    since = swap.since if swap.since.tzinfo else swap.since.replace(tzinfo=UTC)
    return (
        f"the robot is swapping this printer's plate (task {swap.task_id} since "
        f"{since.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC): no print starts"
    )


def decide_dispatch(
    *,
    enabled: bool,
    state: PrinterState,
    bed: PrinterBed | None,
    bed_type: BedType | None,
    print_open: bool,
    cooling_down: bool = False,
    swap: PrinterSwap | None = None,
) -> DispatchDecision:
    """May this printer claim the next job? (architecture.md 4 step 2/5; brief agreements).

    Never while the robot swaps its plate (``printers.swap``: a take sent, its replace not
    done); else only an idle, finished or failed printer (the firmware accepts a job there,
    4.3) whose plate is loaded and clean, of a known type, with no print still being tracked.
    The swap is checked first, so /status and a refused manual print name it even when the
    plate state would refuse too.
    """
    if swap is not None:
        return DispatchDecision.no(swap_refusal(swap))
    if not enabled:
        return DispatchDecision.no("auto-dispatch disabled")
    if print_open:
        return DispatchDecision.no("a print is being tracked")
    if state not in DISPATCHABLE_STATES:
        return DispatchDecision.no(f"printer is {state.value}")
    if bed is None:
        return DispatchDecision.no("no plate in the printer")
    if bed.state not in PRINTABLE_STATES:
        return DispatchDecision.no(f"plate is {bed.state.value}")
    if bed_type is None:
        return DispatchDecision.no("type of the loaded plate unknown")
    if cooling_down:
        return DispatchDecision.no("waiting after a failed dispatch")
    return DispatchDecision(True, "ready for a job")


def claim_filter(
    printer_id: int, model: str, bed_type: BedType, job_id: str | None = None
) -> dict[str, Any]:
    """The ``jobs`` query of a claimable job for this printer and plate type (only job
    ``job_id`` if given: the one the start marker names).

    A job targets this printer by id, or any printer of this model (when it names no printer),
    or any printer (neither named).
    """
    # One explicit $and: nx-27017 (the test server) loses the other conditions next to a
    # top-level $or, and inside $or it does not match `field: None`; `$in: [None]` means the
    # same on real MongoDB (null or missing) and works on both.
    unset = {"$in": [None]}
    which: list[dict[str, Any]] = [{"_id": job_id}] if job_id is not None else []
    return {
        "$and": [
            *which,
            {"status": JobStatus.QUEUED.value},
            {"bed_type": bed_type.value},
            {
                "$or": [
                    {"target.printer_id": printer_id},
                    {"target.printer_id": unset, "target.model": model},
                    {"target.printer_id": unset, "target.model": unset},
                ]
            },
        ]
    }


CLAIM_SORT = [("priority", -1), ("seq", 1)]
"""Highest priority first, then first in (JobDoc docstring)."""


def claim_update(printer_id: int, now: datetime) -> dict[str, Any]:
    """The ``$set`` that assigns a claimed job to this printer."""
    return {
        "$set": {
            "status": JobStatus.ASSIGNED.value,
            "printer_id": printer_id,
            "updated_at": now,
        }
    }


def start_guard_filter(printer_id: int) -> dict[str, Any]:
    """The ``printers`` document of this printer, only while no plate swap is under way.

    The compare-and-set half of the interlock with the orchestrator: it sets ``swap`` only
    while ``starting`` is None, printer-service sets ``starting`` only through this filter, so
    a take and a start never overlap. ``swap: None`` matches a null or a missing ``swap``.
    """
    # Not `$in: [None]` here: in an update filter, nx-27017 (the test server) matches it and
    # reports the document modified, but does not apply the $set (on a null or a missing
    # field alike). A top-level `field: None` means the same on real MongoDB (null or missing)
    # and works on nx-27017 (only inside $or does it fail there, see claim_filter).
    return {"_id": printer_id, "swap": None}


def starting_update(start: PrinterStart | None) -> dict[str, Any]:
    """The ``$set`` of ``printers.starting``: the start under way, or None once it is over."""
    return {"$set": {"starting": start.model_dump(mode="python") if start else None}}


def failure_update(attempts: int, max_attempts: int, error: str, now: datetime) -> dict[str, Any]:
    """Job update after a failed attempt: back to the queue, or ``failed`` at the limit.

    ``attempts`` is the count before this failure.
    """
    done = attempts + 1
    status = JobStatus.FAILED if done >= max_attempts else JobStatus.QUEUED
    return {
        "$set": {
            "status": status.value,
            "printer_id": None,
            "attempts": done,
            "last_error": error,
            "updated_at": now,
        }
    }


def active_job_filter(job_id: str, printer_id: int) -> dict[str, Any]:
    """Matches the job only while this printer still holds it (a guard on every update)."""
    return {
        "_id": job_id,
        "printer_id": printer_id,
        "status": {"$in": [s.value for s in ACTIVE_JOB_STATUSES]},
    }


def copy_done_status(copies_done: int, copies: int) -> JobStatus:
    """After a finished copy: ``finished`` when all are printed, else back to the queue."""
    return JobStatus.FINISHED if copies_done >= copies else JobStatus.QUEUED


def subtask_name_for(file: str) -> str:
    """The name the printer shows and echoes: the file name without its extension."""
    for ext in (".gcode.3mf", ".3mf", ".gcode", ".bgcode"):
        if file.lower().endswith(ext):
            return file[: -len(ext)]
    return file


@dataclass(frozen=True)
class PrintEnd:
    """How a tracked print ended, as seen in the printer state."""

    finished: bool
    error: str | None


def print_end(state: PrinterState, *, error_text: str | None, print_open: bool) -> PrintEnd | None:
    """Has the tracked print ended? None while it runs (or if no print is tracked).

    FINISH and FAILED end it; IDLE after a confirmed start means the printer lost it (a reboot
    leaves no memory of the job, 9.13) and counts as a failure. OFFLINE and UNKNOWN decide
    nothing: wait for the next full report.
    """
    if not print_open:
        return None
    if state == PrinterState.FINISHED:
        return PrintEnd(True, None)
    if state == PrinterState.FAILED:
        return PrintEnd(False, error_text or "print failed")
    if state == PrinterState.IDLE:
        return PrintEnd(False, error_text or "printer went idle without finishing (rebooted?)")
    return None


def should_notify_ready(end: PrintEnd, *, ready_on_failed: bool) -> bool:
    """Publish ``ready`` after this end? Always after FINISH; after FAILED per policy.

    A failed print may still have left plastic on the plate, so by default the robot takes the
    plate out either way (READY_ON_FAILED=true).
    """
    return end.finished or ready_on_failed


STARTED_STATES = frozenset({PrinterState.PREPARING, PrinterState.PRINTING})


def start_confirmed(transitions: Iterable[Transition], *, after: int, subtask_name: str) -> bool:
    """Did the printer start our job? (5.11: an ack is not a start.)

    True once a state change recorded after index ``after`` (the count before the command was
    sent) reached PREPARE or RUNNING with our ``subtask_name`` (or none reported).
    """
    return any(
        t.index > after
        and t.state in STARTED_STATES
        and (not t.subtask_name or t.subtask_name == subtask_name)
        for t in transitions
    )


def runs_untracked_print(state: PrinterState, *, print_open: bool, starting: bool) -> bool:
    """Is the printer running a print nobody tracks? Started from its screen or from Bambu
    Studio, or a start given up on that came after all. printer-service then tracks it (no
    job) so that its end marks the plate with_part and announces ready: the robot takes the
    plate out, instead of the next job being printed on top of the part."""
    return state in BUSY_STATES and not print_open and not starting


PRINT_ERROR_BUSY = 0x05004004
"""``print_error`` a printer latches when a start arrives while it is busy (8.2)."""


def busy_refusal(reason: str, print_error: int) -> bool:
    """Is a refused start a "device is busy"? The printer was idle when we sent it (dispatch
    only sends then), so busy means it is already starting something: most likely this very
    file, delivered twice (QoS 1 is at least once) or acked late. Such a refusal is not taken
    at its word: the start is waited for as an unconfirmed one (late_start)."""
    return print_error == PRINT_ERROR_BUSY or "busy" in reason.lower()


class LateStart(StrEnum):
    """What to do about a start the printer did not confirm in time (section 11.13: acks may
    take 15-135 s): wait for it, adopt the print it turned out to be, or give the job up."""

    WAIT = "wait"
    ADOPT = "adopt"
    GIVE_UP = "give_up"


def late_start(
    transitions: Iterable[Transition], *, after: int, subtask_name: str, now: float, until: float
) -> LateStart:
    """ADOPT once the printer started our file after all (a state change past ``after`` to
    PREPARE or RUNNING with our subtask), else WAIT until ``until``, then GIVE_UP.

    Until then the job stays with this printer and nothing else is sent: a printer that acks
    late prints the file it was given, and a job handed on meanwhile would be printed twice
    (or this printer would print on top of a part nobody knows is there)."""
    if start_confirmed(transitions, after=after, subtask_name=subtask_name):
        return LateStart.ADOPT
    return LateStart.WAIT if now < until else LateStart.GIVE_UP
