"""slicer-api benchmark (issue 8): fast-quote latency and the service's slicing overhead.

    uv run python bench/slicer_bench.py [--runs 15]

Starts slicer-api in-process (uvicorn on a free loopback port, real PrusaSlicer, repo profiles)
and measures:
- fast quote: POST /price (mode=fast) of a 100 032-triangle binary STL (trefoil-knot tube,
  4.8 MB), end to end over HTTP: upload, parse in the limited child process, price;
- slicing overhead on a 20 mm cube: the engine called directly with the same command line
  (median wall time) against the service end to end (POST /slice, long-poll
  GET /slice/{id}?wait=30 until done, download the .gcode.3mf), and against POST /price mode=exact.
Prints one JSON object, then one markdown table line for bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import platform
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from slicer_api import testing as models
from slicer_api.__main__ import build
from slicer_api.adapters.engine import Engine, ensure_engine
from slicer_api.adapters.limits import ProcessLimits
from slicer_api.adapters.profiles import load_catalog
from slicer_api.domain.jobs import SliceOptions
from slicer_api.settings import DEFAULT_PROFILES_DIR, Settings

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


def direct_engine(binary: str, cube: Path, work: Path, runs: int) -> list[float]:
    """The same command line the service runs, without the service."""
    engine = Engine(binary, load_catalog(DEFAULT_PROFILES_DIR), ProcessLimits(4096, 600))
    options = SliceOptions(printer_model="P1S", quality="0.20_standard", material="PLA")
    args = engine.slice_args(cube, work / "direct.gcode", options)
    times = []
    for _ in range(runs + 1):
        started = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True, cwd=work)
        times.append(time.perf_counter() - started)
    return times[1:]  # the first run warms the page cache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    binary = ensure_engine("prusa-slicer", install=True)
    with tempfile.TemporaryDirectory(prefix="slicer-bench-") as tmp:
        work = Path(tmp)
        cube_bytes = models.stl_binary(models.box((20, 20, 20)))
        knot_bytes = models.stl_binary(models.knot_tube())
        cube = work / "cube.stl"
        cube.write_bytes(cube_bytes)
        (work / "service").mkdir()
        settings = Settings(
            pantheon_env="dev",
            slicer_api_keys=hashlib.sha256(KEY.encode()).hexdigest(),
            slicer_engine=binary,
            slicer_work_dir=work / "service",
        )
        app = build(settings)
        port = _port()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("slicer-api did not start")
            time.sleep(0.05)
        client = httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=120)
        try:
            result = asyncio.run(_measure(client, cube_bytes, knot_bytes, args.runs))
        finally:
            client.close()
            server.should_exit = True
            thread.join(15)
        direct = direct_engine(binary, cube, work, args.runs)
    direct_median = statistics.median(direct)
    result["cube_direct_engine"] = _stats(direct)
    for key in ("cube_service_slice_job", "cube_service_exact_quote"):
        service_median = result[key]["median_ms"] / 1000
        result[key]["overhead_ms"] = round((service_median - direct_median) * 1000, 1)
        result[key]["overhead_pct"] = round((service_median / direct_median - 1) * 100, 1)
    result["target_overhead_pct"] = 5.0
    result["machine"] = f"{platform.system()} {platform.release()}, {_cores()} cores"
    print(json.dumps(result, indent=2))
    job = result["cube_service_slice_job"]
    print(
        f"| {date.today().isoformat()} | {result['machine']} | fast quote 100k tris: "
        f"{result['fast_quote_100k']['median_ms']} ms median; cube: engine direct "
        f"{result['cube_direct_engine']['median_ms']} ms, service job {job['median_ms']} ms "
        f"(+{job['overhead_ms']} ms, {job['overhead_pct']} %; engine inside the service "
        f"{result['cube_engine_inside_service_ms']} ms, model check "
        f"{result['cube_check_ms']} ms, packaging "
        f"{result['cube_packaging_ms']} ms) |"
    )


async def _measure(client: httpx.Client, cube: bytes, knot: bytes, runs: int) -> dict[str, Any]:
    def fast() -> float:
        started = time.perf_counter()
        response = client.post("/price", files={"file": ("knot.stl", knot)})
        elapsed = time.perf_counter() - started
        response.raise_for_status()
        assert response.json()["mesh"]["triangles"] == 100_032
        return elapsed

    def job() -> tuple[float, dict[str, Any]]:
        started = time.perf_counter()
        created = client.post("/slice", files={"file": ("cube.stl", cube)})
        created.raise_for_status()
        job_id = created.json()["job_id"]
        while True:  # long-poll: one request answered when the job ends
            status = client.get(f"/slice/{job_id}", params={"wait": 30}).json()
            if status["state"] in ("done", "failed"):
                break
        assert status["state"] == "done", status
        client.get(f"/slice/{job_id}/result").raise_for_status()
        elapsed = time.perf_counter() - started
        client.delete(f"/slice/{job_id}")
        return elapsed, status["timings_s"]

    def exact() -> float:
        started = time.perf_counter()
        client.post(
            "/price", files={"file": ("cube.stl", cube)}, data={"mode": "exact"}
        ).raise_for_status()
        return time.perf_counter() - started

    fast()  # warms the parser's forkserver
    fast_times = [fast() for _ in range(runs)]
    job()
    jobs = [job() for _ in range(runs)]
    exact()
    exact_times = [exact() for _ in range(runs)]
    return {
        "fast_quote_100k": _stats(fast_times),
        "cube_service_slice_job": _stats([t for t, _ in jobs]),
        "cube_service_exact_quote": _stats(exact_times),
        "cube_engine_inside_service_ms": round(
            statistics.median(t["engine"] for _, t in jobs) * 1000, 1
        ),
        "cube_check_ms": round(statistics.median(t["check"] for _, t in jobs) * 1000, 1),
        "cube_packaging_ms": round(statistics.median(t["packaging"] for _, t in jobs) * 1000, 1),
        "runs": runs,
    }


def _cores() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    main()
