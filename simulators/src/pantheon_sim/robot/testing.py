"""Test helpers: the orchestrator's side of the robot bus (publish jobs, record statuses), and
a fake of bambu-sim's control API for the arm's printer-state reads."""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from pantheon_common.mqtt import MqttClient, MqttMessage
from pantheon_common.settings import MqttSettings
from pantheon_contracts.names import ROBOT_JOB_TOPIC, ROBOT_STATUS_TOPIC
from pantheon_contracts.robot import RobotJob


class RobotBus:
    """Connects under a topic prefix, records every ``robot_arm/status``, sends jobs."""

    def __init__(self, host: str, port: int, prefix: str = "") -> None:
        settings = MqttSettings(
            pantheon_env="dev", mqtt_host=host, mqtt_port=port, mqtt_topic_prefix=prefix
        )
        self._client = MqttClient(settings, f"robot-bus-{secrets.token_hex(4)}")
        self._lock = threading.Lock()
        self._seen: list[dict[str, Any]] = []
        self._client.subscribe(ROBOT_STATUS_TOPIC, self._on_status)
        self._client.start()
        self._client.wait_connected(10)
        self._client.subscribe(ROBOT_STATUS_TOPIC, self._on_status)  # waits for the SUBACK

    def _on_status(self, message: MqttMessage) -> None:
        try:
            status = json.loads(message.payload)
        except json.JSONDecodeError:
            status = {"unparsed": message.payload.decode("utf-8", errors="replace")}
        with self._lock:
            self._seen.append(status)

    def statuses(self) -> list[dict[str, Any]]:
        """Every status received so far, as sent."""
        with self._lock:
            return list(self._seen)

    def mark(self) -> int:
        """Index of the next status (to look only at what comes after now)."""
        return len(self.statuses())

    def send(self, job: RobotJob | bytes) -> None:
        """Publish a job at QoS 1 (waits for the PUBACK)."""
        payload = job.to_json() if isinstance(job, RobotJob) else job
        self._client.publish(ROBOT_JOB_TOPIC, payload)

    def wait_statuses(
        self, predicate: Callable[[list[dict[str, Any]]], bool], timeout_s: float = 5.0
    ) -> list[dict[str, Any]]:
        """Poll until ``predicate(statuses)`` holds; :class:`TimeoutError` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            seen = self.statuses()
            if predicate(seen):
                return seen
            if time.monotonic() > deadline:
                raise TimeoutError(f"statuses never matched within {timeout_s} s: {seen}")
            time.sleep(0.01)

    def wait_for(self, status: dict[str, Any], timeout_s: float = 5.0) -> list[dict[str, Any]]:
        """Wait until exactly ``status`` has been received; returns every status."""
        return self.wait_statuses(lambda seen: status in seen, timeout_s)

    def stop(self) -> None:
        """Disconnect."""
        self._client.stop()


def forget_session(host: str, port: int, client_id: str, timeout_s: float = 3.0) -> None:
    """Connect once as ``client_id`` with clean_session=True: the broker drops its session."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    try:
        client.connect(host, port, keepalive=10)
    except OSError:
        return
    client.loop_start()
    deadline = time.monotonic() + timeout_s
    while not client.is_connected() and time.monotonic() < deadline:
        time.sleep(0.01)
    client.disconnect()
    client.loop_stop()


class FakePrinterSim:
    """bambu-sim's control API as far as the arm uses it, on a real loopback HTTP server.

    ``GET /printers/{id}`` answers ``states[id]`` (default: idle), 404 for ids in ``missing``;
    ``PUT /printers/{id}/plate`` is recorded in ``calls`` (answered 500 while ``fail_puts``);
    ``reads`` lists the ids read.
    """

    def __init__(self) -> None:
        self.states: dict[int, dict[str, Any]] = {}
        self.missing: set[int] = set()
        self.fail_puts = False
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.reads: list[int] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                match = re.fullmatch(r"/printers/(\d+)", self.path)
                if match is None or int(match[1]) in fake.missing:
                    self._answer(404, {"detail": "no simulated printer"})
                    return
                printer_id = int(match[1])
                fake.reads.append(printer_id)
                state = fake.states.get(printer_id, {"state": "idle", "gcode_state": "IDLE"})
                self._answer(200, {"id": printer_id, **state})

            def do_PUT(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.calls.append((self.path, body))
                self._answer(500 if fake.fail_puts else 200, {})

            def _answer(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def set_state(self, printer_id: int, state: str, gcode_state: str | None = None) -> None:
        """What ``GET /printers/{printer_id}`` says from now on."""
        self.states[printer_id] = {"state": state, "gcode_state": gcode_state}

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
