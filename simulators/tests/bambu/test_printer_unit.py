"""SimPrinter as a pure state machine: no broker, a fake job resolver, an explicit clock."""

from dataclasses import replace
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
    fan_gear,
    filament_feed,
    ipv4_le,
    setting_target,
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


def reply(out: list[Payload]) -> Payload:
    """The command's echo among what ``handle_command`` returned (the push that follows a
    change is left out)."""
    [echo] = [m for m in out if m.get("print", {}).get("command") != "push_status"]
    return echo


def pushes(out: list[Payload]) -> list[Payload]:
    """The ``push_status`` bodies among ``out``."""
    return [m["print"] for m in out if m.get("print", {}).get("command") == "push_status"]


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
    echo = reply(p.handle_command(cmd(command), 2.0))
    assert echo["print"]["result"] == result
    assert echo["print"]["sequence_id"] == "7"
    assert p.state is state_after


SEES_BED = [PrinterModel.X1C, PrinterModel.X1E]
BLIND = [PrinterModel.P1S, PrinterModel.P1P, PrinterModel.A1, PrinterModel.A1MINI]


@pytest.mark.parametrize(
    ("model", "plate", "accepted", "error", "violation"),
    [
        *[(m, Plate.CLEAN, True, 0, None) for m in SEES_BED + BLIND],
        *[(m, Plate.NONE, False, ErrorCode.FOREIGN_OBJECTS, None) for m in SEES_BED],
        *[(m, Plate.WITH_PART, False, ErrorCode.FOREIGN_OBJECTS, None) for m in SEES_BED],
        *[(m, Plate.NONE, True, 0, "print_without_plate") for m in BLIND],
        *[(m, Plate.WITH_PART, True, 0, "print_on_part") for m in BLIND],
    ],
)
def test_plate_gates_project_file_only_where_the_model_sees_its_bed(
    model: PrinterModel, plate: Plate, accepted: bool, error: int, violation: str | None
) -> None:
    """X1C/X1E look at the bed and refuse (0x0500806E); P1/A1 cannot see it and print: the
    simulator records what that damaged instead of refusing on the printer's behalf."""
    p = make(model, plate=plate)
    echo = reply(p.handle_command(cmd("project_file", url="ftp:///cube.gcode.3mf"), 0.0))
    assert (echo["print"]["result"] == "success") is accepted
    assert p.print_error == error
    assert (p.state is GcodeState.PREPARE) is accepted
    assert p.plate_refusals == (0 if accepted else 1)
    assert p.violations == (0 if violation is None else 1)
    assert [v["category"] for v in p.violation_log] == ([violation] if violation else [])


def test_a_violation_is_logged_with_the_job_and_survives_reboot() -> None:
    p = make(plate=Plate.WITH_PART)
    p.handle_command(cmd("project_file", url="ftp:///cube.gcode.3mf", subtask_name="gear"), 0.0)
    [entry] = p.violation_log
    assert entry == {
        "time": "2023-11-14T22:13:20+00:00",
        "printer_id": 14,
        "category": "print_on_part",
        "reason": "printed onto a plate with a part",
        "subtask_name": "gear",
    }
    run_until(p, 0.0, 62.0)
    assert p.state is GcodeState.FINISH
    assert p.plate is Plate.WITH_PART  # the new part on top of the old one
    p.reboot(63.0)
    assert (p.violations, len(p.violation_log)) == (1, 1)
    assert p.status()["violations"] == 1
    p.set_plate(Plate.NONE, None)
    p.handle_command(cmd("project_file", url="ftp:///cube.gcode.3mf"), 64.0)
    assert p.violations == 2
    assert p.violation_log[-1]["category"] == "print_without_plate"
    assert p.violation_log[-1]["subtask_name"] == "cube"  # the file's stem


def test_a_start_cancelled_before_its_ack_damages_nothing() -> None:
    p = make(plate=Plate.WITH_PART, timing=SimTiming(ack_delay_s=2.0, prepare_s=1.0))
    p.handle_command(cmd("project_file", url="ftp:///cube.gcode.3mf"), 0.0)
    p.handle_command(cmd("stop"), 0.5)
    run_until(p, 0.6, 3.0)
    assert p.violations == 0
    assert p.state is GcodeState.IDLE


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
    reports = pushes(p1.handle_command(cmd("project_file", url="ftp:///cube.gcode.3mf"), 0.1))
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
    busy = reply(p.handle_command(cmd("project_file", url="ftp:///other.gcode.3mf"), 0.1))
    assert busy["print"]["result"] == "failed"
    assert p.print_error == ErrorCode.BUSY
    assert p.state is GcodeState.PREPARE
    q = make()
    bad = reply(q.handle_command(cmd("project_file", url="ftp:///bad.gcode.3mf"), 0.0))
    assert bad["print"]["result"] == "failed"
    assert q.print_error == ErrorCode.CANNOT_PARSE
    assert q.state is GcodeState.IDLE


def test_refused_commands_echo_err_code_and_raise_hms() -> None:
    p = make(faults=FaultSettings(refuse_commands=True))
    echo = reply(p.handle_command(cmd("project_file", url="ftp:///cube.gcode.3mf"), 0.0))
    assert echo["print"]["err_code"] == ErrorCode.LAN_AUTH_REFUSED
    assert {"attr": 0x05000500, "code": 0x00010007} in p.hms
    assert p.state is GcodeState.IDLE
    assert p.handle_command(cmd("pushall"), 0.1)[0]["print"]["msg"] == 0


def test_silent_until_pushing_start() -> None:
    p = make(faults=FaultSettings(silent=True))
    assert run_until(p, 0.0, 12.0) == []
    assert p.handle_command(cmd("pushall"), 12.0) == []
    assert pushes(p.handle_command(cmd("start"), 12.1))  # pushing.start speaks at once


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
    echo = reply(p.handle_command(cmd("project_file", url="ftp:///cube.gcode.3mf", **in_air), 70.0))
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
    echo = reply(p.handle_command(cmd("project_file", url="ftp:///cube.gcode.3mf", **mapped), 0.0))
    assert echo["print"]["result"] == "failed"
    assert "AMS mapping table" in echo["print"]["reason"]
    assert p.print_error == ErrorCode.AMS_MAPPING
    assert p.state is GcodeState.IDLE
    assert p.plate is Plate.CLEAN


# ----- report content (issue 14: clients this project did not write) ---------------------

TRAY_KEYS = {
    "id",
    "tag_uid",
    "tray_id_name",
    "tray_info_idx",
    "tray_type",
    "tray_sub_brands",
    "tray_color",
    "tray_weight",
    "tray_diameter",
    "tray_temp",
    "tray_time",
    "bed_temp_type",
    "bed_temp",
    "nozzle_temp_max",
    "nozzle_temp_min",
    "xcam_info",
    "tray_uuid",
    "remain",
    "k",
    "n",
    "cali_idx",
}
"""A real P1P's ``vt_tray`` keys (ha-bambulab pybambu/tests/P1P.json)."""


@pytest.mark.parametrize(
    ("model", "nozzle_type"),
    [
        (PrinterModel.X1C, "hardened_steel"),
        (PrinterModel.X1E, "hardened_steel"),
        (PrinterModel.P1S, "stainless_steel"),
        (PrinterModel.P1P, "stainless_steel"),
        (PrinterModel.A1, "stainless_steel"),
        (PrinterModel.A1MINI, "stainless_steel"),
    ],
)
def test_a_full_report_has_the_fields_of_a_real_pushall(
    model: PrinterModel, nozzle_type: str
) -> None:
    p = make(model, ams=["PLA", None, "PETG", None], ip_address="192.168.1.81")
    full = p.full_report()["print"]
    assert set(full["vt_tray"]) == TRAY_KEYS
    assert full["vt_tray"]["id"] == "254"
    assert full["vt_tray"]["tray_info_idx"] == "GFL99"  # generic PLA
    trays = full["ams"]["ams"][0]["tray"]
    assert TRAY_KEYS | {"ctype", "cols"} == set(trays[0]) == set(trays[2])
    assert trays[1] == {"id": "1"}  # an empty slot
    assert (trays[2]["tray_type"], trays[2]["tray_info_idx"]) == ("PETG", "GFG99")
    assert (trays[2]["nozzle_temp_min"], trays[2]["nozzle_temp_max"]) == ("220", "260")
    assert full["nozzle_diameter"] == "0.4"
    assert full["nozzle_type"] == nozzle_type
    assert full["fan_gear"] == 0
    assert full["lifecycle"] == "product"
    assert full["mess_production_state"] == "active"
    assert (full["queue_number"], full["s_obj"], full["force_upgrade"]) == (0, [], False)
    assert full["upgrade_state"]["force_upgrade"] is False
    assert full["net"] == {"conf": 0, "info": [{"ip": 0x5101A8C0, "mask": 16777215}]}
    assert set(full["online"]) == {"ahb", "rfid", "version"}
    assert isinstance(full["online"]["version"], int)


@pytest.mark.parametrize(
    ("fans", "gear"),
    [(("0", "0", "0"), 0), (("15", "0", "0"), 255), (("15", "3", "10"), 0x9933FF)],
)
def test_fan_gear_packs_the_three_fans_like_studio_reads_it(
    fans: tuple[str, str, str], gear: int
) -> None:
    assert fan_gear(*fans) == gear


@pytest.mark.parametrize(
    ("address", "packed"),
    [("192.168.1.81", 0x5101A8C0), ("127.0.0.14", 0x0E00007F), ("bambu-sim", 0x0100007F)],
)
def test_net_ip_is_little_endian(address: str, packed: int) -> None:
    assert ipv4_le(address) == packed


@pytest.mark.parametrize(
    ("body", "tray"),
    [
        ({"ams_id": 0, "tray_id": 2}, 2),
        ({"ams_id": "1", "tray_id": "3"}, 7),
        ({"ams_id": 0, "slot_id": 1}, 1),
        ({"ams_id": 255, "tray_id": 254}, EXTERNAL_SPOOL),  # Studio's "print without AMS"
        ({"ams_id": 254, "tray_id": 0}, EXTERNAL_SPOOL),
        ({"ams_id": 0, "tray_id": 4}, None),
        ({"tray_id": 0}, None),
        ({"ams_id": "x", "tray_id": 0}, None),
    ],
)
def test_ams_filament_setting_names_a_tray(body: Payload, tray: int | None) -> None:
    assert setting_target(body) == tray


def _setting(**params: Any) -> Payload:
    return {"print": {"sequence_id": "9", "command": "ams_filament_setting", **params}}


def test_ams_filament_setting_is_accepted_and_applied_to_the_named_tray() -> None:
    p = make(ams=["PLA", None, None, None])
    p.full_report()
    out = p.handle_command(
        _setting(
            ams_id=255,
            tray_id=254,
            tray_info_idx="GFG99",
            tray_type="PETG",
            tray_color="00FF00",
            nozzle_temp_min=230,
            nozzle_temp_max=250,
        ),
        0.0,
    )
    echo = reply(out)["print"]
    assert (echo["result"], echo["reason"], echo["sequence_id"]) == ("success", "", "9")
    [delta] = pushes(out)  # pushed at once, only what changed
    assert delta["msg"] == 1
    assert set(delta) == {"command", "msg", "sequence_id", "vt_tray"}
    vt = delta["vt_tray"]
    assert (vt["tray_type"], vt["tray_info_idx"], vt["tray_color"]) == ("PETG", "GFG99", "00FF00FF")
    assert (vt["nozzle_temp_min"], vt["nozzle_temp_max"]) == ("230", "250")

    reply(p.handle_command(_setting(ams_id=0, tray_id=0, tray_type="ABS", tray_color="bad"), 1))
    assert p.ams == ["ABS", None, None, None]  # the feed check reads the new type
    tray = p.full_report()["print"]["ams"]["ams"][0]["tray"][0]
    assert (tray["tray_type"], tray["tray_color"], tray["tray_info_idx"]) == (
        "ABS",
        "FFFFFFFF",  # an invalid colour is ignored
        "GFL99",  # unchanged: the command did not name one
    )


@pytest.mark.parametrize(
    "params",
    [
        {"ams_id": 0, "tray_id": 1, "tray_type": "PLA"},  # an empty slot
        {"ams_id": 1, "tray_id": 0, "tray_type": "PLA"},  # no second AMS unit
        {"tray_type": "PLA"},  # no tray named (a Developer Mode probe)
    ],
)
def test_ams_filament_setting_on_no_spool_is_echoed_success_and_changes_nothing(
    params: Payload,
) -> None:
    p = make(ams=["PLA", None, None, None])
    before = p.full_report()["print"]
    out = p.handle_command(_setting(**params), 0.0)
    assert reply(out)["print"]["result"] == "success"
    assert pushes(out) == []
    assert p.full_report()["print"]["ams"] == before["ams"]


@pytest.mark.parametrize("model", [PrinterModel.P1S, PrinterModel.X1C])
@pytest.mark.parametrize(
    ("command", "changed"),
    [
        (
            {
                "system": {
                    "sequence_id": "5",
                    "command": "ledctrl",
                    "led_node": "chamber_light",
                    "led_mode": "off",
                }
            },
            "lights_report",
        ),
        (cmd("gcode_line", param="M140 S60\n"), "bed_target_temper"),
    ],
)
def test_a_command_that_changes_the_printer_is_pushed_at_once(
    model: PrinterModel, command: Payload, changed: str
) -> None:
    """P1/A1 push a delta with what changed, X1 a full report, right after the echo."""
    p = make(model)
    p.full_report()
    run_until(p, 0.0, 0.3)  # nothing due before the idle interval (5 s)
    out = p.handle_command(command, 0.4)
    [push] = pushes(out)
    assert out.index(reply(out)) == 0  # the echo first
    assert changed in push
    if model is PrinterModel.X1C:
        assert push["msg"] == 0
    else:
        assert push["msg"] == 1
        assert set(push) == {"command", "msg", "sequence_id", changed}


@pytest.mark.parametrize("prepare_s", [3.0, 0.0])
def test_prepare_percent_reaches_100_in_a_prepare_report_before_running(
    prepare_s: float,
) -> None:
    p = make(timing=replace(TIMING, prepare_s=prepare_s))
    current: dict[str, Any] = dict(p.full_report()["print"])
    seen = pushes(p.handle_command(cmd("project_file", url="ftp:///cube.gcode.3mf"), 0.0))
    seen += pushes(run_until(p, 0.05, 4.0, step=0.05))
    states: list[tuple[str, str]] = []
    for push in seen:
        current.update(push)
        states.append((current["gcode_state"], current["gcode_file_prepare_percent"]))
    prepare = [pct for state, pct in states if state == "PREPARE"]
    assert prepare[0] == "0"
    assert prepare[-1] == "100"
    assert [int(x) for x in prepare] == sorted(int(x) for x in prepare)
    first_running = next(i for i, (state, _) in enumerate(states) if state == "RUNNING")
    assert ("PREPARE", "100") in states[:first_running]
    if prepare_s:
        assert len(set(prepare)) > 2  # it advances, it does not jump
