"""Latency of printer-utilization's report queries over a year of intervals for 20 printers.

    uv run python bench/utilization_report.py [--runs 20] [--days 365] [--printers 20]

Creates a scratch database (``pantheon_bench_<hex>``) on the harness's MariaDB (``MYSQL_URL``
from the environment or ``.run/infra.env``, a server URL without a database), applies the
migrations, generates a realistic year (print / pause / wait for robot / idle / error / offline
cycles, one print_jobs row per print), runs each report N times through the same code path the
API uses (``MysqlStore.usage`` + ``build_report``), prints one JSON line and one markdown table
line per query, and drops the database.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import secrets
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, text

from printer_utilization.adapters.db import make_engine, print_jobs, state_intervals
from printer_utilization.adapters.migrate import upgrade
from printer_utilization.adapters.store import MysqlStore
from printer_utilization.api.app import create_app
from printer_utilization.domain.report import Grouping, build_report, make_buckets

ROOT = Path(__file__).resolve().parents[1]
PRINTER_IDS = [r * 10 + c for r in range(1, 5) for c in range(1, 6)]


def server_url() -> str:
    url = os.environ.get("MYSQL_URL")
    if not url:
        env = ROOT / ".run" / "infra.env"
        for line in env.read_text(encoding="utf-8").splitlines() if env.exists() else []:
            if line.startswith("MYSQL_URL="):
                url = line.split("=", 1)[1].strip()
    if not url:
        sys.exit("MYSQL_URL not set and not in .run/infra.env (start the harness first)")
    parts = urlsplit(url)
    return parts._replace(path="", query="").geturl()


Rows = list[dict[str, object]]


def generate(
    rng: random.Random, printer_id: int, start: datetime, end: datetime
) -> tuple[Rows, Rows]:
    """Intervals and prints of one printer, as row dicts (naive UTC)."""
    intervals: Rows = []
    prints: Rows = []
    t = start

    def add(state: str, hours: float) -> None:
        nonlocal t
        stop = min(end, t + timedelta(hours=hours))
        if stop > t:
            naive = t.replace(tzinfo=None)
            intervals.append(
                {
                    "printer_id": printer_id,
                    "state": state,
                    "started_at": naive,
                    "ended_at": stop.replace(tzinfo=None),
                    "last_seen_at": stop.replace(tzinfo=None),
                }
            )
        t = stop

    n = 0
    while t < end:
        n += 1
        print_start = t
        add("printing", rng.uniform(0.5, 3.0))
        if rng.random() < 0.15:
            add("paused", rng.uniform(0.05, 0.5))
            add("printing", rng.uniform(0.2, 2.0))
        failed = rng.random() < 0.05
        prints.append(
            {
                "print_id": f"{printer_id}-{n}",
                "printer_id": printer_id,
                "file": f"part_{n % 37}.gcode.3mf",
                "started_at": print_start.replace(tzinfo=None),
                "ended_at": t.replace(tzinfo=None),
                "result": "failed" if failed else "finished",
                "duration_s": (t - print_start).total_seconds(),
                "filament_g": round(rng.uniform(5, 120), 1),
            }
        )
        add("error" if failed else "waiting_for_robot", rng.uniform(0.05, 0.6))
        add("idle", rng.expovariate(1 / 1.5))
        if rng.random() < 0.02:
            add("offline", rng.uniform(0.1, 6.0))
    if intervals:
        intervals[-1]["ended_at"] = None  # the current interval is open
    return intervals, prints


def check_against_raw(engine: Engine, store: MysqlStore, start: datetime, end: datetime) -> None:
    """The report's seconds per state equal a plain SUM over the raw intervals (all of them lie
    inside the year): the daily totals hold the whole year, nothing missing or doubled."""
    with engine.connect() as conn:
        raw = dict(
            conn.execute(
                text(
                    "SELECT state, SUM(TIMESTAMPDIFF(MICROSECOND, started_at, "
                    "COALESCE(ended_at, last_seen_at))) / 1e6 FROM state_intervals GROUP BY state"
                )
            ).all()
        )
    got: dict[str, float] = {}
    for usage in store.usage(make_buckets(start, end, Grouping.NONE), None).values():
        for state, seconds in usage.seconds.items():
            got[state.value] = got.get(state.value, 0.0) + seconds
    for state, seconds in raw.items():
        assert abs(got.get(state, 0.0) - float(seconds)) < 1.0, (state, got.get(state), seconds)


def http_case(store: MysqlStore, start: datetime, end: datetime, runs: int) -> dict[str, object]:
    """The per-day year through the service's HTTP API (ASGI, in process): report plus JSON."""
    token = secrets.token_urlsafe(16)
    client = TestClient(create_app(store, token=token, clock=lambda: end))
    params = {"from": start.isoformat(), "to": end.isoformat(), "group": "day"}
    headers = {"Authorization": f"Bearer {token}"}
    timings = []
    size = 0
    for _ in range(runs):
        began = time.perf_counter()
        response = client.get("/utilization", params=params, headers=headers)
        timings.append(time.perf_counter() - began)
        response.raise_for_status()
        size = len(response.content)
    return {
        "query": f"GET /utilization, farm, {(end - start).days} days, per day ({size // 1024} KiB)",
        "median_ms": round(1000 * statistics.median(timings), 1),
        "p95_ms": round(1000 * percentile(timings, 0.95), 1),
        "buckets": (end - start).days,
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--printers", type=int, default=20)
    parser.add_argument("--seed", type=int, default=6)
    args = parser.parse_args()

    base = server_url()
    name = f"pantheon_bench_{secrets.token_hex(4)}"
    admin = make_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    engine = make_engine(f"{base}/{name}?charset=utf8mb4")
    try:
        # The year is loaded at the schema's first revision; migrating to head then fills the
        # daily totals from it (the path an existing installation takes).
        upgrade(engine, "0001")
        end = datetime(2026, 1, 1, tzinfo=UTC)
        start = end - timedelta(days=args.days)
        rng = random.Random(args.seed)  # noqa: S311 (synthetic data, reproducible)
        printers = PRINTER_IDS[: args.printers]
        n_intervals = n_prints = 0
        loaded = time.perf_counter()
        with engine.begin() as conn:
            for pid in printers:
                rows, prints = generate(rng, pid, start, end)
                for i in range(0, len(rows), 5000):
                    conn.execute(insert(state_intervals), rows[i : i + 5000])
                for i in range(0, len(prints), 5000):
                    conn.execute(insert(print_jobs), prints[i : i + 5000])
                n_intervals += len(rows)
                n_prints += len(prints)
        upgrade(engine)
        with engine.begin() as conn:
            conn.execute(text("ANALYZE TABLE state_intervals, print_jobs, daily_state_seconds"))
        load_s = time.perf_counter() - loaded
        store = MysqlStore(engine)
        check_against_raw(engine, store, start, end)
        cases = [
            (f"farm, {args.days} days, total", start, end, Grouping.NONE, None),
            (f"farm, {args.days} days, per day", start, end, Grouping.DAY, None),
            (f"farm, {args.days} days, per week", start, end, Grouping.WEEK, None),
            ("farm, last 7 days, per day", end - timedelta(days=7), end, Grouping.DAY, None),
            (
                "one printer, last 30 days, per day",
                end - timedelta(days=30),
                end,
                Grouping.DAY,
                [11],
            ),
        ]
        results = []
        for label, lo, hi, grouping, ids in cases:
            timings = []
            for _ in range(args.runs):
                began = time.perf_counter()
                buckets = make_buckets(lo, hi, grouping)
                usage = store.usage(buckets, ids)
                report = build_report(buckets, grouping, ids or printers, usage)
                timings.append(time.perf_counter() - began)
            sums = [sum(p.total.percent.values()) for p in report.printers]
            assert all(abs(s - 100) < 1e-6 for s in sums), sums
            results.append(
                {
                    "query": label,
                    "median_ms": round(1000 * statistics.median(timings), 1),
                    "p95_ms": round(1000 * percentile(timings, 0.95), 1),
                    "buckets": len(buckets.items),
                }
            )
        results.append(http_case(store, start, end, args.runs))
        summary = {
            "benchmark": "utilization_report",
            "printers": len(printers),
            "days": args.days,
            "intervals": n_intervals,
            "prints": n_prints,
            "runs": args.runs,
            "load_s": round(load_s, 1),
            "results": results,
        }
        print(json.dumps(summary))
        today = datetime.now(UTC).date().isoformat()
        machine = f"{platform.system()} {os.cpu_count()} cores, Python {platform.python_version()}"
        for r in results:
            print(
                f"| {today} | {machine} | {r['query']} ({n_intervals} intervals) | "
                f"median {r['median_ms']} ms, p95 {r['p95_ms']} ms |"
            )
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
