"""The assembled service: migrate subcommand, serve (lifespan starts poller and writer), auth."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect

from pantheon_common.mongo import mongo_client
from pantheon_devtools.pytest_plugin import MongoTestDb
from printer_utilization.__main__ import main
from printer_utilization.adapters.db import make_engine
from printer_utilization.runtime import build
from printer_utilization.settings import Settings

from .conftest import TOKEN, StatusServer


def test_migrate_subcommand_creates_the_schema_and_is_repeatable(
    mysql_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MYSQL_URL", mysql_url)
    monkeypatch.setenv("PANTHEON_ENV", "dev")
    monkeypatch.setenv("LOG_FORMAT", "text")
    assert main(["migrate"]) == 0
    assert main(["migrate"]) == 0
    engine = make_engine(mysql_url)
    try:
        inspector = inspect(engine)
        assert {"state_intervals", "print_jobs", "alembic_version"} <= set(
            inspector.get_table_names()
        )
        names = {ix["name"] for ix in inspector.get_indexes("state_intervals")}
        assert {"ix_intervals_started", "ix_intervals_ended"} <= names
    finally:
        engine.dispose()


def test_migrate_reports_an_unreachable_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYSQL_URL", "mysql+pymysql://u:p@127.0.0.1:9/none")
    monkeypatch.setenv("PANTHEON_ENV", "dev")
    monkeypatch.setenv("LOG_FORMAT", "text")
    assert main(["migrate"]) == 1


def test_serve_polls_writes_and_answers_with_the_token(
    status_server: StatusServer, mongo_db: MongoTestDb, mysql_url: str, tmp_path: Path
) -> None:
    mongo = mongo_client(mongo_db.url, app_name="test")
    mongo[mongo_db.name].printers.insert_many([{"_id": 11}, {"_id": 12}])
    status_server.script = lambda pid: (
        {"printer_id": pid, "state": "printing", "bed": None} if pid == 11 else None
    )
    settings = Settings(
        mysql_url=mysql_url,
        mongo_url=mongo_db.url,
        mongo_db=mongo_db.name,
        service_token=TOKEN,
        printer_service_url_template=status_server.template,
        poll_interval_s=0.2,
        poll_timeout_s=2.0,
        spool_path=tmp_path / "spool.jsonl",
        startup_db_wait_s=5.0,
    )
    runtime = build(settings)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(runtime.app) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").json()["checks"] == {"mysql": "ok"}
        assert client.get("/intervals").status_code == 401
        assert (
            client.get("/utilization", headers={"Authorization": "Bearer nope"}).status_code == 401
        )

        deadline = time.monotonic() + 15
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            rows = client.get("/intervals", headers=auth).json()["intervals"]
            if {r["printer_id"] for r in rows} == {11, 12}:
                break
            time.sleep(0.1)
        assert {(r["printer_id"], r["state"]) for r in rows} == {
            (11, "printing"),
            (12, "offline"),  # its printer-service answers 503
        }
        body = client.get("/utilization", headers=auth).json()
        assert [p["printer_id"] for p in body["printers"]] == [11, 12]
        for printer in body["printers"]:
            assert sum(printer["total"]["percent"].values()) == pytest.approx(100)
        metrics = client.get("/metrics").text
        assert "utilization_buffer_pending" in metrics
        assert 'utilization_polls_total{outcome="ok"}' in metrics
    mongo.close()


def test_a_report_range_must_not_be_empty(mysql_url: str, tmp_path: Path) -> None:
    settings = Settings(
        mysql_url=mysql_url,
        service_token=TOKEN,
        spool_path=None,
        startup_db_wait_s=0,
        mongo_url="mongodb://127.0.0.1:9",
    )
    client = TestClient(build(settings).app)  # no lifespan: the API alone
    response = client.get(
        "/utilization",
        params={"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert response.status_code == 422
