"""Test helper: the orchestrator's side of the robot bus (publish jobs, record statuses)."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
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
