"""What a real printer's full report holds, copied from a public capture.

Source: ``greghesp/ha-bambulab``, ``custom_components/bambu_lab/pybambu/tests/MOCK-P1PNOAMS.json``
(commit 843bd7863416eb50bd19d9402142207ba14c3cb3): the ``pushall`` answer (``msg: 0``) of a
P1P without AMS, firmware 01.08.02.00, as Home Assistant's Bambu integration keeps it for its
tests. Only the parts the conformance suite compares are copied; values are the capture's.

Newer X1 firmware (same repository, ``MOCK-X1CMULTIAMS.json``) drops ``k``, ``n``,
``tray_temp`` and ``tray_time`` from ``vt_tray`` and adds ``cols``, ``ctype``,
``drying_temp``, ``drying_time`` and ``total_len``; the simulator follows the P1P key set on
every model, which is also what ``bambulabs_api``'s ``FilamentTray`` needs (it requires
``k``, ``n``, ``tray_temp`` and ``tray_time``).
"""

from typing import Any, Final

REAL_VT_TRAY: Final[dict[str, Any]] = {
    "id": "254",
    "tag_uid": "0000000000000000",
    "tray_id_name": "",
    "tray_info_idx": "GFSNL08",
    "tray_type": "PETG",
    "tray_sub_brands": "",
    "tray_color": "BCBCBCFF",
    "tray_weight": "0",
    "tray_diameter": "0.00",
    "tray_temp": "0",
    "tray_time": "0",
    "bed_temp_type": "0",
    "bed_temp": "0",
    "nozzle_temp_max": "280",
    "nozzle_temp_min": "230",
    "xcam_info": "000000000000000000000000",
    "tray_uuid": "00000000000000000000000000000000",
    "remain": 0,
    "k": 0.019999999552965164,
    "n": 1,
    "cali_idx": -1,
}
"""``print.vt_tray`` of the capture: the external spool, 21 keys."""

REAL_TOP_LEVEL: Final[dict[str, Any]] = {
    "nozzle_diameter": "0.4",
    "nozzle_type": "stainless_steel",
    "fan_gear": 0,
    "net": {"conf": 0, "info": [{"ip": 2050140352, "mask": 16777215}]},
    "online": {"ahb": False, "rfid": False, "version": 1334604853},
    "lifecycle": "product",
    "s_obj": [],
    "queue_number": 0,
    "mess_production_state": "active",
}
"""Top-level ``print`` fields of the capture that clients read (bambulabs_api's
``nozzle_diameter()``, ``nozzle_type()``, ``get_fan_gear()``, ``get_skipped_objects()``;
Home Assistant's ``net``/``online``)."""


def json_kind(value: Any) -> str:
    """The JSON type of a value: str, int, float (an int is a number too), bool, list, dict."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "dict"
    return type(value).__name__


def same_json_kind(value: Any, reference: Any) -> bool:
    """``value`` has the JSON type of ``reference`` (a float reference also takes an int)."""
    got, want = json_kind(value), json_kind(reference)
    return got == want or (want == "float" and got == "int")
