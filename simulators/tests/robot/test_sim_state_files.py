"""Initial-state and world files of RobotArmSim (no broker: the sim is built, not started)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pantheon_common.errors import ConfigurationError
from pantheon_sim.robot import RobotArmSim, RobotSimSettings

FARM_YAML = Path(__file__).resolve().parents[3] / "farm.yaml"


def settings(tmp_path: Path, **overrides: object) -> RobotSimSettings:
    values: dict[str, object] = {
        "pantheon_env": "dev",
        "farm_layout": FARM_YAML,
        "robot_sim_ledger": tmp_path / "ledger.jsonl",
        "robot_sim_control_port": None,
    }
    values.update(overrides)
    return RobotSimSettings(**values)  # type: ignore[arg-type]


def test_initial_state_file_places_listed_plates_and_leaves_others_empty(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"printers": {"14": 801, "15": 815}}))
    world = RobotArmSim(settings(tmp_path, robot_sim_initial_state=state)).world
    assert world["printers"]["14"] == 801
    assert world["printers"]["15"] == 815
    assert world["printers"]["11"] is None
    assert world["plates"]["804"]["kind"] == "rack"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "cannot use plate placement file"),
        ("{", "cannot use plate placement file"),
        ('{"printers": {"14": 801, "15": 801}}', "bed 801 cannot be in printers 14 and 15"),
        ('{"printers": {"77": 801}}', "unknown printer 77"),
    ],
)
def test_a_bad_initial_state_is_a_configuration_error(
    tmp_path: Path, content: str | None, problem: str
) -> None:
    state = tmp_path / "state.json"
    if content is not None:
        state.write_text(content)
    with pytest.raises(ConfigurationError, match=problem):
        RobotArmSim(settings(tmp_path, robot_sim_initial_state=state))


def test_world_file_keeps_plates_across_instances(tmp_path: Path) -> None:
    s = settings(tmp_path, robot_sim_world_file=tmp_path / "world.json")
    RobotArmSim(s).set_world({21: 840})
    world = RobotArmSim(s).world
    assert world["printers"]["21"] == 840
    assert world["printers"]["14"] is None
