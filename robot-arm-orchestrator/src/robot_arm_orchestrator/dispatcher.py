"""The dispatcher: one thread that runs the task log, one robot motion at a time.

For each task: re-check the interlocks (the door interlock on printer-service's live record, the
plate MongoDB says is in the printer, a reserved clean plate for a replace, the robot not busy
or in error, MQTT connected), mark the printer as being swapped and the task ``sent`` durably,
publish the job (QoS 1, PUBACK awaited), then wait for the correlated outcome. Done: update the
plate inventory, then mark ``done``.

Holds: a task the door interlock refuses before anything was sent is held for its printer only
(the others go on); one held only because its own print has not ended is re-armed when that
print ends. A task sent whose outcome is in doubt (error, timeout, no PUBACK) is held for the
arm: nothing more is sent until a person resolved it through the API. On start, a task found
``sent`` is held for the arm, or, when the robot echoes job ids, reconciled from the robot's
statuses (done when the arm confirms that job, held otherwise): the orchestrator never re-sends
a motion by itself.
"""

import logging
import queue
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from pantheon_common.errors import StoreUnavailable
from pantheon_common.farm import FarmLayout
from pantheon_common.log import OutageLog, backoff_delays
from pantheon_contracts.beds import BedType
from pantheon_contracts.robot import RobotJob, RobotState
from pantheon_contracts.store import RobotTaskStatus
from robot_arm_orchestrator.adapters.robot import RobotLink, RobotLinkDown, RobotPublishDoubt
from robot_arm_orchestrator.adapters.store import (
    Hold,
    TaskConflict,
    TaskStore,
    hold_until,
    stored_datetime,
    task_view,
)
from robot_arm_orchestrator.crash import CrashPoints
from robot_arm_orchestrator.domain.correlation import Correlator, Outcome, Verdict
from robot_arm_orchestrator.domain.homing import due_homing_slot
from robot_arm_orchestrator.domain.interlock import PrinterLive, door_check
from robot_arm_orchestrator.domain.plates import (
    PrinterPlace,
    bed_type_for_next_job,
    hand_load_problem,
    plate_candidates,
)
from robot_arm_orchestrator.domain.tasks import (
    Actor,
    Blocked,
    HoldScope,
    HoldUntil,
    Idle,
    Resolution,
    TaskKind,
    blocked_printers,
    next_task,
    person_may_mark_done,
    plan_homing,
    task_id_for,
)
from robot_arm_orchestrator.settings import Settings

log = logging.getLogger(__name__)

Document = Mapping[str, Any]


class ResolveError(Exception):
    """A person's resolution is not possible (``status`` is the HTTP status to answer)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class DispatchInfo:
    """What GET /dispatch shows."""

    state: str = "starting"
    detail: str = ""
    current_task: str | None = None
    blocked_printers: tuple[int, ...] = ()
    """Printers whose swaps wait for a person (a task held for that printer)."""


class Metrics:
    """The orchestrator's own Prometheus series."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.finished = Counter(
            "robot_tasks_finished",
            "Robot tasks that reached done/held/failed/aborted, by kind and status.",
            ["kind", "status"],
            registry=registry,
        )
        self.sent = Counter(
            "robot_jobs_sent", "Robot jobs published, by kind.", ["kind"], registry=registry
        )
        self.held = Gauge("robot_tasks_held", "Tasks waiting for a person.", registry=registry)
        self.interlock = Counter(
            "robot_interlock_refusals",
            "Takes and replaces the door interlock refused (held, never sent), by kind.",
            ["kind"],
            registry=registry,
        )
        self.forged = Counter(
            "robot_status_contradicted",
            "'available' statuses naming the job in flight that the arm contradicted.",
            registry=registry,
        )
        self.paused = Gauge("robot_dispatch_paused", "1 while paused.", registry=registry)


class Dispatcher:
    """Runs the task log; :meth:`resolve`, :meth:`pause` and :meth:`nudge` come from the API."""

    def __init__(
        self,
        store: TaskStore,
        robot: RobotLink,
        layout: FarmLayout,
        settings: Settings,
        crash: CrashPoints,
        metrics: Metrics,
    ) -> None:
        self._store = store
        self._robot = robot
        self._layout = layout
        self._settings = settings
        self._crash = crash
        self._metrics = metrics
        self._correlator = Correlator(
            echo=settings.robot_echoes_job_id, confirm_s=settings.robot_confirm_s
        )
        self._rack_rows = {r.id: r.row for r in layout.racks}
        self._rack_slots = {r.id: r.slots for r in layout.racks}
        self._nudged = threading.Event()
        self._stop = threading.Event()
        self._stop_at: float | None = None
        self._lock = threading.Lock()  # serialises dispatcher steps and a person's resolutions
        self._last_plate_poll = 0.0
        self._look_for_plates = False
        self._homing_slot: str | None = None
        self._subscribed = False
        self._outage = OutageLog(log, "MongoDB (dispatcher)")
        self._adopt: str | None = None
        """A task found ``sent`` at start, to reconcile from the robot's statuses (echo)."""
        self.info = DispatchInfo()
        self.recovered = threading.Event()

    # -- control -----------------------------------------------------------------------------
    def nudge(self) -> None:
        """Look at the task log now (a task was recorded, a plate was marked clean...)."""
        self._nudged.set()

    def stop(self) -> None:
        """Return after the task in flight (at most ``shutdown_grace_s``)."""
        self._stop_at = time.monotonic()
        self._stop.set()
        self._nudged.set()

    def pause(self, reason: str) -> None:
        """Persistently stop sending new tasks (a task in flight still completes)."""
        self._store.set_paused(True, reason or "paused through the API")
        self.nudge()

    def resume(self) -> None:
        """Send tasks again."""
        self._store.set_paused(False, "")
        self.nudge()

    def start_thread(self) -> threading.Thread:
        """Run :meth:`run` in a daemon thread."""
        thread = threading.Thread(target=self.run, name="dispatcher", daemon=True)
        thread.start()
        return thread

    # -- loop --------------------------------------------------------------------------------
    def run(self) -> None:
        """Recover, then dispatch until stopped; MongoDB outages are waited out."""
        delays = backoff_delays()
        while not self._stop.is_set():
            try:
                if not self.recovered.is_set():
                    self._recover()
                    self.recovered.set()
                self._step()
                self._outage.success()
                delays = backoff_delays()
            except StoreUnavailable as err:
                self._outage.failure(err)
                self.info = DispatchInfo("store unavailable", str(err))
                self._stop.wait(next(delays))
            except TaskConflict as err:
                log.info("a task changed under the dispatcher (a person's action?): %s", err)
            except Exception:
                # Fail closed: whatever was in flight is held for a person, then go on.
                log.exception("dispatcher step failed; holding any task left sent")
                self._correlator.clear()
                try:
                    self._store.hold_sent_tasks("dispatcher error while the task was sent")
                except StoreUnavailable as err:
                    self._outage.failure(err)
                self._stop.wait(next(delays))
        self.info = DispatchInfo("stopped")

    def _recover(self) -> None:
        """At start: a task found ``sent`` is held for a person, or, when the robot echoes
        job ids, adopted: its outcome is read from the robot's statuses (``_reconcile``)."""
        sent = self._store.sent_tasks()
        if self._settings.robot_echoes_job_id and len(sent) == 1 and sent[0].get("job_id"):
            self._adopt = str(sent[0]["_id"])
            log.warning(
                "task %s was in flight at restart: reconciling it from the robot's statuses",
                self._adopt,
            )
            return
        why = (
            "orchestrator restarted while the task was sent: a person must check whether the "
            "robot did it (resolve done, retry or abort)"
        )
        for task_id in self._store.hold_sent_tasks(why):
            log.warning("task %s was in flight at restart: held", task_id)

    def _wait(self, state: str, detail: str = "") -> None:
        self.info = DispatchInfo(state, detail, blocked_printers=self.info.blocked_printers)
        self._drain_statuses()
        if self._nudged.wait(self._settings.dispatch_poll_s):
            self._look_for_plates = True  # a nudge: re-check waiting replaces at once
        self._nudged.clear()

    def _drain_statuses(self) -> None:
        while True:
            try:
                self._robot.events.get_nowait()
            except queue.Empty:
                return

    def _step(self) -> None:
        paused, reason = self._store.paused()
        self._metrics.paused.set(1 if paused else 0)
        if paused:
            self._wait("paused", reason)
            return
        self._schedule_homing()
        if self._adopt is not None:
            self._reconcile(self._adopt)
            return
        with self._lock:
            docs = self._store.open_tasks()
            if self._rearm(docs):
                docs = self._store.open_tasks()
            self._metrics.held.set(sum(1 for d in docs if d["status"] == "held"))
            if any(d["status"] == RobotTaskStatus.WAITING.value for d in docs):
                now = time.monotonic()
                poll_due = now - self._last_plate_poll >= self._settings.plate_poll_s
                if self._look_for_plates or poll_due:
                    self._look_for_plates = False
                    self._last_plate_poll = now
                    if self._promote_waiting(docs):
                        docs = self._store.open_tasks()
            views = [task_view(d) for d in docs]
            open_takes = {v.group for v in views if v.kind is TaskKind.TAKE}
            replace_groups = {
                v.group
                for v in views
                if v.kind is TaskKind.REPLACE and v.group is not None and v.group not in open_takes
            }
            closed = [task_view(d) for d in self._store.takes_of(sorted(replace_groups))]
            decision = next_task(views, closed)
            self.info.blocked_printers = tuple(sorted(blocked_printers(views)))
        if isinstance(decision, Blocked):
            self._wait("blocked", decision.reason)
            return
        if isinstance(decision, Idle):
            self._wait("idle")
            return
        state = self._robot.last_state
        if state is not None and state is not RobotState.AVAILABLE:
            status = self._robot.last_status
            said = status.status if status else state
            self._wait("waiting for the robot", f"robot reports {said}")
            return
        if not self._robot.connected:
            self._wait("waiting for MQTT", "broker not connected; nothing sent")
            return
        if not self._subscribed:
            self._robot.ensure_subscribed()
            self._subscribed = True
        doc = next(d for d in docs if d["_id"] == decision.task_id)
        self._execute(doc)

    def _schedule_homing(self) -> None:
        if not self._settings.daily_homing:
            return
        slot = due_homing_slot(datetime.now(UTC), self._settings.homing_time_utc)
        if slot is None or slot == self._homing_slot:
            return
        if self._store.record([plan_homing(slot)], source="schedule", note="daily homing"):
            log.info("daily homing %s recorded", slot)
        self._homing_slot = slot

    def _rearm(self, docs: list[dict[str, object]]) -> bool:
        """Held tasks that wait only for their print's end, whose print has ended: pending
        again (the door interlock is checked once more before they are published)."""
        rearmed = False
        for doc in docs:
            if doc["status"] != RobotTaskStatus.HELD.value or hold_until(doc) is None:
                continue
            if int(str(doc.get("attempts") or 0)) != 0:
                continue  # sent once: only a person may release it
            print_id = doc.get("print_id")
            if not print_id or not self._store.print_ended(str(print_id)):
                continue
            task_id = str(doc["_id"])
            self._store.move(
                task_id,
                RobotTaskStatus.HELD,
                RobotTaskStatus.PENDING,
                Actor.PRINT_END,
                note=f"print {print_id} ended: re-armed (the interlock is checked again)",
                extra={"error": None},
            )
            log.info("task %s re-armed: print %s ended", task_id, print_id)
            rearmed = True
        return rearmed

    def _reconcile(self, task_id: str) -> None:
        """A task found ``sent`` at start (echo mode): wait for the robot to say what became of
        its job. ``available`` naming it (confirmed) is done, anything else in doubt is held."""
        doc = self._store.get(task_id)
        self._adopt = None
        if doc is None or doc["status"] != RobotTaskStatus.SENT.value:
            return
        kind = TaskKind(str(doc["kind"]))
        job = RobotJob.parse(str(doc["payload"]))
        job_id = str(doc["job_id"])
        sent_at = stored_datetime(doc.get("sent_at"))
        remaining = self._settings.timeout_for(kind)
        if sent_at is not None:
            elapsed = (datetime.now(UTC) - sent_at).total_seconds()
            remaining = max(0.0, remaining - elapsed)
        self.info = DispatchInfo("reconciling", f"job {job_id} of task {task_id}", task_id)
        self._correlator.adopt(job_id)
        verdict = self._await(
            max(remaining, self._settings.robot_reconcile_s),
            silence_s=self._settings.robot_reconcile_s,
            job_id=job_id,
        )
        self._correlator.clear()
        if verdict is None:
            self._adopt = task_id  # stopping: still sent, looked at again on the next start
            return
        if verdict.outcome is Outcome.DONE:
            self._finish_done(doc, kind, job, f"reconciled after a restart: {verdict.reason}")
        else:
            self._finish_held(
                task_id,
                kind,
                f"orchestrator restarted while the task was sent, and {verdict.reason}: a "
                "person must check whether the robot did it (resolve done, retry or abort)",
            )

    # -- plates ------------------------------------------------------------------------------
    def _place(self, printer_id: int) -> PrinterPlace:
        spec = self._layout.printer(printer_id)
        return PrinterPlace(
            printer_id=printer_id,
            model=spec.model.value,
            row=spec.where.row,
            col=spec.where.col,
            default_bed_type=spec.bed_type,
        )

    def _reserve(self, replace: Document) -> int | None:
        """The plate reserved for this replace: adopt an earlier reservation, or reserve the
        nearest clean plate of the type the printer's next job needs; None if none is clean."""
        task_id = str(replace["_id"])
        status = RobotTaskStatus(replace["status"])
        existing = replace.get("bed_id") or self._store.reserved_plate(task_id)
        if existing is not None:
            bed_id = int(str(existing))
            self._store.set_fields(task_id, status, {"bed_id": bed_id})
            return bed_id
        printer_id = int(str(replace["printer_id"]))
        place = self._place(printer_id)
        jobs = self._store.next_queued_jobs(printer_id, place.model)
        bed_type: BedType = bed_type_for_next_job(jobs, place)
        candidates = plate_candidates(
            self._store.clean_plates(bed_type), place, bed_type, self._rack_rows, self._rack_slots
        )
        for plate in candidates:
            if self._store.reserve_plate(plate.bed_id, task_id):
                self._store.set_fields(
                    task_id,
                    status,
                    {"bed_id": plate.bed_id, "bed_type": bed_type.value, "error": None},
                )
                log.info("plate %d (%s) reserved for %s", plate.bed_id, bed_type, task_id)
                return plate.bed_id
        self._store.set_fields(
            task_id,
            status,
            {"bed_type": bed_type.value, "error": f"no clean {bed_type.value} plate in the racks"},
        )
        return None

    def _promote_waiting(self, docs: list[dict[str, object]]) -> bool:
        promoted = False
        for doc in docs:
            if doc["status"] != RobotTaskStatus.WAITING.value:
                continue
            if self._reserve(doc) is not None:
                self._store.move(
                    str(doc["_id"]),
                    RobotTaskStatus.WAITING,
                    RobotTaskStatus.PENDING,
                    Actor.SYSTEM,
                    note="a clean plate was reserved",
                )
                promoted = True
        return promoted

    # -- one task ----------------------------------------------------------------------------
    def _hold_pending(self, task_id: str, reason: str, until: HoldUntil | None = None) -> None:
        """Nothing was sent: held for its printer only (the arm is free for the others)."""
        log.warning("task %s held before sending: %s", task_id, reason)
        self._store.move(
            task_id,
            RobotTaskStatus.PENDING,
            RobotTaskStatus.HELD,
            Actor.SYSTEM,
            note=reason,
            extra=Hold(reason, HoldScope.PRINTER, until).fields(),
        )
        self._metrics.finished.labels(task_id.rsplit(":", 1)[-1], "held").inc()

    def _door_refusal(self, doc: Document, kind: TaskKind, printer: PrinterLive) -> bool:
        """Check the door interlock just before publishing; hold the task if it refuses."""
        print_id = doc.get("print_id")
        synthetic = bool(doc.get("print_id_synthetic")) or not print_id
        check = door_check(
            kind,
            printer,
            print_id=None if synthetic else str(print_id),
            print_ended=None if synthetic else self._store.print_ended(str(print_id)),
            now=datetime.now(UTC),
            max_age_s=self._settings.printer_report_max_age_s,
            group=str(print_id) if print_id else None,
        )
        if check.safe:
            return False
        self._metrics.interlock.labels(kind.value).inc()
        self._hold_pending(
            str(doc["_id"]), check.reason, HoldUntil.PRINT_END if check.until_print_end else None
        )
        return True

    def _execute(self, doc: Document) -> None:
        task_id = str(doc["_id"])
        kind = TaskKind(doc["kind"])
        job: RobotJob
        load_next = False
        if kind is TaskKind.HOMING:
            job = RobotJob.homing()
        else:
            printer_id = int(str(doc["printer_id"]))
            printer = self._store.printer(printer_id)
            if printer is None:
                self._hold_pending(task_id, f"printer {printer_id} is not in MongoDB any more")
                return
            if self._door_refusal(doc, kind, printer):
                return
            if kind is TaskKind.TAKE:
                bed_id = doc.get("bed_id")
                if bed_id is None:
                    self._hold_pending(task_id, "the plate in the printer has no known id")
                    return
                bed_id = int(str(bed_id))
                if printer.bed is None or printer.bed.bed_id != bed_id:
                    now_in = "no plate" if printer.bed is None else f"plate {printer.bed.bed_id}"
                    self._hold_pending(
                        task_id, f"MongoDB says printer {printer_id} holds {now_in}, not {bed_id}"
                    )
                    return
                load_next = self._reserve_for_take(str(doc["print_id"]))
                job = RobotJob.take(printer_id, bed_id)
            else:
                bed = self._reserve(doc)
                if bed is None:
                    self._store.move(
                        task_id,
                        RobotTaskStatus.PENDING,
                        RobotTaskStatus.WAITING,
                        Actor.SYSTEM,
                        note="no clean plate of the needed type: waiting for an operator",
                    )
                    return
                job = RobotJob.replace(printer_id, bed)
            print_id = str(doc["print_id"]) if doc.get("print_id") else None
            if not self._store.claim_printer(printer_id, task_id, print_id):
                # printer-service began a start between the check and the claim
                fresh = self._store.printer(printer_id)
                what = fresh.starting.what if fresh and fresh.starting else "another swap"
                self._hold_pending(
                    task_id,
                    f"printer {printer_id} could not be marked as being swapped "
                    f"(printer-service is starting {what})",
                )
                return
        self._send(doc, kind, job, load_next)

    def _reserve_for_take(self, print_id: str) -> bool:
        """Reserve the clean plate of the take's replace before the take goes out; True when
        one is reserved (the replace then follows at once, nothing comes between)."""
        replace = self._store.get(task_id_for(print_id, TaskKind.REPLACE))
        if replace is None or replace["status"] not in ("pending", "waiting"):
            return False
        reserved = self._reserve(replace) is not None
        if replace["status"] == "waiting" and reserved:
            self._store.move(
                str(replace["_id"]),
                RobotTaskStatus.WAITING,
                RobotTaskStatus.PENDING,
                Actor.SYSTEM,
                note="a clean plate was reserved",
            )
        elif replace["status"] == "pending" and not reserved:
            self._store.move(
                str(replace["_id"]),
                RobotTaskStatus.PENDING,
                RobotTaskStatus.WAITING,
                Actor.SYSTEM,
                note="no clean plate of the needed type: waiting for an operator",
            )
        return reserved

    def _send(self, doc: Document, kind: TaskKind, job: RobotJob, load_next: bool) -> None:
        task_id = str(doc["_id"])
        job_id = uuid.uuid4().hex
        if self._settings.robot_echoes_job_id:
            job = job.model_copy(update={"job_id": job_id})
        payload = job.to_json().decode()
        if not self._robot.connected:
            self.info = DispatchInfo("waiting for MQTT", "broker not connected; nothing sent")
            return
        self._store.move(
            task_id,
            RobotTaskStatus.PENDING,
            RobotTaskStatus.SENT,
            Actor.SYSTEM,
            note=f"job {job_id}",
            extra={
                "job_id": job_id,
                "payload": payload,
                "load_next": load_next,
                "sent_at": datetime.now(UTC),
                "error": None,
                "bed_id": job.bed_id,
            },
            inc={"attempts": 1},
        )
        self.info = DispatchInfo("in flight", payload, task_id)
        self._correlator.sent(job_id, self._robot.last_seq)
        try:
            self._robot.publish(job, self._settings.publish_timeout_s)
        except RobotLinkDown as err:
            self._finish_held(task_id, kind, f"MQTT refused the publish, nothing was sent: {err}")
            return
        except RobotPublishDoubt as err:
            self._finish_held(task_id, kind, f"no PUBACK, the job may have gone out: {err}")
            return
        self._metrics.sent.labels(kind.value).inc()
        log.info("sent %s %s: %s", kind, task_id, payload)
        self._crash.reached(f"after_sent:{kind.value}")
        verdict = self._await(self._settings.timeout_for(kind))
        self._correlator.clear()
        if verdict is None:
            log.warning("stopping with task %s in flight: it will be held on restart", task_id)
            return
        if verdict.outcome is Outcome.DONE:
            self._finish_done(doc, kind, job, verdict.reason)
        else:
            self._finish_held(task_id, kind, verdict.reason)
        self.info = DispatchInfo("idle")

    def _finish_done(self, doc: Document, kind: TaskKind, job: RobotJob, reason: str) -> None:
        task_id = str(doc["_id"])
        self._complete(doc, kind, job)
        self._store.move(
            task_id, RobotTaskStatus.SENT, RobotTaskStatus.DONE, Actor.SYSTEM, note=reason
        )
        self._metrics.finished.labels(kind.value, "done").inc()
        log.info("%s %s done", kind, task_id)
        self._crash.reached(f"after_done:{kind.value}")

    def _finish_held(self, task_id: str, kind: TaskKind, reason: str) -> None:
        """The task was sent and its outcome is in doubt: held for the arm (everything waits)."""
        log.warning("task %s held: %s", task_id, reason)
        self._store.move(
            task_id,
            RobotTaskStatus.SENT,
            RobotTaskStatus.HELD,
            Actor.SYSTEM,
            note=reason,
            extra=Hold(reason, HoldScope.ARM).fields(),
        )
        self._metrics.finished.labels(kind.value, "held").inc()
        self.info = DispatchInfo("blocked", f"task {task_id} is held: {reason}")

    def _await(
        self, timeout_s: float, *, silence_s: float | None = None, job_id: str | None = None
    ) -> Verdict | None:
        """The correlated outcome; ERROR on timeout (or, with ``silence_s``, when no status
        naming ``job_id`` came that long); None when stopping past the grace time."""
        start = time.monotonic()
        deadline = start + timeout_s
        heard = False
        contradicted = self._correlator.contradicted
        while True:
            now = time.monotonic()
            if now >= deadline:
                why = f"no completion from the robot within {timeout_s:g} s"
                return Verdict(Outcome.ERROR, why)
            if silence_s is not None and not heard and now - start >= silence_s:
                why = f"the robot said nothing about job {job_id} within {silence_s:g} s"
                return Verdict(Outcome.ERROR, why)
            if self._stop_at is not None and now - self._stop_at > self._settings.shutdown_grace_s:
                return None
            try:
                event = self._robot.events.get(timeout=min(0.1, deadline - now))
            except queue.Empty:
                verdict = self._correlator.tick(time.monotonic())
            else:
                heard = heard or (job_id is not None and event.status.job_id == job_id)
                verdict = self._correlator.status(event.status, event.seq, time.monotonic())
            if self._correlator.contradicted != contradicted:
                contradicted = self._correlator.contradicted
                self._metrics.forged.inc()
                log.warning(
                    "an 'available' naming job %s was contradicted by the arm (still busy with "
                    "it): ignored as forged or stale",
                    self._correlator.job_id,
                )
            if verdict.outcome is not Outcome.PENDING:
                return verdict

    def _complete(self, doc: Document, kind: TaskKind, job: RobotJob) -> None:
        """Apply a finished motion to the plate inventory (idempotent)."""
        if job.printer_id is None or job.bed_id is None:
            return
        if kind is TaskKind.TAKE:
            self._store.apply_take(job.printer_id, job.bed_id)
        elif kind is TaskKind.REPLACE:
            print_id = doc.get("print_id")
            self._store.apply_replace(
                job.printer_id, job.bed_id, str(print_id) if print_id else None
            )

    # -- a person's decisions ----------------------------------------------------------------
    def resolve(
        self, task_id: str, action: Resolution, note: str = "", bed_id: int | None = None
    ) -> dict[str, object]:
        """Apply a person's decision to a task: done for a held task, a pending take (the
        operator took the plate out by hand) or a pending or waiting replace (the operator
        loaded plate ``bed_id`` by hand), retry for a held task, abort for any open one."""
        if bed_id is not None and action is not Resolution.DONE:
            raise ResolveError("bed_id goes with done (the plate loaded by hand)", 422)
        with self._lock:
            doc = self._store.get(task_id)
            if doc is None:
                raise ResolveError(f"no task {task_id}", 404)
            status = RobotTaskStatus(str(doc["status"]))
            kind = TaskKind(str(doc["kind"]))
            why = note or f"{action.value} by a person"
            self._check_print_over(doc, action)
            try:
                if action is Resolution.DONE:
                    new = self._done_by_person(doc, status, kind, why, bed_id)
                elif action is Resolution.RETRY:
                    if status is not RobotTaskStatus.HELD:
                        raise ResolveError(f"task {task_id} is {status}, not held", 409)
                    new = self._store.move(
                        task_id,
                        status,
                        RobotTaskStatus.PENDING,
                        Actor.PERSON,
                        note=why,
                        extra={"error": None},
                    )
                else:
                    new = self._store.move(
                        task_id, status, RobotTaskStatus.ABORTED, Actor.PERSON, note=why
                    )
                    self._store.release_plate(task_id)
                    if kind is TaskKind.TAKE and doc.get("print_id"):
                        self._abort_replace_of(str(doc["print_id"]), why)
                    self._release_swap(doc)
            except TaskConflict as err:
                raise ResolveError(str(err), 409) from err
            except ValueError as err:  # InvalidTransition
                raise ResolveError(str(err), 409) from err
        self._metrics.finished.labels(kind.value, str(new["status"])).inc()
        self.nudge()
        return new

    def _check_print_over(self, doc: Document, action: Resolution) -> None:
        """409 for done or abort on a swap held until its print ends, while the print runs: it
        follows by itself at the end, and closing it now would leave that end unserved."""
        if action is Resolution.RETRY or hold_until(doc) is not HoldUntil.PRINT_END:
            return
        print_id = doc.get("print_id")
        if print_id and self._store.print_ended(str(print_id)) is False:
            raise ResolveError(
                f"print {print_id} has not ended on printer {doc.get('printer_id')}: this swap "
                "follows by itself once it does (retry checks the printer again now)",
                409,
            )

    def _release_swap(self, doc: Document) -> None:
        """The swap of this task's print is over (closed by a person): clear its marker."""
        printer_id = doc.get("printer_id")
        if printer_id is not None:
            print_id = doc.get("print_id")
            self._store.release_printer(int(str(printer_id)), str(print_id) if print_id else None)

    def _done_by_person(
        self,
        doc: Document,
        status: RobotTaskStatus,
        kind: TaskKind,
        why: str,
        loaded: int | None,
    ) -> dict[str, object]:
        """A person says the motion happened: record its effect on the plates, then done."""
        task_id = str(doc["_id"])
        if loaded is not None and kind is not TaskKind.REPLACE:
            raise ResolveError(f"bed_id names the plate a replace loaded; not for a {kind}", 422)
        if not person_may_mark_done(status, kind, plate_named=loaded is not None):
            raise ResolveError(
                f"task {task_id} is a {status} {kind}: done is for a held task, a pending take "
                "an operator did by hand, or a pending or waiting replace an operator did by "
                'hand with the plate they loaded ({"action": "done", "bed_id": N})',
                409,
            )
        printer_id, bed_id = doc.get("printer_id"), doc.get("bed_id")
        extra: dict[str, object] = {}
        if loaded is not None and printer_id is not None:
            self._check_hand_load(task_id, int(str(printer_id)), loaded)
            self._store.release_plate(task_id)  # a plate reserved for it stays in the rack
            bed_id, extra = loaded, {"bed_id": loaded, "error": None}
        if printer_id is not None and bed_id is not None:
            job = (
                RobotJob.take(int(str(printer_id)), int(str(bed_id)))
                if kind is TaskKind.TAKE
                else RobotJob.replace(int(str(printer_id)), int(str(bed_id)))
            )
            self._complete(doc, kind, job)
        return self._store.move(
            task_id, status, RobotTaskStatus.DONE, Actor.PERSON, note=why, extra=extra
        )

    def _check_hand_load(self, task_id: str, printer_id: int, bed_id: int) -> None:
        """409 unless the inventory agrees: the printer is empty and the plate could go in."""
        printer = self._store.printer(printer_id)
        if printer is not None and printer.bed is not None:
            raise ResolveError(
                f"MongoDB says printer {printer_id} holds plate {printer.bed.bed_id}: "
                "mark its take done first",
                409,
            )
        problem = hand_load_problem(self._store.plate(bed_id), bed_id, task_id)
        if problem is not None:
            raise ResolveError(problem, 409)

    def _abort_replace_of(self, print_id: str, why: str) -> None:
        replace_id = task_id_for(print_id, TaskKind.REPLACE)
        replace = self._store.get(replace_id)
        if replace is None:
            return
        status = RobotTaskStatus(str(replace["status"]))
        if status in (RobotTaskStatus.PENDING, RobotTaskStatus.WAITING, RobotTaskStatus.HELD):
            self._store.move(
                replace_id,
                status,
                RobotTaskStatus.ABORTED,
                Actor.PERSON,
                note=f"its take was aborted ({why})",
            )
            self._store.release_plate(replace_id)
