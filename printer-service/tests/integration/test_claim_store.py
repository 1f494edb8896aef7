"""The atomic job claim and the idempotent writes of the MongoDB store, on the real server."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pymongo

from pantheon_contracts.beds import BedType
from pantheon_contracts.store import CurrentPrint, PrintDoc
from pantheon_devtools.pytest_plugin import MongoTestDb
from printer_service.adapters.store import MongoFarmStore
from printer_service.domain.ports import OutboxEntry

from .conftest import queue_job

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _store(mongo_db: MongoTestDb) -> tuple[MongoFarmStore, pymongo.MongoClient[dict[str, Any]]]:
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        mongo_db.url, tz_aware=True, serverSelectionTimeoutMS=5000
    )
    return MongoFarmStore(client[mongo_db.name]), client


def test_two_printers_never_claim_the_same_job(
    mongo_db: MongoTestDb, db: pymongo.database.Database[dict[str, Any]]
) -> None:
    for i in range(10):
        queue_job(db, f"job-{i}", model="P1S", seq=i)
    claimed: dict[int, list[str]] = {11: [], 12: []}
    barrier = threading.Barrier(2)

    def claim_all(printer_id: int) -> None:
        store, client = _store(mongo_db)  # one client per "service", as in production
        try:
            barrier.wait()
            while job := store.claim_job(printer_id, "P1S", BedType.TEXTURED_PEI, NOW):
                claimed[printer_id].append(job.id)
        finally:
            client.close()

    threads = [threading.Thread(target=claim_all, args=(p,)) for p in claimed]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    every = claimed[11] + claimed[12]
    assert sorted(every) == sorted(f"job-{i}" for i in range(10))
    assert len(set(every)) == 10
    for printer_id, jobs in claimed.items():
        for job_id in jobs:
            doc = db.jobs.find_one({"_id": job_id})
            assert doc["status"] == "assigned"
            assert doc["printer_id"] == printer_id


def test_claim_order_targets_and_plate_type(
    mongo_db: MongoTestDb, db: pymongo.database.Database[dict[str, Any]]
) -> None:
    queue_job(db, "late-high", seq=5, priority=10)
    queue_job(db, "early-low", seq=1)
    queue_job(db, "early-low-2", seq=2)
    queue_job(db, "other-printer", printer_id=15, seq=0, priority=99)
    queue_job(db, "other-model", model="X1C", seq=0, priority=99)
    queue_job(db, "other-plate", bed_type="cool_plate", seq=0, priority=99)
    queue_job(db, "mine", printer_id=14, seq=9)
    store, client = _store(mongo_db)
    try:
        order = []
        while job := store.claim_job(14, "P1S", BedType.TEXTURED_PEI, NOW):
            order.append(job.id)
    finally:
        client.close()
    assert order == ["late-high", "early-low", "early-low-2", "mine"]


def test_print_end_and_outbox_are_idempotent_per_print(
    mongo_db: MongoTestDb, db: pymongo.database.Database[dict[str, Any]]
) -> None:
    queue_job(db, "job-1", copies=2)
    db.printers.insert_one({"_id": 14, "bed": {"bed_id": 801, "state": "in_printer"}})
    db.beds.insert_one({"_id": 801, "type": "textured_pei", "state": "in_printer"})
    store, client = _store(mongo_db)
    try:
        job = store.claim_job(14, "P1S", BedType.TEXTURED_PEI, NOW)
        assert job is not None
        current = CurrentPrint(
            print_id="p1", job_id=job.id, file=job.file, bed_id=801, started_at=NOW
        )
        doc = PrintDoc(
            id="p1", printer_id=14, job_id=job.id, file=job.file, bed_id=801, started_at=NOW
        )
        store.print_started(14, doc, current)
        store.print_started(14, doc, current)
        for _ in range(2):  # FINISH seen twice
            store.record_print_end(14, current, finished=True, error=None, ended_at=NOW)
            store.mark_plate_with_part(14, 801)
        entry = OutboxEntry(id="p1", printer_id=14, queue="ready", created_at=NOW)
        assert store.add_outbox(entry) is True
        assert store.add_outbox(entry) is False
        assert [e.id for e in store.pending_outbox()] == ["p1"]
        store.outbox_sent("p1", NOW)
        assert store.pending_outbox() == []
        assert store.add_outbox(entry) is False, "a sent entry is never recreated"
    finally:
        client.close()
    job_doc = db.jobs.find_one({"_id": "job-1"})
    assert job_doc["copies_done"] == 1
    assert job_doc["status"] == "queued"
    assert job_doc["printer_id"] is None
    assert db.prints.count_documents({}) == 1
    assert db.outbox.count_documents({}) == 1
    assert db.printers.find_one({"_id": 14})["bed"]["state"] == "with_part"
    assert db.beds.find_one({"_id": 801})["state"] == "with_part"
