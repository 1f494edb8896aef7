"""Roles, access tokens and the FastAPI role guard of pantheon_common.auth."""

from __future__ import annotations

import time

import jwt
import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from pantheon_common.auth import (
    Authenticator,
    AuthSettings,
    Principal,
    Role,
    TokenExpired,
    TokenInvalid,
    create_access_token,
    decode_access_token,
    install_auth,
    require_role,
    service_token_guard,
)
from pantheon_common.errors import ConfigurationError
from pantheon_common.settings import load_settings

SECRET = "k" * 40
SERVICE_TOKEN = "s3rvice-token-0123456789abcdef"


@pytest.mark.parametrize(
    ("role", "required", "allowed"),
    [
        (Role.VIEWER, Role.VIEWER, True),
        (Role.VIEWER, Role.OPERATOR, False),
        (Role.VIEWER, Role.ADMIN, False),
        (Role.OPERATOR, Role.VIEWER, True),
        (Role.OPERATOR, Role.OPERATOR, True),
        (Role.OPERATOR, Role.ADMIN, False),
        (Role.ADMIN, Role.VIEWER, True),
        (Role.ADMIN, Role.OPERATOR, True),
        (Role.ADMIN, Role.ADMIN, True),
    ],
)
def test_roles_are_ordered_admin_operator_viewer(role: Role, required: Role, allowed: bool) -> None:
    assert role.at_least(required) is allowed


def test_token_round_trip_keeps_subject_role_and_times() -> None:
    token = create_access_token("ada", Role.OPERATOR, secret=SECRET, ttl_s=600, now=1_000_000)
    claims = decode_access_token(token, secret=SECRET, now=1_000_100)
    assert (claims.subject, claims.role) == ("ada", Role.OPERATOR)
    assert (claims.issued_at, claims.expires_at) == (1_000_000, 1_000_600)


def test_expired_token_is_refused_with_its_own_error() -> None:
    token = create_access_token("ada", Role.ADMIN, secret=SECRET, ttl_s=60, now=time.time() - 600)
    with pytest.raises(TokenExpired):
        decode_access_token(token, secret=SECRET)
    fixed = create_access_token("ada", Role.ADMIN, secret=SECRET, ttl_s=60, now=1_000_000)
    with pytest.raises(TokenExpired):
        decode_access_token(fixed, secret=SECRET, now=1_000_100)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not-a-jwt",
        create_access_token("ada", Role.ADMIN, secret="another-secret-0123456789abcdef-0123456789"),
        jwt.encode({"sub": "ada", "role": "admin", "iat": 1, "exp": 2**40}, SECRET * 2, "HS512"),
        jwt.encode({"sub": "ada", "role": "root", "iat": 1, "exp": 2**40}, SECRET, "HS256"),
        jwt.encode({"sub": "", "role": "admin", "iat": 1, "exp": 2**40}, SECRET, "HS256"),
        jwt.encode({"role": "admin", "iat": 1, "exp": 2**40}, SECRET, "HS256"),
        jwt.encode({"sub": "ada", "iat": 1, "exp": 2**40}, SECRET, "HS256"),
        jwt.encode({"sub": "ada", "role": "admin", "exp": 2**40}, SECRET, "HS256"),
        # alg=none must never be accepted
        jwt.encode({"sub": "ada", "role": "admin", "iat": 1, "exp": 2**40}, None, "none"),
    ],
    ids=[
        "empty",
        "garbage",
        "wrong-key",
        "other-alg",
        "unknown-role",
        "empty-sub",
        "no-sub",
        "no-role",
        "no-iat",
        "alg-none",
    ],
)
def test_invalid_tokens_are_refused(token: str) -> None:
    with pytest.raises(TokenInvalid):
        decode_access_token(token, secret=SECRET)


@pytest.mark.parametrize("secret", ["", "changeme", "<secret>", "short", "0123456789abcdef0123"])
def test_placeholder_secret_key_is_refused_outside_dev_mode(secret: str) -> None:
    with pytest.raises(ConfigurationError, match="PANTHEON_SECRET_KEY"):
        Authenticator(secret, SERVICE_TOKEN)


def test_placeholder_service_token_is_refused_and_dev_mode_tolerates_placeholders() -> None:
    with pytest.raises(ConfigurationError, match="SERVICE_TOKEN"):
        Authenticator(SECRET, "guest")
    Authenticator("changeme", "guest", dev_mode=True)
    with pytest.raises(ConfigurationError, match="empty"):
        Authenticator("", dev_mode=True)


def test_auth_settings_read_the_secret_key_and_refuse_placeholders(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PANTHEON_SECRET_KEY", SECRET)
    monkeypatch.setenv("SERVICE_TOKEN", SERVICE_TOKEN)
    monkeypatch.setenv("PANTHEON_ENV", "production")
    settings = load_settings(AuthSettings)
    auth = Authenticator.from_settings(settings)
    assert auth.authenticate(SERVICE_TOKEN).kind == "service"
    monkeypatch.setenv("PANTHEON_SECRET_KEY", "changeme")
    with pytest.raises(ConfigurationError, match="PANTHEON_SECRET_KEY"):
        load_settings(AuthSettings)


def _app() -> tuple[FastAPI, Authenticator]:
    auth = Authenticator(SECRET, SERVICE_TOKEN)
    app = FastAPI()
    install_auth(app, auth)

    @app.get("/read")
    async def read(who: Principal = Depends(require_role(Role.VIEWER))) -> dict[str, str]:  # noqa: B008
        return {"subject": who.subject, "role": who.role.value, "kind": who.kind}

    @app.post("/act", dependencies=[Depends(require_role(Role.OPERATOR))])
    async def act() -> dict[str, bool]:
        return {"ok": True}

    return app, auth


def test_guard_answers_401_with_www_authenticate_without_valid_credentials() -> None:
    app, auth = _app()
    client = TestClient(app)
    expired = auth.issue("ada", Role.ADMIN, now=time.time() - 10 * 3600)
    for headers in (
        {},
        {"Authorization": "Bearer nonsense"},
        {"Authorization": "Basic YWRtaW46YWRtaW4="},
        {"Authorization": f"Bearer {expired}"},
        {"Authorization": f"Bearer {SERVICE_TOKEN}x"},
    ):
        response = client.get("/read", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"] == "Bearer"


def test_guard_checks_the_role_and_accepts_the_service_token() -> None:
    app, auth = _app()
    client = TestClient(app)
    viewer = {"Authorization": f"Bearer {auth.issue('vic', Role.VIEWER)}"}
    operator = {"Authorization": f"Bearer {auth.issue('olga', Role.OPERATOR)}"}
    service = {"Authorization": f"Bearer {SERVICE_TOKEN}"}
    assert client.get("/read", headers=viewer).json() == {
        "subject": "vic",
        "role": "viewer",
        "kind": "user",
    }
    assert client.post("/act", headers=viewer).status_code == 403
    assert client.post("/act", headers=operator).status_code == 200
    assert client.post("/act", headers=service).status_code == 200
    assert client.get("/read", headers=service).json()["kind"] == "service"


def test_guard_closes_when_auth_was_not_installed() -> None:
    app = FastAPI()

    @app.get("/read", dependencies=[Depends(require_role(Role.VIEWER))])
    async def read() -> dict[str, bool]:
        return {"ok": True}

    token = create_access_token("ada", Role.ADMIN, secret=SECRET)
    response = TestClient(app).get("/read", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 503


def _service_app(token: str, **guard: str) -> TestClient:
    app = FastAPI(dependencies=[Depends(service_token_guard(token, **guard))])

    @app.get("/data")
    async def data() -> dict[str, bool]:
        return {"ok": True}

    return TestClient(app)


def test_service_token_guard_admits_the_service_token() -> None:
    client = _service_app(SERVICE_TOKEN)
    response = client.get("/data", headers={"Authorization": f"Bearer {SERVICE_TOKEN}"})
    assert response.status_code == 200
    assert response.json() == {"ok": True}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer nope"},
        {"Authorization": f"Bearer {SERVICE_TOKEN}x"},
        {"Authorization": f"Bearer {SERVICE_TOKEN[:-1]}"},
        {"Authorization": f"Basic {SERVICE_TOKEN}"},
        {"Authorization": f"Bearer {create_access_token('ada', Role.ADMIN, secret=SECRET)}"},
    ],
    ids=["missing", "empty", "wrong", "longer", "shorter", "other-scheme", "user-jwt"],
)
def test_service_token_guard_refuses_anything_else_with_401(headers: dict[str, str]) -> None:
    response = _service_app(SERVICE_TOKEN).get("/data", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {"detail": "service token required"}


def test_service_token_guard_with_an_empty_token_refuses_every_call() -> None:
    client = _service_app("")
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer x"}):
        response = client.get("/data", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"] == "Bearer"


def test_service_token_guard_uses_the_given_detail() -> None:
    client = _service_app(SERVICE_TOKEN, detail="a valid service token is required")
    response = client.get("/data", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert response.json() == {"detail": "a valid service token is required"}
