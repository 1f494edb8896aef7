"""pantheon-api ``GET /api/printers``: requests per second and latency with 20 and 1,000 printers.

Starts ``pantheon-api`` (the console script, one uvicorn process on a free loopback port) against
a scratch database on the harness's MongoDB-protocol server (``MONGO_URL`` from the environment
or ``.run/infra.env``), creates an admin with ``pantheon-api create-admin``, logs in through
``POST /api/auth/token``, seeds N printer documents shaped as seed_farm + printer-service write
them (static fields, live state, plate, current print), then loads the endpoint from a SECOND
process (this script with ``--worker``: httpx, a small thread pool, keep-alive, a bounded time)
and reports rps, p50, p99 per size. Finally stops the API and drops the database.

Prints one JSON object and markdown lines. Usage:
    uv run python bench/api_bench.py --sizes 20,1000 --seconds 15 --threads 4
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from pymongo import MongoClient

from pantheon_common.farm import load_layout
from pantheon_devtools.infra import ensure_infra

REPO = Path(__file__).resolve().parents[1]
MODELS = ["P1S", "X1C", "A1", "P1P", "X1E", "A1MINI"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _printer_docs(n: int) -> list[dict[str, Any]]:
    """N printer documents: the layout's 20 first, then synthetic ones (ids 100..)."""
    now = datetime.now(UTC)
    layout = load_layout(REPO / "farm.yaml")
    ids = [p.id for p in layout.printers][:n]
    ids += list(range(100, 100 + max(0, n - len(ids))))
    docs = []
    for i, pid in enumerate(ids):
        printing = i % 4 != 0
        docs.append(
            {
                "_id": pid,
                "model": MODELS[i % len(MODELS)],
                "driver": "bambu",
                "host": f"127.0.{pid // 250}.{pid % 250 + 1}",
                "serial": f"01P00A{pid:09d}",
                "mqtt_port": 8883,
                "ftps_port": 990,
                "default_bed_type": "textured_pei",
                "location": {"row": pid // 10, "col": pid % 10},
                "in_layout": True,
                "created_at": now,
                "state": "printing" if printing else "idle",
                "gcode_state": "RUNNING" if printing else "IDLE",
                "online": True,
                "link": "connected",
                "progress_pct": 42.0 if printing else None,
                "remaining_min": 95.0 if printing else None,
                "layer": 120 if printing else None,
                "total_layers": 300 if printing else None,
                "temps": {"nozzle": 220.0, "bed": 60.0, "chamber": 35.0},
                "subtask_name": "bracket" if printing else None,
                "gcode_file": "bracket.gcode.3mf" if printing else None,
                "print_error": 0,
                "last_error": None,
                "last_seen": now,
                "bed": {"bed_id": 801 + i % 40, "state": "in_printer"},
                "current_print": {
                    "print_id": secrets.token_hex(16),
                    "job_id": secrets.token_hex(16),
                    "file": "bracket.gcode.3mf",
                    "bed_id": 801 + i % 40,
                    "started_at": now - timedelta(hours=1),
                },
            }
        )
    return docs


def worker(url: str, token: str, seconds: float, threads: int, path: str) -> int:
    """Load GET ``path`` for ``seconds`` with ``threads`` keep-alive clients."""
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors = [0] * threads
    counts = [0] * threads
    sizes = [0] * threads
    start_at = time.monotonic() + 0.2
    stop_at = start_at + seconds

    def run(k: int) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            while time.monotonic() < start_at:
                time.sleep(0.01)
            while time.monotonic() < stop_at:
                t0 = time.perf_counter()
                try:
                    response = client.get(path)
                    ok = response.status_code == 200
                    if ok:
                        sizes[k] = len(response.json())
                except httpx.HTTPError:
                    ok = False
                elapsed = time.perf_counter() - t0
                if ok:
                    latencies[k].append(elapsed)
                    counts[k] += 1
                else:
                    errors[k] += 1

    pool = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(seconds + 60)
    flat = sorted(x for part in latencies for x in part)

    def pct(q: float) -> float:
        return flat[min(len(flat) - 1, int(q * len(flat)))] if flat else float("nan")

    print(
        json.dumps(
            {
                "requests": len(flat),
                "errors": sum(errors),
                "seconds": seconds,
                "threads": threads,
                "printers_in_response": max(sizes),
                "rps": round(len(flat) / seconds, 1),
                "p50_ms": round(1000 * statistics.median(flat), 2) if flat else None,
                "p99_ms": round(1000 * pct(0.99), 2) if flat else None,
                "max_ms": round(1000 * flat[-1], 2) if flat else None,
            }
        )
    )
    return 0


def _wait_ready(url: str, proc: subprocess.Popen[bytes], deadline_s: float = 60.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"pantheon-api exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("pantheon-api did not become ready")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="20,1000", help="printer counts, comma-separated")
    parser.add_argument("--seconds", type=float, default=15.0, help="load time per size")
    parser.add_argument("--threads", type=int, default=4, help="concurrent keep-alive clients")
    parser.add_argument("--worker", nargs=2, metavar=("URL", "TOKEN"), help=argparse.SUPPRESS)
    parser.add_argument("--path", default="/api/printers", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker[0], args.worker[1], args.seconds, args.threads, args.path)

    infra = ensure_infra()
    tag = secrets.token_hex(4)
    db_name = f"pantheon_bench_api_{tag}"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    work = Path(tempfile.mkdtemp(prefix="api-bench-"))
    password = secrets.token_urlsafe(18)
    (work / "admin").write_text(password + "\n")
    env = {
        **os.environ,
        "MONGO_URL": infra.mongo_url,
        "MONGO_DB": db_name,
        "AMQP_URL": infra.amqp_url,
        "PANTHEON_SECRET_KEY": secrets.token_urlsafe(48),
        "SERVICE_TOKEN": secrets.token_urlsafe(32),
        "GCODE_STORE_DIR": str(work / "gcode"),
        "HTTP_HOST": "127.0.0.1",
        "PANTHEON_API_PORT": str(port),
        "FARM_LAYOUT": str(REPO / "farm.yaml"),
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "text",
    }
    env.pop("PANTHEON_ADMIN_USERNAME", None)
    env.pop("PANTHEON_ADMIN_PASSWORD", None)
    script = shutil.which("pantheon-api") or str(Path(sys.executable).parent / "pantheon-api")
    client: MongoClient[dict[str, Any]] = MongoClient(infra.mongo_url, tz_aware=True)
    db = client[db_name]
    log = (work / "api.log").open("w")
    api: subprocess.Popen[bytes] | None = None
    results: dict[str, Any] = {"sizes": {}}
    try:
        subprocess.run(
            [script, "create-admin", "--username", "bench", "--password-file", str(work / "admin")],
            env=env,
            check=True,
            capture_output=True,
            timeout=60,
        )
        api = subprocess.Popen([script], env=env, stdout=log, stderr=subprocess.STDOUT)
        _wait_ready(url, api)
        login = httpx.post(
            f"{url}/api/auth/token", data={"username": "bench", "password": password}, timeout=10
        )
        login.raise_for_status()
        token = login.json()["access_token"]

        def load(url: str, token: str, path: str) -> str:
            return subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--worker",
                    url,
                    token,
                    *("--seconds", str(args.seconds), "--threads", str(args.threads)),
                    *("--path", path),
                ],
                capture_output=True,
                text=True,
                check=True,
                timeout=args.seconds + 120,
            ).stdout

        results["pages"] = {}
        for size in [int(s) for s in args.sizes.split(",") if s]:
            db.printers.delete_many({})
            db.printers.insert_many(_printer_docs(size))
            check = httpx.get(
                f"{url}/api/printers", headers={"Authorization": f"Bearer {token}"}, timeout=30
            )
            check.raise_for_status()
            if len(check.json()) != size:
                raise RuntimeError(f"expected {size} printers, got {len(check.json())}")
            out = load(url, token, "/api/printers")
            entry = json.loads(out.strip().splitlines()[-1])
            reads = []
            for _ in range(5):  # the MongoDB read alone, for comparison (same process as seed)
                t0 = time.perf_counter()
                list(db.printers.find({}))
                reads.append(time.perf_counter() - t0)
            entry["mongo_find_all_ms_median"] = round(1000 * statistics.median(reads), 2)
            results["sizes"][str(size)] = entry
            if size >= 200:  # what a dashboard with paging asks for: the first 100
                page = load(url, token, "/api/printers?limit=100")
                results["pages"][f"{size}, limit=100"] = json.loads(page.strip().splitlines()[-1])
        results["response_bytes_1000"] = None
        if "1000" in results["sizes"]:
            body = httpx.get(
                f"{url}/api/printers", headers={"Authorization": f"Bearer {token}"}, timeout=30
            )
            results["response_bytes_1000"] = len(body.content)
    finally:
        if api is not None:
            api.send_signal(signal.SIGINT)
            try:
                api.wait(20)
            except subprocess.TimeoutExpired:
                api.kill()
        log.close()
        client.drop_database(db_name)
        client.close()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results))
    for size, r in [*results["sizes"].items(), *results["pages"].items()]:
        print(
            f"| {datetime.now(UTC).date()} | GET /api/printers, {size} printers, "
            f"{r['threads']} clients, {r['seconds']:g} s | {r['rps']} req/s, p50 {r['p50_ms']} ms,"
            f" p99 {r['p99_ms']} ms, {r['errors']} errors |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
