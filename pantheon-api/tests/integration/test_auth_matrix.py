"""Every route needs credentials (401 without), and viewers cannot write (403).

The routes are enumerated from ``app.routes``: a new route without auth fails here.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from pantheon_api.api.app import DOC_PATHS, PUBLIC_PATHS
from pantheon_common.auth import Role, create_access_token

from .conftest import PASSWORD, SECRET_KEY, Api

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def all_routes(routes: list[Any], prefix: str = "") -> list[tuple[str, APIRoute]]:
    """(full path, route) of every APIRoute, including those of included routers (FastAPI
    0.16x keeps an included router as one node holding the original router)."""
    found: list[tuple[str, APIRoute]] = []
    for route in routes:
        original = getattr(route, "original_router", None)
        if original is not None:
            context = getattr(route, "include_context", None)
            found += all_routes(original.routes, prefix + getattr(context, "prefix", ""))
        elif isinstance(route, APIRoute):
            found.append((prefix + route.path, route))
    return found


def _routes(api: Api) -> list[tuple[str, str]]:
    found = []
    for full_path, route in all_routes(api.runtime.app.routes):
        if full_path in PUBLIC_PATHS | DOC_PATHS:
            continue
        path = re.sub(r"\{[^}]+\}", "11", full_path)  # 11: a valid id and service-ish word
        path = path.replace("/services/11", "/services/robot-arm")
        for method in sorted(route.methods - {"HEAD", "OPTIONS"}):
            found.append((method, path))
    return found


def test_the_route_list_is_complete(api: Api) -> None:
    routes = _routes(api)
    assert len(routes) > 45
    assert ("GET", "/api/events") in routes
    public = {p for p, _ in all_routes(api.runtime.app.routes)} & PUBLIC_PATHS
    assert public == {"/healthz", "/readyz", "/metrics", "/api/auth/token"}


def test_every_route_without_credentials_is_401(api: Api) -> None:
    failures = []
    for method, path in _routes(api):
        response = api.client.request(method, path)
        if response.status_code != 401:
            failures.append((method, path, response.status_code))
        elif response.json() != {"detail": "not authenticated"}:
            failures.append((method, path, response.text))
    assert failures == []


@pytest.mark.parametrize(
    "header",
    [
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Basic YWRtaW46YWRtaW4="},
        {"X-API-Key": "pk_not-a-key"},
    ],
)
def test_every_route_with_bad_credentials_is_401(api: Api, header: dict[str, str]) -> None:
    failures = [
        (m, p, r.status_code)
        for m, p in _routes(api)
        if (r := api.client.request(m, p, headers=header)).status_code != 401
    ]
    assert failures == []


def test_expired_token_is_401(api: Api) -> None:
    token = create_access_token(
        "admin-user", Role.ADMIN, secret=SECRET_KEY, ttl_s=60, now=time.time() - 3600
    )
    r = api.client.get("/api/printers", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
    assert r.json() == {"detail": "access token has expired"}


def test_viewer_on_every_write_route_is_403(api: Api) -> None:
    failures = []
    for method, path in _routes(api):
        if method not in WRITE_METHODS:
            continue
        response = api.client.request(method, path, headers=api.headers(Role.VIEWER))
        if response.status_code != 403:
            failures.append((method, path, response.status_code))
    assert failures == []


def test_operator_cannot_use_admin_routes(api: Api) -> None:
    for method, path in [
        ("GET", "/api/users"),
        ("POST", "/api/api-keys"),
        ("POST", "/api/printers"),
        ("POST", "/api/control/services/robot-arm/stop"),
        ("GET", "/api/control/services/robot-arm/logs"),
        ("POST", "/api/control/queues/purge"),
    ]:
        r = api.client.request(method, path, headers=api.headers(Role.OPERATOR))
        assert r.status_code == 403, (method, path)


def test_viewer_can_read(api: Api) -> None:
    for path in ["/api/printers", "/api/jobs", "/api/files", "/api/beds", "/api/prints"]:
        assert api.client.get(path, headers=api.headers(Role.VIEWER)).status_code == 200


def test_api_key_lifecycle(api: Api) -> None:
    created = api.client.post(
        "/api/api-keys", json={"name": "slicer", "role": "operator"}, headers=api.headers()
    )
    assert created.status_code == 201
    key = created.json()["key"]
    stored = api.ctx.store.find("api_keys", {})
    assert len(stored) == 1
    assert key not in str(stored)
    listed = api.client.get("/api/api-keys", headers=api.headers()).json()
    assert "key" not in listed[0]
    # OctoPrint clients spell the header X-Api-Key.
    assert api.client.get("/api/version", headers={"X-Api-Key": key}).status_code == 200
    assert api.client.get("/api/users", headers={"X-API-Key": key}).status_code == 403
    revoked = api.client.delete(f"/api/api-keys/{created.json()['id']}", headers=api.headers())
    assert revoked.json()["revoked_at"] is not None
    assert api.client.get("/api/version", headers={"X-Api-Key": key}).status_code == 401


def test_disabled_user_token_stops_working(api: Api) -> None:
    headers = api.headers(Role.OPERATOR)
    assert api.client.get("/api/jobs", headers=headers).status_code == 200
    r = api.client.patch("/api/users/operator-user", json={"disabled": True}, headers=api.headers())
    assert r.status_code == 200
    assert api.client.get("/api/jobs", headers=headers).status_code == 401


def test_mass_assignment_is_refused(api: Api) -> None:
    r = api.client.post(
        "/api/users",
        json={"username": "eve", "password": PASSWORD_OK, "role": "viewer", "password_hash": "x"},
        headers=api.headers(),
    )
    assert r.status_code == 422
    r = api.client.patch(
        "/api/jobs/abc", json={"status": "finished"}, headers=api.headers(Role.OPERATOR)
    )
    assert r.status_code == 422


def test_admin_cannot_lock_itself_out(api: Api) -> None:
    assert api.client.delete("/api/users/admin-user", headers=api.headers()).status_code == 409
    r = api.client.patch("/api/users/admin-user", json={"role": "viewer"}, headers=api.headers())
    assert r.status_code == 409


def test_login_is_rate_limited(api_factory: object) -> None:
    api = api_factory(login_max_failures=3)  # type: ignore[operator]
    for _ in range(3):
        r = api.client.post(
            "/api/auth/token", data={"username": "admin-user", "password": "wrong-pw"}
        )
        assert r.status_code == 401
    r = api.client.post("/api/auth/token", data={"username": "admin-user", "password": "wrong-pw"})
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) >= 1


def test_failed_logins_slow_down_their_address_not_the_account(api: Api) -> None:
    """Regression: 10 wrong passwords from a shared address locked the real admin out for
    60 s. Now 10+ failures from address A (across usernames) make A wait; the admin's correct
    password from address B works at once; A gets 429 with Retry-After, even with it."""
    a = TestClient(api.runtime.app, client=("203.0.113.7", 40000))
    b = TestClient(api.runtime.app, client=("198.51.100.2", 40000))
    for i in range(10):
        r = a.post(
            "/api/auth/token",
            data={"username": "admin-user" if i % 2 else f"guess{i}", "password": "wrong-pw"},
        )
        assert r.status_code == 401, (i, r.text)
    r = a.post("/api/auth/token", data={"username": "admin-user", "password": "wrong-pw"})
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) >= 1
    assert "from this address" in r.json()["detail"]
    r = a.post("/api/auth/token", data={"username": "admin-user", "password": PASSWORD})
    assert r.status_code == 429  # A waits, whatever it sends
    r = b.post("/api/auth/token", data={"username": "admin-user", "password": PASSWORD})
    assert r.status_code == 200, r.text
    assert r.json()["role"] == "admin"


PASSWORD_OK = "a long enough passphrase"
