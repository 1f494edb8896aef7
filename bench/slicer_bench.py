"""slicer-api benchmark (issue 8): fast-quote latency and the service's slicing overhead.

    uv run python bench/slicer_bench.py [--runs 15] [--part-runs 5]

Starts slicer-api as its own process (as deployed: real PrusaSlicer, the repo's profiles, a
free loopback port) and measures:
- fast quote: POST /price (mode=fast) of a 100 032-triangle binary STL (trefoil-knot tube,
  4.8 MB), end to end over HTTP: upload, parse in the limited child process, price;
- slicing overhead on a 20 mm cube: rounds of (the engine called directly with the service's
  exact command line; the service end to end: POST /slice, long-poll GET /slice/{id}?wait=30
  until done, download the .gcode.3mf; POST /price mode=exact). The overhead is the median of
  each round's own difference, so the machine's drift hits both sides alike. The service's own
  timings (engine, model check, packaging) and the client's phases (post, wait, download) are
  reported too;
- the same on a larger part (a 60 mm cylinder, ~1.4 s a slice), fewer rounds.
Prints one JSON object, then one markdown table line for bench/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import httpx

from slicer_api import testing as models
from slicer_api.adapters.engine import Engine, ensure_engine
from slicer_api.adapters.limits import ProcessLimits
from slicer_api.adapters.profiles import load_catalog
from slicer_api.domain.jobs import SliceOptions
from slicer_api.settings import DEFAULT_PROFILES_DIR

KEY = "bench-key-0123456789"


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 1),
        "min_ms": round(ordered[0] * 1000, 1),
        "p90_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))] * 1000, 1),
    }


def direct_engine(binary: str, model: Path, work: Path) -> Callable[[], float]:
    """One run of the same command line the service runs, without the service."""
    engine = Engine(binary, load_catalog(DEFAULT_PROFILES_DIR), ProcessLimits(4096, 600))
    options = SliceOptions(printer_model="P1S", quality="0.20_standard", material="PLA")
    args = engine.slice_args(model, work / "direct.gcode", options)

    def once() -> float:
        started = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True, cwd=work)
        return time.perf_counter() - started

    return once


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument(
        "--part-runs", type=int, default=5, help="rounds on the larger part (~1.4 s a slice)"
    )
    args = parser.parse_args()
    binary = ensure_engine("prusa-slicer", install=True)
    with tempfile.TemporaryDirectory(prefix="slicer-bench-") as tmp:
        work = Path(tmp)
        cube_bytes = models.stl_binary(models.box((20, 20, 20)))
        knot_bytes = models.stl_binary(models.knot_tube())
        part_bytes = models.stl_binary(models.cylinder(30, 60, 128))
        part = work / "cylinder.stl"
        part.write_bytes(part_bytes)
        cube = work / "cube.stl"
        cube.write_bytes(cube_bytes)
        (work / "service").mkdir()
        # The service as deployed: its own process (console script), not a thread of the
        # benchmark, so the client and the server do not share one interpreter lock.
        port = _port()
        env = {
            **os.environ,
            "PANTHEON_ENV": "dev",
            "SLICER_API_KEYS": hashlib.sha256(KEY.encode()).hexdigest(),
            "SLICER_ENGINE": binary,
            "SLICER_WORK_DIR": str(work / "service"),
            "SLICER_API_HOST": "127.0.0.1",
            "SLICER_API_PORT": str(port),
            "LOG_LEVEL": "WARNING",
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "slicer_api"], env=env, stdout=subprocess.DEVNULL
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise SystemExit("slicer-api did not start")
            time.sleep(0.05)
        client = httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=120)
        try:
            direct = direct_engine(binary, cube, work)
            result = _measure(client, cube_bytes, knot_bytes, direct, args.runs)
            result["part_cylinder"] = _overhead_rounds(
                client, part_bytes, direct_engine(binary, part, work), args.part_runs
            )
        finally:
            client.close()
            server.send_signal(signal.SIGINT)
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()
    result["target_overhead_pct"] = 5.0
    result["machine"] = f"{platform.system()} {platform.release()}, {_cores()} cores"
    print(json.dumps(result, indent=2))
    job = result["cube_service_slice_job"]
    part = result["part_cylinder"]
    print(
        f"| {date.today().isoformat()} | {result['machine']} | fast quote 100k tris: "
        f"{result['fast_quote_100k']['median_ms']} ms median; cube: engine direct "
        f"{result['cube_direct_engine']['median_ms']} ms, service job {job['median_ms']} ms "
        f"(+{job['overhead_ms']} ms, {job['overhead_pct']} %; engine inside the service "
        f"{result['cube_engine_inside_service_ms']} ms, model check "
        f"{result['cube_check_ms']} ms, packaging "
        f"{result['cube_packaging_ms']} ms); 60 mm cylinder: engine direct "
        f"{part['direct_engine']['median_ms']} ms, service job "
        f"{part['service_slice_job']['median_ms']} ms "
        f"(+{part['service_slice_job']['overhead_ms']} ms, "
        f"{part['service_slice_job']['overhead_pct']} %) |"
    )


def slice_job(client: httpx.Client, model: bytes) -> tuple[float, dict[str, Any]]:
    """POST /slice, long-poll until done, download the package: seconds and the phases."""
    started = time.perf_counter()
    created = client.post("/slice", files={"file": ("model.stl", model)})
    created.raise_for_status()
    accepted = time.perf_counter()
    job_id = created.json()["job_id"]
    while True:  # long-poll: one request answered when the job ends
        status = client.get(f"/slice/{job_id}", params={"wait": 30}).json()
        if status["state"] in ("done", "failed"):
            break
    assert status["state"] == "done", status
    done = time.perf_counter()
    client.get(f"/slice/{job_id}/result").raise_for_status()
    finished = time.perf_counter()
    client.delete(f"/slice/{job_id}")
    phases = {"post": accepted - started, "wait": done - accepted, "download": finished - done}
    return finished - started, {**status["timings_s"], **phases}


def _overhead(times: list[float], direct: list[float]) -> dict[str, float]:
    """Medians of each round's own difference to the direct run of that round."""
    pairs = list(zip(times, direct, strict=True))
    return {
        **_stats(times),
        "overhead_ms": round(statistics.median(t - d for t, d in pairs) * 1000, 1),
        "overhead_pct": round(statistics.median((t / d - 1) * 100 for t, d in pairs), 1),
    }


def _overhead_rounds(
    client: httpx.Client, model: bytes, direct: Callable[[], float], runs: int
) -> dict[str, Any]:
    direct()
    direct_times, job_times = [], []
    for _ in range(runs):
        direct_times.append(direct())
        job_times.append(slice_job(client, model)[0])
    return {
        "direct_engine": _stats(direct_times),
        "service_slice_job": _overhead(job_times, direct_times),
    }


def _measure(
    client: httpx.Client, cube: bytes, knot: bytes, direct: Callable[[], float], runs: int
) -> dict[str, Any]:
    def fast() -> float:
        started = time.perf_counter()
        response = client.post("/price", files={"file": ("knot.stl", knot)})
        elapsed = time.perf_counter() - started
        response.raise_for_status()
        assert response.json()["mesh"]["triangles"] == 100_032
        return elapsed

    def exact() -> float:
        started = time.perf_counter()
        client.post(
            "/price", files={"file": ("cube.stl", cube)}, data={"mode": "exact"}
        ).raise_for_status()
        return time.perf_counter() - started

    fast()
    fast_times = [fast() for _ in range(runs)]
    direct(), slice_job(client, cube), exact()  # warm the page cache and the service
    # Interleaved (direct, job, exact) rounds: the machine's drift hits all three alike, and
    # the overhead is the median of each round's own difference.
    direct_times: list[float] = []
    jobs: list[tuple[float, dict[str, Any]]] = []
    exact_times: list[float] = []
    for _ in range(runs):
        direct_times.append(direct())
        jobs.append(slice_job(client, cube))
        exact_times.append(exact())

    def median_ms(key: str) -> float:
        return round(float(statistics.median(t[key] for _, t in jobs)) * 1000, 1)

    return {
        "fast_quote_100k": _stats(fast_times),
        "cube_direct_engine": _stats(direct_times),
        "cube_service_slice_job": _overhead([t for t, _ in jobs], direct_times),
        "cube_service_exact_quote": _overhead(exact_times, direct_times),
        "cube_engine_inside_service_ms": median_ms("engine"),
        "cube_check_ms": median_ms("check"),
        "cube_packaging_ms": median_ms("packaging"),
        "cube_phases_ms": {phase: median_ms(phase) for phase in ("post", "wait", "download")},
        "runs": runs,
    }


def _cores() -> int:
    return os.cpu_count() or 0


if __name__ == "__main__":
    main()
