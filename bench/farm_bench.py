"""Whole-farm benchmark: FINISH -> take latency and memory, with N simulated printers.

Runs the native farm (pantheon-run) with N printers on a throw-away RabbitMQ vhost, MongoDB
database and MQTT topic prefix, queues jobs for every printer, and measures:

- latency from printer-service recording a FINISH (``prints.ended_at``, written when it sees the
  report) to the ``take`` job for that printer arriving on ``robot_arm/job`` (p50, p99, max);
- RSS of every printer-service process and of the whole farm (every supervised process).

Prints one JSON object and a markdown table row. Usage:
    uv run python bench/farm_bench.py --printers 20 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pymongo import MongoClient

from pantheon_common.gcode_store import LocalGcodeStore
from pantheon_common.mqtt import MqttClient, MqttMessage
from pantheon_common.settings import MqttSettings
from pantheon_contracts import ROBOT_JOB_TOPIC, RobotJob, RobotJobKind
from pantheon_devtools.infra import default_run_dir, ensure_infra
from pantheon_sim.bambu.gcode3mf import build_gcode_3mf, sample_gcode

SEED_IDS = [r * 10 + c for r in (1, 2, 3, 4) for c in range(1, 6)]


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _epoch(value: datetime | str) -> float:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def _tree(pid: int) -> list[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False
    ).stdout
    kids = [int(p) for p in out.split()]
    return kids + [g for k in kids for g in _tree(k)]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--printers", type=int, default=20, help="how many (seed ids, max 20)")
    parser.add_argument("--rounds", type=int, default=2, help="jobs per printer")
    parser.add_argument("--speed", type=float, default=300.0, help="printer simulation speed")
    parser.add_argument("--robot-speed", type=float, default=40.0, help="robot speed factor")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after s")
    args = parser.parse_args()

    infra = ensure_infra()
    ids = SEED_IDS[: args.printers]
    tag = uuid.uuid4().hex[:8]
    vhost = f"pantheon-bench-{tag}"
    mgmt = httpx.Client(
        base_url=infra.rabbitmq_management_url,
        auth=(infra.rabbitmq_user, infra.rabbitmq_password),
        timeout=10,
    )
    mgmt.put(f"/api/vhosts/{vhost}").raise_for_status()
    mgmt.put(
        f"/api/permissions/{vhost}/{infra.rabbitmq_user}",
        json={"configure": ".*", "write": ".*", "read": ".*"},
    ).raise_for_status()
    db_name = f"pantheon_bench_{tag}"
    prefix = f"bench/{tag}/"
    farm_dir = default_run_dir() / f"bench-farm-{tag}"
    env = {
        **os.environ,
        "AMQP_URL": infra.amqp_url_for_vhost(vhost),
        "MONGO_URL": infra.mongo_url,
        "MONGO_DB": db_name,
        "MQTT_TOPIC_PREFIX": prefix,
    }
    argv = [sys.executable, "-m", "pantheon_devtools.farm_run"]
    argv += ["--printers", ",".join(map(str, ids)), "--bind", "ports", "--farm-dir", str(farm_dir)]
    argv += ["--speed", str(args.speed), "--robot-speed", str(args.robot_speed)]
    argv += ["--sim-control-port", "39990", "--robot-control-port", "39991"]
    argv += ["--orchestrator-port", "39973", "--api-port", "39971", "--utilization-port", "39972"]
    argv += ["--printer-port-base", "53000"]
    log = (farm_dir.parent / f"bench-farm-{tag}.log").open("w")
    farm = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)

    takes: dict[int, list[float]] = {}
    lock = threading.Lock()

    def on_job(message: MqttMessage) -> None:
        job = RobotJob.parse(message.payload)
        if job.kind is RobotJobKind.TAKE and job.printer_id is not None:
            with lock:
                takes.setdefault(job.printer_id, []).append(time.time())

    settings = MqttSettings(
        mqtt_host=infra.mqtt_host, mqtt_port=infra.mqtt_port, mqtt_topic_prefix=prefix
    )
    watcher = MqttClient(settings, f"bench-{tag}")
    client: MongoClient[dict[str, Any]] = MongoClient(infra.mongo_url, tz_aware=True)
    db = client[db_name]
    result: dict[str, Any] = {}
    try:
        watcher.start()
        watcher.wait_connected()
        watcher.subscribe(ROBOT_JOB_TOPIC, on_job)
        deadline = time.monotonic() + 180
        while not all((db.printers.find_one({"_id": i}) or {}).get("bed") for i in ids):
            if farm.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"farm did not start; see {log.name}")
            time.sleep(0.5)
        store = LocalGcodeStore(farm_dir / "gcode")
        store.put("bench.gcode.3mf", [build_gcode_3mf(sample_gcode(layers=20, estimate="30m 0s"))])
        now = datetime.now(UTC)
        n_jobs = len(ids) * args.rounds
        for i in range(n_jobs):
            db.jobs.insert_one(
                {
                    "_id": uuid.uuid4().hex,
                    "file": "bench.gcode.3mf",
                    "copies": 1,
                    "copies_done": 0,
                    "priority": 0,
                    "seq": i,
                    "target": {"printer_id": ids[i % len(ids)], "model": None},
                    "bed_type": "textured_pei",
                    "status": "queued",
                    "printer_id": None,
                    "attempts": 0,
                    "max_attempts": 3,
                    "last_error": None,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        started = time.monotonic()
        peak_ps: list[float] = []
        peak_farm = 0.0
        while db.robot_tasks.count_documents({"status": "done"}) < 2 * n_jobs:
            if time.monotonic() - started > args.timeout:
                raise RuntimeError("timed out; see " + log.name)
            pids = _tree(farm.pid)
            ps = [_rss_mb(p) for p in pids if "printer-service" in _cmdline(p)]
            if sum(ps) > sum(peak_ps):
                peak_ps = ps
            peak_farm = max(peak_farm, sum(_rss_mb(p) for p in [farm.pid, *pids]))
            time.sleep(1.0)
        elapsed = time.monotonic() - started
        latencies = []
        for printer_id in ids:
            ends = sorted(
                _epoch(p["ended_at"])
                for p in db.prints.find({"printer_id": printer_id})
                if p.get("ended_at") is not None
            )
            with lock:
                seen = sorted(takes.get(printer_id, []))
            latencies += [t - e for e, t in zip(ends, seen, strict=False)]
        latencies.sort()

        def pct(q: float) -> float:
            return latencies[min(len(latencies) - 1, int(q * len(latencies)))]

        result = {
            "printers": len(ids),
            "jobs": n_jobs,
            "wall_s": round(elapsed, 1),
            "finish_to_take_s": {
                "n": len(latencies),
                "p50": round(statistics.median(latencies), 3),
                "p99": round(pct(0.99), 3),
                "max": round(latencies[-1], 3),
            },
            "printer_service_rss_mb": {
                "mean": round(statistics.mean(peak_ps), 1) if peak_ps else None,
                "max": round(max(peak_ps), 1) if peak_ps else None,
                "total": round(sum(peak_ps), 1),
            },
            "farm_rss_mb_peak": round(peak_farm, 1),
        }
    finally:
        watcher.stop()
        farm.send_signal(signal.SIGINT)
        try:
            farm.wait(60)
        except subprocess.TimeoutExpired:
            farm.kill()
        client.drop_database(db_name)
        client.close()
        mgmt.delete(f"/api/vhosts/{vhost}")
        log.close()
        shutil.rmtree(farm_dir, ignore_errors=True)
    print(json.dumps(result))
    lat, rss = result["finish_to_take_s"], result["printer_service_rss_mb"]
    print(
        f"| {datetime.now(UTC).date()} | {result['printers']} printers, {result['jobs']} jobs | "
        f"FINISH->take p50 {lat['p50']} s, p99 {lat['p99']} s | printer-service RSS mean "
        f"{rss['mean']} MB, total {rss['total']} MB | farm peak {result['farm_rss_mb_peak']} MB |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
