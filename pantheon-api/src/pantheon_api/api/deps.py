"""The wired services of the app and the authentication dependencies.

Three ways in, all checked on every route (except /healthz, /readyz, /metrics):
``Authorization: Bearer <JWT>`` (users, from ``POST /api/auth/token``), ``X-API-Key`` (machines:
the slicer, the web shop; stored as SHA-256 in ``api_keys``), and the shared service token
(other farm services; admin level). ``GET /api/events`` also takes ``?access_token=`` because a
browser's EventSource cannot set headers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from argon2 import PasswordHasher
from fastapi import Depends, HTTPException, Query, Request, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from pantheon_api.adapters.store import FarmStore, utcnow
from pantheon_api.adapters.upstream import Upstream
from pantheon_api.domain.accounts import hash_api_key
from pantheon_api.domain.farm import printer_service_address
from pantheon_api.domain.login import LoginBackoff
from pantheon_api.domain.metadata import ArchiveLimits
from pantheon_common.auth import Authenticator, Principal, Role, TokenError, TokenExpired
from pantheon_common.errors import StoreUnavailable
from pantheon_common.farm import FarmLayout
from pantheon_common.gcode_store import GcodeStore
from pantheon_contracts.names import Collections

__all__ = [
    "Admin",
    "Context",
    "Operator",
    "Viewer",
    "context",
    "require",
]


@dataclass
class Context:
    """Everything the routes use, built once (see `pantheon_api.runtime.build`)."""

    store: FarmStore
    gcode: GcodeStore
    authenticator: Authenticator
    hasher: PasswordHasher
    printer_service: Upstream
    printer_url_template: str
    orchestrator: Upstream
    utilization: Upstream
    control_panel: Upstream
    publish_homing: Callable[[str], None]
    upload_limit: int
    archive_limits: ArchiveLimits
    dev_mode: bool
    events_poll_s: float
    throttle: LoginBackoff
    layout: FarmLayout
    """The farm layout (FARM_LAYOUT): the printers that have a printer-service, the racks."""

    def printer_url(self, printer_id: int) -> str:
        """The printer's printer-service URL; `UnknownPrinter` / `NoServiceAddress` (domain.farm)
        when it has none, so an id never reaches the HTTP client unchecked."""
        return printer_service_address(self.layout, self.printer_url_template, printer_id)


def context(request: Request) -> Context:
    ctx = getattr(request.app.state, "ctx", None)
    if not isinstance(ctx, Context):
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "service not set up")
    return ctx


Ctx = Annotated[Context, Depends(context)]

_bearer = HTTPBearer(
    auto_error=False, description="A user access token (POST /api/auth/token) or the service token"
)
_api_key = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="An API key (created by an admin)"
)


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"}
    )


def _from_api_key(ctx: Context, key: str) -> Principal:
    try:
        docs = ctx.store.find(Collections.API_KEYS, {"hash": hash_api_key(key)}, limit=1)
    except StoreUnavailable as err:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(err)) from err
    if not docs or docs[0].get("revoked_at") is not None:
        raise _unauthorized("invalid API key")
    doc = docs[0]
    try:
        role = Role(str(doc.get("role")))
    except ValueError as err:
        raise _unauthorized("invalid API key") from err
    with contextlib.suppress(StoreUnavailable):  # last_used_at is bookkeeping only
        ctx.store.update(
            Collections.API_KEYS, {"_id": doc["_id"]}, {"$set": {"last_used_at": utcnow()}}
        )
    return Principal(subject=f"apikey:{doc.get('name', doc['_id'])}", role=role, kind="service")


def _from_token(ctx: Context, token: str) -> Principal:
    try:
        principal = ctx.authenticator.authenticate(token)
    except TokenExpired as err:
        raise _unauthorized("access token has expired") from err
    except TokenError as err:
        raise _unauthorized("invalid credentials") from err
    if principal.kind != "user":
        return principal
    # The account is read on each request: a disabled or deleted user, or a changed role,
    # takes effect at once instead of when the token expires.
    try:
        user = ctx.store.get(Collections.USERS, principal.subject)
    except StoreUnavailable as err:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(err)) from err
    if user is None or user.get("disabled"):
        raise _unauthorized("account disabled or deleted")
    try:
        role = Role(str(user.get("role")))
    except ValueError as err:
        raise _unauthorized("account has no valid role") from err
    return Principal(subject=principal.subject, role=role, kind="user")


def _authenticate(
    request: Request,
    ctx: Context,
    bearer: HTTPAuthorizationCredentials | None,
    api_key: str | None,
    query_token: str | None,
) -> Principal:
    if api_key:
        principal = _from_api_key(ctx, api_key)
    elif bearer is not None:
        principal = _from_token(ctx, bearer.credentials)
    elif query_token:
        principal = _from_token(ctx, query_token)
    else:
        raise _unauthorized("not authenticated")
    request.state.principal = principal
    return principal


def _check_role(principal: Principal, required: Role) -> Principal:
    if not principal.role.at_least(required):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"role {principal.role.value} may not do this"
        )
    return principal


def require(required: Role) -> Callable[..., Any]:
    """Dependency admitting callers whose role is at least ``required``."""

    def dependency(
        request: Request,
        ctx: Ctx,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        api_key: Annotated[str | None, Depends(_api_key)],
    ) -> Principal:
        return _check_role(_authenticate(request, ctx, bearer, api_key, None), required)

    dependency.__name__ = f"require_{required.value}"
    return dependency


def require_viewer_or_query_token(
    request: Request,
    ctx: Ctx,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
    access_token: Annotated[
        str | None,
        Query(description="access token, for EventSource clients that cannot set headers"),
    ] = None,
) -> Principal:
    """Viewer or better, also with ``?access_token=`` (the SSE stream only)."""
    principal = _authenticate(request, ctx, bearer, api_key, access_token)
    return _check_role(principal, Role.VIEWER)


Viewer = Annotated[Principal, Depends(require(Role.VIEWER))]
Operator = Annotated[Principal, Depends(require(Role.OPERATOR))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
EventsViewer = Annotated[Principal, Depends(require_viewer_or_query_token)]
