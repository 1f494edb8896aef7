"""Test helpers shipped with the service: the orchestrator as a subprocess, a robot_arm/job
watcher, polling with a deadline, and the inventory-vs-simulator check (no pytest needed)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pymongo.database import Database

from pantheon_common.mqtt import MqttClient, MqttMessage
from pantheon_common.settings import MqttSettings
from pantheon_contracts.names import ROBOT_JOB_TOPIC

T = TypeVar("T")


def wait_until(what: str, fn: Callable[[], T | None], timeout_s: float = 20.0) -> T:
    """Poll ``fn`` until it returns something truthy; TimeoutError naming ``what`` after that."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.05)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assert_inventory_matches(db: Database[dict[str, Any]], world: Mapping[str, Any]) -> None:
    """MongoDB's plates and printers say exactly what the robot simulator's world says."""
    for bed_id_text, place in world["plates"].items():
        bed = db.beds.find_one({"_id": int(bed_id_text)})
        assert bed is not None, bed_id_text
        location = bed["location"]
        if place["kind"] == "printer":
            assert location["printer_id"] == place["printer_id"], bed
            assert bed["state"] in ("in_printer", "with_part"), bed
        else:
            assert place["kind"] == "rack", place
            assert location["printer_id"] is None, bed
            assert (location["rack"], location["slot"]) == (place["rack"], place["slot"]), bed
    for printer_text, bed_id in world["printers"].items():
        printer = db.printers.find_one({"_id": int(printer_text)})
        assert printer is not None, printer_text
        in_db = printer.get("bed")
        if bed_id is None:
            assert in_db is None, printer
        else:
            assert in_db is not None, printer
            assert in_db["bed_id"] == bed_id, printer


class JobWatcher:
    """Records every job published on robot_arm/job (as the robot receives them)."""

    def __init__(self, host: str, port: int, prefix: str) -> None:
        settings = MqttSettings(
            pantheon_env="dev", mqtt_host=host, mqtt_port=port, mqtt_topic_prefix=prefix
        )
        self._client = MqttClient(settings, f"job-watcher-{os.getpid()}-{id(self)}")
        self._lock = threading.Lock()
        self._jobs: list[dict[str, Any]] = []
        self._client.subscribe(ROBOT_JOB_TOPIC, self._on_job)
        self._client.start()
        self._client.wait_connected(10)
        self._client.subscribe(ROBOT_JOB_TOPIC, self._on_job)  # waits for the SUBACK

    def _on_job(self, message: MqttMessage) -> None:
        with self._lock:
            self._jobs.append(json.loads(message.payload))

    @property
    def jobs(self) -> list[dict[str, Any]]:
        """Every job seen, in order."""
        with self._lock:
            return list(self._jobs)

    def stop(self) -> None:
        """Disconnect."""
        self._client.stop()


@dataclass
class Orchestrator:
    """``python -m robot_arm_orchestrator`` with its settings in the environment."""

    env: dict[str, str]
    log_path: Path
    token: str
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of its HTTP API."""
        return f"http://127.0.0.1:{self.env['HTTP_PORT']}"

    def start(self, timeout_s: float = 30.0, **overrides: str) -> Orchestrator:
        """Start it and wait until its API answers and the dispatcher has recovered."""
        env = {**self.env, **overrides}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "robot_arm_orchestrator"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until("the orchestrator's API and dispatcher", self._up, timeout_s)
        return self

    def _up(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            code = self.process.returncode
            raise RuntimeError(f"orchestrator exited with {code}:\n{self.logs()}")
        try:
            state = self.api("GET", "/dispatch").json()["state"]
        except (httpx.HTTPError, KeyError, ValueError):
            return False
        return state not in ("starting", "store unavailable")

    def logs(self) -> str:
        """The end of its log."""
        return self.log_path.read_text(errors="replace")[-6000:]

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Call its API with the service token."""
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        return httpx.request(method, self.url + path, headers=headers, timeout=10, **kwargs)

    def tasks(self, **params: Any) -> list[dict[str, Any]]:
        """GET /tasks with filters."""
        response = self.api("GET", "/tasks", params=params)
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()
        return result

    def wait_killed(self, timeout_s: float = 20.0) -> None:
        """Wait until the process SIGKILLed itself at its crash point."""
        assert self.process is not None
        try:
            code = self.process.wait(timeout_s)
        except subprocess.TimeoutExpired as err:
            raise AssertionError(f"the crash point was not reached:\n{self.logs()}") from err
        assert code == -signal.SIGKILL, self.logs()

    def kill(self) -> None:
        """kill -9, if running."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        """SIGTERM and wait (kill after 15 s)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
