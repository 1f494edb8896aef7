"""Dispatch decision table, job retry policy, print ends and start confirmation."""

from datetime import UTC, datetime

import pytest

from pantheon_contracts.beds import BedState, BedType
from pantheon_contracts.printer import PrinterState
from pantheon_contracts.store import JobStatus, PrinterBed, PrinterStart, PrinterSwap
from printer_service.domain.dispatch import (
    LateStart,
    PrintEnd,
    busy_refusal,
    claim_filter,
    copy_done_status,
    decide_dispatch,
    failure_update,
    late_start,
    print_end,
    should_notify_ready,
    start_confirmed,
    start_guard_filter,
    starting_update,
    subtask_name_for,
    swap_refusal,
)
from printer_service.domain.ports import Transition

CLEAN = PrinterBed(bed_id=801, state=BedState.IN_PRINTER)
WITH_PART = PrinterBed(bed_id=801, state=BedState.WITH_PART)
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("state", "bed", "bed_type", "print_open", "enabled", "cooling", "go", "reason"),
    [
        (PrinterState.IDLE, CLEAN, BedType.TEXTURED_PEI, False, True, False, True, "ready"),
        (PrinterState.FINISHED, CLEAN, BedType.TEXTURED_PEI, False, True, False, True, "ready"),
        (PrinterState.FAILED, CLEAN, BedType.TEXTURED_PEI, False, True, False, True, "ready"),
        (
            PrinterState.FINISHED,
            WITH_PART,
            BedType.TEXTURED_PEI,
            False,
            True,
            False,
            False,
            "with_part",
        ),
        (PrinterState.IDLE, None, None, False, True, False, False, "no plate"),
        (PrinterState.IDLE, CLEAN, None, False, True, False, False, "unknown"),
        (PrinterState.PRINTING, CLEAN, BedType.TEXTURED_PEI, False, True, False, False, "printing"),
        (
            PrinterState.PREPARING,
            CLEAN,
            BedType.TEXTURED_PEI,
            False,
            True,
            False,
            False,
            "preparing",
        ),
        (PrinterState.PAUSED, CLEAN, BedType.TEXTURED_PEI, False, True, False, False, "paused"),
        (PrinterState.UNKNOWN, CLEAN, BedType.TEXTURED_PEI, False, True, False, False, "unknown"),
        (PrinterState.OFFLINE, CLEAN, BedType.TEXTURED_PEI, False, True, False, False, "offline"),
        (PrinterState.IDLE, CLEAN, BedType.TEXTURED_PEI, True, True, False, False, "tracked"),
        (PrinterState.IDLE, CLEAN, BedType.TEXTURED_PEI, False, False, False, False, "disabled"),
        (
            PrinterState.IDLE,
            CLEAN,
            BedType.TEXTURED_PEI,
            False,
            True,
            True,
            False,
            "failed dispatch",
        ),
    ],
)
def test_dispatch_decision_table(
    state: PrinterState,
    bed: PrinterBed | None,
    bed_type: BedType | None,
    print_open: bool,
    enabled: bool,
    cooling: bool,
    go: bool,
    reason: str,
) -> None:
    decision = decide_dispatch(
        enabled=enabled,
        state=state,
        bed=bed,
        bed_type=bed_type,
        print_open=print_open,
        cooling_down=cooling,
    )
    assert decision.go is go
    assert reason in decision.reason


SWAP = PrinterSwap(task_id="p9:take", print_id="p9", since=datetime(2026, 12, 5, 8, 30, tzinfo=UTC))


@pytest.mark.parametrize(
    ("state", "bed", "bed_type", "print_open", "enabled"),
    [
        (PrinterState.IDLE, CLEAN, BedType.TEXTURED_PEI, False, True),  # would go
        (PrinterState.FINISHED, WITH_PART, BedType.TEXTURED_PEI, False, True),  # the take's plate
        (PrinterState.IDLE, None, None, False, True),  # plate out, replace not done
        (PrinterState.OFFLINE, CLEAN, BedType.TEXTURED_PEI, False, True),
        (PrinterState.IDLE, CLEAN, BedType.TEXTURED_PEI, True, True),
        (PrinterState.IDLE, CLEAN, BedType.TEXTURED_PEI, False, False),
    ],
)
def test_a_swap_refuses_first_whatever_else_would(
    state: PrinterState,
    bed: PrinterBed | None,
    bed_type: BedType | None,
    print_open: bool,
    enabled: bool,
) -> None:
    decision = decide_dispatch(
        enabled=enabled,
        state=state,
        bed=bed,
        bed_type=bed_type,
        print_open=print_open,
        swap=SWAP,
    )
    assert decision.go is False
    assert decision.reason == swap_refusal(SWAP)


def test_the_swap_refusal_says_who_since_when_and_what_it_means() -> None:
    assert swap_refusal(SWAP) == (
        "the robot is swapping this printer's plate (task p9:take since 2026-12-05 08:30:00 UTC): "
        "no print starts"
    )
    naive = SWAP.model_copy(update={"since": datetime(2026, 12, 5, 8, 30)})  # read as UTC
    assert swap_refusal(naive) == swap_refusal(SWAP)


def test_the_start_marker_is_a_compare_and_set_on_no_swap() -> None:
    assert start_guard_filter(14) == {"_id": 14, "swap": None}
    start = PrinterStart(what="job j1", since=NOW)
    assert starting_update(start) == {"$set": {"starting": {"what": "job j1", "since": NOW}}}
    assert starting_update(None) == {"$set": {"starting": None}}


def test_claim_filter_of_one_named_job() -> None:
    first, *rest = claim_filter(14, "P1S", BedType.SMOOTH_PEI, "j7")["$and"]
    assert first == {"_id": "j7"}
    assert rest == claim_filter(14, "P1S", BedType.SMOOTH_PEI)["$and"]


def test_claim_filter_matches_printer_model_or_anywhere_and_the_plate_type() -> None:
    status, bed_type, targets = claim_filter(14, "P1S", BedType.SMOOTH_PEI)["$and"]
    assert status == {"status": "queued"}
    assert bed_type == {"bed_type": "smooth_pei"}
    assert targets["$or"] == [
        {"target.printer_id": 14},
        {"target.printer_id": {"$in": [None]}, "target.model": "P1S"},
        {"target.printer_id": {"$in": [None]}, "target.model": {"$in": [None]}},
    ]


@pytest.mark.parametrize(
    ("attempts", "max_attempts", "status", "done"),
    [
        (0, 3, JobStatus.QUEUED, 1),
        (1, 3, JobStatus.QUEUED, 2),
        (2, 3, JobStatus.FAILED, 3),
        (0, 1, JobStatus.FAILED, 1),
    ],
)
def test_retry_policy(attempts: int, max_attempts: int, status: JobStatus, done: int) -> None:
    update = failure_update(attempts, max_attempts, "upload failed", NOW)["$set"]
    assert update["status"] == status.value
    assert update["attempts"] == done
    assert update["printer_id"] is None
    assert update["last_error"] == "upload failed"


@pytest.mark.parametrize(
    ("done", "copies", "status"),
    [(1, 1, JobStatus.FINISHED), (1, 3, JobStatus.QUEUED), (3, 3, JobStatus.FINISHED)],
)
def test_copies(done: int, copies: int, status: JobStatus) -> None:
    assert copy_done_status(done, copies) == status


@pytest.mark.parametrize(
    ("state", "print_open", "expected"),
    [
        (PrinterState.FINISHED, True, PrintEnd(True, None)),
        (PrinterState.FAILED, True, PrintEnd(False, "print_error 0700-8006")),
        (PrinterState.IDLE, True, PrintEnd(False, "print_error 0700-8006")),
        (PrinterState.PRINTING, True, None),
        (PrinterState.PREPARING, True, None),
        (PrinterState.PAUSED, True, None),
        (PrinterState.UNKNOWN, True, None),
        (PrinterState.OFFLINE, True, None),
        (PrinterState.FINISHED, False, None),
    ],
)
def test_print_end(state: PrinterState, print_open: bool, expected: PrintEnd | None) -> None:
    assert print_end(state, error_text="print_error 0700-8006", print_open=print_open) == expected


def test_idle_without_error_text_says_the_printer_lost_the_print() -> None:
    end = print_end(PrinterState.IDLE, error_text=None, print_open=True)
    assert end is not None
    assert "idle" in (end.error or "")


def test_ready_policy() -> None:
    assert should_notify_ready(PrintEnd(True, None), ready_on_failed=False)
    assert should_notify_ready(PrintEnd(False, "x"), ready_on_failed=True)
    assert not should_notify_ready(PrintEnd(False, "x"), ready_on_failed=False)


def test_an_ack_is_not_a_start_and_a_fast_print_still_counts() -> None:
    old = [Transition(1, PrinterState.FINISHED, "cube")]
    assert not start_confirmed(old, after=1, subtask_name="cube")
    fast = [
        *old,
        Transition(2, PrinterState.PREPARING, "cube"),
        Transition(3, PrinterState.FINISHED, "cube"),
    ]
    assert start_confirmed(fast, after=1, subtask_name="cube")
    other = [*old, Transition(2, PrinterState.PRINTING, "someone_else")]
    assert not start_confirmed(other, after=1, subtask_name="cube")


@pytest.mark.parametrize(
    ("file", "name"),
    [("a.gcode.3mf", "a"), ("B.GCODE", "B"), ("c.3mf", "c"), ("d.bgcode", "d")],
)
def test_subtask_name(file: str, name: str) -> None:
    assert subtask_name_for(file) == name


@pytest.mark.parametrize(
    ("transitions", "now", "outcome"),
    [
        ([], 5.0, LateStart.WAIT),  # nothing yet, time left
        ([], 10.0, LateStart.GIVE_UP),
        ([Transition(3, PrinterState.PREPARING, "cube")], 9.0, LateStart.ADOPT),
        ([Transition(3, PrinterState.PRINTING, "cube")], 50.0, LateStart.ADOPT),  # even late
        ([Transition(2, PrinterState.PRINTING, "cube")], 5.0, LateStart.WAIT),  # before the send
        ([Transition(3, PrinterState.PRINTING, "other")], 5.0, LateStart.WAIT),  # not ours
        ([Transition(3, PrinterState.IDLE, "cube")], 10.0, LateStart.GIVE_UP),
    ],
)
def test_late_start(transitions: list[Transition], now: float, outcome: LateStart) -> None:
    assert late_start(transitions, after=2, subtask_name="cube", now=now, until=10.0) is outcome


@pytest.mark.parametrize(
    ("reason", "print_error", "busy"),
    [
        ("device is busy", 0, True),
        ("failed", 0x05004004, True),
        ("foreign objects on heatbed", 0x0500806E, False),
        ("err_code 0x0500400e", 0, False),
    ],
)
def test_busy_refusal(reason: str, print_error: int, busy: bool) -> None:
    assert busy_refusal(reason, print_error) is busy
