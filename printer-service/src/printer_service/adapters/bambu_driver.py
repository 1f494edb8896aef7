"""The ``bambu`` driver: the one MQTT connection (and the FTPS uploads) of one Bambu printer.

One supervisor thread owns the paho client and runs its network loop by hand, so nothing
reconnects behind our back: every connection is built fresh with a new client id (a reused id
kicks the older session, and paho would replay an un-acked ``project_file``, 2.3), and torn
down after the silence timeout. Publishes from other threads go through a queue the supervisor
drains. Reports are merged by :class:`ReportState` and normalised on demand.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import ssl
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from pantheon_common.log import backoff_delays
from pantheon_contracts.printer import PrinterModel, PrinterState, from_bambu
from printer_service.adapters.ftps import BambuFtps
from printer_service.adapters.tls import CertificateMismatch
from printer_service.domain.liveness import (
    PushallPolicy,
    PushallReason,
    SilenceAction,
    SilenceWatchdog,
)
from printer_service.domain.normalize import LiveState, normalize
from printer_service.domain.ports import (
    CommandRefused,
    DriverSnapshot,
    LinkState,
    NotConnected,
    StartRequest,
    Transition,
)
from printer_service.domain.report import MergeOutcome, ReportState

log = logging.getLogger(__name__)

USERNAME = "bblp"
# CONNACK refusals that mean "wrong access code": MQTT 3.1.1 rc 4/5, mapped by paho to 134/135.
_AUTH_REFUSALS = frozenset({4, 5, 134, 135})
_MAX_REPLIES = 64
_MAX_TRANSITIONS = 32
_LOOP_TIMEOUT_S = 0.05


@dataclass(frozen=True)
class BambuConfig:
    """Everything the driver needs to reach one printer."""

    printer_id: int
    model: PrinterModel
    host: str
    serial: str
    access_code: str
    tls_context: ssl.SSLContext
    mqtt_port: int = 8883
    ftps_port: int = 990
    keepalive_s: int = 30
    silence_timeout_s: float = 60.0
    push_start_after_s: float = 20.0
    connect_timeout_s: float = 10.0
    auth_retry_s: float = 300.0
    """After "access code refused", wait this long before trying again (no tight loop)."""
    reconnect_max_s: float = 30.0
    ftps_timeout_s: float = 60.0
    command_reply_wait_s: float = 2.0
    url_scheme: str = "ftp:///"
    """``ftp:///<name>`` works on P1S and H2 (5.5); ``file:///sdcard/`` is the X1/P1 fallback."""


@dataclass
class _Outgoing:
    topic: str
    payload: bytes
    qos: int
    done: threading.Event = field(default_factory=threading.Event)
    error: str | None = None


def ams_parameters(report: dict[str, Any]) -> tuple[bool, list[int], list[dict[str, int]]]:
    """``use_ams``, ``ams_mapping``, ``ams_mapping2`` for a single-filament file (5.5).

    With an AMS holding a loaded tray, filament 1 comes from that tray (global number
    ams_id*4+slot); without one, from the external spool (-1 / ams_id 255). ``use_ams`` must be
    false on a printer without AMS ("Failed to get AMS mapping table").
    """
    ams = report.get("ams")
    units = ams.get("ams") if isinstance(ams, dict) else None
    for unit in units if isinstance(units, list) else []:
        if not isinstance(unit, dict):
            continue
        for tray in unit.get("tray") or []:
            if isinstance(tray, dict) and tray.get("tray_type"):
                try:
                    ams_id, slot = int(unit.get("id", 0)), int(tray.get("id", 0))
                except (TypeError, ValueError):
                    continue
                return True, [ams_id * 4 + slot], [{"ams_id": ams_id, "slot_id": slot}]
    return False, [-1], [{"ams_id": 255, "slot_id": 0}]


class BambuDriver:
    """Implements :class:`printer_service.domain.ports.PrinterDriver` for Bambu printers."""

    def __init__(self, config: BambuConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._report_topic = f"device/{config.serial}/report"
        self._request_topic = f"device/{config.serial}/request"
        self._ftps = BambuFtps(
            config.host,
            config.ftps_port,
            config.access_code,
            config.tls_context,
            timeout_s=config.ftps_timeout_s,
        )
        self._lock = threading.Lock()
        self._state = ReportState.empty()
        self._version = 0
        self._cached: tuple[int, LinkState, LiveState] | None = None
        self._link = LinkState.CONNECTING
        self._last_error: str | None = None
        self._last_seen: datetime | None = None
        self._last_message = 0.0
        self._connections = 0
        self._transitions: list[Transition] = []
        self._transition_count = 0
        self._last_state: tuple[PrinterState, str | None] | None = None
        self._replies: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._reply_arrived = threading.Condition(self._lock)
        self._seq = 20000
        self._outgoing: queue.SimpleQueue[_Outgoing] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pushall = PushallPolicy(config.model)
        self._watchdog = SilenceWatchdog(config.silence_timeout_s, config.push_start_after_s)
        # per-session flags, touched only by the supervisor thread and paho callbacks it runs
        self._connack: ReasonCode | None = None
        self._session_up = False
        self.pushalls_sent = 0
        """How many pushall requests went out (tests check the rate limit)."""
        self.attempts = 0
        """Connection attempts so far (tests check there is no tight retry loop)."""
        self.full_reports = 0
        self.delta_reports = 0

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._supervise, name=f"bambu-{self.config.printer_id}", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self._set_link(LinkState.STOPPED, None)

    # -- state ---------------------------------------------------------------------------
    def snapshot(self) -> DriverSnapshot:
        with self._lock:
            cached = self._cached
            if cached is None or cached[0] != self._version or cached[1] != self._link:
                live = normalize(
                    self._state.data,
                    complete=self._state.complete,
                    online=self._link == LinkState.CONNECTED,
                )
                cached = (self._version, self._link, live)
                self._cached = cached
            return DriverSnapshot(
                link=self._link,
                live=cached[2],
                last_seen=self._last_seen,
                last_error=self._last_error,
                connections=self._connections,
                transitions=tuple(self._transitions),
                transition_count=self._transition_count,
            )

    def _set_link(self, link: LinkState, error: str | None) -> None:
        with self._lock:
            changed = (link, error) != (self._link, self._last_error)
            self._link = link
            self._last_error = error
        if changed:  # transitions, not repeats
            if error:
                log.warning("printer %s: %s (%s)", self.config.printer_id, link.value, error)
            else:
                log.info("printer %s: %s", self.config.printer_id, link.value)

    # -- commands ------------------------------------------------------------------------
    def _next_seq(self) -> str:
        with self._lock:
            self._seq += 1
            return str(self._seq)

    def _send(self, payload: dict[str, Any], qos: int, *, timeout_s: float = 5.0) -> None:
        if self._link != LinkState.CONNECTED:
            raise NotConnected(f"printer {self.config.printer_id} is {self._link.value}")
        item = _Outgoing(self._request_topic, json.dumps(payload).encode(), qos)
        self._outgoing.put(item)
        if not item.done.wait(timeout_s):
            raise NotConnected("the printer connection did not take the command in time")
        if item.error:
            raise NotConnected(item.error)

    def _command(self, subsystem: str, command: str, qos: int, **params: Any) -> str:
        seq = self._next_seq()
        self._send({subsystem: {"sequence_id": seq, "command": command, **params}}, qos)
        return seq

    def _simple_print_command(self, command: str) -> None:
        # Studio sends pause/resume/stop at QoS 1 with param "" (5.4).
        seq = self._command("print", command, 1, param="")
        reply = self.wait_reply(seq, self.config.command_reply_wait_s)
        if reply is not None and (problem := reply_failure(reply)):
            raise CommandRefused(f"printer refused {command}: {problem}")

    def pause(self) -> None:
        self._simple_print_command("pause")

    def resume(self) -> None:
        self._simple_print_command("resume")

    def stop(self) -> None:
        self._simple_print_command("stop")

    def start_print(self, request: StartRequest) -> str:
        with self._lock:
            report = self._state.data
            use_ams, mapping, mapping2 = ams_parameters(report)
        # Every parameter the reference lists (5.5); ids are strings, flags JSON booleans.
        return self._command(
            "print",
            "project_file",
            1,
            param="Metadata/plate_1.gcode",
            url=f"{self.config.url_scheme}{request.file}",
            file=request.file,
            md5=request.md5,
            subtask_name=request.subtask_name,
            project_id="0",
            profile_id="0",
            task_id="0",
            subtask_id="0",
            bed_type="auto",
            timelapse=False,
            bed_leveling=True,
            flow_cali=False,
            vibration_cali=False,
            layer_inspect=False,
            use_ams=use_ams,
            ams_mapping=mapping,
            ams_mapping2=mapping2,
        )

    def reply(self, ticket: str) -> dict[str, Any] | None:
        """The printer's whole reply to command ``ticket``, once it arrived."""
        with self._lock:
            return self._replies.get(ticket)

    def refusal(self, ticket: str) -> str | None:
        reply = self.reply(ticket)
        return reply_failure(reply) if reply is not None else None

    def wait_reply(self, ticket: str, timeout_s: float) -> dict[str, Any] | None:
        """The reply to ``ticket``, waiting up to ``timeout_s`` for it."""
        deadline = time.monotonic() + timeout_s
        with self._reply_arrived:
            while ticket not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._reply_arrived.wait(left)
            return self._replies[ticket]

    def request_full_report(self) -> bool:
        """A pushall now if the rate limit allows (user refresh); True if sent."""
        return self._queue_pushall(PushallReason.SILENCE)

    def upload(self, name: str, data: bytes) -> None:
        self._ftps.upload(name, data)

    def delete_file(self, name: str) -> None:
        self._ftps.delete(name)

    def remote_size(self, name: str) -> int | None:
        """Size of a file on the printer (tests)."""
        return self._ftps.size(name)

    # -- supervisor ----------------------------------------------------------------------
    def _supervise(self) -> None:
        delays = backoff_delays(1.0, self.config.reconnect_max_s)
        while not self._stop.is_set():
            connected = self._session()
            if self._stop.is_set():
                break
            if self._link == LinkState.AUTH_REFUSED:
                wait = self.config.auth_retry_s
            elif connected:
                delays = backoff_delays(1.0, self.config.reconnect_max_s)
                wait = 0.5
            else:
                wait = next(delays)
            self._stop.wait(wait)

    def _new_client(self) -> paho.Client:
        # A fresh id per connection: a duplicate id kicks the older session (2.3).
        client_id = f"pantheon-ps-{self.config.printer_id}-{uuid.uuid4().hex[:12]}"
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=True,
            protocol=paho.MQTTv311,
        )
        client.username_pw_set(USERNAME, self.config.access_code)
        client.tls_set_context(self.config.tls_context)
        client.max_inflight_messages_set(1000)  # printers' PUBACKs are unreliable (2.3)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        return client

    def _session(self) -> bool:
        """One connection from CONNECT to its end; True if it was accepted by the printer."""
        self._connack = None
        self._session_up = False
        client = self._new_client()
        self.attempts += 1
        self._set_link(LinkState.CONNECTING, self._last_error)
        try:
            client.connect(self.config.host, self.config.mqtt_port, self.config.keepalive_s)
        except CertificateMismatch as err:
            self._set_link(LinkState.TLS_ERROR, str(err))
            return False
        except ssl.SSLError as err:
            self._set_link(LinkState.TLS_ERROR, f"TLS handshake failed: {err}")
            return False
        except OSError as err:
            self._set_link(
                LinkState.UNREACHABLE, f"{self.config.host}:{self.config.mqtt_port}: {err}"
            )
            return False
        started = self._clock()
        try:
            return self._run_session(client, started)
        finally:
            self._drain_outgoing("connection closed")
            try:
                client.disconnect()
                client.loop(timeout=0.01)
            except (OSError, ValueError):
                pass
            sock = client.socket()
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()

    def _run_session(self, client: paho.Client, started: float) -> bool:
        while not self._stop.is_set():
            rc = client.loop(timeout=_LOOP_TIMEOUT_S)
            connack = self._connack
            if connack is not None and connack.is_failure:
                if connack.value in _AUTH_REFUSALS:
                    self._set_link(
                        LinkState.AUTH_REFUSED,
                        f"access code refused by printer (CONNACK: {connack})",
                    )
                else:
                    self._set_link(LinkState.UNREACHABLE, f"connection refused: {connack}")
                return False
            if rc != paho.MQTT_ERR_SUCCESS:
                if self._session_up:
                    self._set_link(
                        LinkState.CONNECTING, f"connection lost: {paho.error_string(rc)}"
                    )
                    return True
                self._set_link(
                    LinkState.UNREACHABLE,
                    f"connection closed before CONNACK: {paho.error_string(rc)}",
                )
                return False
            now = self._clock()
            if not self._session_up:
                if now - started > self.config.connect_timeout_s:
                    self._set_link(LinkState.UNREACHABLE, "no CONNACK from the printer")
                    return False
                continue
            self._flush_outgoing(client)
            if not self._tick(client, now):
                return True
        return self._session_up

    def _tick(self, client: paho.Client, now: float) -> bool:
        """Per-iteration care of a live session; False when it must be rebuilt."""
        with self._lock:
            complete = self._state.complete
            last_message = self._last_message
        if not complete and self._pushall.allowed(PushallReason.UNKNOWN, now):
            self._publish_pushall(client, now)
        action = self._watchdog.check(now, last_message)
        if action == SilenceAction.RECONNECT:
            self._set_link(
                LinkState.SILENT,
                f"no report for {self.config.silence_timeout_s:.0f} s; reconnecting",
            )
            return False
        if action == SilenceAction.PUSH_START:
            log.info("printer %s quiet; sending pushing.start", self.config.printer_id)
            self._watchdog.push_started(now)
            self._publish(
                client, {"pushing": {"sequence_id": self._next_seq(), "command": "start"}}
            )
            if self._pushall.allowed(PushallReason.SILENCE, now):
                self._publish_pushall(client, now)
        return True

    def _publish(self, client: paho.Client, payload: dict[str, Any], qos: int = 0) -> None:
        client.publish(self._request_topic, json.dumps(payload), qos=qos)

    def _publish_pushall(self, client: paho.Client, now: float) -> None:
        self._pushall.sent(now)
        self.pushalls_sent += 1
        self._publish(
            client,
            {
                "pushing": {
                    "sequence_id": self._next_seq(),
                    "command": "pushall",
                    "version": 1,
                    "push_target": 1,
                }
            },
        )

    def _queue_pushall(self, reason: PushallReason) -> bool:
        now = self._clock()
        if self._link != LinkState.CONNECTED or not self._pushall.allowed(reason, now):
            return False
        self._pushall.sent(now)
        self.pushalls_sent += 1
        payload = {
            "pushing": {
                "sequence_id": self._next_seq(),
                "command": "pushall",
                "version": 1,
                "push_target": 1,
            }
        }
        self._outgoing.put(_Outgoing(self._request_topic, json.dumps(payload).encode(), 0))
        return True

    def _flush_outgoing(self, client: paho.Client) -> None:
        while True:
            try:
                item = self._outgoing.get_nowait()
            except queue.Empty:
                return
            info = client.publish(item.topic, item.payload, qos=item.qos)
            if info.rc != paho.MQTT_ERR_SUCCESS:
                item.error = f"publish failed: {paho.error_string(info.rc)}"
            item.done.set()

    def _drain_outgoing(self, why: str) -> None:
        while True:
            try:
                item = self._outgoing.get_nowait()
            except queue.Empty:
                return
            item.error = why
            item.done.set()

    # -- paho callbacks (run inside client.loop on the supervisor thread) -----------------
    def _on_connect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        properties: object,
    ) -> None:
        self._connack = reason
        if reason.is_failure:
            return
        self._session_up = True
        now = self._clock()
        with self._lock:
            self._state.reset()  # a new connection: trust nothing until a full report
            self._version += 1
            self._connections += 1
            self._last_message = now
        self._watchdog.last_push_start = None
        # Only the report topic: subscribing to .../request kills P1/A1 sessions (2.3).
        client.subscribe(self._report_topic, qos=0)
        self._set_link(LinkState.CONNECTED, None)
        if self._pushall.allowed(PushallReason.CONNECT, now):
            self._publish_pushall(client, now)

    def _note_transition(self) -> None:
        """Remember a change of state (called with the lock held, after a merge)."""
        data = self._state.data
        gcode_state = data.get("gcode_state")
        current = (
            from_bambu(gcode_state if isinstance(gcode_state, str) else None),
            _subtask(data),
        )
        if current == self._last_state:
            return
        self._last_state = current
        self._transition_count += 1
        self._transitions.append(Transition(self._transition_count, current[0], current[1]))
        del self._transitions[:-_MAX_TRANSITIONS]

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        now = self._clock()
        text = bytes(msg.payload).decode("utf-8", errors="replace")  # seen: invalid UTF-8 (3)
        try:
            payload = json.loads(text)
        except ValueError:
            log.debug("printer %s sent a non-JSON report", self.config.printer_id)
            return
        if not isinstance(payload, dict):
            return
        need_full = False
        with self._lock:
            self._last_message = now
            self._last_seen = datetime.now(UTC)
            for subsystem, body in payload.items():
                if not isinstance(body, dict):
                    continue
                if subsystem == "print" and body.get("command") == "push_status":
                    outcome = self._state.apply(body)
                    self.full_reports += outcome == MergeOutcome.FULL
                    self.delta_reports += outcome == MergeOutcome.DELTA
                    if outcome in (MergeOutcome.FULL, MergeOutcome.DELTA):
                        self._version += 1
                        self._note_transition()
                    need_full = outcome == MergeOutcome.NEEDS_FULL
                else:
                    seq = body.get("sequence_id", body.get("sequenceId"))
                    if seq is not None:
                        # Keep every reply whole; never whitelist its fields (5.11).
                        self._replies[str(seq)] = {"subsystem": subsystem, **body}
                        while len(self._replies) > _MAX_REPLIES:
                            self._replies.popitem(last=False)
                        self._reply_arrived.notify_all()
        if need_full and self._pushall.allowed(PushallReason.UNKNOWN, now):
            self._publish_pushall(client, now)


def _subtask(report: dict[str, Any]) -> str | None:
    value = report.get("subtask_name")
    return value if isinstance(value, str) else None


def reply_failure(reply: dict[str, Any]) -> str | None:
    """Why a command reply is a refusal, or None (5.11: result failed, or err_code)."""
    err_code = reply.get("err_code")
    if err_code:
        try:
            return f"err_code {int(err_code):#010x}"
        except (TypeError, ValueError):
            return f"err_code {err_code}"
    result = str(reply.get("result", "")).lower()
    if result and result != "success":
        reason = reply.get("reason") or result
        return str(reason)
    return None
