"""The HTTP API on a live service: auth, /status, /upload limits, /print."""

from __future__ import annotations

from typing import Any

import pymongo
from fastapi.testclient import TestClient

from pantheon_contracts.printer import PrinterModel
from pantheon_sim.bambu.gcode3mf import sample_gcode

from .conftest import TOKEN, RuntimeFactory, SimFactory, seed_printer, wait_for

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_api_auth_status_upload_and_print(
    sim_farm: SimFactory,
    service_factory: RuntimeFactory,
    db: pymongo.database.Database[dict[str, Any]],
) -> None:
    farm = sim_farm([14])
    seed_printer(db, 14, PrinterModel.P1S, 801)
    runtime = service_factory(farm, 14, auto_dispatch=False, upload_max_bytes=20_000)
    with TestClient(runtime.app) as client:
        for path in ("/healthz", "/metrics"):
            assert client.get(path).status_code == 200
        assert client.get("/status").status_code == 401
        assert client.get("/status", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert client.post("/pause").status_code == 401
        assert client.post("/upload", files={"file": ("x.gcode", b"G28")}).status_code == 401

        wait_for(lambda: client.get("/status", headers=AUTH).json()["state"] == "idle", 10, "idle")
        status = client.get("/status", headers=AUTH).json()
        assert status["printer_id"] == 14
        assert status["model"] == "P1S"
        assert status["link"] == "connected"
        assert status["bed"] == {"bed_id": 801, "state": "in_printer"}
        assert set(status["temps"]) == {"nozzle", "nozzle_target", "bed", "bed_target", "chamber"}
        assert status["dispatch"]["auto"] is False

        too_big = client.post(
            "/upload", headers=AUTH, files={"file": ("big.gcode", b"G1 X1\n" * 10_000)}
        )
        assert too_big.status_code == 413
        assert not (runtime.settings.gcode_store_dir / "big.gcode").exists()

        body = sample_gcode(estimate="6m 0s")  # 6 s at the test speed
        uploaded = client.post("/upload", headers=AUTH, files={"file": ("part.gcode", body)})
        assert uploaded.status_code == 201, uploaded.text
        assert uploaded.json()["size"] == len(body)
        bad_name = client.post("/upload", headers=AUTH, files={"file": ("../x.gcode", b"G28")})
        assert bad_name.status_code == 422

        assert client.post("/print", headers=AUTH, json={"file": "nope.gcode"}).status_code == 404
        started = client.post("/print", headers=AUTH, json={"file": "part.gcode"})
        assert started.status_code == 201, started.text
        print_id = started.json()["print_id"]
        wait_for(lambda: farm.printer(14)["gcode_state"] == "RUNNING", 10, "running")
        assert client.post("/pause", headers=AUTH).status_code == 202
        wait_for(lambda: farm.printer(14)["gcode_state"] == "PAUSE", 10, "paused")
        assert client.post("/pause", headers=AUTH).status_code == 409  # refused: not running
        assert client.post("/resume", headers=AUTH).status_code == 202
        busy = client.post("/print", headers=AUTH, json={"file": "part.gcode"})
        assert busy.status_code == 409
        wait_for(
            lambda: (db.prints.find_one({"_id": print_id}) or {}).get("result") == "finished",
            20,
            "the manual print finished",
        )
        # the outbox entry follows the print record (plate marked first, then the notification)
        wait_for(
            lambda: db.outbox.find_one({"_id": print_id}) is not None, 10, "the ready outbox entry"
        )
