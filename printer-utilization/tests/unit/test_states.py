"""The state mapping table of domain/states.py, row by row, and /status parsing."""

from datetime import UTC, datetime

import pytest

from pantheon_contracts import PrinterState
from printer_utilization.domain.samples import parse_status, unreachable
from printer_utilization.domain.states import PlateState, UtilState, classify

S, P, U = PrinterState, PlateState, UtilState
AT = datetime(2026, 1, 5, tzinfo=UTC)

TABLE = [
    (S.PREPARING, P.IN_PRINTER, U.PRINTING),
    (S.PRINTING, P.IN_PRINTER, U.PRINTING),
    (S.PRINTING, P.UNKNOWN, U.PRINTING),
    (S.PAUSED, P.IN_PRINTER, U.PAUSED),
    (S.IDLE, P.IN_PRINTER, U.IDLE),
    (S.IDLE, P.NONE, U.IDLE),
    (S.FINISHED, P.WITH_PART, U.WAITING_FOR_ROBOT),
    (S.FINISHED, P.NONE, U.WAITING_FOR_ROBOT),
    (S.FINISHED, P.UNKNOWN, U.WAITING_FOR_ROBOT),
    (S.FINISHED, P.IN_PRINTER, U.IDLE),
    (S.FAILED, P.WITH_PART, U.ERROR),
    (S.FAILED, P.NONE, U.ERROR),
    (S.FAILED, P.UNKNOWN, U.ERROR),
    (S.FAILED, P.IN_PRINTER, U.IDLE),
    (S.OFFLINE, P.IN_PRINTER, U.OFFLINE),
    (S.UNKNOWN, P.WITH_PART, U.OFFLINE),
    (None, P.UNKNOWN, U.OFFLINE),
]


@pytest.mark.parametrize(("state", "plate", "expected"), TABLE)
def test_mapping_table(state: PrinterState | None, plate: PlateState, expected: UtilState) -> None:
    assert classify(state, plate) is expected


def test_every_printer_state_is_in_the_table() -> None:
    assert {row[0] for row in TABLE} == {*PrinterState, None}


@pytest.mark.parametrize(
    ("bed", "plate"),
    [
        ({"bed_id": 801, "state": "with_part"}, P.WITH_PART),
        ({"bed_id": 801, "state": "in_printer"}, P.IN_PRINTER),
        (None, P.NONE),
        ({"bed_id": 801, "state": "weird"}, P.UNKNOWN),
        ("nonsense", P.UNKNOWN),
    ],
)
def test_status_plate(bed: object, plate: PlateState) -> None:
    assert parse_status(14, {"state": "finished", "bed": bed}, AT).plate is plate


def test_status_without_bed_key_has_an_unknown_plate() -> None:
    sample = parse_status(14, {"state": "finished"}, AT)
    assert sample.plate is P.UNKNOWN
    assert sample.state is U.WAITING_FOR_ROBOT


def test_unreadable_state_reads_offline() -> None:
    sample = parse_status(14, {"state": "exploded"}, AT)
    assert sample.printer_state is S.UNKNOWN
    assert sample.state is U.OFFLINE


def test_current_print_is_parsed() -> None:
    body = {
        "state": "finished",
        "current_print": {
            "print_id": "abc",
            "job_id": "j1",
            "file": "bracket.gcode.3mf",
            "bed_id": 801,
            "started_at": "2026-01-05T00:00:00+00:00",
            "ended_at": "2026-01-05T08:00:00Z",
            "result": "finished",
        },
    }
    observed = parse_status(11, body, AT).current_print
    assert observed is not None
    assert observed.print_id == "abc"
    assert observed.job_id == "j1"
    assert observed.result == "finished"
    assert observed.duration_s == 8 * 3600


@pytest.mark.parametrize(
    "current",
    [None, {}, {"print_id": "x"}, {"print_id": "", "started_at": "2026-01-05T00:00:00"}, "x"],
)
def test_incomplete_current_print_is_ignored(current: object) -> None:
    assert (
        parse_status(11, {"state": "printing", "current_print": current}, AT).current_print is None
    )


def test_unreachable_sample_is_offline_with_reason() -> None:
    sample = unreachable(13, AT, "unreachable: ConnectError")
    assert sample.state is U.OFFLINE
    assert sample.reason == "unreachable: ConnectError"
