"""Fixtures: the Bambu simulator in-process at high speed, and printer-service runtimes on it."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pymongo
import pytest

from pantheon_contracts.printer import PrinterModel
from pantheon_devtools.pytest_plugin import MongoTestDb
from pantheon_sim.bambu.farm import BambuSimFarm, FarmConfig
from pantheon_sim.bambu.gcode3mf import sample_gcode
from pantheon_sim.bambu.printer import FaultSettings, SimTiming
from printer_service.runtime import Runtime, build
from printer_service.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
ACCESS_CODE = "ab12cd34"
TOKEN = "integration-test-token"
# Prints of sample_gcode() ("2m 0s") take 2 s at speed 60, after 0.5 s of PREPARE.
FAST = SimTiming(speed=60.0, prepare_s=0.5, report_interval_s=0.5, idle_report_interval_s=1.0)


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


SimFactory = Callable[..., BambuSimFarm]


@pytest.fixture
def sim_farm(tmp_path: Path) -> Iterator[SimFactory]:
    """Start a simulated farm: ``sim_farm([14], models={31: X1C}, faults={...})``; other
    keywords go to FarmConfig (e.g. ``tls13_hangs=frozenset({14})``)."""
    started: list[BambuSimFarm] = []

    def start(
        ids: list[int],
        *,
        models: Mapping[int, PrinterModel] | None = None,
        faults: Mapping[int, FaultSettings] | None = None,
        timing: SimTiming = FAST,
        **options: Any,
    ) -> BambuSimFarm:
        config = FarmConfig.for_ids(
            ids,
            data_dir=tmp_path / f"sim{len(started)}",
            access_code=ACCESS_CODE,
            models=models,
            mqtt_base=None,
            ftps_base=None,
            pasv_base=None,
            control_port=None,
            timing=timing,
            faults=dict(faults or {}),
            **options,
        )
        farm = BambuSimFarm(config)
        farm.start()
        started.append(farm)
        return farm

    yield start
    for farm in started:
        farm.stop()


@pytest.fixture
def db(mongo_db: MongoTestDb) -> Iterator[pymongo.database.Database[dict[str, Any]]]:
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        mongo_db.url, tz_aware=True, serverSelectionTimeoutMS=5000
    )
    yield client[mongo_db.name]
    client.close()


def seed_printer(
    db: pymongo.database.Database[dict[str, Any]],
    printer_id: int,
    model: PrinterModel,
    bed_id: int,
    *,
    bed_state: str = "in_printer",
    bed_type: str = "textured_pei",
) -> None:
    """The printer document with a plate, and the plate's document."""
    db.printers.replace_one(
        {"_id": printer_id},
        {"_id": printer_id, "model": model.value, "bed": {"bed_id": bed_id, "state": bed_state}},
        upsert=True,
    )
    db.beds.replace_one(
        {"_id": bed_id},
        {
            "_id": bed_id,
            "type": bed_type,
            "state": bed_state,
            "location": {"rack": "A", "slot": 1, "printer_id": printer_id},
            "cycles": 0,
        },
        upsert=True,
    )


def queue_job(
    db: pymongo.database.Database[dict[str, Any]],
    job_id: str,
    *,
    file: str = "cube.gcode",
    printer_id: int | None = None,
    model: str | None = None,
    bed_type: str = "textured_pei",
    seq: int = 0,
    priority: int = 0,
    **extra: Any,
) -> None:
    db.jobs.insert_one(
        {
            "_id": job_id,
            "file": file,
            "copies": 1,
            "copies_done": 0,
            "priority": priority,
            "seq": seq,
            "target": {"printer_id": printer_id, "model": model},
            "bed_type": bed_type,
            "status": "queued",
            "printer_id": None,
            "attempts": 0,
            "max_attempts": 3,
            "created_at": datetime.now(UTC),
            **extra,
        }
    )


RuntimeFactory = Callable[..., Runtime]


@pytest.fixture
def gcode_dir(tmp_path: Path) -> Path:
    path = tmp_path / "gcode"
    path.mkdir()
    (path / "cube.gcode").write_bytes(sample_gcode())
    return path


@pytest.fixture
def service_factory(
    mongo_db: MongoTestDb, amqp_url: str, gcode_dir: Path
) -> Iterator[RuntimeFactory]:
    """Build and start printer-service runtimes against a started simulator."""
    runtimes: list[Runtime] = []

    def make(
        farm: BambuSimFarm,
        printer_id: int,
        *,
        access_code: str = ACCESS_CODE,
        start: bool = True,
        **overrides: Any,
    ) -> Runtime:
        values: dict[str, Any] = {
            "pantheon_env": "dev",
            "log_format": "text",
            "mongo_url": mongo_db.url,
            "mongo_db": mongo_db.name,
            "amqp_url": amqp_url,
            "service_token": TOKEN,
            "farm_layout": ROOT / "farm.yaml",
            "gcode_store_dir": gcode_dir,
            "bambu_ca_file": farm.ca_file,
            "bambu_endpoints_file": farm.data_dir / "endpoints.json",
            "start_confirm_timeout_s": 20.0,
            "dispatch_retry_s": 0.5,
        }
        values.update(overrides)
        settings = Settings(**values)
        runtime = build(
            settings, printer_id, "bambu", env={f"PRINTER_{printer_id}_ACCESS_CODE": access_code}
        )
        runtime.service.config = dataclasses.replace(runtime.service.config, tick_s=0.1)
        if start:
            runtime.start()
        runtimes.append(runtime)
        return runtime

    yield make
    for runtime in runtimes:
        runtime.stop()
