"""add_observability: health, readiness with failing and hanging checks, route-template metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import pytest
from fastapi import Depends, FastAPI, HTTPException
from fastapi.testclient import TestClient
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from pantheon_common.http import (
    UNMATCHED_ROUTE,
    ReadinessCheck,
    add_observability,
    run_blocking_check,
)


async def _ok() -> None:
    return None


async def _refused() -> None:
    raise ConnectionRefusedError("mongodb:27017 refused the connection")


async def _hangs() -> None:
    await asyncio.Event().wait()


def _make_app(
    checks: Mapping[str, ReadinessCheck] | None = None,
    *,
    check_timeout_s: float = 2.0,
    app: FastAPI | None = None,
) -> tuple[FastAPI, CollectorRegistry]:
    app = app or FastAPI()

    @app.get("/printers/{printer_id}")
    async def get_printer(printer_id: int) -> dict[str, int]:
        return {"printer_id": printer_id}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("unexpected")

    registry = add_observability(
        app, service="printer-service", checks=checks, check_timeout_s=check_timeout_s
    )
    return app, registry


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


# -- health and readiness ----------------------------------------------------------------------


def test_healthz_is_ok_without_contacting_dependencies() -> None:
    app, _ = _make_app({"mongo": _refused})
    with TestClient(app) as client:
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "service": "printer-service"}


def test_readyz_without_checks_is_ready() -> None:
    app, _ = _make_app()
    with TestClient(app) as client:
        response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {}}


def test_readyz_with_passing_checks() -> None:
    app, _ = _make_app({"mongo": _ok, "rabbitmq": _ok})
    with TestClient(app) as client:
        response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"mongo": "ok", "rabbitmq": "ok"}}


def test_readyz_names_the_failed_check_and_its_reason() -> None:
    app, _ = _make_app({"mongo": _refused, "rabbitmq": _ok})
    with TestClient(app) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready"
    assert body["checks"]["rabbitmq"] == "ok"
    assert body["checks"]["mongo"] == (
        "error: ConnectionRefusedError: mongodb:27017 refused the connection"
    )


def test_hanging_check_times_out_within_its_timeout() -> None:
    app, _ = _make_app({"mqtt": _hangs, "mongo": _hangs, "rabbitmq": _ok}, check_timeout_s=0.5)
    with TestClient(app) as client:
        started = time.monotonic()
        response = client.get("/readyz")
        elapsed = time.monotonic() - started
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["mqtt"] == "error: timed out after 0.5 s"
    assert checks["mongo"] == "error: timed out after 0.5 s"
    assert checks["rabbitmq"] == "ok"
    # Concurrent: two hanging checks cost one timeout, not two.
    assert 0.5 <= elapsed < 0.9


def test_blocking_checks_run_in_a_thread() -> None:
    def ping() -> object:
        return {"ok": 1}

    def broken_ping() -> object:
        raise OSError("no route to host")

    app, _ = _make_app(
        {"mongo": run_blocking_check(ping), "mysql": run_blocking_check(broken_ping)}
    )
    with TestClient(app) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"] == {
        "mongo": "ok",
        "mysql": "error: OSError: no route to host",
    }


def test_exception_without_message_still_names_its_type() -> None:
    async def silent() -> None:
        raise ConnectionError

    app, _ = _make_app({"sftp": silent})
    with TestClient(app) as client:
        assert client.get("/readyz").json()["checks"] == {"sftp": "error: ConnectionError"}


def test_routes_need_no_auth_even_with_global_dependencies() -> None:
    def require_login() -> None:
        raise HTTPException(status_code=401, detail="login required")

    app, _ = _make_app({"mongo": _ok}, app=FastAPI(dependencies=[Depends(require_login)]))
    with TestClient(app) as client:
        assert client.get("/printers/14").status_code == 401  # the service's own routes
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
        assert client.get("/metrics").status_code == 200


def test_routes_appear_in_openapi_under_observability() -> None:
    app, _ = _make_app()
    with TestClient(app) as client:
        paths = client.get("/openapi.json").json()["paths"]
    for path in ("/healthz", "/readyz", "/metrics"):
        assert paths[path]["get"]["tags"] == ["observability"]


# -- metrics -----------------------------------------------------------------------------------


def test_metrics_use_the_route_template() -> None:
    app, registry = _make_app()
    with TestClient(app) as client:
        assert client.get("/printers/14").status_code == 200
        assert client.get("/printers/15").status_code == 200
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    assert (
        'http_requests_total{method="GET",route="/printers/{printer_id}",status="200"} 2.0'
        in response.text
    )
    assert "/printers/14" not in response.text
    assert "http_request_duration_seconds_bucket" in response.text
    assert "process_cpu_seconds_total" in response.text  # default collectors are there
    assert (
        _sample(
            registry,
            "http_request_duration_seconds_count",
            method="GET",
            route="/printers/{printer_id}",
        )
        == 2
    )


def test_unmatched_paths_share_one_label() -> None:
    app, registry = _make_app()
    with TestClient(app) as client:
        assert client.get("/wp-admin/setup.php").status_code == 404
        assert client.get("/.env").status_code == 404
    labels = {"method": "GET", "route": UNMATCHED_ROUTE, "status": "404"}
    assert _sample(registry, "http_requests_total", **labels) == 2


def test_validation_errors_and_crashes_are_counted_with_their_status() -> None:
    app, registry = _make_app()
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/printers/not-a-number").status_code == 422
        assert client.get("/boom").status_code == 500
    assert (
        _sample(
            registry,
            "http_requests_total",
            method="GET",
            route="/printers/{printer_id}",
            status="422",
        )
        == 1
    )
    assert _sample(registry, "http_requests_total", method="GET", route="/boom", status="500") == 1


def test_unknown_methods_are_bounded() -> None:
    app, registry = _make_app()
    with TestClient(app) as client:
        client.request("FOOBAR", "/healthz")
    assert _sample(registry, "http_requests_total", method="OTHER", route="/healthz", status="405")


def test_two_apps_do_not_share_counters() -> None:
    first, first_registry = _make_app()
    second, second_registry = _make_app()
    assert first_registry is not second_registry
    with TestClient(first) as client:
        client.get("/printers/14")
        client.get("/printers/14")
    with TestClient(second) as client:
        client.get("/printers/21")
    labels = {"method": "GET", "route": "/printers/{printer_id}", "status": "200"}
    assert _sample(first_registry, "http_requests_total", **labels) == 2
    assert _sample(second_registry, "http_requests_total", **labels) == 1


def test_given_registry_is_used_and_returned() -> None:
    registry = CollectorRegistry()
    app = FastAPI()
    assert add_observability(app, service="slicer-api", registry=registry) is registry
    with TestClient(app) as client:
        client.get("/healthz")
    labels = {"method": "GET", "route": "/healthz", "status": "200"}
    assert _sample(registry, "http_requests_total", **labels) == 1


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_observability_routes_count_themselves(path: str) -> None:
    app, registry = _make_app()
    with TestClient(app) as client:
        client.get(path)
    labels = {"method": "GET", "route": path, "status": "200"}
    assert _sample(registry, "http_requests_total", **labels) == 1
