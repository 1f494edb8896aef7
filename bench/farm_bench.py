"""Whole-farm benchmark: FINISH -> take latency and memory, with N simulated printers.

Runs the native farm (pantheon-run) with N printers on a throw-away RabbitMQ vhost, MongoDB
database and MQTT topic prefix, queues jobs for every printer, and measures:

- latency from printer-service recording a FINISH (``prints.ended_at``, written when it sees the
  report) to the ``take`` job for that printer arriving on ``robot_arm/job`` (p50, p99, max);
- RSS of every printer-service process and of the whole farm (every supervised process);
- the parts of that latency (FINISH -> task recorded by the orchestrator, recorded -> sent while
  the robot works for other printers, sent -> seen on MQTT), and the robot's time per plate swap
  (take sent -> replace done) against the simulated motion time, to calibrate bench/farm_week.py.

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
from pantheon_devtools.infra import (
    create_mysql_database,
    default_run_dir,
    drop_mysql_database,
    ensure_infra,
)
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


def _stats(values: list[float]) -> dict[str, float | int | None]:
    """n, p50, p99, max (nearest rank), rounded to ms."""
    if not values:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    ordered = sorted(values)

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "n": len(ordered),
        "p50": round(statistics.median(ordered), 3),
        "p99": round(pct(0.99), 3),
        "max": round(ordered[-1], 3),
    }


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
    parser.add_argument(
        "--robot-take-s", type=float, default=20.0, help="robot-arm-sim take duration (its default)"
    )
    parser.add_argument(
        "--robot-replace-s", type=float, default=20.0, help="robot-arm-sim replace duration"
    )
    args = parser.parse_args()
    # Started in the background (nohup, run_all.py) SIGINT may be ignored: take it and SIGTERM
    # as KeyboardInterrupt so the farm, the vhost and the database are always cleaned up.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)

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
    # printer-utilization gets a database of its own (the harness's MYSQL_URL names none)
    mysql_url = create_mysql_database(infra, db_name)
    prefix = f"bench/{tag}/"
    farm_dir = default_run_dir() / f"bench-farm-{tag}"
    env = {
        **os.environ,
        "AMQP_URL": infra.amqp_url_for_vhost(vhost),
        "MONGO_URL": infra.mongo_url,
        "MONGO_DB": db_name,
        "MYSQL_URL": mysql_url,
        "MQTT_TOPIC_PREFIX": prefix,
        # the orchestrator's default client id is fixed: another farm on the same broker
        # (a developer's `./farm run`) would kick it off the bus every second
        "MQTT_CLIENT_ID": f"robot-arm-orchestrator-bench-{tag}",
        "ROBOT_SIM_TAKE_S": str(args.robot_take_s),
        "ROBOT_SIM_REPLACE_S": str(args.robot_replace_s),
        # slicer-api refuses to start without it (it only uploads to pantheon-api with it)
        "PANTHEON_API_KEY": os.environ.get("PANTHEON_API_KEY") or f"bench-{tag}",
    }
    argv = [sys.executable, "-m", "pantheon_devtools.farm_run"]
    argv += ["--printers", ",".join(map(str, ids)), "--bind", "ports", "--farm-dir", str(farm_dir)]
    argv += ["--speed", str(args.speed), "--robot-speed", str(args.robot_speed)]
    argv += ["--sim-control-port", "39990", "--robot-control-port", "39991"]
    argv += ["--orchestrator-port", "39973", "--api-port", "39971", "--utilization-port", "39972"]
    argv += ["--slicer-port", "39980", "--printer-port-base", "53000"]
    log = (farm_dir.parent / f"bench-farm-{tag}.log").open("w")
    farm = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)

    takes: dict[int, list[float]] = {}
    seen_job: dict[str, float] = {}
    lock = threading.Lock()

    def on_job(message: MqttMessage) -> None:
        job = RobotJob.parse(message.payload)
        now = time.time()
        with lock:
            if job.job_id:
                seen_job[job.job_id] = now
            if job.kind is RobotJobKind.TAKE and job.printer_id is not None:
                takes.setdefault(job.printer_id, []).append(now)

    settings = MqttSettings(
        mqtt_host=infra.mqtt_host, mqtt_port=infra.mqtt_port, mqtt_topic_prefix=prefix
    )
    watcher = MqttClient(settings, f"bench-{tag}")
    client: MongoClient[dict[str, Any]] = MongoClient(infra.mongo_url, tz_aware=True)
    db = client[db_name]
    result: dict[str, Any] = {}
    api: httpx.Client | None = None
    try:
        watcher.start()
        watcher.wait_connected()
        watcher.subscribe(ROBOT_JOB_TOPIC, on_job)
        deadline = time.monotonic() + 180
        while not all((db.printers.find_one({"_id": i}) or {}).get("bed") for i in ids):
            if farm.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"farm did not start; see {log.name}")
            time.sleep(0.5)
        # Jobs only once the whole farm is up (pantheon-api starts last but slicer-api): queued
        # earlier, the first prints ended before the orchestrator consumed, and FINISH->recorded
        # measured the farm's start-up instead of the intake.
        api = httpx.Client(base_url="http://127.0.0.1:39971", timeout=10)
        deadline = time.monotonic() + 180
        while True:
            try:
                if api.get("/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if farm.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"pantheon-api of the farm did not start; see {log.name}")
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
        # The bench is the operator: 20 printers x 2 rounds need more swaps than the 28 textured
        # plates, so plates back in the rack with a part are marked clean through pantheon-api
        # (which nudges the orchestrator), as a person would.
        secrets_env = dict(
            line.split("=", 1)
            for line in (farm_dir / "secrets.env").read_text().splitlines()
            if "=" in line
        )
        login = api.post(
            "/api/auth/token",
            data={"username": "admin", "password": secrets_env["PANTHEON_ADMIN_PASSWORD"]},
        )
        login.raise_for_status()
        api.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        cleaned = 0
        while db.robot_tasks.count_documents({"status": "done"}) < 2 * n_jobs:
            if time.monotonic() - started > args.timeout:
                raise RuntimeError("timed out; see " + log.name)
            for bed in db.beds.find({"state": "with_part", "location.printer_id": None}):
                cleaned += api.post(f"/api/beds/{bed['_id']}/clean").status_code == 200
            pids = _tree(farm.pid)
            ps = [_rss_mb(p) for p in pids if "printer-service" in _cmdline(p)]
            if sum(ps) > sum(peak_ps):
                peak_ps = ps
            peak_farm = max(peak_farm, sum(_rss_mb(p) for p in [farm.pid, *pids]))
            time.sleep(1.0)
        elapsed = time.monotonic() - started
        prints = {str(p["_id"]): p for p in db.prints.find({"printer_id": {"$in": ids}})}
        tasks = {str(t["_id"]): t for t in db.robot_tasks.find({})}
        latencies: list[float] = []
        intake: list[float] = []
        queued: list[float] = []
        publish: list[float] = []
        swap: list[float] = []
        take_motion: list[float] = []
        replace_motion: list[float] = []
        between: list[float] = []
        restart: list[float] = []
        starts: dict[int, list[float]] = {}
        for p in prints.values():
            starts.setdefault(int(p["printer_id"]), []).append(_epoch(p["started_at"]))
        for task in tasks.values():
            if task.get("kind") != "take" or task.get("status") != "done":
                continue
            printed = prints.get(str(task.get("print_id")))
            replace = tasks.get(f"{task.get('print_id')}:replace")
            if printed is None or printed.get("ended_at") is None or replace is None:
                continue
            ended = _epoch(printed["ended_at"])
            created, sent = _epoch(task["created_at"]), _epoch(task["sent_at"])
            with lock:
                seen = seen_job.get(str(task.get("job_id")))
            if seen is not None:
                latencies.append(seen - ended)
                publish.append(seen - sent)
            intake.append(created - ended)
            queued.append(sent - created)
            take_done = _epoch(task["finished_at"])
            take_motion.append(take_done - sent)
            if replace.get("status") == "done":
                r_sent, r_done = _epoch(replace["sent_at"]), _epoch(replace["finished_at"])
                replace_motion.append(r_done - r_sent)
                between.append(r_sent - take_done)
                swap.append(r_done - sent)
                later = [s for s in starts.get(int(task["printer_id"]), []) if s > r_done]
                if later:
                    restart.append(min(later) - r_done)
        if not seen_job:  # the robot does not echo job ids: match takes per printer in order
            for printer_id in ids:
                ends = sorted(
                    _epoch(p["ended_at"])
                    for p in prints.values()
                    if p["printer_id"] == printer_id and p.get("ended_at") is not None
                )
                with lock:
                    order = sorted(takes.get(printer_id, []))
                latencies += [t - e for e, t in zip(ends, order, strict=False)]
        nominal = (args.robot_take_s + args.robot_replace_s) / args.robot_speed
        swap_p50 = statistics.median(swap) if swap else None

        result = {
            "printers": len(ids),
            "jobs": n_jobs,
            "speed": args.speed,
            "robot_speed": args.robot_speed,
            "wall_s": round(elapsed, 1),
            "plates_cleaned_by_bench": cleaned,
            "finish_to_take_s": _stats(latencies),
            "finish_to_take_parts_s": {
                "finish_to_recorded": _stats(intake),
                "recorded_to_sent": _stats(queued),
                "sent_to_mqtt": _stats(publish),
            },
            "swap_calibration_s": {
                "nominal_motion": round(nominal, 3),
                "take_sent_to_done": _stats(take_motion),
                "take_done_to_replace_sent": _stats(between),
                "replace_sent_to_done": _stats(replace_motion),
                "swap_take_sent_to_replace_done": _stats(swap),
                "overhead_per_swap_p50": (
                    round(swap_p50 - nominal, 3) if swap_p50 is not None else None
                ),
                "replace_done_to_next_print_started": _stats(restart),
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
        if api is not None:
            api.close()
        farm.send_signal(signal.SIGINT)
        try:
            farm.wait(60)
        except subprocess.TimeoutExpired:
            farm.kill()
        client.drop_database(db_name)
        client.close()
        drop_mysql_database(infra, db_name)
        mgmt.delete(f"/api/vhosts/{vhost}")
        log.close()
        shutil.rmtree(farm_dir, ignore_errors=True)
    print(json.dumps(result))
    lat, rss = result["finish_to_take_s"], result["printer_service_rss_mb"]
    parts, cal = result["finish_to_take_parts_s"], result["swap_calibration_s"]
    print(
        f"| {datetime.now(UTC).date()} | {result['printers']} printers, {result['jobs']} jobs | "
        f"FINISH->take p50 {lat['p50']} s, p99 {lat['p99']} s (FINISH->recorded p50 "
        f"{parts['finish_to_recorded']['p50']} s, waiting for the robot p50 "
        f"{parts['recorded_to_sent']['p50']} s) | swap "
        f"{cal['swap_take_sent_to_replace_done']['p50']} s for {cal['nominal_motion']} s of "
        f"motion | printer-service RSS mean "
        f"{rss['mean']} MB, total {rss['total']} MB | farm peak {result['farm_rss_mb_peak']} MB |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
