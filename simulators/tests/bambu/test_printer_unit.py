"""SimPrinter as a pure state machine: no broker, a fake job resolver, an explicit clock."""

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pantheon_contracts.printer import PrinterModel
from pantheon_sim.bambu.printer import (
    EXTERNAL_SPOOL,
    NO_TRAY,
    PROFILES,
    ErrorCode,
    FaultSettings,
    Feed,
    GcodeState,
    JobError,
    Payload,
    Plate,
    PrintJob,
    SimPrinter,
    SimTiming,
    filament_feed,
)

JOB = PrintJob("cube.gcode.3mf", "Metadata/plate_1.gcode", estimated_s=600.0, total_layers=20)
TIMING = SimTiming(speed=10.0, prepare_s=1.0, report_interval_s=1.0, idle_report_interval_s=5.0)


def _resolver(command: Payload) -> PrintJob:
    if "bad" in str(command.get("url", "")):
        raise JobError(ErrorCode.CANNOT_PARSE, "unable to parse the file")
    return JOB


def make(model: PrinterModel = PrinterModel.P1S, **kw: Any) -> SimPrinter:
    return SimPrinter(
        printer_id=14,
        serial="01P00A000000014",
        profile=PROFILES[model],
        resolve_job=_resolver,
        timing=kw.pop("timing", TIMING),
        wall_clock=lambda: 1_700_000_000.0,
        **kw,
    )


def cmd(command: str, **params: Any) -> Payload:
    subsystem = "pushing" if command in ("pushall", "start", "stop_push") else "print"
    if command == "stop_push":
        command = "stop"
    return {subsystem: {"sequence_id": "7", "command": command, **params}}


def run_until(p: SimPrinter, start: float, end: float, step: float = 0.1) -> list[Payload]:
    out: list[Payload] = []
    t = start
    while t <= end:
        out.extend(p.tick(t))
        t = round(t + step, 6)
    return out


@pytest.mark.parametrize(
    ("state_before", "command", "state_after", "result"),
    [
        (GcodeState.IDLE, "pause", GcodeState.IDLE, "failed"),
        (GcodeState.IDLE, "resume", GcodeState.IDLE, "failed"),
        (GcodeState.IDLE, "stop", GcodeState.IDLE, "failed"),
        (GcodeState.RUNNING, "pause", GcodeState.PAUSE, "success"),
        (GcodeState.RUNNING, "resume", GcodeState.RUNNING, "failed"),
        (GcodeState.RUNNING, "stop", GcodeState.FAILED, "success"),
        (GcodeState.PAUSE, "resume", GcodeState.RUNNING, "success"),
        (GcodeState.PAUSE, "pause", GcodeState.PAUSE, "failed"),
        (GcodeState.PAUSE, "stop", GcodeState.FAILED, "success"),
        (GcodeState.PREPARE, "stop", GcodeState.FAILED, "success"),
        (GcodeState.PREPARE, "pause", GcodeState.PREPARE, "failed"),
    ],
)
def test_pause_resume_stop_table(
    state_before: GcodeState, command: str, state_after: GcodeState, result: str
) -> None:
    p = make()
    if state_before is not GcodeState.IDLE:
        p.handle_command(cmd("project_file", url="ftp:///cube.gcode.3mf"), 0.0)
        if state_before in (GcodeState.RUNNING, GcodeState.PAUSE):
            run_until(p, 0.0, 1.2)
        if state_before is GcodeState.PAUSE:
            p.handle_command(cmd("pause"), 1.3)
    assert p.state is state_before
    [reply] = p.handle_command(cmd(command), 2.0)
    assert reply["print"]["result"] == result
    assert reply["print"]["sequence_id"] == "7"
    assert p.state is state_after


@pytest.mark.parametrize(
    ("plate", "accepted", "error"),
    [
        (Plate.CLEAN, True, 0),
        (Plate.NONE, False, ErrorCode.FOREIGN_OBJECTS),
        (Plate.WITH_PART, False, ErrorCode.FOREIGN_OBJECTS),
    ],
)
def test_plate_gates_project_file(plate: Plate, accepted: bool, error: int) -> None:
    p = make(plate=plate)
    [reply] = p.handle_command(cmd("project_file", url="ftp:///cube.gcode.3mf"), 0.0)
    assert (reply["print"]["result"] == "success") is accepted
    assert p.print_error == error
    assert (p.state is GcodeState.PREPARE) is accepted


def test_full_job_timeline_and_units() -> None:
    p = make()
    p.handle_command(cmd("project_file", url="ftp:///cube.gcode.3mf", subtask_name="cube"), 0.0)
    assert p.state is GcodeState.PREPARE
    assert p.remaining_min == 10  # 600 printer seconds, in MINUTES
    run_until(p, 0.0, 1.05)
    assert p.state is GcodeState.RUNNING
    run_until(p, 1.1, 31.0)  # 600 s / speed 10 = 60 wall s of running: half-way
    assert 45 <= p.percent <= 55
    assert 4 <= p.remaining_min <= 6
    assert 9 <= p.layer <= 12
    run_until(p, 31.1, 62.0)
    assert p.state is GcodeState.FINISH
    assert (p.percent, p.remaining_min, p.layer) == (100, 0, 20)
    assert p.plate is Plate.WITH_PART
    assert p.stg_cur == 255


def test_p1_sends_deltas_after_a_full_and_x1_always_full() -> None:
    p1, x1 = make(), make(PrinterModel.X1C)
    full = p1.handle_command(cmd("pushall"), 0.0)[0]["print"]
    assert full["msg"] == 0
    assert "gcode_state" in full
    p1.handle_command(cmd("project_file", url="ftp:///cube.gcode.3mf"), 0.1)
    reports = [m["print"] for m in p1.tick(0.2) if m["print"].get("command") == "push_status"]
    assert reports[0]["msg"] == 1
    assert reports[0]["gcode_state"] == "PREPARE"
    assert "sdcard" not in reports[0]
    x_reports = run_until(x1, 0.0, 6.0)
    assert x_reports
    assert all(m["print"]["msg"] == 0 and "sdcard" in m["print"] for m in x_reports)


def test_idle_reports_slow_and_busy_reports_fast() -> None:
    p = make()
    idle = run_until(p, 0.0, 10.0)
    assert 2 <= len(idle) <= 3
    p.handle_command(cmd("project_file", url="ftp:///cube.gcode.3mf"), 10.0)
    busy = run_until(p, 10.1, 20.0)
    assert len(busy) >= 9


def test_busy_and_bad_file_latch_print_error() -> None:
    p = make()
    p.handle_command(cmd("project_file", url="ftp:///cube.gcode.3mf"), 0.0)
    [busy] = p.handle_command(cmd("project_file", url="ftp:///other.gcode.3mf"), 0.1)
    assert busy["print"]["result"] == "failed"
    assert p.print_error == ErrorCode.BUSY
    assert p.state is GcodeState.PREPARE
    q = make()
    [bad] = q.handle_command(cmd("project_file", url="ftp:///bad.gcode.3mf"), 0.0)
    assert bad["print"]["result"] == "failed"
    assert q.print_error == ErrorCode.CANNOT_PARSE
    assert q.state is GcodeState.IDLE


def test_refused_commands_echo_err_code_and_raise_hms() -> None:
    p = make(faults=FaultSettings(refuse_commands=True))
    [reply] = p.handle_command(cmd("project_file", url="ftp:///cube.gcode.3mf"), 0.0)
    assert reply["print"]["err_code"] == ErrorCode.LAN_AUTH_REFUSED
    assert {"attr": 0x05000500, "code": 0x00010007} in p.hms
    assert p.state is GcodeState.IDLE
    assert p.handle_command(cmd("pushall"), 0.1)[0]["print"]["msg"] == 0


def test_silent_until_pushing_start() -> None:
    p = make(faults=FaultSettings(silent=True))
    assert run_until(p, 0.0, 12.0) == []
    assert p.handle_command(cmd("pushall"), 12.0) == []
    p.handle_command(cmd("start"), 12.1)
    assert p.tick(12.2)


def test_ack_delay_defers_echo_and_prepare() -> None:
    p = make(timing=SimTiming(ack_delay_s=2.0, prepare_s=1.0))
    assert p.handle_command(cmd("project_file", url="ftp:///cube.gcode.3mf"), 0.0) == []
    assert p.state is GcodeState.IDLE
    out = run_until(p, 0.1, 2.1)
    assert any(m["print"].get("command") == "project_file" for m in out)
    assert p.state is GcodeState.PREPARE


def test_gcode_line_and_speed() -> None:
    p = make()
    p.handle_command(cmd("gcode_line", param="M104 S200\nM140 S60\nG28\n"), 0.0)
    assert (p.temps.nozzle_target, p.temps.bed_target) == (200.0, 60.0)
    assert p.home_flag & 0x7
    p.handle_command(cmd("print_speed", param="3"), 0.1)
    assert p.full_report()["print"]["spd_mag"] == 124


COMMANDS = st.sampled_from(
    [
        cmd("project_file", url="ftp:///cube.gcode.3mf"),
        cmd("project_file", url="ftp:///bad.gcode.3mf"),
        cmd("pause"),
        cmd("resume"),
        cmd("stop"),
        cmd("pushall"),
        cmd("start"),
        cmd("stop_push"),
        cmd("print_speed", param="4"),
        cmd("clean_print_error"),
        {"print": {"command": "nonsense"}},
        {"print": "not an object"},
        {"plate": "clean"},
        {"plate": "none"},
        {"fault": "fail"},
    ]
)


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(st.tuples(COMMANDS, st.floats(0.0, 40.0)), max_size=25))
def test_random_sequences_keep_state_and_progress_valid(
    steps: list[tuple[Payload, float]],
) -> None:
    p = make()
    now = 0.0
    for command, dt in steps:
        now += dt
        if "plate" in command:
            p.set_plate(Plate(command["plate"]), None)
        elif "fault" in command:
            p.set_faults(FaultSettings(fail_at_percent=30))
        else:
            p.handle_command(command, now)
        for msg in [*p.tick(now), p.full_report()]:
            body = msg.get("print", {})
            if body.get("command") != "push_status":
                continue
            if "gcode_state" in body:
                assert body["gcode_state"] in {s.value for s in GcodeState}
            if "mc_percent" in body:
                assert 0 <= body["mc_percent"] <= 100
            if "mc_remaining_time" in body:
                assert body["mc_remaining_time"] >= 0
        assert p.state in GcodeState


LOADED = ["PLA", None, "PETG", None]


def _mapped(tray: int, ams_id: int, slot: int) -> Payload:
    return {
        "use_ams": True,
        "ams_mapping": [tray],
        "ams_mapping2": [{"ams_id": ams_id, "slot_id": slot}],
    }


@pytest.mark.parametrize(
    ("ams", "params", "feed"),
    [
        (None, {"use_ams": False}, Feed(EXTERNAL_SPOOL)),
        (None, {}, Feed(EXTERNAL_SPOOL)),
        (LOADED, {"use_ams": False}, Feed(EXTERNAL_SPOOL)),
        (LOADED, _mapped(2, 0, 2), Feed(2)),
        (LOADED, _mapped(-1, 255, 0), Feed(EXTERNAL_SPOOL)),
        # section 4.4: accepted, never loads filament
        (LOADED, {"use_ams": True, "ams_mapping": [0]}, Feed(NO_TRAY, in_air=True)),
        (LOADED, {"use_ams": 1, "ams_mapping": [0]}, Feed(EXTERNAL_SPOOL)),  # not a JSON bool
    ],
)
def test_filament_feed(ams: list[str | None] | None, params: Payload, feed: Feed) -> None:
    assert filament_feed(params, ams) == feed


@pytest.mark.parametrize(
    ("ams", "params", "why"),
    [
        (None, _mapped(0, 0, 0), "no AMS"),
        (LOADED, _mapped(1, 0, 1), "tray 1 is empty"),
        (LOADED, _mapped(6, 1, 2), "tray 6 is empty"),
        (LOADED, _mapped(2, 0, 0), "disagrees"),
        (LOADED, {"use_ams": True, "ams_mapping2": [{"ams_id": 0, "slot_id": 0}]}, "ams_mapping"),
    ],
)
def test_filament_feed_refusals(ams: list[str | None] | None, params: Payload, why: str) -> None:
    with pytest.raises(JobError, match=why) as caught:
        filament_feed(params, ams)
    assert caught.value.code == ErrorCode.AMS_MAPPING == 0x07FF8012


def test_a_print_from_an_ams_tray_reports_it_and_a_print_in_air_leaves_the_plate_clean() -> None:
    p = make(ams=LOADED)
    idle = p.full_report()["print"]["ams"]
    assert idle["ams_exist_bits"] == "1"
    assert idle["tray_exist_bits"] == "5"  # trays 0 and 2
    assert [t.get("tray_type") for t in idle["ams"][0]["tray"]] == ["PLA", None, "PETG", None]
    assert idle["tray_now"] == "255"
    mapped = {"use_ams": True, "ams_mapping": [2], "ams_mapping2": [{"ams_id": 0, "slot_id": 2}]}
    p.handle_command(cmd("project_file", url="ftp:///cube.gcode.3mf", **mapped), 0.0)
    run_until(p, 0.0, 2.0)
    report = p.full_report()["print"]
    assert (report["ams"]["tray_now"], report["ams"]["tray_tar"]) == ("2", "2")
    assert report["hw_switch_state"] == 1
    run_until(p, 2.1, 62.0)
    assert p.state is GcodeState.FINISH
    assert p.plate is Plate.WITH_PART
    assert p.status()["feed"] == {"tray": 2, "in_air": False}

    p.set_plate(Plate.CLEAN, None)
    in_air = {"use_ams": True, "ams_mapping": [2]}  # no ams_mapping2
    [echo] = p.handle_command(cmd("project_file", url="ftp:///cube.gcode.3mf", **in_air), 70.0)
    assert echo["print"]["result"] == "success"
    run_until(p, 70.0, 72.0)
    report = p.full_report()["print"]
    assert report["gcode_state"] == "RUNNING"
    assert (report["ams"]["tray_now"], report["ams"]["tray_tar"]) == ("255", "255")
    assert report["hw_switch_state"] == 0
    run_until(p, 72.1, 132.0)
    assert p.state is GcodeState.FINISH
    assert p.percent == 100
    assert p.plate is Plate.CLEAN  # FINISH at 100 % and nothing on the plate
    assert p.status()["feed"] == {"tray": NO_TRAY, "in_air": True}


def test_use_ams_without_an_ams_is_refused_and_latched() -> None:
    p = make()
    mapped = {"use_ams": True, "ams_mapping": [0], "ams_mapping2": [{"ams_id": 0, "slot_id": 0}]}
    [echo] = p.handle_command(cmd("project_file", url="ftp:///cube.gcode.3mf", **mapped), 0.0)
    assert echo["print"]["result"] == "failed"
    assert "AMS mapping table" in echo["print"]["reason"]
    assert p.print_error == ErrorCode.AMS_MAPPING
    assert p.state is GcodeState.IDLE
    assert p.plate is Plate.CLEAN
