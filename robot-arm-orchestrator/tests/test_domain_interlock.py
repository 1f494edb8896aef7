"""The door interlock and the binding of a ``ready`` to a print (domain/interlock.py): pure
decisions, no broker, no clock."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from pantheon_contracts.beds import BedState
from pantheon_contracts.printer import PrinterState
from pantheon_contracts.robot import RobotJobKind
from pantheon_contracts.store import PrinterBed, PrinterStart, PrinterSwap
from robot_arm_orchestrator.domain.interlock import (
    SAFE,
    Bound,
    DeadLetter,
    PrinterLive,
    PrintRef,
    Repeat,
    bind_ready,
    door_check,
)

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
TAKE, REPLACE = RobotJobKind.TAKE, RobotJobKind.REPLACE
WITH_PART = PrinterBed(bed_id=801, state=BedState.WITH_PART)
CLEAN = PrinterBed(bed_id=801, state=BedState.IN_PRINTER)
ENDED = PrintRef("p1", 14, ended=True)
RUNNING = PrintRef("p1", 14, ended=False)

FINISHED = PrinterLive(
    printer_id=14,
    state=PrinterState.FINISHED,
    online=True,
    last_seen=NOW - timedelta(seconds=5),
    bed=WITH_PART,
    current_print=ENDED,
    nozzle_target=0.0,
    bed_target=0.0,
)


def check(
    printer: PrinterLive,
    kind: RobotJobKind = TAKE,
    *,
    print_id: str | None = "p1",
    ended: bool | None = True,
) -> tuple[bool, str, bool]:
    verdict = door_check(
        kind, printer, print_id=print_id, print_ended=ended, now=NOW, max_age_s=90, group="p1"
    )
    return verdict.safe, verdict.reason, verdict.until_print_end


# ---------------------------------------------------------------- door_check


def test_a_finished_printer_with_a_part_may_be_opened_for_its_take() -> None:
    assert (
        door_check(TAKE, FINISHED, print_id="p1", print_ended=True, now=NOW, max_age_s=90) == SAFE
    )


@pytest.mark.parametrize(
    ("state", "words"),
    [
        (PrinterState.PRINTING, "is printing"),
        (PrinterState.PREPARING, "is preparing"),
        (PrinterState.PAUSED, "is paused"),
        (PrinterState.OFFLINE, "is offline"),
        (PrinterState.UNKNOWN, "is unknown"),
    ],
)
@pytest.mark.parametrize("kind", [TAKE, REPLACE])
def test_a_busy_or_unknown_printer_is_never_opened(
    state: PrinterState, words: str, kind: RobotJobKind
) -> None:
    bed = WITH_PART if kind is TAKE else None
    safe, reason, until_end = check(replace(FINISHED, state=state, bed=bed), kind)
    assert not safe
    assert words in reason
    assert not until_end  # a person decides: the task's own print had ended


def test_a_task_whose_print_runs_waits_for_that_print_to_end() -> None:
    printing = replace(
        FINISHED, state=PrinterState.PRINTING, current_print=RUNNING, progress_pct=42, bed=CLEAN
    )
    safe, reason, until_end = check(printing, ended=False)
    assert not safe
    assert until_end
    assert "print p1 has not ended" in reason
    assert "printing, 42 %" in reason


def test_a_stale_record_is_never_trusted() -> None:
    stale = replace(FINISHED, last_seen=NOW - timedelta(seconds=91))
    safe, reason, until_end = check(stale)
    assert not safe
    assert not until_end
    assert "91 s old" in reason
    never = replace(FINISHED, last_seen=None)
    assert "never reported" in check(never)[1]


def test_a_printer_printer_service_lost_is_not_opened() -> None:
    assert "offline" in check(replace(FINISHED, online=False))[1]


def test_a_heating_printer_is_not_opened() -> None:
    safe, reason, _ = check(replace(FINISHED, state=PrinterState.IDLE, bed_target=60.0))
    assert not safe
    assert "heating (bed target 60 °C)" in reason


def test_an_end_printer_service_has_not_recorded_yet_is_not_settled() -> None:
    unsettled = replace(FINISHED, current_print=RUNNING)
    safe, reason, _ = check(unsettled, print_id=None, ended=None)
    assert not safe
    assert "has not recorded the end of print p1" in reason


def test_nothing_is_opened_while_a_print_is_starting() -> None:
    starting = replace(FINISHED, starting=PrinterStart(what="job j1", since=NOW))
    safe, reason, _ = check(starting)
    assert not safe
    assert "starting a print" in reason
    assert "job j1" in reason


def test_another_swap_keeps_the_door_but_its_own_does_not() -> None:
    own = replace(FINISHED, swap=PrinterSwap(task_id="p1:take", print_id="p1", since=NOW))
    assert check(own)[0]
    other = replace(FINISHED, swap=PrinterSwap(task_id="p0:take", print_id="p0", since=NOW))
    safe, reason, _ = check(other)
    assert not safe
    assert "p0:take" in reason


def test_a_take_needs_a_plate_with_a_part() -> None:
    safe, reason, _ = check(replace(FINISHED, bed=CLEAN))
    assert not safe
    assert "in_printer" in reason
    assert "nothing to take" in reason
    assert "holds no plate" in check(replace(FINISHED, bed=None))[1]


def test_an_idle_printer_with_a_part_may_be_opened() -> None:
    idle = replace(FINISHED, state=PrinterState.IDLE)
    assert check(idle)[0]


def test_a_replace_needs_an_empty_printer() -> None:
    empty = replace(FINISHED, bed=None)
    assert check(empty, REPLACE)[0]
    safe, reason, _ = check(FINISHED, REPLACE)
    assert not safe
    assert "still holds plate 801" in reason


def test_a_made_up_print_id_skips_the_print_end_check_but_nothing_else() -> None:
    printing = replace(FINISHED, state=PrinterState.PRINTING, current_print=None)
    safe, reason, until_end = check(printing, print_id=None, ended=None)
    assert not safe
    assert not until_end
    assert "is printing" in reason


# ---------------------------------------------------------------- bind_ready


def bind(
    printer: PrinterLive,
    message_id: str | None = None,
    named: PrintRef | None = None,
    *,
    recorded: bool = False,
    open_swap: str | None = None,
) -> Bound | DeadLetter | Repeat:
    return bind_ready(
        printer=printer,
        message_id=message_id,
        named=named,
        recorded=recorded,
        open_swap=open_swap,
        new_id="manual-14-x",
    )


def test_a_message_id_of_the_latest_print_binds_to_it() -> None:
    assert bind(FINISHED, "p1", ENDED) == Bound("p1", ended=True)
    running = replace(FINISHED, current_print=RUNNING)
    assert bind(running, "p1", RUNNING) == Bound("p1", ended=False)


def test_a_made_up_message_id_is_dead_lettered() -> None:
    result = bind(FINISHED, "made-up", None)
    assert isinstance(result, DeadLetter)
    assert "names no print of printer 14" in result.reason


def test_a_message_id_of_another_printers_print_is_dead_lettered() -> None:
    result = bind(FINISHED, "p9", PrintRef("p9", 15, ended=True))
    assert isinstance(result, DeadLetter)
    assert "names no print of printer 14" in result.reason


def test_a_ready_for_an_older_print_is_stale_unless_it_was_served() -> None:
    older = PrintRef("p0", 14, ended=True)
    stale = bind(FINISHED, "p0", older)
    assert isinstance(stale, DeadLetter)
    assert "not the latest print" in stale.reason
    assert "p1" in stale.reason
    assert isinstance(bind(FINISHED, "p0", older, recorded=True), Repeat)


def test_a_hand_typed_ready_stands_for_the_latest_print() -> None:
    assert bind(FINISHED) == Bound("p1", ended=True)
    printing = replace(FINISHED, state=PrinterState.PRINTING, current_print=RUNNING)
    assert bind(printing) == Bound("p1", ended=False)


def test_a_hand_typed_ready_with_no_print_known() -> None:
    unknown = replace(FINISHED, current_print=None)
    assert bind(unknown) == Bound("manual-14-x", ended=True, synthetic=True)
    assert bind(replace(unknown, bed=None)) == Bound("manual-14-x", ended=True, synthetic=True)
    assert isinstance(bind(unknown, open_swap="manual-14-a:take"), Repeat)
    clean = bind(replace(unknown, bed=CLEAN))
    assert isinstance(clean, DeadLetter)
    assert "nothing to swap" in clean.reason
