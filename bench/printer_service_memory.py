"""Memory of one printer-service process against one simulated printer (issue #3).

Starts bambu-sim in-process (one P1S, high speed), runs ``printer-service 14 bambu`` as a
subprocess against it (real MongoDB-protocol server and RabbitMQ of the harness, on a throw-away
database and vhost), queues one job so the process uploads, prints and announces it (the plate
then holds a part and waits for the robot, as on the farm), samples the process's RSS from
/proc for ``--seconds`` and prints one JSON object:

    uv run python bench/printer_service_memory.py --seconds 20

Reports numbers, asserts nothing (not a timed test).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import httpx
import pymongo

from pantheon_devtools.infra import ensure_infra
from pantheon_sim.bambu.farm import BambuSimFarm, FarmConfig
from pantheon_sim.bambu.gcode3mf import sample_gcode
from pantheon_sim.bambu.printer import SimTiming

ROOT = Path(__file__).resolve().parents[1]
PRINTER = 14
ACCESS_CODE = "bench123"


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0, help="sampling time")
    args = parser.parse_args()
    infra = ensure_infra()
    work = Path(tempfile.mkdtemp(prefix="ps-bench-"))
    vhost = f"pantheon-bench-{secrets.token_hex(4)}"
    db_name = f"pantheon_bench_{secrets.token_hex(4)}"
    api = httpx.Client(
        base_url=infra.rabbitmq_management_url,
        auth=(infra.rabbitmq_user, infra.rabbitmq_password),
        timeout=30,
    )
    api.put(f"/api/vhosts/{quote(vhost, safe='')}", json={}).raise_for_status()
    api.put(
        f"/api/permissions/{quote(vhost, safe='')}/{quote(infra.rabbitmq_user, safe='')}",
        json={"configure": ".*", "write": ".*", "read": ".*"},
    ).raise_for_status()
    mongo: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(infra.mongo_url)
    db = mongo[db_name]
    gcode = work / "gcode"
    gcode.mkdir()
    (gcode / "cube.gcode").write_bytes(sample_gcode(estimate="5m 0s"))
    db.printers.insert_one({"_id": PRINTER, "bed": {"bed_id": 801, "state": "in_printer"}})
    db.beds.insert_one({"_id": 801, "type": "textured_pei", "state": "in_printer"})
    for i in range(1):
        db.jobs.insert_one(
            {
                "_id": f"bench-{i}",
                "file": "cube.gcode",
                "copies": 1,
                "priority": 0,
                "seq": i,
                "target": {"printer_id": PRINTER, "model": None},
                "bed_type": "textured_pei",
                "status": "queued",
                "attempts": 0,
                "max_attempts": 3,
                "created_at": datetime.now(UTC),
            }
        )
    config = FarmConfig.for_ids(
        [PRINTER],
        data_dir=work / "sim",
        access_code=ACCESS_CODE,
        mqtt_base=None,
        ftps_base=None,
        pasv_base=None,
        control_port=None,
        timing=SimTiming(speed=60.0, prepare_s=0.5),
    )
    port = _free_port()
    result: dict[str, object] = {}
    with BambuSimFarm(config) as farm:
        env = {
            **os.environ,
            "PANTHEON_ENV": "dev",
            "LOG_LEVEL": "WARNING",
            "MONGO_URL": infra.mongo_url,
            "MONGO_DB": db_name,
            "AMQP_URL": infra.amqp_url_for_vhost(vhost),
            "SERVICE_TOKEN": "bench-token-0123",
            "FARM_LAYOUT": str(ROOT / "farm.yaml"),
            "GCODE_STORE_DIR": str(gcode),
            "BAMBU_CA_FILE": str(farm.ca_file),
            "BAMBU_ENDPOINTS_FILE": str(farm.data_dir / "endpoints.json"),
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": str(port),
            f"PRINTER_{PRINTER}_ACCESS_CODE": ACCESS_CODE,
            "DISPATCH_RETRY_S": "1",
        }
        exe = shutil.which("printer-service") or "printer-service"
        proc = subprocess.Popen([exe, str(PRINTER), "bambu"], env=env)
        samples: list[int] = []
        try:
            start = time.monotonic()
            while time.monotonic() - start < args.seconds and proc.poll() is None:
                samples.append(_rss_kb(proc.pid))
                time.sleep(0.5)
            status = httpx.get(
                f"http://127.0.0.1:{port}/status",
                headers={"Authorization": "Bearer bench-token-0123"},
                timeout=5,
            ).json()
        finally:
            proc.terminate()
            proc.wait(timeout=15)
        finished = db.jobs.count_documents({"status": "finished"})
        result = {
            "benchmark": "printer_service_memory",
            "seconds": round(time.monotonic() - start, 1),
            "rss_mb_max": round(max(samples) / 1024, 1),
            "rss_mb_last": round(samples[-1] / 1024, 1),
            "rss_mb_first": round(samples[0] / 1024, 1),
            "samples": len(samples),
            "jobs_finished": finished,
            "final_state": status.get("state"),
            "model": farm.endpoint(PRINTER).model,
        }
    mongo.drop_database(db_name)
    mongo.close()
    api.delete(f"/api/vhosts/{quote(vhost, safe='')}")
    api.close()
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
