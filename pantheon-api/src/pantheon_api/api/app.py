"""The FastAPI application: routers, error handlers, OpenAPI, observability."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from starlette.exceptions import HTTPException as StarletteHTTPException

from pantheon_api.adapters.store import Duplicate
from pantheon_api.adapters.upstream import UpstreamError
from pantheon_api.api import (
    events,
    routes_accounts,
    routes_farm,
    routes_files,
    routes_jobs,
    routes_ops,
)
from pantheon_api.api.deps import Context
from pantheon_common.auth import install_auth
from pantheon_common.errors import StoreUnavailable
from pantheon_common.gcode_store import (
    GcodeExists,
    GcodeNotFound,
    GcodeStoreError,
    GcodeTooLarge,
    InvalidGcodeName,
)
from pantheon_common.http import ReadinessCheck, add_observability

SERVICE = "pantheon-api"

PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/api/auth/token"})
"""Routes answering without credentials (reviewed: health, metrics, the login itself)."""
DOC_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
"""FastAPI's documentation routes (the API description, no farm data)."""


def _json(status: int, detail: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=dict(headers or {}))


def _validation_detail(err: RequestValidationError) -> str:
    parts = []
    for e in err.errors()[:5]:
        loc = ".".join(str(p) for p in e.get("loc", ()))
        parts.append(f"{loc}: {e.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def create_app(
    ctx: Context,
    *,
    registry: CollectorRegistry | None = None,
    checks: Mapping[str, ReadinessCheck] | None = None,
) -> FastAPI:
    """The app over an already wired `Context`."""
    app = FastAPI(
        title="pantheon-api",
        version="0.1.0",
        description=(
            "Dashboard backend of the Pantheon print farm: printers, G-code files, the print "
            "queue, plates, the robot and its orchestrator, utilization, live events. "
            "Log in with `POST /api/auth/token` (OAuth2 password flow) and send "
            "`Authorization: Bearer <token>`, or send an API key as `X-API-Key`. "
            'Errors are `{"detail": "reason"}`.'
        ),
    )
    app.state.ctx = ctx
    install_auth(app, ctx.authenticator)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _json(exc.status_code, str(exc.detail), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _json(422, _validation_detail(exc))

    @app.exception_handler(UpstreamError)
    async def upstream_error(_: Request, exc: UpstreamError) -> JSONResponse:
        return _json(exc.status, exc.detail)

    @app.exception_handler(StoreUnavailable)
    async def store_error(_: Request, exc: StoreUnavailable) -> JSONResponse:
        return _json(503, str(exc))

    @app.exception_handler(Duplicate)
    async def duplicate(_: Request, exc: Duplicate) -> JSONResponse:
        return _json(409, str(exc))

    @app.exception_handler(GcodeStoreError)
    async def gcode_error(_: Request, exc: GcodeStoreError) -> JSONResponse:
        if isinstance(exc, GcodeNotFound):
            return _json(404, str(exc))
        if isinstance(exc, InvalidGcodeName):
            return _json(422, str(exc))
        if isinstance(exc, GcodeExists):
            return _json(409, str(exc))
        if isinstance(exc, GcodeTooLarge):
            return _json(413, str(exc))
        return _json(503, f"G-code store unavailable: {exc}")

    for module in (routes_accounts, routes_farm, routes_files, routes_jobs, routes_ops, events):
        app.include_router(module.router)
    add_observability(app, service=SERVICE, registry=registry, checks=checks)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        # Validation errors are plain {"detail": "reason"} here too (see validation_error).
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas["HTTPValidationError"] = {
            "title": "HTTPValidationError",
            "type": "object",
            "properties": {"detail": {"type": "string", "title": "Detail"}},
            "required": ["detail"],
        }
        schemas.pop("ValidationError", None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
