"""The orchestrator's MongoDB queries against the real MongoDB-protocol server."""

from datetime import UTC, datetime
from typing import Any

import pytest
from pymongo import MongoClient

from pantheon_devtools.pytest_plugin import MongoTestDb
from robot_arm_orchestrator.adapters.store import TaskStore


def _job(
    job_id: str, seq: int, bed_type: str, target: dict[str, Any], status: str = "queued"
) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "_id": job_id,
        "file": "x.gcode.3mf",
        "copies": 1,
        "copies_done": 0,
        "priority": 0,
        "seq": seq,
        "target": target,
        "bed_type": bed_type,
        "status": status,
        "printer_id": None,
        "attempts": 0,
        "max_attempts": 3,
        "created_at": now,
        "updated_at": now,
    }


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ({"printer_id": None, "model": None}, ["open"]),  # untargeted: as pantheon-api writes it
        ({"printer_id": None, "model": "P1S"}, ["open"]),
        ({"printer_id": 14, "model": None}, ["open"]),
        ({"printer_id": 15, "model": None}, []),
        ({"printer_id": None, "model": "X1C"}, []),
    ],
)
def test_next_queued_jobs_sees_every_job_the_printer_could_take(
    mongo_db: MongoTestDb, target: dict[str, Any], expected: list[str]
) -> None:
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_db.url, tz_aware=True)
    try:
        db = client[mongo_db.name]
        db.jobs.insert_many(
            [
                _job("open", 2, "smooth_pei", target),
                _job("done", 1, "smooth_pei", target, status="finished"),
            ]
        )
        jobs = TaskStore(db).next_queued_jobs(14, "P1S")
        assert [j.id for j in jobs] == expected
    finally:
        client.close()
