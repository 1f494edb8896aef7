"""Finding 3: what a full report (``pushall``, ``msg: 0``) holds, read by strangers' parsers.

Reference: a real P1P's ``pushall`` answer as Home Assistant's integration keeps it
(``greghesp/ha-bambulab``, ``custom_components/bambu_lab/pybambu/tests/MOCK-P1PNOAMS.json``,
commit 843bd7863416eb50bd19d9402142207ba14c3cb3; copied in ``reference.py``). Its external
spool ``vt_tray`` has 21 keys (id, tag_uid, tray_id_name, tray_info_idx, tray_type,
tray_sub_brands, tray_color, tray_weight, tray_diameter, tray_temp, tray_time, bed_temp_type,
bed_temp, nozzle_temp_max, nozzle_temp_min, xcam_info, tray_uuid, remain, k, n, cali_idx),
and the report carries nozzle_diameter, nozzle_type, fan_gear, net, online, lifecycle, s_obj,
queue_number, mess_production_state and upgrade_state.force_upgrade, which clients read:
``bambulabs_api``'s ``vt_tray()`` builds a ``FilamentTray`` that REQUIRES 18 of the vt_tray
keys, ``nozzle_diameter()``/``nozzle_type()`` read the nozzle fields, and a stranger's
dashboard converts every vt_tray key (``stranger.parse_vt_tray``). ``print.ams_filament_setting``
(what ``bambulabs_api.Printer.set_filament_printer`` sends, and Bambu Studio's
``MachineObject::command_ams_filament_settings`` for the external spool)
is a real command: the printer echoes it with ``result: success``, not "unsupported command".
"""

from collections.abc import Callable

import pytest
from bambulabs_api.filament_info import Filament, FilamentTray
from bambulabs_api.printer_info import NozzleType

from .bla import BlaSession
from .reference import (
    REAL_TOP_LEVEL,
    REAL_VT_TRAY,
    json_kind,
    same_json_kind,
)
from .simfarm import MODELS
from .stranger import StrangerMqtt, parse_vt_tray

NOZZLE_DIAMETERS = {0.2, 0.4, 0.6, 0.8}


def test_the_strangers_parsers_read_the_real_capture() -> None:
    """Sanity of the yardstick (no simulator): both parsers accept the real printer's vt_tray."""
    spool = parse_vt_tray(REAL_VT_TRAY)
    assert (spool.id, spool.tray_type, spool.nozzle_temp_max) == (254, "PETG", 280)
    tray = FilamentTray.from_dict(dict(REAL_VT_TRAY))
    assert tray.tray_info_idx == "GFSNL08"
    assert len(REAL_VT_TRAY) == 21


@pytest.mark.integration
@pytest.mark.parametrize("model", MODELS)
def test_full_report_has_a_real_vt_tray(
    model: str, printer: int, mqtt: Callable[[int], StrangerMqtt]
) -> None:
    """``vt_tray`` of a ``msg: 0`` report: every key of the real capture, each of the same
    JSON type, and every key converts (``parse_vt_tray``)."""
    report = mqtt(printer).pushall()
    vt = report.get("vt_tray")
    assert isinstance(vt, dict), report.keys()
    missing = sorted(set(REAL_VT_TRAY) - set(vt))
    assert missing == [], f"vt_tray lacks {missing}; it has {sorted(vt)}"
    kinds = {
        k: (json_kind(vt[k]), json_kind(v))
        for k, v in REAL_VT_TRAY.items()
        if not same_json_kind(vt[k], v)
    }
    assert kinds == {}, f"vt_tray key types (simulator, real): {kinds}"
    spool = parse_vt_tray(vt)
    assert spool.id == 254
    assert len(spool.tray_uuid) == 16
    assert len(spool.tag_uid) == 8
    assert len(spool.xcam_info) == 12


@pytest.mark.integration
@pytest.mark.parametrize("model", MODELS)
def test_full_report_has_the_fields_clients_read(
    model: str, printer: int, mqtt: Callable[[int], StrangerMqtt]
) -> None:
    """nozzle_diameter, nozzle_type, fan_gear, net, online, lifecycle, s_obj, queue_number,
    mess_production_state (types as in the capture) and upgrade_state.force_upgrade."""
    report = mqtt(printer).pushall()
    missing = sorted(set(REAL_TOP_LEVEL) - set(report))
    assert missing == [], f"the full report lacks {missing}"
    kinds = {
        k: (json_kind(report[k]), json_kind(v))
        for k, v in REAL_TOP_LEVEL.items()
        if not same_json_kind(report[k], v)
    }
    assert kinds == {}, f"field types (simulator, real): {kinds}"
    assert float(report["nozzle_diameter"]) in NOZZLE_DIAMETERS
    assert report["nozzle_type"] in {"stainless_steel", "hardened_steel"}
    net = report["net"]
    assert isinstance(net["info"], list), net
    assert net["info"], net
    assert all(isinstance(i["ip"], int) and isinstance(i["mask"], int) for i in net["info"])
    upgrade = report.get("upgrade_state", {})
    assert isinstance(upgrade.get("force_upgrade"), bool), upgrade


@pytest.mark.integration
@pytest.mark.parametrize("model", MODELS)
def test_bambulabs_api_reads_the_report(
    model: str, printer: int, bla: Callable[[int], BlaSession]
) -> None:
    """``bambulabs_api``'s own getters on the simulator's report: ``vt_tray()`` (a
    ``FilamentTray``, which fails on a missing key), ``nozzle_diameter()``, ``nozzle_type()``,
    ``get_skipped_objects()``, and the raw ``fan_gear`` its fan getters decode.
    (``FilamentTray.filament`` is left out: it raises on the real capture too, whose
    temperatures are strings and whose ``tray_info_idx`` is not in the library's enum.)"""
    session = bla(printer)
    p = session.printer
    tray = p.vt_tray()
    assert isinstance(tray, FilamentTray)
    assert isinstance(tray.tray_uuid, str)
    assert isinstance(tray.tag_uid, str)
    assert p.nozzle_diameter() in NOZZLE_DIAMETERS
    assert isinstance(p.nozzle_type(), NozzleType)
    assert p.get_skipped_objects() == []
    dumped = p.mqtt_dump()["print"]
    assert isinstance(dumped.get("fan_gear"), int), "bambulabs_api decodes fans from fan_gear"


@pytest.mark.integration
@pytest.mark.parametrize("model", MODELS)
def test_ams_filament_setting_is_accepted(
    model: str,
    printer: int,
    mqtt: Callable[[int], StrangerMqtt],
    bla: Callable[[int], BlaSession],
) -> None:
    """``print.ams_filament_setting`` for the external spool (ams_id 255, tray_id 254): echoed
    with ``result: success`` to a stranger (with its ``sequence_id``), the spool's type and
    colour then in ``vt_tray``, and echoed ``success`` to
    ``bambulabs_api.Printer.set_filament_printer`` (which sends no ``sequence_id``)."""
    client = mqtt(printer)
    client.pushall()
    mark = client.mark()
    seq = client.send(
        "print",
        "ams_filament_setting",
        ams_id=255,
        tray_id=254,
        tray_info_idx="GFL99",
        tray_color="FF8800FF",
        nozzle_temp_min=190,
        nozzle_temp_max=250,
        tray_type="PLA",
    )
    echo = client.reply(seq, "ams_filament_setting", start=mark)
    verdict = f"result {echo.get('result')!r}, reason {echo.get('reason')!r}"
    assert str(echo.get("result", "")).lower() == "success", verdict
    vt = client.pushall().get("vt_tray", {})
    assert (vt.get("tray_type"), vt.get("tray_color")) == ("PLA", "FF8800FF"), vt

    session = bla(printer)
    start = session.mark()
    assert session.printer.set_filament_printer("00AE42", Filament.PLA)
    _, reply = session.wait_for(
        lambda m: m.get("print", {}).get("command") == "ams_filament_setting", 5, start
    )
    body = reply["print"]
    verdict = f"result {body.get('result')!r}, reason {body.get('reason')!r}"
    assert str(body.get("result", "")).lower() == "success", verdict
