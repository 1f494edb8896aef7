"""Every route needs credentials (401), and write routes need an operator (403 for a viewer).

Routes are enumerated from the app, so a new route without auth fails here until it is
either protected or added, reviewed, to PUBLIC.
"""

from __future__ import annotations

import pytest
from fastapi.routing import APIRoute
from starlette.routing import Route

from pantheon_common.auth import Role

from .conftest import Api

PUBLIC = {
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
}
SAMPLE_PATH_VALUES = {"service": "robot-arm"}
READ_METHODS = {"GET", "HEAD"}
BODIES = {"/queues/purge": {"queues": ["ready"]}}


def _calls(api: Api) -> list[tuple[str, str, str]]:
    calls = []
    for route in api.client.app.routes:  # type: ignore[attr-defined]
        assert isinstance(route, Route), route
        for method in sorted(route.methods or ()):
            if method == "HEAD":
                continue
            url = route.path.format(**SAMPLE_PATH_VALUES)
            calls.append((method, route.path, url))
    return calls


def test_the_route_list_is_what_was_reviewed(api: Api) -> None:
    protected = {(method, path) for method, path, _ in _calls(api) if path not in PUBLIC}
    assert protected == {
        ("GET", "/services"),
        ("GET", "/services/{service}"),
        ("POST", "/services/{service}/start"),
        ("POST", "/services/{service}/stop"),
        ("POST", "/services/{service}/restart"),
        ("GET", "/services/{service}/logs"),
        ("GET", "/services/{service}/logs/follow"),
        ("POST", "/queues/purge"),
        ("GET", "/hosts"),
    }


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer nonsense", "Basic YWRtaW46YWRtaW4=", "Bearer ", "bearer x.y.z"],
)
def test_every_non_public_route_answers_401_without_valid_credentials(
    api: Api, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path, url in _calls(api):
        if path in PUBLIC:
            continue
        response = api.client.request(method, url, headers=headers, json=BODIES.get(path))
        assert response.status_code == 401, (method, path, response.status_code)
        assert response.headers["www-authenticate"] == "Bearer"


def test_an_expired_token_is_refused(api: Api) -> None:
    import time

    expired = api.authenticator.issue("alice", Role.ADMIN, now=time.time() - 86400)
    response = api.client.get("/services", headers={"Authorization": f"Bearer {expired}"})
    assert response.status_code == 401


def test_a_viewer_gets_403_on_every_write_route(api: Api, rig: object) -> None:
    viewer = api.headers(Role.VIEWER, "vic")
    writes = [(m, p, u) for m, p, u in _calls(api) if m not in READ_METHODS and p not in PUBLIC]
    assert writes
    for method, path, url in writes:
        response = api.client.request(method, url, headers=viewer, json=BODIES.get(path))
        assert response.status_code == 403, (method, path, response.status_code)
    assert api.audit.read() == []  # nothing was attempted


def test_public_routes_answer_without_credentials(api: Api) -> None:
    assert api.client.get("/healthz").status_code == 200
    assert api.client.get("/metrics").status_code == 200
    assert api.client.get("/openapi.json").status_code == 200


def test_every_api_route_declares_the_bearer_scheme_in_openapi(api: Api) -> None:
    schema = api.client.get("/openapi.json").json()
    for path, operations in schema["paths"].items():
        if path in PUBLIC:
            continue
        for operation in operations.values():
            assert operation.get("security") == [{"HTTPBearer": []}], path
    assert all(isinstance(r, APIRoute | Route) for r in api.client.app.routes)  # type: ignore[attr-defined]
