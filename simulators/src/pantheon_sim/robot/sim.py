"""The simulated robot arm: MQTT job intake, timed motions, ledger, faults, control API.

Threads: paho's network thread only queues job payloads; one intake thread decides each job
(so a job that arrives while the arm moves is refused at once); one thread per motion sleeps
its duration and finishes it; an optional thread repeats the current status; uvicorn serves
the control API in its own thread.

Locks: ``_status_lock`` orders the statuses, ``_lock`` guards the state; when both are held,
``_status_lock`` is taken first. Every change of what :meth:`RobotArmSim._current_status`
computes (busy job, latched error, last job) happens with ``_status_lock`` held, and the
status announcing it is published before ``_status_lock`` is released; the status repeat reads
the state and publishes under the same lock. So the statuses go out in the order of the state
changes, and a repeat can never publish a state older than a status already sent (a ``busy``
read just before a motion ends cannot be published after that motion's ``available``).
``_lock`` is never held across a publish (which waits for the PUBACK), so the control API stays
responsive.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from pantheon_common.errors import BrokerUnavailable, ConfigurationError, PantheonError
from pantheon_common.farm import FarmLayout, load_layout
from pantheon_common.mqtt import MqttClient, MqttMessage
from pantheon_contracts.errors import ContractError
from pantheon_contracts.names import ROBOT_JOB_TOPIC, ROBOT_QOS, ROBOT_STATUS_TOPIC
from pantheon_contracts.robot import RobotJob, RobotJobKind, RobotState, RobotStatus
from pantheon_sim.robot import ledger as lg
from pantheon_sim.robot.printer_sim import PrinterSimClient
from pantheon_sim.robot.settings import Faults, RobotSimSettings
from pantheon_sim.robot.world import (
    InvalidPlacement,
    Motion,
    PrinterView,
    Refusal,
    World,
    parse_placement,
)

log = logging.getLogger(__name__)

VIOLATION_LOG_SIZE = 50
"""How many recent violations ``GET /world`` lists (the ledger keeps them all)."""


class RobotArmSim:
    """One simulated arm; usable in-process (``with RobotArmSim(settings) as sim:``)."""

    def __init__(
        self,
        settings: RobotSimSettings,
        *,
        layout: FarmLayout | None = None,
        faults: Faults | None = None,
    ) -> None:
        self.settings = settings
        self._layout = layout or load_layout(settings.farm_layout)
        self._faults = faults or Faults()
        self._lock = threading.RLock()
        # Held from a change of the arm's state to the publication of its status (see the
        # module docstring); taken before _lock, never after it.
        self._status_lock = threading.RLock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._inbox: queue.Queue[bytes | None] = queue.Queue()
        self._world = self._initial_world()
        self._ledger: lg.Ledger | None = None
        self._mqtt: MqttClient | None = None
        self._threads: list[threading.Thread] = []
        self._control: Any = None  # ControlServer, imported lazily (FastAPI is heavy)
        self._printer_sim = (
            PrinterSimClient(settings.robot_sim_printer_sim_url)
            if settings.robot_sim_printer_sim_url
            else None
        )
        # Arm controller state (beyond physics): the job it works on, a latched error,
        # a "stuck busy" from the never-available fault, the outcome of every job_id.
        self._busy_job: Motion | None = None
        self._busy_label: str | None = None
        self._error: tuple[str | None, str] | None = None
        self._stuck = False
        self._last_job_id: str | None = None
        self._outcomes: dict[str, tuple[str, str | None]] = {}
        # Refusals of physically damaging jobs: counted, the latest kept (rebuilt from the ledger)
        self._violations = 0
        self._violation_log: deque[dict[str, Any]] = deque(maxlen=VIOLATION_LOG_SIZE)
        self.jobs_received = 0

    # -- life cycle -----------------------------------------------------------------------
    def start(self, wait_s: float | None = 10.0) -> RobotArmSim:
        """Open the ledger, start the control API and MQTT; publish ``available`` once.

        Waits up to ``wait_s`` for the broker (``None``: return at once and keep trying in
        the background) and raises :class:`BrokerUnavailable` when it does not answer.
        """
        s = self.settings
        self._stop.clear()
        with self._lock:  # a restart is a power cycle: the controller forgets, physics stays
            self._busy_job, self._error, self._stuck = None, None, False
            self._outcomes, self.jobs_received = {}, 0
            self._violations = 0
            self._violation_log.clear()
        self._ledger = lg.Ledger(s.robot_sim_ledger, wipe=s.robot_sim_wipe_ledger)
        self._recover_ledger()
        if s.robot_sim_control_port is not None:
            from pantheon_sim.robot.control_api import ControlServer

            self._control = ControlServer(self, s.robot_sim_control_host, s.robot_sim_control_port)
            self._control.start()
        self._mqtt = self._new_client()
        self._mqtt.start()
        self._spawn(self._intake_loop, "robot-intake")
        if s.robot_sim_status_repeat_s > 0:
            self._spawn(self._repeat_loop, "robot-status-repeat")
        if wait_s is not None and not self._ready.wait(wait_s):
            self.stop()
            raise BrokerUnavailable(
                f"robot-arm-sim: MQTT {s.mqtt_host}:{s.mqtt_port} not ready after {wait_s} s"
            )
        return self

    def stop(self) -> None:
        """Stop like a power cut: a running motion is left unfinished (its ledger line stays)."""
        self._stop.set()
        self._inbox.put(None)
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=5)
        self._threads.clear()
        with self._lock:
            client, self._mqtt = self._mqtt, None
            if self._busy_job is not None and self._world.current is self._busy_job:
                self._world.abort(self._busy_job)  # the plate stays where it was taken from
            self._busy_job = None
        if client is not None:
            client.stop()
        if self._control is not None:
            self._control.stop()
            self._control = None
        if self._ledger is not None:
            self._ledger.close()
        self._ready.clear()

    def __enter__(self) -> RobotArmSim:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- public views and controls ---------------------------------------------------------
    @property
    def world(self) -> dict[str, Any]:
        """Snapshot: plates, printers, open doors, busy, current job, arm state."""
        with self._lock:
            snap = self._world.snapshot()
            snap["arm"] = self._arm_state()
            snap["busy"] = self._busy_job is not None or self._stuck
            snap["current_job_id"] = self._busy_job.job_id if self._busy_job else None
            snap["error"] = self._error[1] if self._error else None
            snap["jobs_received"] = self.jobs_received
            snap["mqtt_connected"] = self.mqtt_connected
            snap["violations"] = self._violations
            snap["violation_log"] = list(self._violation_log)
            return snap

    @property
    def violations(self) -> int:
        """How many physically damaging jobs were refused (kept across restarts by the ledger)."""
        with self._lock:
            return self._violations

    @property
    def violation_log(self) -> list[dict[str, Any]]:
        """The latest violations, oldest first: seq, time, job_id, kind, printer_id, bed_id,
        category, reason."""
        with self._lock:
            return list(self._violation_log)

    @property
    def mqtt_connected(self) -> bool:
        """True while the arm's MQTT session is up."""
        client = self._mqtt
        return client is not None and client.connected

    @property
    def ready(self) -> bool:
        """True once connected, subscribed and ``available`` published."""
        return self._ready.is_set()

    @property
    def control_url(self) -> str | None:
        """Base URL of the control API (with the real port when 0 was asked)."""
        return None if self._control is None else str(self._control.url)

    @property
    def faults(self) -> Faults:
        """The scripted faults now in force."""
        with self._lock:
            return self._faults

    def set_faults(self, faults: Faults) -> Faults:
        """Replace every scripted fault."""
        with self._lock:
            self._faults = faults
            return faults

    def update_faults(self, **changes: Any) -> Faults:
        """Change some scripted faults (validated), keep the others."""
        with self._lock:
            self._faults = Faults.model_validate({**self._faults.model_dump(), **changes})
            return self._faults

    def ledger_entries(self) -> list[dict[str, Any]]:
        """Every ledger line (motions, refusals, duplicates, ends), oldest first."""
        if self._ledger is not None:
            return self._ledger.entries()
        return lg.read_ledger(self.settings.robot_sim_ledger)

    def motions(self, job_id: str | None = None) -> list[dict[str, Any]]:
        """Physical motions in the ledger (optionally only those of ``job_id``)."""
        return lg.motions(self.ledger_entries(), job_id)

    def set_world(self, printers: Mapping[int, int | None]) -> dict[str, Any]:
        """Place plates (printer id -> plate or None; other plates home); not while busy."""
        with self._lock:
            if self._busy_job is not None or self._stuck:
                raise InvalidPlacement("the arm is busy; plates cannot be placed now")
            self._world.place(printers)
            self._save_world()
        return self.world

    def operator_available(self) -> dict[str, Any]:
        """What an operator does by hand: publish ``{"status": "available"}``.

        Clears a latched error and the never-available "stuck" state. It does not stop a
        motion that really runs: the sim then stays busy, as the real arm would.
        """
        with self._status_lock:
            with self._lock:
                self._error = None
                if self._stuck:
                    self._stuck = False
                    self._busy_job = None
            self._publish(RobotStatus(status=RobotState.AVAILABLE.value))
        return self.world

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 5.0) -> bool:
        """Poll ``predicate`` until true or ``timeout_s`` passes (helper for tests)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.01)
        return predicate()

    # -- MQTT ------------------------------------------------------------------------------
    def _new_client(self) -> MqttClient:
        client = MqttClient(
            self.settings,
            self.settings.client_id(),
            clean_session=False,
            min_reconnect_s=1.0,
            max_reconnect_s=5.0,
        )
        client.subscribe(ROBOT_JOB_TOPIC, self._on_message, qos=ROBOT_QOS)
        return client

    def _on_message(self, message: MqttMessage) -> None:
        # paho's network thread: only queue (a publish from here would wait for its own PUBACK)
        self._inbox.put(message.payload)

    def _await_connection(self, client: MqttClient) -> bool:
        while not self._stop.is_set():
            if client.connected:
                # renew the subscription and wait for its SUBACK before saying "available"
                client.subscribe(ROBOT_JOB_TOPIC, self._on_message, qos=ROBOT_QOS)
                return True
            self._stop.wait(0.05)
        return False

    def _publish(self, status: RobotStatus) -> None:
        """Send one status; callers hold ``_status_lock`` (see the module docstring)."""
        if not self.settings.robot_sim_echo_job_id:
            status = RobotStatus(status=status.status)
        client = self._mqtt
        if client is None:
            return
        try:
            client.publish(ROBOT_STATUS_TOPIC, status.to_json(), qos=ROBOT_QOS, retain=False)
            log.info("status %s", status.to_json().decode())
        except PantheonError as err:
            log.warning("status %s not published: %s", status.status, err)

    def _current_status(self) -> RobotStatus:
        """The arm's status now: error (latched), busy with a job, or available after one."""
        with self._lock:
            if self._error is not None:
                return RobotStatus(status="error", job_id=self._error[0], reason=self._error[1])
            if self._busy_job is not None:
                return RobotStatus(status="busy", job_id=self._busy_job.job_id)
            return RobotStatus(status="available", job_id=self._last_job_id)

    def _drop_connection(self, reconnect_after_s: float) -> None:
        """Scripted fault: lose the broker mid-job, come back later with the same session."""
        with self._status_lock, self._lock:  # no status may be half-way out on this client
            client, self._mqtt = self._mqtt, None
            self._ready.clear()
        if client is None:
            return
        log.warning("fault: dropping the MQTT connection for %.1f s", reconnect_after_s)
        client.stop()

        def reconnect() -> None:
            if self._stop.wait(reconnect_after_s):
                return
            fresh = self._new_client()
            fresh.start()
            if not self._await_connection(fresh):
                fresh.stop()
                return
            with self._status_lock:
                with self._lock:
                    self._mqtt = fresh
                log.info("fault: MQTT reconnected")
                self._publish(self._current_status())
                self._ready.set()

        self._spawn(reconnect, "robot-reconnect")

    # -- job intake ------------------------------------------------------------------------
    def _intake_loop(self) -> None:
        client = self._mqtt
        if client is None or not self._await_connection(client):
            return
        with self._status_lock:
            self._publish(self._current_status())  # available (a restart forgets any error)
            self._ready.set()
        log.info("robot-arm-sim ready as %s", self.settings.client_id())
        while not self._stop.is_set():
            payload = self._inbox.get()
            # while the connection is down (fault), hold jobs until the reconnect has
            # published the arm's current status, so statuses keep their order
            while payload is not None and not self._ready.wait(0.05):
                if self._stop.is_set():
                    return
            if payload is None or self._stop.is_set():
                return
            try:
                self._handle(payload)
            except Exception:
                log.exception("robot job handling failed")

    def _handle(self, payload: bytes) -> None:
        raw = payload.decode("utf-8", errors="replace")
        with self._lock:
            self.jobs_received += 1
            number, faults = self.jobs_received, self._faults
        try:
            job = RobotJob.parse(payload)
        except ContractError as err:
            with self._status_lock:
                self._refuse(None, raw, Refusal(str(err)))
            return
        with self._lock:
            known = self._duplicate_status(job) is not None
        # The printers behind the job's doors are read before any lock is taken: an HTTP call
        # (up to its timeout) must stall neither the control API nor the status repeat. Only
        # this thread decides jobs, so no other job can start in between.
        states = None if known else self._printer_states(job)
        with self._status_lock:
            with self._lock:
                duplicate = self._duplicate_status(job)
                decision = None
                if duplicate is None:
                    decision = self._decide(job, number, faults, states)
            if duplicate is not None:
                self._ledger_append(lg.DUPLICATE, job, raw, duplicate=True)
                log.warning("job %s already executed: no motion, status re-published", job.job_id)
                self._publish(duplicate)
                return
            assert decision is not None
            if isinstance(decision, Refusal):
                self._refuse(job, raw, decision)
                return
            motion = decision
            entry = self._ledger_append(lg.MOTION, job, raw)
            with self._lock:
                if job.job_id is not None:
                    self._outcomes[job.job_id] = ("busy", None)
            log.info("motion %s started (ledger seq %d)", motion.kind.value, entry["seq"])
            self._publish(RobotStatus(status="busy", job_id=job.job_id))
        self._spawn(lambda: self._run_motion(motion, entry["seq"], number, faults), "robot-motion")

    def _printer_states(self, job: RobotJob) -> dict[int, PrinterView] | None:
        """Live states of the printers whose doors ``job`` opens (None: no printer simulator)."""
        if self._printer_sim is None:
            return None
        with self._lock:
            printers = self._world.door_printers(job)
        return {p: self._printer_sim.printer_view(p) for p in printers}

    def _decide(
        self,
        job: RobotJob,
        number: int,
        faults: Faults,
        printer_states: Mapping[int, PrinterView] | None,
    ) -> Motion | Refusal:
        """Under the lock: refuse, or start the motion in the world and mark the arm busy."""
        if self._error is not None:
            return Refusal(f"arm is in error ({self._error[1]}); an operator must clear it")
        if self._stuck or self._busy_job is not None:
            what = self._busy_job.job_id if self._busy_job else None
            return Refusal(f"arm is busy with job {what or '(unknown)'}")
        if faults.error_on_job == number and faults.error_mode == "refuse":
            return Refusal(f"scripted fault: error on job {number}")
        result = self._world.apply(job, printer_states)
        if isinstance(result, Motion):
            self._busy_job = result
        return result

    def _duplicate_status(self, job: RobotJob) -> RobotStatus | None:
        if not self.settings.robot_sim_dedupe_job_id or job.job_id is None:
            return None
        outcome = self._outcomes.get(job.job_id)
        if outcome is None:
            return None
        state, reason = outcome
        return RobotStatus(status=state, job_id=job.job_id, reason=reason)

    def _refuse(self, job: RobotJob | None, raw: str, refusal: Refusal) -> None:
        """Ledger, count (when damaging) and announce a refusal; caller holds _status_lock."""
        violation = refusal.violation.value if refusal.violation is not None else None
        entry = self._ledger_append(
            lg.REFUSED, job, raw, refused=True, reason=refusal.reason, violation=violation
        )
        if violation is not None:
            with self._lock:
                self._count_violation(entry)
            log.error("VIOLATION %s refused: %s", violation, refusal.reason)
        else:
            log.warning("job refused: %s", refusal.reason)
        self._publish(
            RobotStatus(status="error", job_id=job.job_id if job else None, reason=refusal.reason)
        )

    def _count_violation(self, entry: dict[str, Any]) -> None:
        self._violations += 1
        self._violation_log.append(lg.violation_record(entry))

    def _ledger_append(
        self, event: str, job: RobotJob | None, raw: str, **extra: Any
    ) -> dict[str, Any]:
        assert self._ledger is not None
        return self._ledger.append(
            event,
            job_id=job.job_id if job else None,
            kind=job.kind.value if job else None,
            printer_id=job.printer_id if job else None,
            bed_id=job.bed_id if job else None,
            payload=raw,
            **extra,
        )

    # -- motions ---------------------------------------------------------------------------
    def _duration(self, kind: RobotJobKind) -> float:
        s = self.settings
        seconds = {
            RobotJobKind.TAKE: s.robot_sim_take_s,
            RobotJobKind.REPLACE: s.robot_sim_replace_s,
            RobotJobKind.HOMING: s.robot_sim_homing_s,
        }[kind]
        return seconds / s.robot_sim_speed

    def _run_motion(self, motion: Motion, seq: int, number: int, faults: Faults) -> None:
        assert self._ledger is not None
        if faults.disconnect_on_job == number:
            self._drop_connection(faults.reconnect_after_s)
        duration = self._duration(motion.kind)
        if faults.error_on_job == number and faults.error_mode == "fail":
            if self._stop.wait(duration / 2):
                return
            reason = f"scripted fault: motion of job {number} failed half-way"
            with self._status_lock:
                with self._lock:
                    self._world.abort(motion)
                    self._save_world()
                    self._busy_job = None
                    self._error = (motion.job_id, reason)
                    if motion.job_id is not None:
                        self._outcomes[motion.job_id] = ("error", reason)
                self._ledger.append(lg.FAILED, motion_seq=seq, job_id=motion.job_id, reason=reason)
                self._publish(RobotStatus(status="error", job_id=motion.job_id, reason=reason))
            return
        if self._stop.wait(duration):
            return  # power cut mid-motion: stop() puts the plate back, the ledger keeps it
        with self._lock:
            self._world.complete(motion)
            self._save_world()
            self._stuck = faults.never_available
        self._ledger.append(lg.DONE, motion_seq=seq, job_id=motion.job_id)
        self._notify_printer(motion)
        if faults.never_available:
            log.warning("fault: job %s done but the arm never reports available", motion.job_id)
            return
        if faults.status_delay_s and self._stop.wait(faults.status_delay_s):
            return
        with self._status_lock:
            with self._lock:
                self._busy_job = None
                self._last_job_id = motion.job_id
                if motion.job_id is not None:
                    self._outcomes[motion.job_id] = ("available", None)
            self._publish(RobotStatus(status="available", job_id=motion.job_id))

    def _repeat_loop(self) -> None:
        """Re-publish the current status every ``status_repeat_s`` while connected.

        It lets an orchestrator that restarted learn the arm's state, and tell a forged
        ``available`` from the arm's own: a ``busy`` repeat naming the same job proves it.
        """
        period = self.settings.robot_sim_status_repeat_s
        while not self._stop.wait(period):
            # only once `available` went out on start (or after a reconnect), never in between
            if not self._ready.is_set() or not self.mqtt_connected:
                continue
            with self._status_lock:
                self._publish(self._current_status())

    def _notify_printer(self, motion: Motion) -> None:
        if self._printer_sim is None or motion.printer_id is None:
            return
        if motion.kind is RobotJobKind.TAKE:
            self._printer_sim.plate_removed(motion.printer_id)
        elif motion.kind is RobotJobKind.REPLACE and motion.bed_id is not None:
            self._printer_sim.plate_loaded(motion.printer_id, motion.bed_id)

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()]
        self._threads.append(thread)
        thread.start()

    # -- state -----------------------------------------------------------------------------
    def _arm_state(self) -> str:
        if self._error is not None:
            return "error"
        if self._busy_job is not None or self._stuck:
            return "busy"
        return "available"

    def _initial_world(self) -> World:
        s = self.settings
        if s.robot_sim_world_file is not None and s.robot_sim_world_file.exists():
            path = s.robot_sim_world_file
        elif s.robot_sim_initial_state is not None:
            path = s.robot_sim_initial_state
        else:
            return World.default(self._layout)
        placement = _read_placement(path)
        try:
            return World.from_layout(self._layout, placement)
        except InvalidPlacement as err:
            raise ConfigurationError(f"plate placement file {path}: {err}") from err

    def _save_world(self) -> None:
        path = self.settings.robot_sim_world_file
        if path is None:
            return
        body = {"printers": {str(p): b for p, b in self._world.printer_plates().items()}}
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(body, indent=1), encoding="utf-8")
        tmp.replace(path)

    def _recover_ledger(self) -> None:
        """Rebuild job outcomes and the violation count from a kept ledger; motions cut by a
        restart become failed."""
        assert self._ledger is not None
        open_motions: dict[int, str | None] = {}
        for entry in self._ledger.entries():
            event, job_id = entry.get("event"), entry.get("job_id")
            if lg.is_violation(entry):
                with self._lock:
                    self._count_violation(entry)
            elif event == lg.MOTION:
                open_motions[int(entry["seq"])] = job_id
                if job_id:
                    self._outcomes[job_id] = ("busy", None)
            elif event in (lg.DONE, lg.FAILED):
                open_motions.pop(int(entry.get("motion_seq", 0)), None)
                if job_id:
                    state = "available" if event == lg.DONE else "error"
                    self._outcomes[job_id] = (state, entry.get("reason"))
        for seq, job_id in open_motions.items():
            reason = "motion interrupted by a restart of the arm"
            self._ledger.append(lg.FAILED, motion_seq=seq, job_id=job_id, reason=reason)
            if job_id:
                self._outcomes[job_id] = ("error", reason)


def _read_placement(path: Path) -> dict[int, int | None]:
    try:
        return parse_placement(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError, InvalidPlacement) as err:
        raise ConfigurationError(f"cannot use plate placement file {path}: {err}") from err
