"""Integration fixtures: the orchestrator as a real subprocess, the robot simulator in-process,
real RabbitMQ / Mosquitto / MongoDB-protocol server from the infrastructure fixtures."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pymongo
import pytest
from pymongo.database import Database

from pantheon_common.amqp import AmqpPublisher
from pantheon_common.farm import load_layout, seed_farm
from pantheon_contracts.names import HOMING_QUEUE, READY_QUEUE
from pantheon_devtools.pytest_plugin import MongoTestDb
from pantheon_sim.robot import RobotArmSim, RobotSimSettings
from robot_arm_orchestrator.testing import JobWatcher, Orchestrator, free_port

ROOT = Path(__file__).resolve().parents[2]
FARM = ROOT / "farm.yaml"
TOKEN = "orchestrator-test-token-0123456789"

PLACEMENT: dict[int, int] = {12: 802, 14: 804, 23: 808, 35: 811}
"""Plates in printers at the start of every integration test (same in MongoDB and the sim)."""


@pytest.fixture
def farm_db(mongo_db: MongoTestDb) -> Iterator[Database[dict[str, Any]]]:
    """The seed farm in a fresh database, with PLACEMENT's plates loaded (with parts): each of
    those printers finished print ``print-<id>-1`` and reports FINISH, as printer-service
    records it (live state, ``prints``); the other printers are idle and empty."""
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        mongo_db.url, tz_aware=True, serverSelectionTimeoutMS=10_000
    )
    db = client[mongo_db.name]
    seed_farm(db, load_layout(FARM))
    now = datetime.now(UTC)
    db.printers.update_many({}, {"$set": live_record("idle", now)})
    for printer_id, bed_id in PLACEMENT.items():
        db.prints.insert_one(
            {
                "_id": f"print-{printer_id}-1",
                "printer_id": printer_id,
                "file": "cube.gcode.3mf",
                "bed_id": bed_id,
                "started_at": datetime(2026, 11, 23, 10, 0, tzinfo=UTC),
                "ended_at": datetime(2026, 11, 23, 11, 0, tzinfo=UTC),
                "result": "finished",
            }
        )
        db.beds.update_one(
            {"_id": bed_id},
            {
                "$set": {
                    "state": "with_part",
                    "location": {"rack": None, "slot": None, "printer_id": printer_id},
                }
            },
        )
        db.printers.update_one(
            {"_id": printer_id},
            {
                "$set": {
                    **live_record("finished", now),
                    "bed": {"bed_id": bed_id, "state": "with_part"},
                    "current_print": {
                        "print_id": f"print-{printer_id}-1",
                        "file": "cube.gcode.3mf",
                        "bed_id": bed_id,
                        "started_at": datetime(2026, 11, 23, 10, 0, tzinfo=UTC),
                        "ended_at": datetime(2026, 11, 23, 11, 0, tzinfo=UTC),
                        "result": "finished",
                    },
                }
            },
        )
    try:
        yield db
    finally:
        client.close()


def live_record(state: str, last_seen: datetime) -> dict[str, Any]:
    """The live fields printer-service mirrors into ``printers`` (no heater on)."""
    return {
        "state": state,
        "gcode_state": state.upper(),
        "online": True,
        "link": "connected",
        "last_seen": last_seen,
        "temps": {"nozzle": 25.0, "nozzle_target": 0.0, "bed": 25.0, "bed_target": 0.0},
    }


@pytest.fixture
def robot_sim_factory(
    mqtt_endpoint: tuple[str, int], mqtt_prefix: str, tmp_path: Path
) -> Iterator[Callable[..., RobotArmSim]]:
    """Starts the simulator with PLACEMENT and fast motions; stopped at the end."""
    started: list[RobotArmSim] = []

    def start(
        *,
        echo: bool = True,
        take_s: float = 0.3,
        replace_s: float = 0.3,
        repeat_s: float = 0.1,
        ledger: Path | None = None,
    ) -> RobotArmSim:
        host, port = mqtt_endpoint
        initial = tmp_path / "placement.json"
        initial.write_text(json.dumps({"printers": {str(p): b for p, b in PLACEMENT.items()}}))
        settings = RobotSimSettings(
            pantheon_env="dev",
            mqtt_host=host,
            mqtt_port=port,
            mqtt_topic_prefix=mqtt_prefix,
            farm_layout=FARM,
            robot_sim_echo_job_id=echo,
            robot_sim_initial_state=initial,
            robot_sim_ledger=ledger or tmp_path / "ledger.jsonl",
            robot_sim_status_repeat_s=repeat_s,
            robot_sim_take_s=take_s,
            robot_sim_replace_s=replace_s,
            robot_sim_homing_s=0.2,
            robot_sim_control_port=None,
        )
        sim = RobotArmSim(settings).start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


@pytest.fixture
def job_watcher(mqtt_endpoint: tuple[str, int], mqtt_prefix: str) -> Iterator[JobWatcher]:
    """Every robot_arm/job published under this test's prefix."""
    watcher = JobWatcher(*mqtt_endpoint, mqtt_prefix)
    yield watcher
    watcher.stop()


@pytest.fixture
def orchestrator_factory(
    amqp_url: str,
    mongo_db: MongoTestDb,
    mqtt_endpoint: tuple[str, int],
    mqtt_prefix: str,
    tmp_path: Path,
) -> Iterator[Callable[..., Orchestrator]]:
    """Makes orchestrator processes wired to this test's vhost, database and topic prefix."""
    made: list[Orchestrator] = []

    def make(*, echo: bool = True, **extra: str) -> Orchestrator:
        host, port = mqtt_endpoint
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", "/tmp"),
            "PANTHEON_ENV": "dev",
            "LOG_FORMAT": "text",
            "LOG_LEVEL": "INFO",
            "AMQP_URL": amqp_url,
            "MQTT_HOST": host,
            "MQTT_PORT": str(port),
            "MQTT_TOPIC_PREFIX": mqtt_prefix,
            "MQTT_CLIENT_ID": f"orchestrator-{mqtt_prefix.strip('/').replace('/', '-')}",
            "MONGO_URL": mongo_db.url,
            "MONGO_DB": mongo_db.name,
            "FARM_LAYOUT": str(FARM),
            "SERVICE_TOKEN": TOKEN,
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": str(free_port()),
            "ROBOT_ECHOES_JOB_ID": "true" if echo else "false",
            "TAKE_TIMEOUT_S": "15",
            "REPLACE_TIMEOUT_S": "15",
            "HOMING_TIMEOUT_S": "15",
            "DAILY_HOMING": "false",
            "PLATE_POLL_S": "0.5",
            "DISPATCH_POLL_S": "0.2",
            "SHUTDOWN_GRACE_S": "5",
            # the printers' records are written once by farm_db (no printer-service here)
            "PRINTER_REPORT_MAX_AGE_S": "3600",
            "ROBOT_CONFIRM_S": "0.3",
            "ROBOT_RECONCILE_S": "3",
            **extra,
        }
        orchestrator = Orchestrator(
            env=env, log_path=tmp_path / f"orchestrator-{len(made)}.log", token=TOKEN
        )
        made.append(orchestrator)
        return orchestrator

    yield make
    for orchestrator in made:
        orchestrator.kill()


@pytest.fixture
def publisher(amqp_url: str) -> Iterator[AmqpPublisher]:
    """Publishes to ready/homing the way printer-service (or the RabbitMQ UI) does."""
    pub = AmqpPublisher(amqp_url, [READY_QUEUE, HOMING_QUEUE], connection_name="test-publisher")
    yield pub
    pub.close()
