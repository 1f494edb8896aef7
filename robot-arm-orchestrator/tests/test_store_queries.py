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


SWAP_P = {"task_id": "P:take", "print_id": "P", "since": datetime(2026, 12, 5, tzinfo=UTC)}
SWAP_Q = {"task_id": "Q:take", "print_id": "Q", "since": datetime(2026, 12, 5, tzinfo=UTC)}


@pytest.mark.parametrize(
    ("fields", "claimed"),
    [
        ({}, True),  # fields absent: nobody ever marked it
        ({"swap": None, "starting": None}, True),
        ({"swap": SWAP_P, "starting": None}, True),  # the same swap (its replace) goes on
        ({"swap": SWAP_Q, "starting": None}, False),  # another swap holds it
        ({"swap": None, "starting": {"what": "job j1", "since": datetime.now(UTC)}}, False),
    ],
)
def test_the_swap_marker_is_a_compare_and_set_against_a_start(
    mongo_db: MongoTestDb, fields: dict[str, Any], claimed: bool
) -> None:
    """printers.swap is set only while printer-service starts nothing and no other swap holds
    the printer, and the write really lands (read back), or nothing changes."""
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_db.url, tz_aware=True)
    try:
        db = client[mongo_db.name]
        db.printers.insert_one({"_id": 14, **fields})
        store = TaskStore(db)
        assert store.claim_printer(14, "P:replace", "P") is claimed
        after = db.printers.find_one({"_id": 14})
        assert after is not None
        if claimed:
            assert after["swap"]["task_id"] == "P:replace"
            assert after["swap"]["print_id"] == "P"
            store.release_printer(14, "Q")  # not this swap's marker: stays
            assert db.printers.find_one({"_id": 14})["swap"]["print_id"] == "P"  # type: ignore[index]
            store.release_printer(14, "P")
            assert db.printers.find_one({"_id": 14})["swap"] is None  # type: ignore[index]
        else:
            assert after.get("swap") == fields.get("swap")
    finally:
        client.close()
