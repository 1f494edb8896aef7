"""Fixtures: the API over a fresh MongoDB database, a local G-code store, fake upstreams."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.testclient import TestClient

from pantheon_api.admin import create_admin
from pantheon_api.runtime import Runtime, build
from pantheon_api.settings import Settings
from pantheon_common.auth import Role
from pantheon_common.gcode_store import GcodeStore, LocalGcodeStore
from pantheon_contracts.names import Collections
from pantheon_devtools.pytest_plugin import MongoTestDb

ROOT = Path(__file__).resolve().parents[3]
SECRET_KEY = "k" * 16 + "-test-signing-key-0123456789abcdef"
SERVICE_TOKEN = "service-token-for-pantheon-api-tests"
PASSWORD = "correct horse battery staple"


def fake_upstream() -> tuple[FastAPI, list[tuple[str, str, Any]]]:
    """A stand-in for printer-service / orchestrator / utilization / control panel: checks the
    service token, records each call, answers in the documented shapes."""
    calls: list[tuple[str, str, Any]] = []
    app = FastAPI()

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def anything(path: str, request: Request, authorization: str = Header("")) -> Any:
        if authorization != f"Bearer {SERVICE_TOKEN}":
            raise HTTPException(401, "bad token")
        body = await request.body()
        calls.append((request.method, f"{request.url.netloc}/{path}", body))
        if path in ("tasks", "tasks/held", "dead-letters", "services", "hosts"):
            return []
        if path.endswith("/resolve") and "missing" in path:
            raise HTTPException(404, "no task missing")
        return {"ok": True, "path": path}

    return app, calls


@dataclass
class Api:
    """The app under test with its context and a client per role."""

    runtime: Runtime
    client: TestClient
    calls: list[tuple[str, str, Any]]
    tokens: dict[Role, str]
    store_dir: Path

    @property
    def ctx(self) -> Any:
        return self.runtime.context

    def headers(self, role: Role = Role.ADMIN) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


def make_settings(mongo_db: MongoTestDb, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "pantheon_env": "production",
        "log_format": "text",
        "mongo_url": mongo_db.url,
        "mongo_db": mongo_db.name,
        "pantheon_secret_key": SECRET_KEY,
        "service_token": SERVICE_TOKEN,
        "amqp_url": "amqp://127.0.0.1:5672/%2F",
        "farm_layout": ROOT / "farm.yaml",
        "printer_service_url_template": "http://printer-{printer_id}.test",
        "orchestrator_url": "http://orchestrator.test",
        "utilization_url": "http://utilization.test",
        "control_panel_url": "http://control.test",
        "events_poll_s": 0.1,
    }
    values.update(overrides)
    return Settings(**values)


ApiFactory = Callable[..., Api]


@pytest.fixture
def api_factory(mongo_db: MongoTestDb, tmp_path: Path) -> Iterator[ApiFactory]:
    built: list[Api] = []

    def make(
        *,
        gcode_store: GcodeStore | None = None,
        upstream_app: Any = None,
        **overrides: Any,
    ) -> Api:
        store_dir = tmp_path / f"gcode{len(built)}"
        fake, calls = fake_upstream()
        transport = httpx.ASGITransport(app=upstream_app or fake)
        runtime = build(
            make_settings(mongo_db, **overrides),
            gcode_store=gcode_store or LocalGcodeStore(store_dir),
            http_client=httpx.AsyncClient(transport=transport, timeout=10),
        )
        ctx = runtime.context
        tokens = {}
        for role in Role:
            name = f"{role.value}-user"
            if role == Role.ADMIN:
                create_admin(ctx.store, ctx.hasher, name, PASSWORD)
            else:
                ctx.store.insert(
                    Collections.USERS,
                    {"_id": name, "password_hash": ctx.hasher.hash(PASSWORD), "role": role.value},
                )
            tokens[role] = ctx.authenticator.issue(name, role)
        api = Api(runtime, TestClient(runtime.app), calls, tokens, store_dir)
        built.append(api)
        return api

    yield make
    for api in built:
        api.client.close()
        api.runtime.close()


@pytest.fixture
def api(api_factory: ApiFactory) -> Api:
    return api_factory()
