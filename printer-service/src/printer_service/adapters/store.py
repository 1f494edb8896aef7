"""MongoDB farm store of printer-service: printers, beds, jobs, prints, outbox.

Kept to what real MongoDB and nx-27017 do alike (infrastructure.md 1): no transactions, no
``$setOnInsert`` in ``find_one_and_update``. Instead every multi-step write is idempotent per
print id, so a crash between steps is repaired by doing them again:

- ``prints`` and ``outbox`` use the print id as ``_id`` (a second insert is a no-op);
- a job remembers the print ids it has counted (``print_ids``), so a FINISH seen twice adds
  one copy, and a failed print counts one attempt.

Documents written here (fields beyond pantheon_contracts.store):

- ``printers.{state, gcode_state, progress_pct, remaining_min, layer, total_layers, temps,
  subtask_name, gcode_file, print_error, hms, online, last_seen, last_error, link,
  current_print, bed}``;
- ``printers.starting`` (:class:`PrinterStart`): set with a compare-and-set that requires no
  ``printers.swap`` (the orchestrator's, only read here) before a start, cleared after it;
- ``jobs.print_ids``: prints counted for the job;
- ``outbox``: :class:`OutboxEntry` (``_id`` = print id, ``sent_at`` None until confirmed).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import Any

import pymongo
import pymongo.errors
from pymongo import ReturnDocument
from pymongo.database import Database

from pantheon_common.errors import StoreUnavailable
from pantheon_common.mongo import ASCENDING, Document, IndexSpec
from pantheon_contracts.beds import BedState, BedType
from pantheon_contracts.names import Collections
from pantheon_contracts.store import (
    ACTIVE_JOB_STATUSES,
    CurrentPrint,
    JobDoc,
    JobStatus,
    PrintDoc,
    PrinterStart,
    PrintResult,
)
from printer_service.domain.dispatch import (
    CLAIM_SORT,
    active_job_filter,
    claim_filter,
    claim_update,
    copy_done_status,
    failure_update,
    start_guard_filter,
    starting_update,
)
from printer_service.domain.ports import RECORD_FIELDS, OutboxEntry, PrinterRecord

log = logging.getLogger(__name__)

INDEXES = (
    IndexSpec(
        Collections.JOBS,
        [("status", ASCENDING), ("bed_type", ASCENDING), ("priority", -1), ("seq", ASCENDING)],
    ),
    IndexSpec(Collections.JOBS, [("printer_id", ASCENDING), ("status", ASCENDING)]),
    IndexSpec(Collections.OUTBOX, [("sent_at", ASCENDING), ("created_at", ASCENDING)]),
    IndexSpec(Collections.PRINTS, [("printer_id", ASCENDING), ("started_at", -1)]),
)


@contextmanager
def _mapped(what: str) -> Iterator[None]:
    try:
        yield
    except pymongo.errors.PyMongoError as err:
        raise StoreUnavailable(f"MongoDB {what} failed: {err}") from err


def _job(doc: Document | None) -> JobDoc | None:
    if doc is None:
        return None
    return JobDoc.model_validate({**doc, "_id": str(doc["_id"])})


class MongoFarmStore:
    """Implements :class:`printer_service.domain.ports.FarmStore` over one database."""

    def __init__(self, db: Database[Document]) -> None:
        self._db = db
        self._printers = db[Collections.PRINTERS]
        self._beds = db[Collections.BEDS]
        self._jobs = db[Collections.JOBS]
        self._prints = db[Collections.PRINTS]
        self._outbox = db[Collections.OUTBOX]

    # -- printers ------------------------------------------------------------------------
    def load_printer(self, printer_id: int) -> PrinterRecord:
        with _mapped("reading the printer"):
            doc = self._printers.find_one(
                {"_id": printer_id}, projection=dict.fromkeys(RECORD_FIELDS, 1)
            )
        return PrinterRecord.from_document(doc or {}, read_at=datetime.now(UTC))

    def mark_starting(self, printer_id: int, start: PrinterStart) -> bool:
        # No upsert: a printer without a document has no plate, so nothing starts on it anyway,
        # and an upsert next to a swap would try a second document with the same _id.
        with _mapped("marking a start"):
            result = self._printers.update_one(
                start_guard_filter(printer_id), starting_update(start)
            )
        return result.matched_count == 1

    def clear_starting(self, printer_id: int) -> None:
        with _mapped("clearing the start marker"):
            self._printers.update_one({"_id": printer_id}, starting_update(None))

    def bed_type(self, bed_id: int) -> BedType | None:
        with _mapped("reading the plate"):
            doc = self._beds.find_one({"_id": bed_id}, projection={"type": 1})
        try:
            return BedType(str(doc["type"])) if doc else None
        except (KeyError, ValueError):
            return None

    def mirror(self, printer_id: int, fields: dict[str, Any]) -> None:
        with _mapped("mirroring the printer state"):
            self._printers.update_one({"_id": printer_id}, {"$set": fields}, upsert=True)

    def set_last_error(self, printer_id: int, error: str | None) -> None:
        self.mirror(printer_id, {"last_error": error})

    # -- jobs ----------------------------------------------------------------------------
    def next_job(self, printer_id: int, model: str, bed_type: BedType) -> JobDoc | None:
        with _mapped("reading the queue"):
            doc = self._jobs.find_one(claim_filter(printer_id, model, bed_type), sort=CLAIM_SORT)
        return _job(doc)

    def claim_job(
        self,
        printer_id: int,
        model: str,
        bed_type: BedType,
        now: datetime,
        *,
        job_id: str | None = None,
    ) -> JobDoc | None:
        with _mapped("claiming a job"):
            doc = self._jobs.find_one_and_update(
                claim_filter(printer_id, model, bed_type, job_id),
                claim_update(printer_id, now),
                sort=CLAIM_SORT,
                return_document=ReturnDocument.AFTER,
            )
        return _job(doc)

    def active_jobs(self, printer_id: int) -> list[JobDoc]:
        with _mapped("reading jobs"):
            docs = list(
                self._jobs.find(
                    {
                        "printer_id": printer_id,
                        "status": {"$in": [s.value for s in ACTIVE_JOB_STATUSES]},
                    }
                )
            )
        return [j for j in map(_job, docs) if j is not None]

    def set_job_status(
        self, job_id: str, printer_id: int, status: JobStatus, now: datetime
    ) -> bool:
        with _mapped("updating a job"):
            result = self._jobs.update_one(
                active_job_filter(job_id, printer_id),
                {"$set": {"status": status.value, "updated_at": now}},
            )
        return result.matched_count == 1

    def job_attempt_failed(self, job: JobDoc, printer_id: int, error: str, now: datetime) -> None:
        with _mapped("returning a job to the queue"):
            self._jobs.update_one(
                active_job_filter(job.id, printer_id),
                failure_update(job.attempts, job.max_attempts, error, now),
            )

    # -- prints --------------------------------------------------------------------------
    def print_started(self, printer_id: int, doc: PrintDoc, current: CurrentPrint) -> None:
        with _mapped("recording a print start"):
            with suppress(pymongo.errors.DuplicateKeyError):
                self._prints.insert_one(doc.model_dump(by_alias=True, mode="python"))
            self._printers.update_one(
                {"_id": printer_id},
                {"$set": {"current_print": current.model_dump(mode="python")}},
                upsert=True,
            )

    def record_print_end(
        self,
        printer_id: int,
        current: CurrentPrint,
        *,
        finished: bool,
        error: str | None,
        ended_at: datetime,
    ) -> None:
        result = PrintResult.FINISHED if finished else PrintResult.FAILED
        with _mapped("recording a print end"):
            self._prints.update_one(
                {"_id": current.print_id, "result": None},
                {"$set": {"result": result.value, "ended_at": ended_at, "error": error}},
            )
            if current.job_id is not None:
                self._count_print(
                    current.job_id, printer_id, current.print_id, finished, error, ended_at
                )

    def _count_print(
        self,
        job_id: str,
        printer_id: int,
        print_id: str,
        finished: bool,
        error: str | None,
        now: datetime,
    ) -> None:
        """Count the print in its job once, then settle the job's status."""
        counted = {"_id": job_id, "print_ids": {"$nin": [print_id]}}
        if finished:
            doc = self._jobs.find_one_and_update(
                counted,
                {"$inc": {"copies_done": 1}, "$push": {"print_ids": print_id}},
                return_document=ReturnDocument.AFTER,
            )
        else:
            doc = self._jobs.find_one_and_update(
                counted, {"$push": {"print_ids": print_id}}, return_document=ReturnDocument.BEFORE
            )
            if doc is not None:
                job = _job(doc)
                assert job is not None
                self._jobs.update_one(
                    active_job_filter(job_id, printer_id),
                    failure_update(job.attempts, job.max_attempts, error or "print failed", now),
                )
            return
        job = _job(doc) if doc is not None else _job(self._jobs.find_one({"_id": job_id}))
        if job is None:
            return
        status = copy_done_status(job.copies_done, job.copies)
        update: dict[str, Any] = {"status": status.value, "updated_at": now}
        if status == JobStatus.QUEUED:
            update["printer_id"] = None
        # Guarded: a job already back in the queue (and maybe claimed again) is left alone.
        self._jobs.update_one(active_job_filter(job_id, printer_id), {"$set": update})

    def mark_plate_with_part(self, printer_id: int, bed_id: int | None) -> None:
        with _mapped("marking the plate"):
            self._printers.update_one(
                {"_id": printer_id, "bed": {"$ne": None}},
                {"$set": {"bed.state": BedState.WITH_PART.value}},
            )
            if bed_id is not None:
                self._beds.update_one(
                    {"_id": bed_id}, {"$set": {"state": BedState.WITH_PART.value}}
                )

    def close_current_print(
        self, printer_id: int, current: CurrentPrint, *, finished: bool, ended_at: datetime
    ) -> None:
        result = PrintResult.FINISHED if finished else PrintResult.FAILED
        with _mapped("closing the current print"):
            self._printers.update_one(
                {"_id": printer_id, "current_print.print_id": current.print_id},
                {
                    "$set": {
                        "current_print.ended_at": ended_at,
                        "current_print.result": result.value,
                    }
                },
            )

    # -- outbox --------------------------------------------------------------------------
    def add_outbox(self, entry: OutboxEntry) -> bool:
        with _mapped("writing the outbox"):
            try:
                self._outbox.insert_one(entry.model_dump(by_alias=True, mode="python"))
            except pymongo.errors.DuplicateKeyError:
                return False
        return True

    def pending_outbox(self, limit: int = 20) -> list[OutboxEntry]:
        with _mapped("reading the outbox"):
            docs = list(
                self._outbox.find({"sent_at": None}).sort("created_at", ASCENDING).limit(limit)
            )
        return [OutboxEntry.model_validate({**d, "_id": str(d["_id"])}) for d in docs]

    def outbox_sent(self, entry_id: str, now: datetime) -> None:
        with _mapped("updating the outbox"):
            self._outbox.update_one({"_id": entry_id}, {"$set": {"sent_at": now}})

    def outbox_failed(self, entry_id: str, error: str) -> None:
        with _mapped("updating the outbox"):
            self._outbox.update_one(
                {"_id": entry_id}, {"$inc": {"attempts": 1}, "$set": {"last_error": error}}
            )
