"""Upload through pantheon-api, queue a job through it, and see printer-service print it on
the in-process Bambu simulator: the job ends ``finished`` as seen through the API.

Real parts: MongoDB-protocol server, RabbitMQ (printer-service's ``ready`` outbox), the
simulator over MQTT/FTPS, printer-service's own HTTP app (``GET /api/printers/14/status`` is
forwarded to it in-process), and a local G-code store shared by both services.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pantheon_common.auth import Role
from pantheon_common.gcode_store import LocalGcodeStore
from pantheon_devtools.pytest_plugin import MongoTestDb
from pantheon_sim.bambu.farm import BambuSimFarm, FarmConfig
from pantheon_sim.bambu.gcode3mf import sample_gcode
from pantheon_sim.bambu.printer import SimTiming
from printer_service.runtime import Runtime as PrinterRuntime
from printer_service.runtime import build as build_printer_service
from printer_service.settings import Settings as PrinterSettings

from .conftest import SERVICE_TOKEN, ApiFactory

ROOT = Path(__file__).resolve().parents[3]
ACCESS_CODE = "ab12cd34"
FAST = SimTiming(speed=60.0, prepare_s=0.5, report_interval_s=0.5, idle_report_interval_s=1.0)


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[BambuSimFarm]:
    config = FarmConfig.for_ids(
        [14],
        data_dir=tmp_path / "sim",
        access_code=ACCESS_CODE,
        models=None,
        mqtt_base=None,
        ftps_base=None,
        pasv_base=None,
        control_port=None,
        timing=FAST,
        faults={},
    )
    farm = BambuSimFarm(config)
    farm.start()
    yield farm
    farm.stop()


@pytest.fixture
def printer_service(
    sim: BambuSimFarm, mongo_db: MongoTestDb, amqp_url: str, tmp_path: Path
) -> Iterator[PrinterRuntime]:
    settings = PrinterSettings(
        pantheon_env="dev",
        log_format="text",
        mongo_url=mongo_db.url,
        mongo_db=mongo_db.name,
        amqp_url=amqp_url,
        service_token=SERVICE_TOKEN,
        farm_layout=ROOT / "farm.yaml",
        gcode_store_dir=tmp_path / "shared-gcode",
        bambu_ca_file=sim.ca_file,
        bambu_endpoints_file=sim.data_dir / "endpoints.json",
        start_confirm_timeout_s=20.0,
        dispatch_retry_s=0.5,
    )
    runtime = build_printer_service(
        settings, 14, "bambu", env={"PRINTER_14_ACCESS_CODE": ACCESS_CODE}
    )
    runtime.service.config = dataclasses.replace(runtime.service.config, tick_s=0.1)
    yield runtime
    runtime.stop()


def test_uploaded_file_is_printed_and_the_job_finishes(
    api_factory: ApiFactory, printer_service: PrinterRuntime, tmp_path: Path
) -> None:
    api = api_factory(
        gcode_store=LocalGcodeStore(tmp_path / "shared-gcode"),
        upstream_app=printer_service.app,
    )
    ops = api.headers(Role.OPERATOR)
    db = api.ctx.store.db
    db.printers.replace_one(
        {"_id": 14},
        {"_id": 14, "model": "P1S", "bed": {"bed_id": 801, "state": "in_printer"}},
        upsert=True,
    )
    db.beds.replace_one(
        {"_id": 801},
        {
            "_id": 801,
            "type": "textured_pei",
            "state": "in_printer",
            "home": {"rack": "A", "slot": 1},
            "location": {"rack": "A", "slot": 1, "printer_id": 14},
            "cycles": 0,
        },
        upsert=True,
    )

    uploaded = api.client.post(
        "/api/files",
        files={"file": ("cube.gcode", sample_gcode())},
        data={"printer_model": "P1S", "bed_type": "textured_pei"},
        headers=ops,
    )
    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json()["estimated_s"] == 120
    created = api.client.post(
        "/api/jobs", json={"file": "cube.gcode", "target": {"printer_id": 14}}, headers=ops
    )
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]

    printer_service.start()

    def job() -> dict[str, Any]:
        r = api.client.get(f"/api/jobs/{job_id}", headers=api.headers(Role.VIEWER))
        assert r.status_code == 200
        body: dict[str, Any] = r.json()
        return body

    wait_for(lambda: job()["status"] in ("printing", "finished"), 30, "the job to start")
    live = api.client.get("/api/printers/14/status", headers=api.headers(Role.VIEWER))
    assert live.status_code == 200, live.text
    assert live.json()["printer_id"] == 14
    done = wait_for(lambda: (j := job())["status"] == "finished" and j, 40, "job finished")
    assert done["copies_done"] == 1
    assert done["printer_id"] == 14

    prints = api.client.get(f"/api/prints?job_id={job_id}", headers=api.headers(Role.VIEWER))
    assert [(p["printer_id"], p["file"], p["result"]) for p in prints.json()] == [
        (14, "cube.gcode", "finished")
    ]
    printer = api.client.get("/api/printers/14", headers=api.headers(Role.VIEWER)).json()
    assert printer["bed"] == {"bed_id": 801, "state": "with_part"}
    # The file is now free to delete (no open job uses it).
    assert api.client.delete("/api/files/cube.gcode", headers=ops).status_code == 204
