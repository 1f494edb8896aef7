"""Delta merge of Bambu reports (bambu-lan-protocol.md 4.9) on recorded payloads."""

import json
from pathlib import Path
from typing import Any

from printer_service.domain.report import MergeOutcome, ReportState, deep_merge

DATA = Path(__file__).parent / "data"


def _load(name: str) -> Any:
    return json.loads((DATA / name).read_text())


def _without_envelope(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k not in ("msg", "sequence_id")}


def test_full_report_then_deltas_equals_the_full_report_sent_afterwards() -> None:
    state = ReportState.empty()
    assert state.apply(_load("p1s_full.json")["print"]) == MergeOutcome.FULL
    for delta in _load("p1s_deltas.json"):
        assert state.apply(delta["print"]) == MergeOutcome.DELTA
    expected = _load("p1s_after.json")["print"]
    assert _without_envelope(state.data) == _without_envelope(expected)


def test_ams_partial_arrays_merge_by_id_and_keep_the_other_trays() -> None:
    state = ReportState.empty()
    state.apply(_load("p1s_full.json")["print"])
    state.apply(_load("p1s_deltas.json")[1]["print"])
    unit = state.data["ams"]["ams"][0]
    assert unit["humidity"] == "3"
    assert unit["temp"] == "24.1"
    assert [t["id"] for t in unit["tray"]] == ["0", "1", "2", "3"]
    assert unit["tray"][1] == {
        "id": "1",
        "tray_type": "PETG",
        "tray_color": "FF0000FF",
        "remain": 49,
    }
    assert unit["tray"][0]["remain"] == 80
    assert state.data["ams"]["tray_now"] == "1"


def test_other_lists_are_replaced_and_empty_hms_clears_errors() -> None:
    base: dict[str, Any] = {"hms": [{"attr": 1, "code": 2}], "stg": [2, 13, 1]}
    deep_merge(base, {"hms": [], "stg": [2]})
    assert base == {"hms": [], "stg": [2]}


def test_zero_and_empty_values_in_a_delta_overwrite() -> None:
    base: dict[str, Any] = {"mc_percent": 42, "subtask_name": "x", "nested": {"a": 1, "b": 2}}
    deep_merge(base, {"mc_percent": 0, "subtask_name": "", "nested": {"b": 0}})
    assert base == {"mc_percent": 0, "subtask_name": "", "nested": {"a": 1, "b": 0}}


def test_a_new_tray_or_unit_id_is_added() -> None:
    base: dict[str, Any] = {"ams": {"ams": [{"id": "0", "tray": [{"id": "0"}]}]}}
    deep_merge(
        base, {"ams": {"ams": [{"id": "0", "tray": [{"id": "2", "remain": 5}]}, {"id": "1"}]}}
    )
    assert base["ams"]["ams"][0]["tray"] == [{"id": "0"}, {"id": "2", "remain": 5}]
    assert base["ams"]["ams"][1] == {"id": "1"}


def test_a_delta_before_any_full_report_is_not_trusted() -> None:
    state = ReportState.empty()
    assert state.apply(_load("p1s_deltas.json")[0]["print"]) == MergeOutcome.NEEDS_FULL
    assert not state.complete
    assert state.data == {}


def test_a_full_report_replaces_the_state_and_replies_are_ignored() -> None:
    state = ReportState.empty()
    state.apply({"command": "push_status", "msg": 0, "gcode_state": "RUNNING", "old": 1})
    state.apply({"command": "push_status", "msg": 0, "gcode_state": "IDLE"})
    assert state.data == {"command": "push_status", "msg": 0, "gcode_state": "IDLE"}
    assert state.apply({"command": "project_file", "result": "success"}) == MergeOutcome.IGNORED


def test_a_push_status_without_msg_is_a_delta() -> None:
    state = ReportState.empty()
    state.apply({"command": "push_status", "msg": 0, "mc_percent": 1, "layer_num": 3})
    assert state.apply({"command": "push_status", "mc_percent": 2}) == MergeOutcome.DELTA
    assert state.data["layer_num"] == 3
    assert state.data["mc_percent"] == 2


def test_merge_does_not_alias_the_delta() -> None:
    state = ReportState.empty()
    state.apply({"command": "push_status", "msg": 0})
    delta = {"command": "push_status", "msg": 1, "lights_report": [{"node": "a"}]}
    state.apply(delta)
    delta["lights_report"][0]["node"] = "changed"
    assert state.data["lights_report"] == [{"node": "a"}]
