"""Normalising merged reports into the mirrored live state."""

import json
from pathlib import Path

import pytest

from pantheon_contracts.printer import PrinterState
from printer_service.domain.normalize import describe_error, error_code, hms_id, normalize

DATA = Path(__file__).parent / "data"


def test_full_report_is_normalised() -> None:
    report = json.loads((DATA / "p1s_full.json").read_text())["print"]
    live = normalize(report, complete=True, online=True)
    assert live.state == PrinterState.PRINTING
    assert live.gcode_state == "RUNNING"
    assert live.progress_pct == 42
    assert live.remaining_min == 37  # a string on the wire, minutes
    assert (live.layer, live.total_layers) == (61, 148)
    assert live.temps.nozzle == 219.8
    assert live.temps.bed_target == 55.0
    assert live.temps.chamber == 5.0
    assert live.subtask_name == "bracket_v3"
    assert live.hms[0].id == "0300_0100_0001_0007"
    assert live.hms[0].severity == 1
    assert describe_error(live) == "HMS_0300_0100_0001_0007"


@pytest.mark.parametrize(
    ("complete", "online", "expected"),
    [
        (False, True, PrinterState.UNKNOWN),
        (True, False, PrinterState.OFFLINE),
        (False, False, PrinterState.OFFLINE),
        (True, True, PrinterState.IDLE),
    ],
)
def test_untrusted_or_offline_states(complete: bool, online: bool, expected: PrinterState) -> None:
    live = normalize({"gcode_state": "IDLE"}, complete=complete, online=online)
    assert live.state == expected


@pytest.mark.parametrize(
    ("gcode_state", "expected"),
    [
        ("PREPARE", PrinterState.PREPARING),
        ("SLICING", PrinterState.PREPARING),
        ("PAUSE", PrinterState.PAUSED),
        ("FINISH", PrinterState.FINISHED),
        ("FAILED", PrinterState.FAILED),
        ("INIT", PrinterState.UNKNOWN),
        (None, PrinterState.UNKNOWN),
    ],
)
def test_gcode_states(gcode_state: str | None, expected: PrinterState) -> None:
    assert normalize({"gcode_state": gcode_state}, complete=True, online=True).state == expected


def test_packed_device_temperatures_win_over_top_level_fields() -> None:
    report = {
        "gcode_state": "IDLE",
        "bed_temper": 20,
        "device": {
            "bed": {"info": {"temp": (100 << 16) | 99}},
            "ctc": {"info": {"temp": 31}},
            "extruder": {"info": [{"id": 0, "temp": (220 << 16) | 218}]},
        },
    }
    temps = normalize(report, complete=True, online=True).temps
    assert (temps.bed, temps.bed_target) == (99.0, 100.0)
    assert temps.chamber == 31.0
    assert (temps.nozzle, temps.nozzle_target) == (218.0, 220.0)


def test_zero_total_layers_means_unknown_and_garbage_reads_none() -> None:
    live = normalize(
        {"gcode_state": "IDLE", "total_layer_num": 0, "mc_percent": "x"}, complete=True, online=True
    )
    assert live.total_layers is None
    assert live.progress_pct is None


def test_print_error_code_and_hex_hms() -> None:
    live = normalize(
        {
            "gcode_state": "FAILED",
            "print_error": 0x07008006,
            "hms": [{"attr": "0C000100", "code": "00020001"}],
        },
        complete=True,
        online=True,
    )
    assert live.print_error_code == "0700-8006"
    assert live.hms[0].id == "0C00_0100_0002_0001"
    assert describe_error(live) == "print_error 0700-8006, HMS_0C00_0100_0002_0001"
    assert error_code(0x05004004) == "0500-4004"
    assert hms_id(0x05000500, 0x00010007) == "0500_0500_0001_0007"
