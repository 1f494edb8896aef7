"""`robot-arm-sim` as a process: it starts, answers /healthz, runs a job, repeats its status,
stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pantheon_contracts.robot import RobotJob
from pantheon_sim.robot.testing import RobotBus, forget_session

FARM_YAML = Path(__file__).resolve().parents[3] / "farm.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def cli(
    tmp_path: Path, mqtt_endpoint: tuple[str, int], mqtt_prefix: str
) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """robot-arm-sim started as a subprocess (the console script of the venv)."""
    port = free_port()
    client_id = f"robot-arm-sim-cli-{mqtt_prefix.strip('/').split('/')[-1]}"
    ledger = tmp_path / "ledger.jsonl"
    script = Path(sys.executable).with_name("robot-arm-sim")
    command = [
        str(script),
        "--layout",
        str(FARM_YAML),
        "--speed",
        "100",
        "--ledger",
        str(ledger),
        "--mqtt-host",
        mqtt_endpoint[0],
        "--mqtt-port",
        str(mqtt_endpoint[1]),
        "--topic-prefix",
        mqtt_prefix,
        "--client-id",
        client_id,
        "--control-port",
        str(port),
        "--status-repeat-s",
        "0.2",
        "--log-format",
        "text",
    ]
    env = {**os.environ, "PANTHEON_ENV": "dev"}
    proc = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)
    yield proc, f"http://127.0.0.1:{port}", ledger
    if proc.poll() is None:
        proc.kill()
        proc.wait(5)
    forget_session(mqtt_endpoint[0], mqtt_endpoint[1], client_id)


def test_cli_serves_runs_a_job_and_stops_on_sigterm(
    cli: tuple[subprocess.Popen[bytes], str, Path],
    mqtt_endpoint: tuple[str, int],
    mqtt_prefix: str,
) -> None:
    proc, url, ledger = cli
    bus = RobotBus(mqtt_endpoint[0], mqtt_endpoint[1], mqtt_prefix)
    try:
        deadline = time.monotonic() + 15
        health: dict[str, object] = {}
        while time.monotonic() < deadline and health.get("ready") is not True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                health = httpx.get(f"{url}/healthz", timeout=1).json()
            except httpx.TransportError:
                time.sleep(0.05)
        assert health == {"status": "ok", "mqtt_connected": True, "ready": True}

        bus.send(RobotJob.take(14, 804, job_id="cli-1"))  # 20 s at speed 100: 0.2 s
        done = {"status": "available", "job_id": "cli-1"}
        bus.wait_for(done)
        assert '"job_id":"cli-1"' in ledger.read_text()
        bus.wait_statuses(lambda s: s.count(done) >= 3)  # --status-repeat-s 0.2
    finally:
        bus.stop()

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    assert "robot-arm-sim stopping" in stderr
    assert "Traceback" not in stderr
