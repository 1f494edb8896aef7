"""``pantheon-demo``: give a running native farm (``./farm run``) work and watch it happen.

It logs in to pantheon-api as the farm's admin, uploads sample print files for the two plate
types the seed farm holds, queues jobs for them, and then prints, every few seconds, what the
farm does: jobs queued/printing/finished, robot tasks done, plates waiting for an operator, and
finally the utilization report of the last hour. Everything goes through pantheon-api.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from pantheon_devtools.infra import default_run_dir
from pantheon_sim.bambu.gcode3mf import build_gcode_3mf, sample_gcode

SAMPLES = (
    # (file name, plate type, layers, the G-code's own time estimate)
    ("demo_bracket.gcode.3mf", "textured_pei", 40, "1h 30m 0s"),
    ("demo_coaster.gcode.3mf", "smooth_pei", 12, "45m 0s"),
)


def _secrets(farm_dir: Path) -> dict[str, str]:
    path = farm_dir / "secrets.env"
    if not path.exists():
        raise RuntimeError(f"{path} not found: start the farm first with ./farm run")
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key] = value
    return values


def _items(payload: Any) -> list[dict[str, Any]]:
    if isinstance(payload, dict):
        return list(payload.get("items", []))
    return list(payload)


def login(api: httpx.Client, password: str) -> None:
    """Log in as the farm's ``admin`` and keep the token on the client."""
    response = api.post("/api/auth/token", data={"username": "admin", "password": password})
    if response.status_code != 200:
        raise RuntimeError(f"login to pantheon-api failed: {response.status_code} {response.text}")
    api.headers["Authorization"] = f"Bearer {response.json()['access_token']}"


def queue_demo_work(api: httpx.Client, jobs_per_file: int) -> list[str]:
    """Upload the sample files and queue ``jobs_per_file`` jobs of each; returns job ids."""
    ids = []
    for name, bed_type, layers, estimate in SAMPLES:
        package = build_gcode_3mf(sample_gcode(layers=layers, estimate=estimate, lines=layers * 5))
        upload = api.post("/api/files", files={"file": (name, package, "application/octet-stream")})
        if upload.status_code not in (200, 201, 409):
            raise RuntimeError(f"upload of {name} failed: {upload.status_code} {upload.text}")
        for _ in range(jobs_per_file):
            job = api.post("/api/jobs", json={"file": name, "bed_type": bed_type})
            if job.status_code not in (200, 201):
                raise RuntimeError(f"queueing {name} failed: {job.status_code} {job.text}")
            ids.append(job.json()["id"])
    return ids


def snapshot(api: httpx.Client, job_ids: list[str]) -> dict[str, Any]:
    """What the farm is doing, as the dashboard would show it."""
    jobs = [j for j in _items(api.get("/api/jobs").json()) if j["id"] in job_ids]
    tasks = _items(api.get("/api/robot/tasks").json())
    printers = _items(api.get("/api/printers").json())
    return {
        "jobs": Counter(j["status"] for j in jobs),
        "robot_done": sum(1 for t in tasks if t.get("status") == "done"),
        "robot_held": sum(1 for t in tasks if t.get("status") == "held"),
        "printing": sum(1 for p in printers if p.get("state") in ("preparing", "printing")),
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``pantheon-demo``."""
    parser = argparse.ArgumentParser(prog="pantheon-demo", description=__doc__.split("\n")[0])
    parser.add_argument("--api", default="http://127.0.0.1:9971", help="pantheon-api URL")
    parser.add_argument("--farm-dir", type=Path, default=None, help="(.run/farm)")
    parser.add_argument("--jobs", type=int, default=4, help="jobs per sample file (4)")
    parser.add_argument("--watch", type=float, default=90.0, help="seconds to watch (90)")
    args = parser.parse_args(argv)
    farm_dir = args.farm_dir or default_run_dir() / "farm"
    try:
        with httpx.Client(base_url=args.api, timeout=15) as api:
            login(api, _secrets(farm_dir)["PANTHEON_ADMIN_PASSWORD"])
            started = datetime.now(UTC)
            job_ids = queue_demo_work(api, args.jobs)
            print(f"queued {len(job_ids)} jobs on two plate types; watching for {args.watch:.0f} s")
            deadline = time.monotonic() + args.watch
            while time.monotonic() < deadline:
                state = snapshot(api, job_ids)
                jobs = ", ".join(f"{n} {s}" for s, n in sorted(state["jobs"].items()))
                print(
                    f"  jobs: {jobs} | printers printing: {state['printing']} | robot tasks "
                    f"done: {state['robot_done']}, held: {state['robot_held']}",
                    flush=True,
                )
                if state["jobs"].get("finished", 0) == len(job_ids):
                    break
                time.sleep(5)
            until = datetime.now(UTC)
            report = api.get(
                "/api/utilization",
                params={"from": started.isoformat(), "to": until.isoformat()},
            )
            if report.status_code == 200:
                farm = report.json().get("farm", {})
                total = farm.get("total", farm)
                shares = ", ".join(
                    f"{state} {pct:.0f} %" for state, pct in total.get("percent", {}).items() if pct
                )
                print(
                    f"farm utilization during the demo: {shares}; prints finished "
                    f"{total.get('prints_finished')}, failed {total.get('prints_failed')}"
                )
            else:
                print(f"utilization report unavailable: HTTP {report.status_code}")
    except (httpx.HTTPError, RuntimeError, KeyError) as err:
        print(f"pantheon-demo: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
