"""SSE live updates from MongoDB polling; proxies to the other services; beds and jobs flows."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from datetime import UTC, datetime

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from pantheon_api.runtime import build
from pantheon_common.auth import Role
from pantheon_common.log import configure_logging
from pantheon_devtools.pytest_plugin import MongoTestDb

from .conftest import Api, make_settings


def test_event_stream_reports_changes_after_connecting(api: Api) -> None:
    db = api.ctx.store.db
    db.printers.insert_one({"_id": 14, "model": "P1S", "state": "idle"})
    seen: list[tuple[str, dict[str, object]]] = []
    url = f"/api/events?duration_s=3&access_token={api.tokens[Role.VIEWER]}"
    with api.client.stream("GET", url) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        kind = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                seen.append((kind, json.loads(line.removeprefix("data: "))))
                if kind == "ready":
                    db.printers.update_one({"_id": 14}, {"$set": {"state": "printing"}})
                    db.jobs.insert_one(
                        {"_id": "j1", "status": "queued", "updated_at": datetime.now(UTC)}
                    )
                if {k for k, _ in seen} >= {"printer", "job"}:
                    break
    kinds = [k for k, _ in seen]
    assert kinds[0] == "ready"
    printer = next(d for k, d in seen if k == "printer")
    assert printer["id"] == 14
    assert printer["state"] == "printing"
    assert next(d for k, d in seen if k == "job")["id"] == "j1"


def test_event_stream_needs_credentials(api: Api) -> None:
    assert api.client.get("/api/events?duration_s=1").status_code == 401
    assert api.client.get("/api/events?duration_s=1&access_token=x").status_code == 401


def test_the_access_log_never_shows_the_events_token(
    api: Api, capfd: pytest.CaptureFixture[str]
) -> None:
    """Regression: ``GET /api/events?access_token=<JWT>`` (EventSource cannot send headers) was
    written in full to pantheon-api's log. Real uvicorn, logging configured as ``main()`` does."""
    token = api.tokens[Role.VIEWER]
    # as in a fresh process: an earlier test's uvicorn may have configured its own loggers
    loggers = [logging.getLogger(n) for n in ("", "uvicorn", "uvicorn.error", "uvicorn.access")]
    saved = [(lg, lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    for lg in loggers[1:]:
        lg.handlers[:], lg.propagate = [], True
        lg.setLevel(logging.NOTSET)
    configure_logging("pantheon-api", "INFO", "text")
    server = uvicorn.Server(
        uvicorn.Config(api.runtime.app, host="127.0.0.1", port=0, log_config=None)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}/api/events?duration_s=1&access_token={token}"
        with httpx.stream("GET", url, timeout=10) as response:
            assert response.status_code == 200
            assert any(line.startswith("event: ready") for line in response.iter_lines())
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        for lg, handlers, level, propagate in saved:
            lg.handlers[:], lg.propagate = handlers, propagate
            lg.setLevel(level)
    logged = capfd.readouterr().err
    access = [line for line in logged.splitlines() if "GET /api/events" in line]
    assert access, logged
    assert "access_token=[REDACTED]" in access[0]
    assert token not in logged


def test_printer_control_is_forwarded_with_the_service_token(api: Api) -> None:
    api.ctx.store.db.printers.insert_one({"_id": 21, "model": "X1C"})
    r = api.client.post("/api/printers/21/pause", headers=api.headers(Role.OPERATOR))
    assert r.status_code == 202, r.text
    assert api.calls[-1][:2] == ("POST", "printer-21.test/pause")
    r = api.client.post(
        "/api/printers/21/print", json={"file": "cube.gcode"}, headers=api.headers(Role.OPERATOR)
    )
    assert r.status_code == 201
    assert json.loads(api.calls[-1][2]) == {"file": "cube.gcode"}
    assert api.client.post("/api/printers/99/stop", headers=api.headers()).status_code == 404


def test_unreachable_or_hung_service_is_502_or_504(api: Api, mongo_db: MongoTestDb) -> None:
    """Real sockets: nothing listens on 127.0.0.1:9 (refused); a listener that never answers
    (hung service) runs into the upstream timeout."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        settings = make_settings(
            mongo_db,
            orchestrator_url="http://127.0.0.1:9",
            utilization_url=f"http://127.0.0.1:{listener.getsockname()[1]}",
            upstream_timeout_s=0.5,
        )
        runtime = build(settings, gcode_store=api.ctx.gcode)
        try:
            with TestClient(runtime.app) as client:
                r = client.get("/api/robot/status", headers=api.headers(Role.VIEWER))
                assert r.status_code == 502
                assert "robot-arm-orchestrator unreachable" in r.json()["detail"]
                r = client.get("/api/utilization", headers=api.headers(Role.VIEWER))
                assert r.status_code == 504
                assert "did not answer in time" in r.json()["detail"]
        finally:
            runtime.close()


def test_robot_control_panel_and_utilization_proxies(api: Api) -> None:
    viewer, operator, admin = (api.headers(r) for r in (Role.VIEWER, Role.OPERATOR, Role.ADMIN))
    assert api.client.get("/api/robot/tasks?status=held", headers=viewer).json() == []
    assert api.calls[-1][1] == "orchestrator.test/tasks"
    r = api.client.post(
        "/api/robot/tasks/abc:take/resolve", json={"action": "retry"}, headers=operator
    )
    assert r.status_code == 200
    # a replace done by hand names the plate loaded: passed on to the orchestrator as is
    r = api.client.post(
        "/api/robot/tasks/abc:take/resolve",
        json={"action": "done", "bed_id": 831},
        headers=operator,
    )
    assert r.status_code == 200
    assert json.loads(api.calls[-1][2]) == {"action": "done", "note": "", "bed_id": 831}
    r = api.client.post(
        "/api/robot/tasks/missing/resolve", json={"action": "done"}, headers=operator
    )
    assert r.status_code == 404
    assert "no task missing" in r.json()["detail"]
    assert (
        api.client.post(
            "/api/robot/dispatch/pause", json={"reason": "maintenance"}, headers=operator
        ).status_code
        == 200
    )
    assert json.loads(api.calls[-1][2]) == {"reason": "maintenance"}
    assert (
        api.client.post("/api/control/services/robot-arm/restart", headers=admin).status_code == 200
    )
    assert api.calls[-1][1] == "control.test/services/robot-arm/restart"
    assert (
        api.client.post(
            "/api/control/queues/purge", json={"queues": ["homing"]}, headers=admin
        ).status_code
        == 200
    )
    r = api.client.get("/api/utilization?group=week&printer_id=14", headers=viewer)
    assert r.status_code == 200
    assert api.calls[-1][1] == "utilization.test/utilization"


def test_mark_clean_nudges_the_orchestrator(api: Api) -> None:
    db = api.ctx.store.db
    db.beds.insert_one(
        {
            "_id": 801,
            "type": "textured_pei",
            "state": "with_part",
            "home": {"rack": "A", "slot": 1},
            "location": {"rack": "A", "slot": 1, "printer_id": None},
            "cycles": 3,
        }
    )
    db.beds.insert_one(
        {
            "_id": 802,
            "type": "textured_pei",
            "state": "with_part",
            "home": {"rack": "A", "slot": 2},
            "location": {"rack": None, "slot": None, "printer_id": 14},
            "cycles": 3,
        }
    )
    r = api.client.post("/api/beds/801/clean", headers=api.headers(Role.OPERATOR))
    assert r.status_code == 200, r.text
    assert r.json()["bed"]["state"] == "clean"
    assert r.json()["orchestrator_nudged"] is True
    assert api.calls[-1][:2] == ("POST", "orchestrator.test/dispatch/nudge")
    r = api.client.post("/api/beds/802/clean", headers=api.headers(Role.OPERATOR))
    assert r.status_code == 409
    assert "printer 14" in r.json()["detail"]
    assert (
        api.client.post("/api/beds/802/retire", headers=api.headers(Role.OPERATOR)).status_code
        == 409
    )
    assert (
        api.client.post("/api/beds/801/retire", headers=api.headers(Role.OPERATOR)).json()["state"]
        == "retired"
    )


def test_homing_is_published_to_the_homing_queue(api_factory: object, amqp_url: str) -> None:
    from pantheon_common.amqp import queue_depth

    api: Api = api_factory(amqp_url=amqp_url)  # type: ignore[operator]
    r = api.client.post("/api/robot/homing", headers=api.headers(Role.OPERATOR))
    assert r.status_code == 202
    assert queue_depth(amqp_url, "homing") == 1


def test_job_queue_rules(api: Api) -> None:
    ops = api.headers(Role.OPERATOR)
    api.client.post("/api/files", files={"file": ("a.gcode", b"G28\n")}, headers=ops)
    r = api.client.post("/api/jobs", json={"file": "a.gcode"}, headers=ops)
    assert r.status_code == 422
    assert "bed_type is required" in r.json()["detail"]
    ids = [
        api.client.post(
            "/api/jobs", json={"file": "a.gcode", "bed_type": "cool_plate"}, headers=ops
        ).json()["id"]
        for _ in range(3)
    ]
    order = [j["id"] for j in api.client.get("/api/jobs", headers=ops).json()]
    assert order == ids
    api.client.patch(f"/api/jobs/{ids[2]}", json={"position": "front"}, headers=ops)
    assert [j["id"] for j in api.client.get("/api/jobs", headers=ops).json()] == [
        ids[2],
        ids[0],
        ids[1],
    ]
    api.client.patch(f"/api/jobs/{ids[1]}", json={"priority": 5}, headers=ops)
    assert api.client.get("/api/jobs", headers=ops).json()[0]["id"] == ids[1]
    assert (
        api.client.post(f"/api/jobs/{ids[0]}/cancel", headers=ops).json()["status"] == "cancelled"
    )
    assert api.client.post(f"/api/jobs/{ids[0]}/cancel", headers=ops).status_code == 409
    api.ctx.store.db.jobs.update_one({"_id": ids[1]}, {"$set": {"status": "failed", "attempts": 3}})
    retried = api.client.post(f"/api/jobs/{ids[1]}/retry", headers=ops).json()
    assert (retried["status"], retried["attempts"]) == ("queued", 0)
    assert api.client.post(f"/api/jobs/{ids[2]}/retry", headers=ops).status_code == 409
    api.ctx.store.db.jobs.update_one({"_id": ids[2]}, {"$set": {"status": "printing"}})
    assert api.client.post(f"/api/jobs/{ids[2]}/cancel", headers=ops).status_code == 409
    assert api.client.delete("/api/files/a.gcode", headers=ops).status_code == 409
