"""The raw evidence (``evidence/``, written by ``record_evidence.py``) against the protocol.

The checked-in files are one whole print on a simulated P1S and X1C as a stranger's clients
saw it: every message of the report topic, the requests, and the FTPS control channel. The
facts below are bambu-lan-protocol.md's (sections 3, 4.1-4.3, 4.7-4.9, 5.5, 5.11, 6.1, 6.2,
11): each is checked on the checked-in recording AND on a fresh one made now, and the two
must have the same structure (key sets per message kind, state sequence, FTPS dialogue), so
a change of the simulator shows up here until the evidence is recorded again
(``uv run python -m simulators.tests.conformance.record_evidence``).
"""

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .record_evidence import EVIDENCE_DIR, FILE_NAME, JOB_MINUTES, PRINTERS, record
from .reference import json_kind
from .simfarm import ACCESS_CODE

Json = dict[str, Any]
EVIDENCE_MODELS = [m.value for m in PRINTERS.values()]
IDLE_STAGE = {"P1S": 255, "X1C": -1}
"""``stg_cur`` when idle (4.2): 255 on P1/A1, -1 on X1."""
STATES = {"IDLE", "PREPARE", "RUNNING", "PAUSE", "FINISH", "FAILED", "SLICING"}

FIELDS: dict[str, set[str]] = {
    "gcode_state": {"str"},
    "print_type": {"str"},
    "subtask_name": {"str"},
    "gcode_file": {"str"},
    "gcode_file_prepare_percent": {"str"},
    "gcode_start_time": {"str"},
    "task_id": {"str"},
    "subtask_id": {"str"},
    "project_id": {"str"},
    "profile_id": {"str"},
    "mc_percent": {"int"},
    "mc_remaining_time": {"int"},
    "mc_print_stage": {"str"},
    "mc_print_sub_stage": {"int"},
    "layer_num": {"int"},
    "total_layer_num": {"int"},
    "stg": {"list"},
    "stg_cur": {"int"},
    "nozzle_temper": {"int", "float"},
    "nozzle_target_temper": {"int", "float"},
    "bed_temper": {"int", "float"},
    "bed_target_temper": {"int", "float"},
    "chamber_temper": {"int", "float"},
    "spd_lvl": {"int"},
    "spd_mag": {"int"},
    "print_error": {"int"},
    "hms": {"list"},
    "cooling_fan_speed": {"str"},
    "big_fan1_speed": {"str"},
    "big_fan2_speed": {"str"},
    "heatbreak_fan_speed": {"str"},
    "wifi_signal": {"str"},
    "sdcard": {"bool"},
    "home_flag": {"int"},
    "hw_switch_state": {"int"},
    "lights_report": {"list"},
    "ams": {"dict"},
    "vt_tray": {"dict"},
    "upgrade_state": {"dict"},
    "ipcam": {"dict"},
    "xcam": {"dict"},
    "online": {"dict"},
    "net": {"dict"},
    "s_obj": {"list"},
}
"""The fields of 4.2's table and 4.7's example, with their JSON types."""


# ----- loading ---------------------------------------------------------------------------


def _read_jsonl(path: Path) -> list[Json]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Recording:
    """One printer's evidence: MQTT lines and FTPS transcript."""

    def __init__(self, folder: Path, model: str) -> None:
        self.model = model
        self.mqtt = _read_jsonl(folder / f"{model.lower()}-mqtt.jsonl")
        self.ftps = _read_jsonl(folder / f"{model.lower()}-ftps.jsonl")
        self.manifest: Json = json.loads((folder / "manifest.json").read_text())

    @property
    def incoming(self) -> list[Json]:
        """Messages of the report topic, in arrival order."""
        return [m for m in self.mqtt if not m.get("sent")]

    @property
    def sent(self) -> list[Json]:
        return [m for m in self.mqtt if m.get("sent")]

    def reports(self) -> list[Json]:
        """``print`` bodies of the push_status messages."""
        return [
            m["payload"]["print"]
            for m in self.incoming
            if m["payload"].get("print", {}).get("command") == "push_status"
        ]

    def merged(self) -> list[Json]:
        """The state a client holds after each report from the first ``msg: 0`` on (``msg: 0``
        replaces, a delta merges; before the first full report the state is unknown, 4.4)."""
        state: Json | None = None
        out = []
        for body in self.reports():
            if body.get("msg") == 0:
                state = dict(body)
            elif state is None:
                continue
            else:
                state = {**state, **body}
            out.append(state)
        return out

    def states(self) -> list[str]:
        """``gcode_state`` over time, repeats collapsed."""
        seq: list[str] = []
        for state in self.merged():
            gcode_state = state.get("gcode_state")
            if isinstance(gcode_state, str) and (not seq or seq[-1] != gcode_state):
                seq.append(gcode_state)
        return seq


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A recording made now from the simulator under test (kept even when a step fails, so
    that the facts below say what broke)."""
    folder = tmp_path_factory.mktemp("fresh-evidence")
    record(folder, strict=False)
    return folder


SOURCES = ["checked-in", "fresh"]


@pytest.fixture(params=SOURCES)
def folder(request: pytest.FixtureRequest) -> Iterator[Path]:
    if request.param == "checked-in":
        yield EVIDENCE_DIR
    else:
        yield request.getfixturevalue("fresh")


# ----- facts (both recordings) -----------------------------------------------------------


def test_the_checked_in_evidence_is_small_and_redacted() -> None:
    """Every file there, under 200 KB in total, and no access code anywhere."""
    names = {p.name for p in EVIDENCE_DIR.iterdir()}
    for model in EVIDENCE_MODELS:
        assert {f"{model.lower()}-mqtt.jsonl", f"{model.lower()}-ftps.jsonl"} <= names
    assert "manifest.json" in names
    total = sum(p.stat().st_size for p in EVIDENCE_DIR.iterdir() if p.is_file())
    assert total < 200_000
    for path in EVIDENCE_DIR.iterdir():
        assert ACCESS_CODE not in path.read_text(), path.name


@pytest.mark.parametrize("model", EVIDENCE_MODELS)
def test_envelope(folder: Path, model: str) -> None:
    """3, 4.1: one subsystem key a message, pretty-printed JSON (indent 4); push_status has
    ``msg`` 0/1 and a ``sequence_id`` string the printer counts up; our requests carry
    ``sequence_id`` strings too."""
    rec = Recording(folder, model)
    assert rec.incoming, "nothing on the report topic"
    for m in rec.incoming:
        assert len(m["payload"]) == 1, m["payload"].keys()
        assert m["indent4"] is True
    seqs = []
    for body in rec.reports():
        assert body["msg"] in (0, 1)
        assert isinstance(body["sequence_id"], str)
        assert body["sequence_id"].isdigit()
        seqs.append(int(body["sequence_id"]))
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
    for m in rec.sent:
        (body,) = m["payload"].values()
        assert isinstance(body["sequence_id"], str)


@pytest.mark.parametrize("model", EVIDENCE_MODELS)
def test_full_report_then_deltas_on_p1_full_every_time_on_x1(folder: Path, model: str) -> None:
    """4.9: P1/A1 answer ``pushall`` with one ``msg: 0`` and otherwise send deltas (``msg:
    1``, changed keys only; the first message a new subscriber sees may be one, 4.4); X1
    sends full reports every time."""
    rec = Recording(folder, model)
    msgs = [body["msg"] for body in rec.reports()]
    if model == "X1C":
        assert set(msgs) == {0}
        return
    pushall_at = next(m["t"] for m in rec.sent if "pushing" in m["payload"])
    reports = [
        (m["t"], m["payload"]["print"])
        for m in rec.incoming
        if m["payload"].get("print", {}).get("command") == "push_status"
    ]
    full = [(t, body) for t, body in reports if body["msg"] == 0]
    assert len(full) == 1, "one full report: the answer to our pushall"
    assert full[0][0] >= pushall_at, "the full report answers the pushall"
    for _, body in reports:
        if body["msg"] == 1:
            assert len(body) < len(full[0][1]), "a delta carries the changed keys only"


@pytest.mark.parametrize("model", EVIDENCE_MODELS)
def test_field_names_and_types(folder: Path, model: str) -> None:
    """4.2/4.7: a full report has every field of the table with its type; a delta holds only
    fields of the full report, each of the same type."""
    rec = Recording(folder, model)
    full = [b for b in rec.reports() if b["msg"] == 0]
    assert full
    for body in full:
        missing = sorted(set(FIELDS) - set(body))
        assert missing == [], f"full report lacks {missing}"
        wrong = {
            k: json_kind(body[k]) for k, kinds in FIELDS.items() if json_kind(body[k]) not in kinds
        }
        assert wrong == {}, f"types: {wrong}"
        assert re.fullmatch(r"-\d+dBm", body["wifi_signal"])
        assert body["gcode_state"] in STATES
        assert all(set(x) == {"node", "mode"} for x in body["lights_report"])
    reference = full[0]
    for body in rec.reports():
        extra = sorted(set(body) - set(reference))
        assert extra == [], f"keys beyond the full report: {extra}"
        for key, value in body.items():
            assert json_kind(value) == json_kind(reference[key]) or {
                json_kind(value),
                json_kind(reference[key]),
            } <= {"int", "float"}, key


@pytest.mark.parametrize("model", EVIDENCE_MODELS)
def test_job_lifecycle(folder: Path, model: str) -> None:
    """4.3, 11.13: IDLE -> PREPARE -> RUNNING -> FINISH; ``mc_remaining_time`` in MINUTES
    (the header's 10 minutes, not 600), falling while ``mc_percent`` climbs; FINISH at 100 %
    with 0 left; ``gcode_file_prepare_percent`` a string that reaches 99+ in PREPARE;
    ``stg_cur`` at the model's idle value before and after."""
    rec = Recording(folder, model)
    assert rec.states() == ["IDLE", "PREPARE", "RUNNING", "FINISH"]
    merged = rec.merged()
    running = [s for s in merged if s["gcode_state"] == "RUNNING"]
    assert len(running) >= 2
    minutes = [s["mc_remaining_time"] for s in running]
    assert 1 <= max(minutes) <= JOB_MINUTES, f"minutes, not seconds: {minutes}"
    assert minutes == sorted(minutes, reverse=True)
    percents = [s["mc_percent"] for s in running]
    assert percents == sorted(percents)
    finish = [s for s in merged if s["gcode_state"] == "FINISH"]
    assert finish[0]["mc_percent"] == 100
    assert finish[0]["mc_remaining_time"] == 0
    assert finish[-1]["gcode_state"] == "FINISH", "FINISH is sticky"
    preparing = [s["gcode_file_prepare_percent"] for s in merged if s["gcode_state"] == "PREPARE"]
    assert all(isinstance(p, str) and p.isdigit() and 0 <= int(p) <= 100 for p in preparing)
    assert max(int(p) for p in preparing) >= 99, preparing
    idle = [s["stg_cur"] for s in merged if s["gcode_state"] in ("IDLE", "FINISH")]
    assert set(idle) == {IDLE_STAGE[model]}
    assert {s["subtask_name"] for s in running} == {FILE_NAME.removesuffix(".gcode.3mf")}


@pytest.mark.parametrize("model", EVIDENCE_MODELS)
def test_project_file_echo(folder: Path, model: str) -> None:
    """5.11: the reply to ``project_file`` comes on the report topic under ``print`` with
    the caller's ``sequence_id``, every parameter echoed, ``result`` success and a ``reason``;
    the state leaves IDLE only after it."""
    rec = Recording(folder, model)
    (request,) = [m for m in rec.sent if "print" in m["payload"]]
    sent = request["payload"]["print"]
    assert sent["command"] == "project_file"
    echoes = [
        m for m in rec.incoming if m["payload"].get("print", {}).get("command") == "project_file"
    ]
    assert len(echoes) == 1
    echo = echoes[0]["payload"]["print"]
    assert echo["sequence_id"] == sent["sequence_id"]
    assert str(echo["result"]).lower() == "success"
    assert "reason" in echo
    assert {k: echo.get(k) for k in sent} == sent
    prepare_at = next(
        m["t"]
        for m in rec.incoming
        if m["payload"].get("print", {}).get("gcode_state") == "PREPARE"
    )
    assert echoes[0]["t"] <= prepare_at


@pytest.mark.parametrize("model", EVIDENCE_MODELS)
def test_ftps_dialogue(folder: Path, model: str) -> None:
    """6.1/6.2/11.10-11: implicit TLS (the greeting is the first line, no ``AUTH``), login,
    ``PBSZ 0``/``PROT P``, ``SIZE`` answered in ASCII mode (550 before, 213 with the exact
    size after), passive ``STOR``, ``226`` only after the data connection closed, ``QUIT``."""
    rec = Recording(folder, model)
    lines = rec.ftps
    assert lines[0]["dir"] == "<"
    assert lines[0]["line"].startswith("220")
    sent = [x["line"] for x in lines if x["dir"] == ">"]
    assert not any(s.upper().startswith(("AUTH", "TYPE")) for s in sent)
    assert "PASS ********" in sent
    pairs = _dialogue(lines)
    size = rec.manifest["file"]["bytes"]
    assert pairs == [
        ("USER", "331"),
        ("PASS", "230"),
        ("PBSZ", "200"),
        ("PROT", "200"),
        ("SIZE", "550"),
        ("PASV", "227"),
        ("STOR", "1xx"),
        ("SIZE", "213"),
        ("QUIT", "221"),
    ], pairs
    stor = next(i for i, x in enumerate(lines) if x["line"].startswith("STOR "))
    data = next(i for i, x in enumerate(lines) if x["dir"] == "data")
    done = next(i for i, x in enumerate(lines) if x["line"].startswith("226"))
    assert stor < data < done
    assert lines[data]["t"] <= lines[done]["t"]
    assert f"{size} bytes sent" in lines[data]["line"]
    assert any(x["line"] == f"213 {size}" for x in lines)


def _dialogue(lines: list[Json]) -> list[tuple[str, str]]:
    """(command verb, code of the first reply to it); the final 226 of a transfer excluded,
    a preliminary reply written ``1xx`` (125 "already open" or 150 "about to open" depends
    on whether the data connection won the race against the command)."""
    out: list[tuple[str, str]] = []
    waiting: str | None = None
    for x in lines:
        if x["dir"] == ">":
            waiting = x["line"].split()[0].upper()
        elif x["dir"] == "<" and waiting is not None:
            code = x["line"][:3]
            out.append((waiting, "1xx" if code.startswith("1") else code))
            waiting = None
    return out


# ----- drift ------------------------------------------------------------------------------


def _structure(rec: Recording) -> Json:
    """What must not change between recordings: message kinds, key sets, states, FTPS."""
    kinds = set()
    full_keys: set[str] = set()
    nested: dict[str, set[str]] = {}
    echoes: dict[str, list[str]] = {}
    for m in rec.mqtt:
        ((subsystem, body),) = m["payload"].items()
        command = body.get("command")
        direction = "sent" if m.get("sent") else "report-topic"
        kinds.add((direction, subsystem, command, body.get("msg")))
        if command == "push_status" and body.get("msg") == 0:
            full_keys |= set(body)
            for key, value in body.items():
                if isinstance(value, dict):
                    nested.setdefault(key, set()).update(value)
        elif not m.get("sent") and command != "push_status":
            echoes[f"{subsystem}.{command}"] = sorted(body)
    return {
        "kinds": sorted(kinds, key=repr),
        "full_keys": sorted(full_keys),
        "nested_keys": {k: sorted(v) for k, v in sorted(nested.items())},
        "echo_keys": echoes,
        "states": rec.states(),
        "ftps": _dialogue(rec.ftps),
    }


@pytest.mark.integration
@pytest.mark.parametrize("model", EVIDENCE_MODELS)
def test_a_fresh_recording_has_the_structure_of_the_checked_in_one(fresh: Path, model: str) -> None:
    """The simulator still speaks as when the evidence was recorded. If this fails after an
    intended change, record the evidence again and review its diff."""
    checked_in = _structure(Recording(EVIDENCE_DIR, model))
    now = _structure(Recording(fresh, model))
    for part in checked_in:
        assert now[part] == checked_in[part], f"{part} drifted"
