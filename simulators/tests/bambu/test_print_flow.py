"""Jobs over the real protocols: FTPS upload, project_file over MQTT, plates via the control API."""

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from pantheon_sim.bambu.farm import BambuSimFarm
from pantheon_sim.bambu.ftps_client import ImplicitFtpsClient
from pantheon_sim.bambu.gcode3mf import build_gcode_3mf, sample_gcode

pytestmark = pytest.mark.integration

# 30 printer-minutes at speed 900 -> 2 wall seconds of RUNNING
GCODE = sample_gcode(layers=10, estimate="30m 0s")


def _project(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "param": "Metadata/plate_1.gcode",
        "url": f"ftp:///{name}",
        "file": name,
        "md5": "",
        "subtask_name": name.split(".")[0],
        "task_id": "0",
        "subtask_id": "0",
        "use_ams": False,
        **extra,
    }


@pytest.fixture
def staged(
    ftps: Callable[[int], ImplicitFtpsClient], reset: Callable[[int], None]
) -> Callable[..., str]:
    def stage(pid: int, name: str = "cube.gcode.3mf", package: bytes | None = None) -> str:
        reset(pid)
        ftps(pid).upload(package if package is not None else build_gcode_3mf(GCODE), name)
        return name

    return stage


def test_a_print_runs_prepare_running_finish_and_leaves_a_part(
    farm: BambuSimFarm, connect: Callable[..., Any], staged: Callable[..., str]
) -> None:
    name = staged(14)
    client = connect(14)
    client.pushall()
    start = len(client.history)
    seq = client.send("print", "project_file", **_project(name))
    echo = client.reply_to(seq, "project_file")
    assert echo["result"] == "success"
    assert echo["reason"] == ""
    assert echo["url"] == f"ftp:///{name}"
    client.wait_state("FINISH", timeout=15)
    pushes = client.history[start:]
    states = [p["gcode_state"] for p in pushes]
    seen = [s for i, s in enumerate(states) if i == 0 or states[i - 1] != s]
    assert seen[-3:] == ["PREPARE", "RUNNING", "FINISH"]
    running = [p for p in pushes if p["gcode_state"] == "RUNNING"]
    percents = [p["mc_percent"] for p in running]
    assert percents == sorted(percents)
    assert len(set(percents)) > 2
    mins = [p["mc_remaining_time"] for p in running]
    assert mins == sorted(mins, reverse=True)
    assert mins[0] >= 25
    assert client.state["mc_percent"] == 100
    assert client.state["mc_remaining_time"] == 0
    assert client.state["layer_num"] == client.state["total_layer_num"] == 10
    assert client.state["subtask_name"] == "cube"
    assert farm.printer(14)["plate"] == "with_part"

    # a P1S cannot see its bed: a job on the plate with the part starts, and the simulator
    # records what that did (issue 14: refusing would be the simulator lying about the P1S)
    url = farm.control_url
    assert url is not None
    before = httpx.get(f"{url}/violations").json()
    seq = client.send("print", "project_file", **_project(name, subtask_name="on-top"))
    assert client.reply_to(seq, "project_file")["result"] == "success"
    client.wait_state("PREPARE", timeout=5)
    printer = httpx.get(f"{url}/printers/14").json()
    assert printer["violations"] >= 1
    entry = printer["violation_log"][-1]
    assert entry["category"] == "print_on_part"
    assert entry["reason"] == "printed onto a plate with a part"
    assert (entry["printer_id"], entry["subtask_name"]) == (14, "on-top")
    after = httpx.get(f"{url}/violations").json()
    assert after["violations"] == before["violations"] + 1
    assert after["violation_log"][-1] == entry
    assert farm.violations() == after
    client.wait_state("FINISH", timeout=15)
    assert farm.printer(14)["plate"] == "with_part"

    # reset (and reboot) keep the count: only a restart of bambu-sim forgets it
    farm.reset(14)
    assert farm.printer(14)["violations"] == printer["violations"]
    r = httpx.put(f"{url}/printers/14/plate", json={"plate": "none", "bed_id": None})
    assert r.status_code == 200
    r = httpx.put(f"{url}/printers/14/plate", json={"plate": "clean", "bed_id": 801})
    assert r.json()["plate"] == "clean"
    assert r.json()["bed_id"] == 801
    seq = client.send("print", "project_file", **_project(name))
    assert client.reply_to(seq, "project_file")["result"] == "success"
    client.wait_state("PREPARE", timeout=5)
    assert client.state["print_error"] == 0
    assert farm.printer(14)["violations"] == printer["violations"]  # a clean plate


@pytest.mark.parametrize("plate", ["with_part", "none"])
def test_an_x1c_sees_its_bed_and_refuses_a_used_or_missing_plate(
    farm: BambuSimFarm, connect: Callable[..., Any], staged: Callable[..., str], plate: str
) -> None:
    name = staged(31, "x1-plate.gcode.3mf")
    farm.set_plate(31, plate, bed_id=None if plate == "none" else 831)
    violations = farm.violations()["violations"]
    client = connect(31)
    client.pushall()
    seq = client.send("print", "project_file", **_project(name))
    refused = client.reply_to(seq, "project_file")
    assert (refused["result"], refused["reason"]) == ("failed", "foreign objects on heatbed")
    client.wait_for(lambda m: client.state.get("print_error") == 0x0500806E, timeout=5)
    assert client.state["gcode_state"] == "IDLE"
    assert farm.violations()["violations"] == violations
    assert farm.printer(31)["plate_refusals"] >= 1


def test_a_job_sent_while_one_runs_is_refused_busy_and_the_first_continues(
    farm: BambuSimFarm, connect: Callable[..., Any], staged: Callable[..., str]
) -> None:
    name = staged(15)
    client = connect(15)
    client.pushall()
    client.reply_to(client.send("print", "project_file", **_project(name)), "project_file")
    client.wait_state("RUNNING")
    seq = client.send("print", "project_file", **_project(name, subtask_name="second"))
    assert client.reply_to(seq, "project_file")["result"] == "failed"
    client.wait_for(lambda m: client.state.get("print_error") == 0x05004004, timeout=5)
    final = client.wait_state("FINISH", timeout=15)
    assert final["subtask_name"] == "cube"


def test_pause_resume_stop(
    farm: BambuSimFarm, connect: Callable[..., Any], staged: Callable[..., str]
) -> None:
    long_job = build_gcode_3mf(sample_gcode(layers=50, estimate="10h 0m 0s"))
    name = staged(18, "long.gcode.3mf", long_job)
    client = connect(18)
    client.pushall()
    assert client.reply_to(client.send("print", "pause"), "pause")["result"] == "failed"
    client.reply_to(client.send("print", "project_file", **_project(name)), "project_file")
    client.wait_state("RUNNING")
    assert client.reply_to(client.send("print", "pause", param=""), "pause")["result"] == "success"
    paused = client.wait_state("PAUSE")
    assert paused["stg_cur"] == 16
    held = farm.printer(18)["mc_percent"]
    assert client.reply_to(client.send("print", "resume"), "resume")["result"] == "success"
    client.wait_state("RUNNING")
    assert farm.printer(18)["mc_percent"] >= held
    assert client.reply_to(client.send("print", "stop"), "stop")["result"] == "success"
    failed = client.wait_state("FAILED")
    assert failed["print_error"] == 0x0300400C
    assert failed["mc_percent"] == 0
    client.wait_for(lambda m: client.state.get("print_error") == 0, timeout=5)
    assert client.state["gcode_state"] == "FAILED"  # sticky
    assert farm.printer(18)["plate"] == "with_part"


@pytest.mark.parametrize(
    ("package", "param", "code"),
    [
        (build_gcode_3mf(GCODE, md5_override="0" * 32), "Metadata/plate_1.gcode", 0x05004003),
        (build_gcode_3mf(GCODE), "Metadata/plate_2.gcode", 0x05004003),
        (build_gcode_3mf(GCODE)[:300], "Metadata/plate_1.gcode", 0x05004003),
    ],
    ids=["bad-md5", "missing-entry", "truncated-zip"],
)
def test_unusable_packages_are_refused_with_0500_4003(
    connect: Callable[..., Any],
    staged: Callable[..., str],
    package: bytes,
    param: str,
    code: int,
) -> None:
    name = staged(19, "broken.gcode.3mf", package)
    client = connect(19)
    client.pushall()
    seq = client.send("print", "project_file", **_project(name, param=param))
    assert client.reply_to(seq, "project_file")["result"] == "failed"
    client.wait_for(lambda m: client.state.get("print_error") == code, timeout=5)
    assert client.state["gcode_state"] == "IDLE"


def test_fail_at_percent_fault_ends_failed_with_print_error(
    farm: BambuSimFarm, connect: Callable[..., Any], staged: Callable[..., str]
) -> None:
    name = staged(16, "fails.gcode.3mf")
    url = farm.control_url
    r = httpx.post(f"{url}/printers/16/faults", json={"fail_at_percent": 40})
    assert r.status_code == 200
    client = connect(16)
    client.pushall()
    client.reply_to(client.send("print", "project_file", **_project(name)), "project_file")
    failed = client.wait_state("FAILED", timeout=15)
    assert failed["print_error"] == 0x07008006
    assert 40 <= failed["mc_percent"] < 100
    assert failed["hms"]
    assert farm.printer(16)["plate"] == "with_part"


def test_silent_fault_stops_reports_until_pushing_start(
    farm: BambuSimFarm, connect: Callable[..., Any], reset: Callable[[int], None]
) -> None:
    reset(17)
    client = connect(17)
    client.pushall()
    httpx.post(f"{farm.control_url}/printers/17/faults", json={"silent": True})
    client.send("pushing", "pushall")
    quiet_since = len(client.log)
    with pytest.raises(AssertionError):
        client.wait_for(lambda m: m.get("print", {}).get("command") == "push_status", 1.5)
    assert len(client.log) == quiet_since
    client.send("pushing", "start")
    client.wait_for(lambda m: m.get("print", {}).get("command") == "push_status", timeout=3)
    assert farm.printer(17)["faults"]["silent"] is False


def test_refuse_commands_fault_answers_err_code_and_keeps_state(
    farm: BambuSimFarm, connect: Callable[..., Any], staged: Callable[..., str]
) -> None:
    name = staged(31, "x1.gcode.3mf")
    httpx.post(f"{farm.control_url}/printers/31/faults", json={"refuse_commands": True})
    client = connect(31)
    assert client.pushall()["gcode_state"] == "IDLE"  # telemetry still works
    seq = client.send("print", "project_file", **_project(name))
    refused = client.reply_to(seq, "project_file")
    assert refused["err_code"] == 84033543
    assert "result" not in refused
    client.wait_for(
        lambda m: {"attr": 0x05000500, "code": 0x00010007} in client.state.get("hms", []),
        timeout=5,
    )
    assert client.state["gcode_state"] == "IDLE"
    assert farm.printer(31)["gcode_state"] == "IDLE"


def test_control_api_lists_printers_and_rejects_unknown(farm: BambuSimFarm) -> None:
    url = farm.control_url
    assert httpx.get(f"{url}/healthz").json()["status"] == "ok"
    listed = httpx.get(f"{url}/printers").json()
    assert {p["id"] for p in listed} == set(farm.printer_ids)
    assert httpx.get(f"{url}/printers/99").status_code == 404
    bad = httpx.put(f"{url}/printers/14/plate", json={"plate": "dirty"})
    assert bad.status_code == 422


def test_control_api_fits_and_removes_an_ams(
    farm: BambuSimFarm, connect: Callable[..., Any], reset: Callable[[int], None]
) -> None:
    reset(15)
    url = farm.control_url
    try:
        fitted = httpx.put(f"{url}/printers/15/ams", json={"trays": [None, "PETG"]})
        assert fitted.status_code == 200, fitted.text
        assert fitted.json()["ams"] == [None, "PETG"]
        client = connect(15)
        ams = client.pushall()["ams"]
        assert ams["ams_exist_bits"] == "1"
        assert ams["tray_exist_bits"] == "2"
        assert ams["ams"][0]["tray"][1]["tray_type"] == "PETG"
        too_many = httpx.put(f"{url}/printers/15/ams", json={"trays": ["PLA"] * 5})
        assert too_many.status_code == 422
    finally:
        removed = httpx.put(f"{url}/printers/15/ams", json={"trays": None})
    assert removed.json()["ams"] is None
    assert farm.printer(15)["ams"] is None
