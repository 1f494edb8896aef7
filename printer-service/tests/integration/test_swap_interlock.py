"""The plate-swap interlock on the real MongoDB-protocol server and the simulator: no print
starts while ``printers.swap`` is set, the start marker is a compare-and-set on it, and
``printers.starting`` is in MongoDB for as long as a start is under way."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime
from typing import Any

import pymongo
import pytest
from fastapi.testclient import TestClient

from pantheon_contracts.beds import BedType
from pantheon_contracts.printer import PrinterModel
from pantheon_contracts.store import JobDoc, PrinterStart
from pantheon_devtools.pytest_plugin import MongoTestDb
from printer_service.adapters.store import MongoFarmStore

from .conftest import FAST, TOKEN, RuntimeFactory, SimFactory, queue_job, seed_printer, wait_for

AUTH = {"Authorization": f"Bearer {TOKEN}"}
SINCE = datetime(2026, 12, 5, 8, 30, tzinfo=UTC)
SWAP = {"task_id": "p9:take", "print_id": "p9", "since": SINCE}
SWAP_TEXT = (
    "the robot is swapping this printer's plate (task p9:take since 2026-12-05 08:30:00 UTC)"
)

Db = pymongo.database.Database[dict[str, Any]]


def _printer(db: Db) -> dict[str, Any]:
    return db.printers.find_one({"_id": 14}) or {}


def test_no_print_starts_while_the_robot_swaps_the_plate(
    sim_farm: SimFactory, service_factory: RuntimeFactory, db: Db
) -> None:
    """A clean plate recorded and a matching job queued, but a swap is set: nothing is claimed,
    /status and POST /print name the swap; once it is cleared, the job prints."""
    farm = sim_farm([14])
    seed_printer(db, 14, PrinterModel.P1S, 801)
    db.printers.update_one({"_id": 14}, {"$set": {"swap": SWAP}})
    queue_job(db, "job-1", printer_id=14)
    runtime = service_factory(farm, 14)
    with TestClient(runtime.app) as client:

        def status() -> dict[str, Any]:
            answer: dict[str, Any] = client.get("/status", headers=AUTH).json()
            return answer

        wait_for(lambda: status()["state"] == "idle", 15, "the printer idle")
        wait_for(
            lambda: status()["dispatch"]["reason"].startswith(SWAP_TEXT), 10, "the swap reason"
        )
        shown = status()
        assert shown["swap"]["task_id"] == "p9:take"
        assert shown["starting"] is None
        assert shown["bed"] == {"bed_id": 801, "state": "in_printer"}
        refused = client.post("/print", headers=AUTH, json={"file": "cube.gcode"})
        assert refused.status_code == 409
        assert refused.json()["detail"].startswith(SWAP_TEXT)
        time.sleep(0.5)  # a few more ticks of the control loop, still nothing
        assert db.jobs.find_one({"_id": "job-1"})["status"] == "queued"
        assert farm.printer(14)["files"] == []
        assert _printer(db).get("starting") is None

        db.printers.update_one({"_id": 14}, {"$set": {"swap": None}})  # the replace is done
        wait_for(
            lambda: db.jobs.find_one({"_id": "job-1"})["status"] == "finished",
            30,
            "job-1 finished once the swap was cleared",
        )
        assert status()["swap"] is None
    assert _printer(db).get("starting") is None
    assert db.prints.count_documents({}) == 1


def test_a_swap_set_between_the_decision_and_the_claim_refuses_the_start(
    sim_farm: SimFactory,
    service_factory: RuntimeFactory,
    db: Db,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The orchestrator sets the swap after printer-service decided to dispatch (no swap then)
    but before its compare-and-set: the write matches nothing, no job is claimed, no file is
    sent, and the reason names the swap."""
    farm = sim_farm([14])
    seed_printer(db, 14, PrinterModel.P1S, 801)
    queue_job(db, "job-1", printer_id=14)
    marked: list[bool] = []
    next_job, mark_starting = MongoFarmStore.next_job, MongoFarmStore.mark_starting

    def next_job_then_swap(
        self: MongoFarmStore, printer_id: int, model: str, bed_type: BedType
    ) -> JobDoc | None:
        if not marked:  # once: the orchestrator's compare-and-set, between decision and claim
            db.printers.update_one({"_id": 14, "starting": None}, {"$set": {"swap": SWAP}})
        return next_job(self, printer_id, model, bed_type)

    def noting_mark(self: MongoFarmStore, printer_id: int, start: PrinterStart) -> bool:
        marked.append(mark_starting(self, printer_id, start))
        return marked[-1]

    monkeypatch.setattr(MongoFarmStore, "next_job", next_job_then_swap)
    monkeypatch.setattr(MongoFarmStore, "mark_starting", noting_mark)
    runtime = service_factory(farm, 14)
    wait_for(lambda: marked, 15, "a dispatch attempt")
    assert marked[0] is False, "the compare-and-set refused the start"
    wait_for(lambda: runtime.service.dispatch_reason.startswith(SWAP_TEXT), 5, "the swap as reason")
    assert db.jobs.find_one({"_id": "job-1"})["status"] == "queued"
    assert farm.printer(14)["files"] == []
    assert _printer(db).get("starting") is None

    db.printers.update_one({"_id": 14}, {"$set": {"swap": None}})
    wait_for(
        lambda: db.jobs.find_one({"_id": "job-1"})["status"] == "finished", 30, "job-1 finished"
    )
    assert marked[-1] is True


def test_the_start_marker_is_in_mongodb_until_the_print_is_tracked(
    sim_farm: SimFactory, service_factory: RuntimeFactory, db: Db
) -> None:
    """Read ``printers`` while the simulator takes 2 s to acknowledge the start: the marker is
    there, and from its first appearance the orchestrator sees, at every read, either the
    marker or an open print (current_print is written before the marker is cleared)."""
    farm = sim_farm([14], timing=dataclasses.replace(FAST, ack_delay_s=2.0))
    seed_printer(db, 14, PrinterModel.P1S, 801)
    queue_job(db, "job-1", printer_id=14)
    runtime = service_factory(farm, 14)
    seen: list[tuple[Any, Any]] = []

    def tracked() -> bool:
        doc = _printer(db)
        current = doc.get("current_print")
        seen.append((doc.get("starting"), current))
        return doc.get("starting") is None and bool(current) and current["ended_at"] is None

    marker = wait_for(lambda: _printer(db).get("starting"), 15, "the start marker")
    assert marker["what"] == "job job-1"
    assert db.jobs.find_one({"_id": "job-1"})["status"] in {"assigned", "uploading"}
    shown = wait_for(lambda: runtime.service.status()["starting"], 5, "the marker in /status")
    assert shown["what"] == "job job-1"
    wait_for(tracked, 15, "the print tracked and the marker cleared")
    # Every read since the marker appeared: the marker, or an open print (never neither).
    for starting, current in seen:
        assert starting or (current and current["ended_at"] is None), (starting, current)
    assert any(starting for starting, _ in seen), "the marker was seen during the start"
    assert _printer(db)["current_print"]["job_id"] == "job-1"


def test_the_store_sets_the_marker_only_while_no_swap_is_set(mongo_db: MongoTestDb, db: Db) -> None:
    """The compare-and-set itself, on the real server: a missing or null ``swap`` lets the
    marker through, a set one does not (and a missing document is not created). Read back from
    the server: nx-27017 reports some updates as applied that it did not apply."""
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        mongo_db.url, tz_aware=True, serverSelectionTimeoutMS=5000
    )
    store = MongoFarmStore(client[mongo_db.name])
    start = PrinterStart(what="job j1", since=SINCE)
    try:
        db.printers.insert_many([{"_id": 14}, {"_id": 15, "swap": None}, {"_id": 16, "swap": SWAP}])
        assert store.load_printer(14).swap is None  # absent fields read as None
        assert store.mark_starting(14, start) is True
        assert store.mark_starting(15, start) is True
        assert store.mark_starting(16, start) is False
        assert store.mark_starting(17, start) is False
        assert db.printers.find_one({"_id": 17}) is None, "no upsert"
        assert "starting" not in db.printers.find_one({"_id": 16})
        record = store.load_printer(14)
        assert record.starting == start
        swapped = store.load_printer(16)
        assert swapped.swap is not None
        assert swapped.swap.task_id == "p9:take"
        assert swapped.starting is None
        store.clear_starting(14)
        assert db.printers.find_one({"_id": 14})["starting"] is None
        assert store.load_printer(14).starting is None
    finally:
        client.close()


def test_the_next_job_read_and_the_claim_of_that_job(mongo_db: MongoTestDb, db: Db) -> None:
    """next_job reads what claim_job would take (nothing written); a claim by id takes only
    that job, and nothing once another printer has it."""
    queue_job(db, "low", seq=1)
    queue_job(db, "high", seq=2, priority=5)
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        mongo_db.url, tz_aware=True, serverSelectionTimeoutMS=5000
    )
    store = MongoFarmStore(client[mongo_db.name])
    try:
        peeked = store.next_job(14, "P1S", BedType.TEXTURED_PEI)
        assert peeked is not None
        assert peeked.id == "high"
        assert db.jobs.find_one({"_id": "high"})["status"] == "queued"
        assert store.claim_job(15, "P1S", BedType.TEXTURED_PEI, SINCE, job_id="high") is not None
        assert store.claim_job(14, "P1S", BedType.TEXTURED_PEI, SINCE, job_id="high") is None
        claimed = store.claim_job(14, "P1S", BedType.TEXTURED_PEI, SINCE, job_id="low")
        assert claimed is not None
        assert claimed.id == "low"
        assert claimed.printer_id == 14
        stored = db.jobs.find_one({"_id": "low"})
        assert (stored["status"], stored["printer_id"]) == ("assigned", 14)  # really applied
    finally:
        client.close()
