"""In-memory test doubles of the driver and the farm store (style habit 4): unit tests only."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from pantheon_contracts.beds import BedState, BedType
from pantheon_contracts.printer import PrinterState
from pantheon_contracts.store import CurrentPrint, JobDoc, JobStatus, PrintDoc, PrinterStart
from printer_service.domain.dispatch import copy_done_status
from printer_service.domain.normalize import LiveState
from printer_service.domain.ports import (
    DriverSnapshot,
    LinkState,
    OutboxEntry,
    PrinterRecord,
    StartRequest,
    Transition,
)


class FakeDriver:
    """A printer whose state the test sets; records uploads and start requests."""

    def __init__(self, state: PrinterState = PrinterState.IDLE) -> None:
        self._lock = threading.Lock()
        self._snap = DriverSnapshot(link=LinkState.CONNECTED, live=LiveState(state=state))
        self.uploads: dict[str, bytes] = {}
        self.starts: list[StartRequest] = []
        self.refusals: dict[str, str] = {}
        self.start_to: PrinterState | None = PrinterState.PREPARING
        """State the printer enters on start_print (None: it never starts)."""
        self.refuse_with: str | None = None

    def set_state(self, state: PrinterState, subtask_name: str | None = None) -> None:
        with self._lock:
            snap = self._snap
            index = snap.transition_count + 1
            self._snap = replace(
                snap,
                live=LiveState(state=state, subtask_name=subtask_name),
                transitions=(*snap.transitions, Transition(index, state, subtask_name)),
                transition_count=index,
            )

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass

    def snapshot(self) -> DriverSnapshot:
        with self._lock:
            return self._snap

    def pause(self) -> None:
        pass

    def resume(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def upload(self, name: str, data: bytes) -> None:
        self.uploads[name] = data

    def delete_file(self, name: str) -> None:
        self.uploads.pop(name, None)

    def start_print(self, request: StartRequest) -> str:
        self.starts.append(request)
        ticket = str(len(self.starts))
        if self.refuse_with:
            self.refusals[ticket] = self.refuse_with
        elif self.start_to is not None:
            self.set_state(self.start_to, request.subtask_name)
        return ticket

    def refusal(self, ticket: str) -> str | None:
        return self.refusals.get(ticket)


class FakeFarmStore:
    """Dict-backed FarmStore with the same idempotence rules as the MongoDB one."""

    def __init__(self) -> None:
        self.printers: dict[int, dict[str, Any]] = {}
        self.beds: dict[int, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.prints: dict[str, dict[str, Any]] = {}
        self.outbox: dict[str, OutboxEntry] = {}

    def _printer(self, printer_id: int) -> dict[str, Any]:
        return self.printers.setdefault(printer_id, {"bed": None, "current_print": None})

    def load_printer(self, printer_id: int) -> PrinterRecord:
        return PrinterRecord.from_document(self._printer(printer_id), read_at=datetime.now(UTC))

    def mark_starting(self, printer_id: int, start: PrinterStart) -> bool:
        doc = self.printers.get(printer_id)  # no upsert
        if doc is None or doc.get("swap") is not None:  # as {"swap": None}: null or missing
            return False
        doc["starting"] = start.model_dump()
        return True

    def clear_starting(self, printer_id: int) -> None:
        self._printer(printer_id)["starting"] = None

    def bed_type(self, bed_id: int) -> BedType | None:
        doc = self.beds.get(bed_id)
        return BedType(doc["type"]) if doc else None

    def mirror(self, printer_id: int, fields: dict[str, Any]) -> None:
        self._printer(printer_id).update(fields)

    def next_job(self, printer_id: int, model: str, bed_type: BedType) -> JobDoc | None:
        job = self._claimable(printer_id, model, bed_type, None)
        return JobDoc.model_validate(job) if job else None

    def claim_job(
        self,
        printer_id: int,
        model: str,
        bed_type: BedType,
        now: datetime,
        *,
        job_id: str | None = None,
    ) -> JobDoc | None:
        job = self._claimable(printer_id, model, bed_type, job_id)
        if job is None:
            return None
        job.update(status=JobStatus.ASSIGNED.value, printer_id=printer_id, updated_at=now)
        return JobDoc.model_validate(job)

    def _claimable(
        self, printer_id: int, model: str, bed_type: BedType, job_id: str | None
    ) -> dict[str, Any] | None:
        candidates = [
            j
            for j in self.jobs.values()
            if (job_id is None or j["_id"] == job_id)
            and j["status"] == JobStatus.QUEUED.value
            and j["bed_type"] == bed_type.value
            and (
                j.get("target", {}).get("printer_id") == printer_id
                or (
                    j.get("target", {}).get("printer_id") is None
                    and j.get("target", {}).get("model") in (None, model)
                )
            )
        ]
        if not candidates:
            return None
        return sorted(candidates, key=lambda j: (-j.get("priority", 0), j.get("seq", 0)))[0]

    def _held(self, job_id: str, printer_id: int) -> dict[str, Any] | None:
        job = self.jobs.get(job_id)
        active = {JobStatus.ASSIGNED.value, JobStatus.UPLOADING.value, JobStatus.PRINTING.value}
        if job and job.get("printer_id") == printer_id and job["status"] in active:
            return job
        return None

    def active_jobs(self, printer_id: int) -> list[JobDoc]:
        return [
            JobDoc.model_validate(j)
            for j in self.jobs.values()
            if self._held(str(j["_id"]), printer_id)
        ]

    def set_job_status(
        self, job_id: str, printer_id: int, status: JobStatus, now: datetime
    ) -> bool:
        job = self._held(job_id, printer_id)
        if job is None:
            return False
        job.update(status=status.value, updated_at=now)
        return True

    def job_attempt_failed(self, job: JobDoc, printer_id: int, error: str, now: datetime) -> None:
        held = self._held(job.id, printer_id)
        if held is None:
            return
        attempts = held.get("attempts", 0) + 1
        failed = attempts >= held.get("max_attempts", 3)
        held.update(
            status=(JobStatus.FAILED if failed else JobStatus.QUEUED).value,
            printer_id=None,
            attempts=attempts,
            last_error=error,
        )

    def print_started(self, printer_id: int, doc: PrintDoc, current: CurrentPrint) -> None:
        self.prints.setdefault(doc.id, doc.model_dump(by_alias=True))
        self._printer(printer_id)["current_print"] = current.model_dump()

    def record_print_end(
        self,
        printer_id: int,
        current: CurrentPrint,
        *,
        finished: bool,
        error: str | None,
        ended_at: datetime,
    ) -> None:
        doc = self.prints.get(current.print_id)
        if doc is not None and doc.get("result") is None:
            doc.update(result="finished" if finished else "failed", ended_at=ended_at, error=error)
        job = self.jobs.get(current.job_id or "")
        if job is None or current.print_id in job.setdefault("print_ids", []):
            return
        job["print_ids"].append(current.print_id)
        if finished:
            job["copies_done"] = job.get("copies_done", 0) + 1
            status = copy_done_status(job["copies_done"], job.get("copies", 1))
            if self._held(str(job["_id"]), printer_id):
                job["status"] = status.value
                if status == JobStatus.QUEUED:
                    job["printer_id"] = None
        else:
            self.job_attempt_failed(JobDoc.model_validate(job), printer_id, error or "", ended_at)

    def mark_plate_with_part(self, printer_id: int, bed_id: int | None) -> None:
        bed = self._printer(printer_id).get("bed")
        if bed:
            bed["state"] = BedState.WITH_PART.value
        if bed_id in self.beds:
            self.beds[bed_id]["state"] = BedState.WITH_PART.value

    def close_current_print(
        self, printer_id: int, current: CurrentPrint, *, finished: bool, ended_at: datetime
    ) -> None:
        doc = self._printer(printer_id).get("current_print")
        if doc and doc["print_id"] == current.print_id:
            doc.update(ended_at=ended_at, result="finished" if finished else "failed")

    def set_last_error(self, printer_id: int, error: str | None) -> None:
        self._printer(printer_id)["last_error"] = error

    def add_outbox(self, entry: OutboxEntry) -> bool:
        if entry.id in self.outbox:
            return False
        self.outbox[entry.id] = entry
        return True

    def pending_outbox(self, limit: int = 20) -> list[OutboxEntry]:
        pending = [e for e in self.outbox.values() if e.sent_at is None]
        return sorted(pending, key=lambda e: e.created_at)[:limit]

    def outbox_sent(self, entry_id: str, now: datetime) -> None:
        self.outbox[entry_id] = self.outbox[entry_id].model_copy(update={"sent_at": now})

    def outbox_failed(self, entry_id: str, error: str) -> None:
        entry = self.outbox[entry_id]
        self.outbox[entry_id] = entry.model_copy(
            update={"attempts": entry.attempts + 1, "last_error": error}
        )
