"""Run every benchmark, write bench/results/<name>.json, print and update the summary table.

    uv run python bench/run_all.py                       # all of them (about 10 min)
    uv run python bench/run_all.py --skip farm_bench,slicer_bench
    uv run python bench/run_all.py --only farm_week --no-readme

Each benchmark runs as its own subprocess with a time limit; its JSON output goes to
``bench/results/<name>.json`` with the command, date, duration and machine. The summary table
is rebuilt from every results file present (a skipped benchmark keeps its last result, with
its own date) and written between the run_all markers of bench/README.md. farm_week takes its
per-motion overhead from farm_bench's calibration when that result exists.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
README = BENCH / "README.md"
BEGIN, END = "<!-- run_all:begin -->", "<!-- run_all:end -->"


def _farm_week_args() -> list[str]:
    overhead = 0.0
    farm = RESULTS / "farm_bench.json"
    if farm.exists():
        result = json.loads(farm.read_text()).get("result", {})
        swap = result.get("swap_calibration_s", {})
        if swap.get("overhead_per_swap_p50") is not None:
            overhead = max(0.0, float(swap["overhead_per_swap_p50"]) / 2)
    return ["--days", "7", "--seed", "9", "--overhead-s", f"{overhead:.3f}"]


BENCHES: dict[str, tuple[Callable[[], list[str]], float]] = {
    "farm_bench": (lambda: ["farm_bench.py", "--printers", "20", "--rounds", "2"], 900),
    "farm_week": (lambda: ["farm_week.py", *_farm_week_args()], 120),
    "api_bench": (lambda: ["api_bench.py", "--sizes", "20,1000", "--seconds", "15"], 300),
    "printer_service_memory": (lambda: ["printer_service_memory.py", "--seconds", "20"], 180),
    "utilization_report": (lambda: ["utilization_report.py", "--runs", "10"], 600),
    "slicer_bench": (lambda: ["slicer_bench.py", "--runs", "15", "--part-runs", "7"], 900),
}


def machine() -> dict[str, Any]:
    mem_gib = None
    try:
        out = subprocess.run(["free", "-g"], capture_output=True, text=True, check=True).stdout
        mem_gib = int(out.splitlines()[1].split()[1])
    except (OSError, subprocess.CalledProcessError, IndexError, ValueError):
        pass
    try:
        load = round(os.getloadavg()[0], 2)
    except OSError:
        load = None
    os_name = platform.system()
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return {
        "os": os_name,
        "nproc": os.cpu_count(),
        "mem_total_gib": mem_gib,
        "python": platform.python_version(),
        "load_1min_at_start": load,
    }


def _json_from(stdout: str) -> dict[str, Any]:
    """The first JSON object a benchmark printed (one line, or indented over several)."""
    decoder = json.JSONDecoder()
    for i, line in enumerate(stdout.splitlines(keepends=True)):
        if line.startswith("{"):
            rest = "".join(stdout.splitlines(keepends=True)[i:])
            value, _ = decoder.raw_decode(rest)
            if isinstance(value, dict):
                return value
    raise ValueError("no JSON object in the output")


def run(name: str, host: dict[str, Any]) -> dict[str, Any]:
    make, limit = BENCHES[name]
    argv = [sys.executable, str(BENCH / make()[0]), *make()[1:]]
    print(f"== {name}: {' '.join(argv[1:])}", flush=True)
    started = time.monotonic()
    record: dict[str, Any] = {
        "name": name,
        "command": "uv run python bench/" + " ".join([Path(argv[1]).name, *argv[2:]]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": host,
    }
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a benchmark cleans up on SIGINT (farm, vhost, database): make sure it is not ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        stdout, stderr = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)  # let it clean up, then insist
        try:
            stdout, stderr = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        record["error"] = f"timed out after {limit:g} s"
    record["wall_s"] = round(time.monotonic() - started, 1)
    if "error" not in record:
        if proc.returncode != 0:
            record["error"] = f"exit {proc.returncode}: {stderr.strip()[-1500:]}"
        else:
            try:
                record["result"] = _json_from(stdout)
                record["markdown"] = [ln for ln in stdout.splitlines() if ln.startswith("|")]
            except ValueError as err:
                record["error"] = str(err)
    status = "failed: " + record["error"][:300] if "error" in record else "ok"
    print(f"   {status} ({record['wall_s']} s)", flush=True)
    if "error" not in record or not (RESULTS / f"{name}.json").exists():
        (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


# -- summary --------------------------------------------------------------------------------


def _farm_bench(r: dict[str, Any]) -> str:
    lat, parts = r["finish_to_take_s"], r["finish_to_take_parts_s"]
    cal, rss = r["swap_calibration_s"], r["printer_service_rss_mb"]
    swap = cal["swap_take_sent_to_replace_done"]
    return (
        f"{r['printers']} printers, {r['jobs']} prints: FINISH->take on MQTT p50 {lat['p50']} s,"
        f" p99 {lat['p99']} s (FINISH->task recorded p50 {parts['finish_to_recorded']['p50']} s"
        f" / p99 {parts['finish_to_recorded']['p99']} s; waiting behind other swaps p50 "
        f"{parts['recorded_to_sent']['p50']} s / p99 {parts['recorded_to_sent']['p99']} s; "
        f"sent->MQTT p50 {parts['sent_to_mqtt']['p50']} s). Swap take-sent->replace-done p50 "
        f"{swap['p50']} s for {cal['nominal_motion']} s of simulated motion (overhead "
        f"{cal['overhead_per_swap_p50']} s/swap). printer-service RSS mean {rss['mean']} MB, max "
        f"{rss['max']} MB, {rss['total']} MB for all; farm peak {r['farm_rss_mb_peak']} MB"
    )


def _farm_week(r: dict[str, Any]) -> str:
    cfg = r["config"]
    parts = []
    for name, s in r["scenarios"].items():
        f, o, b = s["fcfs"], s["orchestrator"], s["bound"]
        parts.append(
            f"{name}: prints/day FCFS {f['prints_per_day']} / orchestrator {o['prints_per_day']} "
            f"(bound {b['prints_per_day']}); wait for robot/print FCFS "
            f"{f['printer_wait_for_robot_s']['mean']} s / orch "
            f"{o['printer_wait_for_robot_s']['mean']} s (bound {cfg['cycle_s']:g} s); robot "
            f"{100 * f['robot_utilization']:.1f} / {100 * o['robot_utilization']:.1f} % "
            f"(bound {100 * b['robot_utilization']:.1f} %)"
        )
    return (
        f"{cfg['printers']} printers, {cfg['days']:g} days, swap {cfg['cycle_s']:g} s "
        f"(overhead {cfg['overhead_s']} s/motion). " + "; ".join(parts)
    )


def _api(r: dict[str, Any]) -> str:
    return "; ".join(
        f"{size} printers: {s['rps']} req/s, p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms "
        f"({s['threads']} clients, {s['errors']} errors)"
        for size, s in r["sizes"].items()
    )


def _memory(r: dict[str, Any]) -> str:
    return f"RSS max {r['rss_mb_max']} MB, last {r['rss_mb_last']} MB ({r['jobs_finished']} job)"


def _utilization(r: dict[str, Any]) -> str:
    return f"{r['intervals']} intervals; " + "; ".join(
        f"{q['query']}: median {q['median_ms']} ms, p95 {q['p95_ms']} ms" for q in r["results"]
    )


def _slicer(r: dict[str, Any]) -> str:
    job = r["cube_service_slice_job"]
    cold = r.get("cube_cold_engine", {}).get("service_slice_job")
    return (
        f"fast quote 100k tris median {r['fast_quote_100k']['median_ms']} ms; cube engine "
        f"{r['cube_direct_engine']['median_ms']} ms direct, service {job['median_ms']} ms "
        f"({job['overhead_pct']:+} %)"
        + (f", engines started cold {cold['overhead_pct']:+} %" if cold else "")
    )


SUMMARIES: dict[str, Callable[[dict[str, Any]], str]] = {
    "farm_bench": _farm_bench,
    "farm_week": _farm_week,
    "api_bench": _api,
    "printer_service_memory": _memory,
    "utilization_report": _utilization,
    "slicer_bench": _slicer,
}


def table() -> str:
    rows = ["| benchmark | date (UTC) | machine | wall | result |", "|---|---|---|---|---|"]
    details: list[str] = []
    for name in BENCHES:
        path = RESULTS / f"{name}.json"
        if not path.exists():
            continue
        rec = json.loads(path.read_text())
        m = rec["machine"]
        host = (
            f"{m['os']}, {m['nproc']} cores, {m['mem_total_gib']} GiB, Python {m['python']}, "
            f"load {m['load_1min_at_start']}"
        )
        if "error" in rec:
            text = "FAILED: " + rec["error"].replace("\n", " ").replace("|", "/")[:200]
        else:
            try:
                text = SUMMARIES[name](rec["result"])
            except (KeyError, TypeError) as err:
                text = f"(summary failed: {err})"
        rows.append(f"| `{name}` | {rec['date'][:16]} | {host} | {rec['wall_s']} s | {text} |")
        if name == "farm_week" and rec.get("markdown"):
            details = rec["markdown"]
    out = "\n".join(rows)
    if details:
        out += "\n\nfarm_week in detail:\n\n" + "\n".join(details)
    return out


def update_readme(text: str) -> None:
    body = README.read_text()
    block = f"{BEGIN}\n{text}\n{END}"
    if BEGIN in body and END in body:
        before, rest = body.split(BEGIN, 1)
        after = rest.split(END, 1)[1]
        body = before + block + after
    else:
        body = body.rstrip("\n") + "\n\n" + block + "\n"
    README.write_text(body)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip", default="", help="comma-separated benchmarks to skip")
    parser.add_argument("--only", default="", help="comma-separated benchmarks to run")
    parser.add_argument("--no-readme", action="store_true", help="do not touch bench/README.md")
    parser.add_argument("--list", action="store_true", help="list the benchmarks")
    args = parser.parse_args()
    if args.list:
        print("\n".join(BENCHES))
        return 0
    wanted = [n for n in args.only.split(",") if n] or list(BENCHES)
    skipped = {n for n in args.skip.split(",") if n}
    unknown = (set(wanted) | skipped) - set(BENCHES)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    RESULTS.mkdir(exist_ok=True)
    host = machine()
    failed = 0
    for name in BENCHES:  # fixed order: farm_week reads farm_bench's calibration
        if name in wanted and name not in skipped:
            failed += "error" in run(name, host)
    text = table()
    print(text)
    if not args.no_readme:
        update_readme(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
