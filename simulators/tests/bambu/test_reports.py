"""What clients this project did not write read from the reports (issue 14), over real MQTT.

This module's farm reports slowly (every 30 s idle, 5 s busy), so a push that arrives within
a second of a command can only be the push for that command.
"""

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pantheon_contracts.printer import PrinterModel
from pantheon_sim.bambu.farm import BambuSimFarm, FarmConfig
from pantheon_sim.bambu.ftps_client import ImplicitFtpsClient
from pantheon_sim.bambu.gcode3mf import build_gcode_3mf, sample_gcode
from pantheon_sim.bambu.printer import SimTiming

pytestmark = pytest.mark.integration

MODELS = {14: PrinterModel.P1S, 31: PrinterModel.X1C}
SLOW = SimTiming(speed=900.0, prepare_s=2.0, report_interval_s=5.0, idle_report_interval_s=30.0)
VT_TRAY_KEYS = {
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


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BambuSimFarm]:
    """Overrides the session farm for this module (``connect``, ``ftps``, ``reset`` use it)."""
    config = FarmConfig.for_ids(
        sorted(MODELS),
        models=MODELS,
        data_dir=tmp_path_factory.mktemp("bambu-sim-reports"),
        access_code="24681357",
        mqtt_base=None,
        ftps_base=None,
        pasv_base=None,
        timing=SLOW,
        topic_prefix=f"reports/{uuid.uuid4().hex[:8]}/",
        control_port=None,
        ams={14: ["PLA", None, "PETG", None]},
    )
    with BambuSimFarm(config) as sim:
        yield sim


def _push_after(client: Any, seq: str, command: str) -> tuple[dict[str, Any], float]:
    """The push_status that follows the echo of ``seq``, and how long after the echo."""
    client.reply_to(seq, command, timeout=5)
    echoed = time.monotonic()
    msg = client.wait_for(lambda m: m.get("print", {}).get("command") == "push_status", 5)
    return msg["print"], time.monotonic() - echoed


@pytest.mark.parametrize(
    ("printer_id", "nozzle_type"), [(14, "stainless_steel"), (31, "hardened_steel")]
)
def test_a_pushall_carries_the_full_tray_objects_and_device_fields(
    connect: Callable[..., Any], printer_id: int, nozzle_type: str
) -> None:
    full = connect(printer_id).pushall()
    assert set(full["vt_tray"]) == VT_TRAY_KEYS
    assert full["nozzle_type"] == nozzle_type
    assert full["nozzle_diameter"] == "0.4"
    assert isinstance(full["fan_gear"], int)
    assert full["net"]["info"][0]["ip"] == 0x0100007F  # 127.0.0.1, little-endian
    assert set(full["online"]) == {"ahb", "rfid", "version"}
    assert (full["lifecycle"], full["queue_number"], full["s_obj"]) == ("product", 0, [])
    assert full["mess_production_state"] == "active"
    assert full["upgrade_state"]["force_upgrade"] is False
    if printer_id == 14:
        tray = full["ams"]["ams"][0]["tray"][2]
        assert set(tray) >= VT_TRAY_KEYS
        assert (tray["tray_type"], tray["tray_info_idx"]) == ("PETG", "GFG99")


@pytest.mark.parametrize(("printer_id", "msg"), [(14, 1), (31, 0)])
def test_light_and_gcode_line_changes_are_pushed_at_once(
    connect: Callable[..., Any], reset: Callable[[int], None], printer_id: int, msg: int
) -> None:
    """P1/A1 push a delta, X1 a full report, right after the echo (not at the next periodic
    report, 30 s away here)."""
    reset(printer_id)
    client = connect(printer_id)
    client.pushall()
    seq = client.send(
        "system", "ledctrl", led_node="chamber_light", led_mode="off", led_on_time=500,
        led_off_time=500, loop_times=1, interval_time=1000,
    )  # fmt: skip
    push, after = _push_after(client, seq, "ledctrl")
    assert after < 1.0
    assert push["msg"] == msg
    assert push["lights_report"] == [{"node": "chamber_light", "mode": "off"}]

    push, after = _push_after(
        client, client.send("print", "gcode_line", param="M140 S60\n"), "gcode_line"
    )
    assert after < 1.0
    assert push["msg"] == msg
    assert push["bed_target_temper"] == 60.0


def test_ams_filament_setting_is_accepted_and_shows_in_the_tray(
    connect: Callable[..., Any], reset: Callable[[int], None]
) -> None:
    """Bambuddy sends one to learn whether Developer Mode is on: a real printer accepts it."""
    reset(14)
    client = connect(14)
    client.pushall()
    seq = client.send(
        "print", "ams_filament_setting", ams_id=255, tray_id=254, tray_info_idx="GFB99",
        tray_color="112233FF", nozzle_temp_min=240, nozzle_temp_max=270, tray_type="ABS",
    )  # fmt: skip
    echo = client.reply_to(seq, "ams_filament_setting")
    assert (echo["result"], echo["reason"]) == ("success", "")
    client.wait_for(lambda m: client.state["vt_tray"]["tray_type"] == "ABS", timeout=2)
    assert client.state["vt_tray"]["tray_color"] == "112233FF"


def test_prepare_percent_reaches_100_before_running(
    connect: Callable[..., Any],
    reset: Callable[[int], None],
    ftps: Callable[[int], ImplicitFtpsClient],
) -> None:
    """A client waiting for gcode_file_prepare_percent >= 99 during PREPARE sees it."""
    reset(31)
    ftps(31).upload(build_gcode_3mf(sample_gcode(layers=5, estimate="15m 0s")), "prep.gcode.3mf")
    client = connect(31)
    client.pushall()
    start = len(client.history)
    seq = client.send(
        "print", "project_file", param="Metadata/plate_1.gcode", url="ftp:///prep.gcode.3mf",
        md5="", use_ams=False,
    )  # fmt: skip
    assert client.reply_to(seq, "project_file")["result"] == "success"
    client.wait_state("RUNNING", timeout=10)
    seen = [(h["gcode_state"], h["gcode_file_prepare_percent"]) for h in client.history[start:]]
    first_running = next(i for i, (state, _) in enumerate(seen) if state == "RUNNING")
    prepare = [int(pct) for state, pct in seen[:first_running] if state == "PREPARE"]
    assert prepare[0] == 0
    assert prepare[-1] == 100
    assert seen[first_running][1] == "100"
