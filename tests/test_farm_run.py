"""The native farm (`./farm run` = pantheon-run): the loop of architecture.md 4 end to end.

Two simulated printers, the robot simulator and every service run as separate processes under
the supervisor, on their own vhost, database, topic prefix and ports. A file uploaded and four
jobs queued through pantheon-api are printed once each, every finished plate is swapped once
(the robot simulator's ledger), a killed printer-service is restarted, and Ctrl-C leaves no
process behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import MongoClient

from pantheon_devtools.infra import default_run_dir
from pantheon_devtools.pytest_plugin import MongoTestDb
from pantheon_sim.bambu.gcode3mf import build_gcode_3mf, sample_gcode

PORTS = {
    "--sim-control-port": 29990,
    "--robot-control-port": 29991,
    "--orchestrator-port": 29973,
    "--api-port": 29971,
    "--utilization-port": 29972,
    "--slicer-port": 29980,
    "--printer-port-base": 52000,
}


def _wait(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def _children_of(pid: int) -> list[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False
    ).stdout
    return [int(p) for p in out.split()]


@pytest.fixture
def farm(
    amqp_url: str, mongo_db: MongoTestDb, mqtt_prefix: str
) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    farm_dir = default_run_dir() / f"test-farm-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "AMQP_URL": amqp_url,
        "MONGO_URL": mongo_db.url,
        "MONGO_DB": mongo_db.name,
        "MQTT_TOPIC_PREFIX": mqtt_prefix,
    }
    argv = [sys.executable, "-m", "pantheon_devtools.farm_run", "--printers", "14,15"]
    argv += ["--speed", "600", "--robot-speed", "50", "--bind", "ports"]
    argv += ["--farm-dir", str(farm_dir)]
    for flag, port in PORTS.items():
        argv += [flag, str(port)]
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        yield proc, farm_dir
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        import shutil

        shutil.rmtree(farm_dir, ignore_errors=True)


def test_native_farm_prints_swaps_restarts_and_stops_cleanly(
    farm: tuple[subprocess.Popen[str], Path], mongo_db: MongoTestDb
) -> None:
    proc, farm_dir = farm
    base = PORTS["--printer-port-base"]
    orchestrator = f"http://127.0.0.1:{PORTS['--orchestrator-port']}"
    _wait(
        lambda: _ok(f"{orchestrator}/healthz") or proc.poll() is not None, 90, "the farm to start"
    )
    assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""

    client: MongoClient[dict[str, Any]] = MongoClient(mongo_db.url, tz_aware=True)
    db = client[mongo_db.name]
    try:
        # the robot simulator's plates were recorded as loaded in both printers
        _wait(
            lambda: all((db.printers.find_one({"_id": p}) or {}).get("bed") for p in (14, 15)),
            30,
            "plates recorded in MongoDB",
        )
        # an operator's path, through pantheon-api only: log in, upload, queue four jobs
        api = httpx.Client(base_url=f"http://127.0.0.1:{PORTS['--api-port']}", timeout=15)
        _wait(lambda: _ok(f"{api.base_url}/healthz"), 60, "pantheon-api")
        password = _secret(farm_dir, "PANTHEON_ADMIN_PASSWORD")
        login = api.post("/api/auth/token", data={"username": "admin", "password": password})
        assert login.status_code == 200, login.text
        api.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        package = build_gcode_3mf(sample_gcode(layers=10, estimate="20m 0s"))
        upload = api.post(
            "/api/files", files={"file": ("cube.gcode.3mf", package, "application/octet-stream")}
        )
        assert upload.status_code in (200, 201), upload.text
        jobs = []
        for _ in range(4):
            created = api.post(
                "/api/jobs",
                json={
                    "file": "cube.gcode.3mf",
                    "target": {"model": "P1S"},
                    "bed_type": "textured_pei",
                },
            )
            assert created.status_code in (200, 201), created.text
            jobs.append(created.json()["id"])

        def finished() -> int:
            listed = api.get("/api/jobs").json()
            items = listed["items"] if isinstance(listed, dict) else listed
            return sum(1 for j in items if j["id"] in jobs and j["status"] == "finished")

        _wait(lambda: finished() == 4, 120, "four jobs finished (seen through pantheon-api)")
        _wait(
            lambda: db.robot_tasks.count_documents({"status": "done"}) == 8,
            60,
            "eight robot tasks done",
        )
        prints = list(db.prints.find({}))
        assert len(prints) == 4
        assert {p["printer_id"] for p in prints} == {14, 15}
        ledger = [
            json.loads(line)
            for line in (farm_dir / "robot-ledger.jsonl").read_text().splitlines()
            if line.strip()
        ]
        motions = [e for e in ledger if e["event"] == "motion"]
        assert len(motions) == 8
        assert len({e["job_id"] for e in motions}) == 8  # no motion executed twice
        assert not [e for e in ledger if e["event"] == "refused"]

        # a printer-service killed with SIGKILL comes back by itself
        status_url = f"http://127.0.0.1:{base + 14}/healthz"
        pid = _pid_listening(base + 14)
        os.kill(pid, signal.SIGKILL)
        _wait(lambda: _pid_listening(base + 14) not in (None, pid), 30, "printer-service-14 back")
        assert _ok(status_url)
    finally:
        client.close()

    children = _children_of(proc.pid)
    assert children
    proc.send_signal(signal.SIGINT)
    assert proc.wait(45) == 0
    _wait(lambda: not any(_alive(c) for c in children), 15, "every farm process to stop")


def _secret(farm_dir: Path, name: str) -> str:
    for line in (farm_dir / "secrets.env").read_text().splitlines():
        key, _, value = line.partition("=")
        if key == name:
            return value
    raise AssertionError(f"{name} not in the farm's secrets.env")


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _pid_listening(port: int) -> int | None:
    out = subprocess.run(
        ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=False
    ).stdout
    marker = "pid="
    if marker not in out:
        return None
    return int(out.split(marker, 1)[1].split(",", 1)[0])


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
