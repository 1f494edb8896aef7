"""Fixtures for robot-arm-sim tests: the seed layout, settings, a client of the robot bus, and
a tiny HTTP server standing in for bambu-sim's control API."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pantheon_common.farm import FarmLayout, load_layout
from pantheon_sim.robot.settings import RobotSimSettings
from pantheon_sim.robot.testing import FakePrinterSim, RobotBus, forget_session

REPO_ROOT = Path(__file__).resolve().parents[3]
FARM_YAML = REPO_ROOT / "farm.yaml"


@pytest.fixture(scope="session")
def layout() -> FarmLayout:
    """The seed farm: 20 printers, 40 plates."""
    return load_layout(FARM_YAML)


@pytest.fixture
def bus(mqtt_endpoint: tuple[str, int], mqtt_prefix: str) -> Iterator[RobotBus]:
    """A connected robot-bus client under this test's topic prefix."""
    b = RobotBus(mqtt_endpoint[0], mqtt_endpoint[1], mqtt_prefix)
    yield b
    b.stop()


@pytest.fixture
def sim_settings(
    tmp_path: Path, mqtt_endpoint: tuple[str, int], mqtt_prefix: str
) -> Iterator[Callable[..., RobotSimSettings]]:
    """Factory of fast settings (a swap in ~0.4 s) under this test's prefix and tmp dir.

    Afterwards the sim's persistent MQTT session is removed from the harness broker.
    """
    made: list[RobotSimSettings] = []

    def make(**overrides: Any) -> RobotSimSettings:
        values: dict[str, Any] = {
            "pantheon_env": "dev",
            "mqtt_host": mqtt_endpoint[0],
            "mqtt_port": mqtt_endpoint[1],
            "mqtt_topic_prefix": mqtt_prefix,
            "farm_layout": FARM_YAML,
            "robot_sim_ledger": tmp_path / "ledger.jsonl",
            "robot_sim_take_s": 0.2,
            "robot_sim_replace_s": 0.2,
            "robot_sim_homing_s": 0.1,
            "robot_sim_control_port": None,
        }
        values.update(overrides)
        settings = RobotSimSettings(**values)
        made.append(settings)
        return settings

    yield make
    for client_id in {s.client_id() for s in made}:
        forget_session(mqtt_endpoint[0], mqtt_endpoint[1], client_id)


@pytest.fixture
def printer_sim() -> Iterator[FakePrinterSim]:
    """A fake bambu-sim control API (every printer idle unless told otherwise)."""
    fake = FakePrinterSim()
    yield fake
    fake.close()
