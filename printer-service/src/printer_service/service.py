"""The printer-service core: mirror the printer, track its print, dispatch jobs, announce ends.

One control thread ticks a few times a second: it takes the driver's snapshot, mirrors it into
``printers`` (throttled), handles the end of the tracked print (FINISH/FAILED: record it, mark
the plate ``with_part``, put the ``ready`` notification into the outbox), and claims the next
job when the printer is dispatchable with a clean plate. HTTP handlers call the same methods.

Interlock with the robot (architecture.md 3.2): no print starts while ``printers.swap`` is set
(the orchestrator's, a take sent and its replace not done), and every start is bracketed by
``printers.starting``, set with a compare-and-set that requires no swap and cleared once the
print is tracked or the start given up. The orchestrator sets ``swap`` only while ``starting``
is None, so a take and a start never overlap.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from pantheon_common.errors import StoreUnavailable
from pantheon_common.gcode_store import GcodeNotFound, GcodeStore, GcodeStoreError
from pantheon_common.log import OutageLog
from pantheon_contracts.beds import BedType
from pantheon_contracts.names import READY_QUEUE
from pantheon_contracts.printer import BUSY_STATES, UNAVAILABLE_STATES, PrinterModel
from pantheon_contracts.store import (
    CurrentPrint,
    JobDoc,
    JobStatus,
    PrintDoc,
    PrinterBed,
    PrinterStart,
)
from printer_service.domain.dispatch import (
    DispatchDecision,
    LateStart,
    PrintEnd,
    busy_refusal,
    decide_dispatch,
    late_start,
    print_end,
    runs_untracked_print,
    should_notify_ready,
    start_confirmed,
    subtask_name_for,
    swap_refusal,
)
from printer_service.domain.normalize import describe_error
from printer_service.domain.package import PackageError, prepare
from printer_service.domain.ports import (
    DriverError,
    DriverSnapshot,
    FarmStore,
    OutboxEntry,
    PrinterDriver,
    PrinterRecord,
    StartRequest,
)

log = logging.getLogger(__name__)


class DispatchFailed(Exception):
    """Starting a file on the printer failed; the message goes into the job's last_error."""


class StartUnconfirmed(DispatchFailed):
    """The printer neither started nor refused the file within the start timeout: it may
    still start it (a late ack), so the job is held, not handed on (see late_start)."""

    def __init__(self, message: str, *, before: int, subtask_name: str) -> None:
        super().__init__(message)
        self.before = before
        self.subtask_name = subtask_name


@dataclass
class _PendingStart:
    """A start the printer has not confirmed yet, waited for until ``until``."""

    job: JobDoc | None
    file: str
    bed: PrinterBed | None
    before: int
    subtask_name: str
    until: float


class NotDispatchable(Exception):
    """A manual print was asked for while the printer or its plate is not ready (or the robot
    is swapping the plate); the message says why."""


SWAP_VANISHED = (
    "the start marker could not be set although no plate swap shows now (one began and ended "
    "meanwhile, or the printers document is missing): no print started"
)
"""Refusal when the compare-and-set matched nothing but the read-back shows no swap."""


class Waker(Protocol):
    """The outbox sender, as far as the service is concerned."""

    def wake(self) -> None: ...


@dataclass(frozen=True)
class ServiceConfig:
    """Behaviour of one printer-service (settings.py builds it from the environment)."""

    printer_id: int
    model: PrinterModel
    driver: str = "bambu"
    serial: str = ""
    auto_dispatch: bool = True
    ready_on_failed: bool = True
    """Publish ``ready`` after a FAILED print too: the plate may hold plastic (default)."""
    tick_s: float = 0.25
    mirror_min_interval_s: float = 1.0
    """At most one ``printers`` write per interval unless the state changes."""
    mirror_heartbeat_s: float = 30.0
    """Refresh ``last_seen`` at least this often while nothing changes."""
    start_confirm_timeout_s: float = 180.0
    """How long PREPARE/RUNNING may take to appear after project_file (P1P: ~135 s)."""
    dispatch_retry_s: float = 15.0
    """Pause after a failed dispatch before claiming again."""


class PrinterService:
    """Ties one driver, the farm store, the G-code store and the outbox together."""

    def __init__(
        self,
        config: ServiceConfig,
        driver: PrinterDriver,
        store: FarmStore,
        gcode_store: GcodeStore,
        outbox: Waker | None = None,
        *,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.driver = driver
        self._store = store
        self._gcode = gcode_store
        self._outbox = outbox
        self._now = wall_clock
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._dispatch_lock = threading.Lock()
        self._pending_start: _PendingStart | None = None
        self._mirror_lock = threading.Lock()
        self._mirror_key: dict[str, Any] | None = None
        self._mirror_state: str | None = None
        self._mirror_at = -1e9
        self._mirror_link_error: str | None = None
        self._record = PrinterRecord(bed=None, current_print=None)
        self._recovered = False
        self._cooldown_until = 0.0
        self._starting_left = False
        """``printers.starting`` may still be set by a start that is over (its clear failed)."""
        self._store_outage = OutageLog(log, "MongoDB (printer-service)")
        self.dispatch_reason = "starting"
        """Why the printer is (not) taking a job now, for /status."""
        self.last_error: str | None = None
        self.prints_started = 0
        self.prints_ended = 0

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        """Start the driver and the control thread."""
        self.driver.start()
        self._thread = threading.Thread(
            target=self._run, name=f"printer-{self.config.printer_id}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the control thread and the driver."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
        self.driver.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
                self._store_outage.success()
            except StoreUnavailable as err:
                self._store_outage.failure(err)
            except Exception:
                log.exception("printer-service step failed; continuing")
            self._stop.wait(self.config.tick_s)

    @property
    def store_down(self) -> bool:
        return self._store_outage.down

    # -- one tick --------------------------------------------------------------------------
    def step(self) -> None:
        """Mirror, track, dispatch: one pass of the control loop (tests call it directly)."""
        # The record first: a print started by another thread after this read is then not
        # judged against a snapshot older than its start.
        record = self._store.load_printer(self.config.printer_id)
        self._record = record
        snap = self.driver.snapshot()
        self._mirror(snap)
        if self._starting_left:
            self._clear_left_marker()
        if snap.live.state in UNAVAILABLE_STATES:
            self.dispatch_reason = (
                swap_refusal(record.swap) if record.swap else f"printer is {snap.live.state.value}"
            )
            return
        if not self._recovered:
            self._recover(snap, record)
            self._recovered = True
            record = self._store.load_printer(self.config.printer_id)
            self._record = record
        if self._track(snap, record):
            record = self._store.load_printer(self.config.printer_id)
            self._record = record
        if self._pending_start is not None:
            self._settle_pending_start(snap)
            return
        if self._track_untracked(snap, record):
            return
        self._maybe_dispatch(snap, record)

    # -- mirror ----------------------------------------------------------------------------
    def _mirror(self, snap: DriverSnapshot, *, force: bool = False) -> None:
        live = snap.live
        key: dict[str, Any] = {
            "state": live.state.value,
            "gcode_state": live.gcode_state,
            "progress_pct": live.progress_pct,
            "remaining_min": live.remaining_min,
            "layer": live.layer,
            "total_layers": live.total_layers,
            "temps": live.temps.model_dump(),
            "subtask_name": live.subtask_name,
            "gcode_file": live.gcode_file,
            "print_error": live.print_error,
            "hms": [h.model_dump() for h in live.hms],
            "online": snap.online,
            "link": snap.link.value,
            "link_error": snap.last_error,
        }
        now = self._clock()
        with self._mirror_lock:
            state_changed = key["state"] != self._mirror_state
            changed = key != self._mirror_key
            elapsed = now - self._mirror_at
            due = (
                force
                or state_changed
                or (changed and elapsed >= self.config.mirror_min_interval_s)
                or elapsed >= self.config.mirror_heartbeat_s
            )
            if not due:
                return
            fields = dict(key)
            fields["last_seen"] = snap.last_seen
            if snap.last_error and snap.last_error != self._mirror_link_error:
                fields["last_error"] = snap.last_error  # operator-visible, e.g. access code
            self._store.mirror(self.config.printer_id, fields)
            self._mirror_key = key
            self._mirror_state = key["state"]
            self._mirror_at = now
            self._mirror_link_error = snap.last_error

    # -- restart safety --------------------------------------------------------------------
    def _recover(self, snap: DriverSnapshot, record: PrinterRecord) -> None:
        """After a restart: settle jobs this printer held but no longer tracks, then clear the
        start marker a crash may have left (an adopted print is written first, so the
        orchestrator sees an open print from then on)."""
        current = record.current_print
        for job in self._store.active_jobs(self.config.printer_id):
            if current is not None and current.job_id == job.id:
                continue  # tracked: _track finishes it
            live = snap.live
            if live.state in BUSY_STATES and live.subtask_name == subtask_name_for(job.file):
                log.info("adopting job %s already running on the printer", job.id)
                self._print_started(job.file, job.id, record.bed)
                self._store.set_job_status(
                    job.id, self.config.printer_id, JobStatus.PRINTING, self._now()
                )
            else:
                self._store.job_attempt_failed(
                    job,
                    self.config.printer_id,
                    "printer-service restarted during dispatch",
                    self._now(),
                )
        if record.starting is not None:
            log.info("clearing the start marker left by a previous run (%s)", record.starting.what)
        # Unconditionally (one small write per process start), unless a manual start (API
        # thread) already owns the marker: it clears it itself.
        self._starting_left = True
        self._clear_left_marker()

    def _track_untracked(self, snap: DriverSnapshot, record: PrinterRecord) -> bool:
        """Track a print the printer runs although printer-service did not start it."""
        state = snap.live.state
        if not runs_untracked_print(
            state, print_open=record.print_open, starting=self._dispatch_lock.locked()
        ):
            return False
        # A manual start (API thread) writes its print before it releases the dispatch lock:
        # read the record again now that the lock is free, so that print is not taken for a
        # foreign one.
        record = self._store.load_printer(self.config.printer_id)
        if not runs_untracked_print(
            state, print_open=record.print_open, starting=self._dispatch_lock.locked()
        ):
            return False
        name = snap.live.gcode_file or snap.live.subtask_name or "unknown"
        log.warning(
            "the printer is printing %s, which printer-service did not start: tracking it so "
            "that its plate goes to the robot when it ends",
            name,
        )
        self._print_started(name, None, record.bed)
        return True

    # -- end of a print --------------------------------------------------------------------
    def _track(self, snap: DriverSnapshot, record: PrinterRecord) -> bool:
        """Handle the end of the tracked print; True if one was handled."""
        current = record.current_print
        end = print_end(
            snap.live.state, error_text=describe_error(snap.live), print_open=record.print_open
        )
        if end is None or current is None:
            return False
        self._handle_end(current, end, record.bed)
        return True

    def _handle_end(self, current: CurrentPrint, end: PrintEnd, bed: PrinterBed | None) -> None:
        """Every step is idempotent per print id; the last one closes the print."""
        pid = self.config.printer_id
        now = self._now()
        self._store.record_print_end(
            pid, current, finished=end.finished, error=end.error, ended_at=now
        )
        bed_id = current.bed_id if current.bed_id is not None else (bed.bed_id if bed else None)
        # Agreement: the plate is with_part BEFORE the ready notification is enqueued.
        self._store.mark_plate_with_part(pid, bed_id)
        if not end.finished:
            self.last_error = f"print {current.file} failed: {end.error}"
            self._store.set_last_error(pid, self.last_error)
        if should_notify_ready(end, ready_on_failed=self.config.ready_on_failed):
            entry = OutboxEntry(
                id=current.print_id, printer_id=pid, queue=READY_QUEUE, created_at=now
            )
            if self._store.add_outbox(entry) and self._outbox is not None:
                self._outbox.wake()
        self._store.close_current_print(pid, current, finished=end.finished, ended_at=now)
        self.prints_ended += 1
        log.info(
            "print %s of %s %s%s",
            current.print_id,
            current.file,
            "finished" if end.finished else "failed",
            f": {end.error}" if end.error else "",
        )

    # -- dispatch ----------------------------------------------------------------------------
    def _decide(
        self, snap: DriverSnapshot, record: PrinterRecord, *, manual: bool
    ) -> tuple[DispatchDecision, BedType | None]:
        bed = record.bed
        bed_type = (
            self._store.bed_type(bed.bed_id) if bed is not None and bed.bed_id is not None else None
        )
        decision = decide_dispatch(
            enabled=manual or self.config.auto_dispatch,
            state=snap.live.state,
            bed=bed,
            bed_type=bed_type,
            print_open=record.print_open,
            cooling_down=not manual and self._clock() < self._cooldown_until,
            swap=record.swap,
        )
        return decision, bed_type

    def _maybe_dispatch(self, snap: DriverSnapshot, record: PrinterRecord) -> None:
        decision, bed_type = self._decide(snap, record, manual=False)
        if not decision.go or bed_type is None:
            self.dispatch_reason = decision.reason
            return
        if not self._dispatch_lock.acquire(blocking=False):
            self.dispatch_reason = "a manual print is starting"
            return
        pid, model = self.config.printer_id, self.config.model.value
        no_job = f"no queued job for a {bed_type.value} plate"
        try:
            # A read first: the start marker names the job, and an idle printer with an empty
            # queue writes nothing on its ticks.
            candidate = self._store.next_job(pid, model, bed_type)
            if candidate is None:
                self.dispatch_reason = no_job
                return
            refusal = self._mark_starting(f"job {candidate.id}")
            if refusal is not None:
                self.dispatch_reason = refusal
                return
            held = False
            try:
                job = self._store.claim_job(pid, model, bed_type, self._now(), job_id=candidate.id)
                if job is None:  # another printer took it between the read and the claim
                    self.dispatch_reason = no_job
                    return
                self.dispatch_reason = f"starting job {job.id}"
                held = self._run_job(job, record.bed)
            finally:
                if not held:
                    self._clear_starting()
        finally:
            self._dispatch_lock.release()

    def _run_job(self, job: JobDoc, bed: PrinterBed | None) -> bool:
        """Start a claimed job; True if it is held for a late start (the marker stays)."""
        pid = self.config.printer_id
        log.info("claimed job %s (%s)", job.id, job.file)
        try:
            if not self._store.set_job_status(job.id, pid, JobStatus.UPLOADING, self._now()):
                return False  # taken away meanwhile (cancelled)
            self._start(job.file, job.id, bed)
        except StartUnconfirmed as err:
            self._hold_for_late_start(err, job, job.file, bed)
            return True
        except DispatchFailed as err:
            log.warning("job %s failed to start: %s", job.id, err)
            self.last_error = f"job {job.id}: {err}"
            self._store.job_attempt_failed(job, pid, str(err), self._now())
            self._store.set_last_error(pid, self.last_error)
            self._cooldown_until = self._clock() + self.config.dispatch_retry_s
            return False
        self._store.set_job_status(job.id, pid, JobStatus.PRINTING, self._now())
        return False

    # -- the start marker (printers.starting) ----------------------------------------------
    def _mark_starting(self, what: str) -> str | None:
        """Set ``printers.starting`` unless the robot is swapping the plate; None when set,
        else the refusal (naming the swap, read back: it began after the decision)."""
        pid = self.config.printer_id
        start = PrinterStart(what=what, since=self._now())
        if self._store.mark_starting(pid, start):
            self._starting_left = True
            self._record = replace(self._record, starting=start)
            return None
        record = self._store.load_printer(pid)
        self._record = record
        refusal = swap_refusal(record.swap) if record.swap else SWAP_VANISHED
        log.info("not starting %s: %s", what, refusal)
        return refusal

    def _clear_starting(self) -> None:
        """The start is over (tracked or given up): clear the marker. A failure is retried on
        the next tick: a marker left set would keep the robot from the printer."""
        try:
            self._store.clear_starting(self.config.printer_id)
        except StoreUnavailable as err:
            log.warning("could not clear printers.starting (%s): retrying on the next tick", err)
            return
        self._starting_left = False
        self._record = replace(self._record, starting=None)

    def _clear_left_marker(self) -> None:
        # Not while a start holds the marker: one under way (lock) or a late one waited for.
        if self._pending_start is not None or not self._dispatch_lock.acquire(blocking=False):
            return
        try:
            if self._pending_start is None:
                self._clear_starting()
        finally:
            self._dispatch_lock.release()

    def _hold_for_late_start(
        self, err: StartUnconfirmed, job: JobDoc | None, file: str, bed: PrinterBed | None
    ) -> None:
        """Keep the job (and the printer) for another start timeout: a late ack is a print."""
        wait_s = self.config.start_confirm_timeout_s
        self._pending_start = _PendingStart(
            job, file, bed, err.before, err.subtask_name, self._clock() + wait_s
        )
        self.last_error = (
            f"{'job ' + job.id if job else file}: {err}; waiting {wait_s:.0f} s more in case it "
            "starts late (nothing else is sent meanwhile)"
        )
        self.dispatch_reason = "waiting for a start the printer has not confirmed"
        log.warning("%s", self.last_error)
        self._store.set_last_error(self.config.printer_id, self.last_error)

    def _settle_pending_start(self, snap: DriverSnapshot) -> None:
        """Adopt a print the printer started late, or give the job up once the wait is over."""
        pending = self._pending_start
        assert pending is not None
        outcome = late_start(
            snap.transitions,
            after=pending.before,
            subtask_name=pending.subtask_name,
            now=self._clock(),
            until=pending.until,
        )
        if outcome is LateStart.WAIT:
            self.dispatch_reason = "waiting for a start the printer has not confirmed"
            return
        pid = self.config.printer_id
        self._pending_start = None
        job_id = pending.job.id if pending.job else None
        if outcome is LateStart.ADOPT:
            log.warning("the printer started %s late: tracking it as a print", pending.file)
            self._print_started(pending.file, job_id, pending.bed)
            if job_id is not None:
                self._store.set_job_status(job_id, pid, JobStatus.PRINTING, self._now())
            self._clear_starting()
            return
        why = (
            f"printer did not start within {2 * self.config.start_confirm_timeout_s:.0f} s "
            f"(state {snap.live.state.value})"
        )
        if pending.job is not None:
            self._store.job_attempt_failed(pending.job, pid, why, self._now())
        self._cooldown_until = self._clock() + self.config.dispatch_retry_s
        self._clear_starting()

    def print_file(self, name: str) -> str:
        """Start stored file ``name`` now (POST /print), through the same upload path.

        Raises :class:`NotDispatchable` (the robot is swapping the plate, printer or plate not
        ready, another start running), ``GcodeNotFound``, or :class:`DispatchFailed`. Returns
        the print id.
        """
        if not self._dispatch_lock.acquire(timeout=1.0):
            raise NotDispatchable("another print is being started")
        try:
            snap = self.driver.snapshot()
            record = self._store.load_printer(self.config.printer_id)
            decision, _ = self._decide(snap, record, manual=True)
            if not decision.go:
                raise NotDispatchable(decision.reason)
            if self._pending_start is not None:
                raise NotDispatchable("waiting for a start the printer has not confirmed")
            if not self._gcode.exists(name):
                raise GcodeNotFound(name)
            refusal = self._mark_starting(f"file {name}")
            if refusal is not None:
                raise NotDispatchable(refusal)
            held = False
            try:
                return self._start(name, None, record.bed)
            except StartUnconfirmed as err:
                self._hold_for_late_start(err, None, name, record.bed)
                held = True
                raise
            finally:
                if not held:
                    self._clear_starting()
        finally:
            self._dispatch_lock.release()

    def _start(self, file: str, job_id: str | None, bed: PrinterBed | None) -> str:
        """Upload, send the start, and wait until the printer really starts; the print id."""
        try:
            content = self._gcode.get(file)
            remote, package, md5 = prepare(file, content)
        except (GcodeStoreError, PackageError) as err:
            raise DispatchFailed(str(err)) from err
        subtask = subtask_name_for(file)
        try:
            self.driver.upload(remote, package)
            before = self.driver.snapshot().transition_count
            ticket = self.driver.start_print(
                StartRequest(file=remote, subtask_name=subtask, md5=md5)
            )
            self._await_start(ticket, before, subtask)
        except StartUnconfirmed:
            raise  # the printer may still run the file: it stays on its storage
        except (DriverError, DispatchFailed) as err:
            self._delete_quietly(remote)
            raise DispatchFailed(str(err)) from err
        return self._print_started(file, job_id, bed)

    def _await_start(self, ticket: str, before: int, subtask: str) -> None:
        deadline = self._clock() + self.config.start_confirm_timeout_s
        while True:
            snap = self.driver.snapshot()
            self._mirror(snap)
            if start_confirmed(snap.transitions, after=before, subtask_name=subtask):
                return
            refusal = self.driver.refusal(ticket)
            if refusal and busy_refusal(refusal, snap.live.print_error):
                raise StartUnconfirmed(
                    f"printer answered '{refusal}' although it was idle: it may be starting "
                    "this very file (a repeated delivery)",
                    before=before,
                    subtask_name=subtask,
                )
            if refusal:
                raise DispatchFailed(f"printer refused the print: {refusal}")
            if self._clock() >= deadline:
                raise StartUnconfirmed(
                    f"printer did not start within {self.config.start_confirm_timeout_s:.0f} s "
                    f"(state {snap.live.state.value}, {describe_error(snap.live) or 'no error'})",
                    before=before,
                    subtask_name=subtask,
                )
            if self._stop.wait(0.05):
                raise DispatchFailed("printer-service stopping")

    def _print_started(self, file: str, job_id: str | None, bed: PrinterBed | None) -> str:
        print_id = uuid.uuid4().hex
        started_at = self._now()
        bed_id = bed.bed_id if bed is not None else None
        doc = PrintDoc(
            id=print_id,
            printer_id=self.config.printer_id,
            job_id=job_id,
            file=file,
            bed_id=bed_id,
            started_at=started_at,
        )
        current = CurrentPrint(
            print_id=print_id, job_id=job_id, file=file, bed_id=bed_id, started_at=started_at
        )
        self._store.print_started(self.config.printer_id, doc, current)
        self._record = replace(self._record, bed=bed, current_print=current)
        self.prints_started += 1
        log.info("print %s of %s started (job %s)", print_id, file, job_id)
        return print_id

    def _delete_quietly(self, remote: str) -> None:
        # Leave no phantom file behind a failed dispatch (6.3).
        try:
            self.driver.delete_file(remote)
        except DriverError as err:
            log.debug("could not delete %s after a failed dispatch: %s", remote, err)

    # -- status ------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """The JSON of GET /status (documented in README.md)."""
        snap = self.driver.snapshot()
        live = snap.live
        record = self._record
        return {
            "printer_id": self.config.printer_id,
            "model": self.config.model.value,
            "driver": self.config.driver,
            "serial": self.config.serial,
            "state": live.state.value,
            "gcode_state": live.gcode_state,
            "online": snap.online,
            "link": snap.link.value,
            "link_error": snap.last_error,
            "progress_pct": live.progress_pct,
            "remaining_min": live.remaining_min,
            "layer": live.layer,
            "total_layers": live.total_layers,
            "temps": live.temps.model_dump(),
            "subtask_name": live.subtask_name,
            "gcode_file": live.gcode_file,
            "print_error": live.print_error,
            "print_error_code": live.print_error_code,
            "hms": [h.model_dump() for h in live.hms],
            "last_seen": snap.last_seen.isoformat() if snap.last_seen else None,
            "last_error": self.last_error or snap.last_error,
            "bed": record.bed.model_dump(mode="json") if record.bed else None,
            "current_print": (
                record.current_print.model_dump(mode="json") if record.current_print else None
            ),
            "swap": record.swap.model_dump(mode="json") if record.swap else None,
            "starting": record.starting.model_dump(mode="json") if record.starting else None,
            "dispatch": {"auto": self.config.auto_dispatch, "reason": self.dispatch_reason},
        }
