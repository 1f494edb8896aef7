"""Printer state normalisation, named state sets, and fixed channel names."""

import pytest

from pantheon_contracts import names
from pantheon_contracts.beds import BedState, BedType
from pantheon_contracts.printer import (
    BAMBU_GCODE_STATES,
    BUSY_STATES,
    DISPATCHABLE_STATES,
    DONE_STATES,
    PrinterState,
    from_bambu,
)


@pytest.mark.parametrize(
    ("gcode_state", "state"),
    [
        ("IDLE", PrinterState.IDLE),
        ("PREPARE", PrinterState.PREPARING),
        ("SLICING", PrinterState.PREPARING),
        ("RUNNING", PrinterState.PRINTING),
        ("PAUSE", PrinterState.PAUSED),
        ("FINISH", PrinterState.FINISHED),
        ("FAILED", PrinterState.FAILED),
        ("OFFLINE", PrinterState.OFFLINE),
        ("INIT", PrinterState.UNKNOWN),
        ("something-new", PrinterState.UNKNOWN),
        (None, PrinterState.UNKNOWN),
        ("running", PrinterState.PRINTING),
    ],
)
def test_from_bambu(gcode_state: str | None, state: PrinterState) -> None:
    assert from_bambu(gcode_state) is state


def test_named_sets_follow_bambu_studio_rules() -> None:
    # busy = RUNNING, PAUSE, SLICING, PREPARE; a new job may be sent in IDLE, FINISH, FAILED
    assert {from_bambu(s) for s in ("RUNNING", "PAUSE", "SLICING", "PREPARE")} == BUSY_STATES
    assert {from_bambu(s) for s in ("IDLE", "FINISH", "FAILED")} == DISPATCHABLE_STATES
    assert not BUSY_STATES & DISPATCHABLE_STATES
    assert DONE_STATES <= DISPATCHABLE_STATES
    assert set(BAMBU_GCODE_STATES.values()) <= set(PrinterState)


def test_fixed_names() -> None:
    assert (names.READY_QUEUE, names.HOMING_QUEUE) == ("ready", "homing")
    assert (names.ROBOT_JOB_TOPIC, names.ROBOT_STATUS_TOPIC) == (
        "robot_arm/job",
        "robot_arm/status",
    )
    assert names.dead_letter_queue("ready") == "ready.dlq"
    assert names.MONGO_DATABASE == "pantheon"
    assert {
        "printers",
        "beds",
        "gcode_files",
        "jobs",
        "robot_tasks",
        "users",
        "api_keys",
    } <= set(names.ALL_COLLECTIONS)
    assert names.printer_service_published_port(14) == 50014


def test_bed_enums() -> None:
    assert {t.value for t in BedType} == {"textured_pei", "smooth_pei", "cool_plate", "engineering"}
    assert {s.value for s in BedState} == {"clean", "in_printer", "with_part", "dirty", "retired"}
