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
The service runs as configured by default: standby engines (SLICER_STANDBY_ENGINES, 2),
started ahead of the slices, so the engine's start-up is off the slice's path; a second
service with SLICER_STANDBY_ENGINES=0 repeats the cube rounds with every engine started for
its slice, which shows what the service's own work (upload, check, packaging) costs. Each direct run
waits until no engine process is busy (standbys loaded), so their start-up does not slow it.
Prints one JSON object, then one markdown table line for bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
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
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx

from pantheon_devtools.farm_run import wait_http
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
    profile = work / "direct-profile.ini"
    profile.write_text(engine.profile(options))
    centre = engine.catalog.printers[options.printer_model].centre
    args = engine.slice_args(model, work / "direct.gcode", profile, centre)

    def once() -> float:
        _settle()
        started = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True, cwd=work)
        return time.perf_counter() - started

    return once


def _settle(timeout_s: float = 5.0) -> None:
    """Wait until no engine process is running (the service's standby engines loaded and
    waiting), so that their start-up does not slow the direct run it is compared with."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        busy = False
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                text = stat.read_text()
            except OSError:
                continue
            name, _, rest = text.partition(" (")[2].rpartition(") ")
            if name.startswith("prusa-slicer") and rest.split()[0] not in ("S", "Z", "I"):
                busy = True
                break
        if not busy:
            return
        time.sleep(0.005)


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
        with _service(binary, work / "service", standby=None) as client:
            direct = direct_engine(binary, cube, work)
            result = _measure(client, cube_bytes, knot_bytes, direct, args.runs)
            result["part_cylinder"] = _overhead_rounds(
                client, part_bytes, direct_engine(binary, part, work), args.part_runs
            )
        # The same cube with every engine started for its slice (SLICER_STANDBY_ENGINES=0):
        # what the service's own work costs.
        with _service(binary, work / "service-cold", standby=0) as client:
            result["cube_cold_engine"] = _overhead_rounds(
                client, cube_bytes, direct, args.runs, engine_start="cold"
            )
    result["target_overhead_pct"] = 5.0
    result["machine"] = f"{platform.system()} {platform.release()}, {_cores()} cores"
    print(json.dumps(result, indent=2))
    job = result["cube_service_slice_job"]
    part = result["part_cylinder"]
    cold = result["cube_cold_engine"]["service_slice_job"]
    print(
        f"| {date.today().isoformat()} | {result['machine']} | fast quote 100k tris: "
        f"{result['fast_quote_100k']['median_ms']} ms median; cube: engine direct "
        f"{result['cube_direct_engine']['median_ms']} ms, service job {job['median_ms']} ms "
        f"({job['overhead_ms']:+} ms, {job['overhead_pct']:+} %; engine inside the service "
        f"{result['cube_engine_inside_service_ms']} ms, model check "
        f"{result['cube_check_ms']} ms, packaging "
        f"{result['cube_packaging_ms']} ms; exact quote "
        f"{result['cube_service_exact_quote']['overhead_pct']:+} %; engines started cold: "
        f"{cold['overhead_ms']:+} ms, {cold['overhead_pct']:+} %); 60 mm cylinder: engine direct "
        f"{part['direct_engine']['median_ms']} ms, service job "
        f"{part['service_slice_job']['median_ms']} ms "
        f"({part['service_slice_job']['overhead_ms']:+} ms, "
        f"{part['service_slice_job']['overhead_pct']:+} %) |"
    )


@contextlib.contextmanager
def _service(binary: str, work_dir: Path, *, standby: int | None) -> Iterator[httpx.Client]:
    """slicer-api as deployed: its own process (console script), not a thread of the
    benchmark, so the client and the server do not share one interpreter lock."""
    work_dir.mkdir()
    port = _port()
    env = {
        **os.environ,
        "PANTHEON_ENV": "dev",
        "SLICER_API_KEYS": hashlib.sha256(KEY.encode()).hexdigest(),
        "SLICER_ENGINE": binary,
        "SLICER_WORK_DIR": str(work_dir),
        "SLICER_API_HOST": "127.0.0.1",
        "SLICER_API_PORT": str(port),
        "LOG_LEVEL": "WARNING",
    }
    if standby is not None:  # else the service's default
        env["SLICER_STANDBY_ENGINES"] = str(standby)
    else:
        env.pop("SLICER_STANDBY_ENGINES", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "slicer_api"], env=env, stdout=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/healthz", 30, "slicer-api", server)
    except RuntimeError as err:
        server.kill()
        raise SystemExit(str(err)) from err
    client = httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=120)
    try:
        yield client
    finally:
        client.close()
        server.send_signal(signal.SIGINT)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()


def slice_job(
    client: httpx.Client, model: bytes, engine_start: str = "standby"
) -> tuple[float, dict[str, Any]]:
    """POST /slice, long-poll until done, download the package: seconds and the phases.
    ``engine_start``: how the service must have started the engine (checked)."""
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
    assert status["engine_start"] == engine_start, status
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
    client: httpx.Client,
    model: bytes,
    direct: Callable[[], float],
    runs: int,
    engine_start: str = "standby",
) -> dict[str, Any]:
    direct(), slice_job(client, model, engine_start)  # warm the page cache and the service
    direct_times, job_times = [], []
    for _ in range(runs):
        direct_times.append(direct())
        job_times.append(slice_job(client, model, engine_start)[0])
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
