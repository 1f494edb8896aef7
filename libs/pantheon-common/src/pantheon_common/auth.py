"""Authentication shared by every user-facing API: roles, JWT access tokens, FastAPI guards.

Users carry a short-lived HS256 JWT (claims ``sub``, ``role``, ``exp``, ``iat``) signed with
``PANTHEON_SECRET_KEY``; pantheon-api issues them, every API checks them. Services carry the
shared ``SERVICE_TOKEN`` instead and count as admin-level callers.

Wiring, once per app::

    install_auth(app, Authenticator.from_settings(settings))
    app = FastAPI(dependencies=[Depends(require_role(Role.VIEWER))])   # every route
    @app.post("/x", dependencies=[Depends(require_role(Role.OPERATOR))])  # stricter routes

A missing or invalid credential answers 401 with ``WWW-Authenticate: Bearer``; a valid one
with too low a role answers 403.

Internal APIs that only other services call (no users, no JWT) guard their routes with the
service token alone::

    app = FastAPI(dependencies=[Depends(service_token_guard(settings_token))])
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Literal

import jwt
from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import Field, SecretStr

from pantheon_common.errors import ConfigurationError, PantheonError
from pantheon_common.settings import ServiceTokenSettings, secret_problem

__all__ = [
    "ALGORITHM",
    "DEFAULT_TOKEN_TTL_S",
    "MIN_SECRET_KEY_BYTES",
    "AuthSettings",
    "Authenticator",
    "Principal",
    "Role",
    "TokenClaims",
    "TokenError",
    "TokenExpired",
    "TokenInvalid",
    "create_access_token",
    "decode_access_token",
    "install_auth",
    "require_role",
    "service_token_guard",
]

ALGORITHM = "HS256"
DEFAULT_TOKEN_TTL_S = 3600
MIN_SECRET_KEY_BYTES = 32
_LEEWAY_S = 10  # clock skew tolerated between the issuing and the checking host
_APP_STATE_KEY = "pantheon_authenticator"


class Role(StrEnum):
    """What a user may do; each role includes every lower one (admin > operator > viewer)."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        """0 for viewer, 1 for operator, 2 for admin."""
        return _RANKS[self]

    def at_least(self, required: Role) -> bool:
        """True when this role may do what ``required`` may do."""
        return self.rank >= required.rank


_RANKS = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


class TokenError(PantheonError):
    """An access token was refused."""


class TokenExpired(TokenError):
    """The token's ``exp`` lies in the past."""


class TokenInvalid(TokenError):
    """The token is malformed, badly signed, or lacks a claim."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """The checked claims of an access token."""

    subject: str
    role: Role
    issued_at: int
    expires_at: int


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a user (from a JWT) or a service (with the service token)."""

    subject: str
    role: Role
    kind: Literal["user", "service"]


class AuthSettings(ServiceTokenSettings):
    """Settings of an API that checks users' tokens (placeholders refused outside dev mode)."""

    pantheon_secret_key: SecretStr = Field(
        default=SecretStr(""), description="HS256 key signing user access tokens"
    )
    # Not *_TOKEN_*: names with TOKEN are secrets to the env-example checks.
    login_ttl_s: int = Field(
        default=DEFAULT_TOKEN_TTL_S, ge=60, le=7 * 86400, description="access token lifetime, s"
    )


def create_access_token(
    subject: str,
    role: Role,
    *,
    secret: str,
    ttl_s: int = DEFAULT_TOKEN_TTL_S,
    now: float | None = None,
) -> str:
    """A signed JWT for ``subject`` with ``role``, valid for ``ttl_s`` seconds from ``now``."""
    if not subject:
        raise ValueError("subject must not be empty")
    issued = int(time.time() if now is None else now)
    claims = {"sub": subject, "role": role.value, "iat": issued, "exp": issued + ttl_s}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode_access_token(token: str, *, secret: str, now: float | None = None) -> TokenClaims:
    """Check signature, expiry and claims of ``token``; raise `TokenExpired` or `TokenInvalid`."""
    # PyJWT compares exp with the wall clock; an explicit ``now`` (tests) is checked below.
    try:
        raw = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": ["sub", "role", "exp", "iat"], "verify_exp": now is None},
            leeway=_LEEWAY_S,
        )
    except jwt.ExpiredSignatureError as err:
        raise TokenExpired("access token has expired") from err
    except jwt.PyJWTError as err:
        raise TokenInvalid(f"access token refused: {err}") from err
    subject, role, exp, iat = raw.get("sub"), raw.get("role"), raw.get("exp"), raw.get("iat")
    if not isinstance(subject, str) or not subject:
        raise TokenInvalid("access token refused: sub must be a non-empty string")
    if not isinstance(exp, int) or not isinstance(iat, int):
        raise TokenInvalid("access token refused: exp and iat must be integers")
    try:
        parsed_role = Role(str(role))
    except ValueError as err:
        raise TokenInvalid(f"access token refused: unknown role {role!r}") from err
    if now is not None and exp + _LEEWAY_S <= now:
        raise TokenExpired("access token has expired")
    return TokenClaims(subject=subject, role=parsed_role, issued_at=iat, expires_at=exp)


class Authenticator:
    """Turns a bearer credential into a `Principal` (the secrets stay inside)."""

    def __init__(
        self,
        secret_key: str,
        service_token: str = "",
        *,
        dev_mode: bool = False,
        token_ttl_s: int = DEFAULT_TOKEN_TTL_S,
    ) -> None:
        problems = []
        if problem := secret_problem(secret_key):
            problems.append(f"PANTHEON_SECRET_KEY {problem}")
        elif len(secret_key.encode()) < MIN_SECRET_KEY_BYTES:
            # RFC 7518 3.2: an HS256 key needs at least 256 bits.
            problems.append(f"PANTHEON_SECRET_KEY is shorter than {MIN_SECRET_KEY_BYTES} bytes")
        if service_token and (problem := secret_problem(service_token)):
            problems.append(f"SERVICE_TOKEN {problem}")
        if problems and not dev_mode:
            raise ConfigurationError(
                "; ".join(problems) + " (set real secrets in .env, or PANTHEON_ENV=dev locally)"
            )
        if not secret_key:
            raise ConfigurationError("PANTHEON_SECRET_KEY is empty: no token could be checked")
        self._secret_key = secret_key
        self._service_token = service_token
        self.token_ttl_s = token_ttl_s

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> Authenticator:
        """Build from `AuthSettings` (the settings validator has already refused placeholders)."""
        return cls(
            settings.pantheon_secret_key.get_secret_value(),
            settings.service_token.get_secret_value(),
            dev_mode=settings.dev_mode,
            token_ttl_s=settings.login_ttl_s,
        )

    def issue(self, subject: str, role: Role, *, now: float | None = None) -> str:
        """A new access token for ``subject``."""
        return create_access_token(
            subject, role, secret=self._secret_key, ttl_s=self.token_ttl_s, now=now
        )

    def authenticate(self, credential: str) -> Principal:
        """The caller behind ``credential`` (the service token or a JWT); raises `TokenError`."""
        if self._service_token and hmac.compare_digest(
            credential.encode("utf-8", "surrogateescape"),
            self._service_token.encode("utf-8", "surrogateescape"),
        ):
            return Principal(subject="service", role=Role.ADMIN, kind="service")
        claims = decode_access_token(credential, secret=self._secret_key)
        return Principal(subject=claims.subject, role=claims.role, kind="user")


def install_auth(app: FastAPI, authenticator: Authenticator) -> None:
    """Make ``authenticator`` the one `require_role` uses for ``app``."""
    setattr(app.state, _APP_STATE_KEY, authenticator)


_bearer = HTTPBearer(auto_error=False, description="A user access token or the service token")


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=detail,
        headers={"WWW-Authenticate": "Bearer"},
    )


def require_role(required: Role) -> Callable[..., Awaitable[Principal]]:
    """A FastAPI dependency admitting callers whose role is at least ``required``."""

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        authenticator = getattr(request.app.state, _APP_STATE_KEY, None)
        if not isinstance(authenticator, Authenticator):
            # A wiring mistake must close the door, not open it.
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "authentication not set up")
        if credentials is None:
            raise _unauthorized("not authenticated")
        try:
            principal = authenticator.authenticate(credentials.credentials)
        except TokenExpired as err:
            raise _unauthorized("access token has expired") from err
        except TokenError as err:
            raise _unauthorized("invalid credentials") from err
        if not principal.role.at_least(required):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"role {principal.role.value} may not do this"
            )
        request.state.principal = principal
        return principal

    dependency.__name__ = f"require_{required.value}"
    return dependency


_service_bearer = HTTPBearer(auto_error=False)


def service_token_guard(
    token: str, *, detail: str = "service token required"
) -> Callable[..., None]:
    """A FastAPI dependency admitting only ``Authorization: Bearer <token>``.

    Anything else (no header, another scheme, a wrong token) answers 401 with
    ``WWW-Authenticate: Bearer`` and ``detail``; an empty ``token`` refuses every call.
    """

    def dependency(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_service_bearer)],
    ) -> None:
        given = credentials.credentials if credentials is not None else ""
        if not token or not hmac.compare_digest(
            given.encode("utf-8", "surrogateescape"), token.encode("utf-8", "surrogateescape")
        ):
            raise _unauthorized(detail)

    dependency.__name__ = "require_service_token"
    return dependency
