"""Health, readiness and Prometheus metrics routes shared by every FastAPI service."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Literal

from fastapi import APIRouter, FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "DEFAULT_CHECK_TIMEOUT_S",
    "UNMATCHED_ROUTE",
    "HealthResponse",
    "ReadinessCheck",
    "ReadinessResponse",
    "add_observability",
    "run_blocking_check",
]

ReadinessCheck = Callable[[], Awaitable[None]]
"""Returns when the dependency is reachable, raises (with a readable message) when not."""

DEFAULT_CHECK_TIMEOUT_S = 2.0
"""Time each readiness check gets before it is reported as timed out."""

UNMATCHED_ROUTE = "<unmatched>"
"""Route label of requests that matched no route (scanners, typos): one series, not one per path."""

_TAG = "observability"
# Any other method (a scanner's "FOOBAR") is counted as OTHER to keep the label bounded.
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_MAX_REASON_CHARS = 200


class HealthResponse(BaseModel):
    """Liveness: the process is up and serving HTTP."""

    status: Literal["ok"] = "ok"
    service: str = Field(description="Name of the service answering.")


class ReadinessResponse(BaseModel):
    """Readiness: every dependency answered within its timeout."""

    status: Literal["ready", "not ready"]
    checks: dict[str, str] = Field(
        description='Per dependency: "ok" or "error: <reason>".',
    )


def run_blocking_check(fn: Callable[[], object]) -> ReadinessCheck:
    """Wrap a synchronous check (e.g. a pymongo ping) so it runs in a worker thread.

    A thread cannot be cancelled: on timeout the check is reported failed while the call
    finishes in the background, so give the client its own timeout too.
    """

    async def check() -> None:
        await asyncio.to_thread(fn)

    return check


def add_observability(
    app: FastAPI,
    *,
    service: str,
    checks: Mapping[str, ReadinessCheck] | None = None,
    registry: CollectorRegistry | None = None,
    check_timeout_s: float = DEFAULT_CHECK_TIMEOUT_S,
) -> CollectorRegistry:
    """Add `GET /healthz`, `GET /readyz`, `GET /metrics` and HTTP request metrics to `app`.

    The three routes need no authentication: orchestrators and Prometheus call them, and
    they carry no farm data. They are registered without the app's global dependencies, so
    `FastAPI(dependencies=[auth])` does not lock them. Request metrics are labelled with the
    route template (`/printers/{printer_id}`), so their cardinality stays bounded.

    Returns the registry (a new one unless given; it must not already hold the default
    collectors) so the service can register its own metrics on it. Call before the app
    starts: middleware cannot be added afterwards.
    """
    registry = CollectorRegistry() if registry is None else registry
    # A per-app registry keeps apps built in one test process from sharing series.
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    requests_total = Counter(
        "http_requests",
        "HTTP requests handled, by method, route template and status code.",
        ["method", "route", "status"],
        registry=registry,
    )
    request_duration = Histogram(
        "http_request_duration_seconds",
        "Time to handle an HTTP request, by method and route template.",
        ["method", "route"],
        registry=registry,
    )
    app.add_middleware(
        _RequestMetricsMiddleware,
        requests_total=requests_total,
        request_duration=request_duration,
    )

    named_checks = dict(checks or {})
    router = APIRouter(tags=[_TAG])

    @router.get("/healthz", response_model=HealthResponse, summary="Liveness")
    async def healthz() -> HealthResponse:
        """Answer 200 whenever the process is serving HTTP; no dependency is contacted."""
        return HealthResponse(service=service)

    @router.get(
        "/readyz",
        response_model=ReadinessResponse,
        responses={503: {"model": ReadinessResponse, "description": "A dependency failed"}},
        summary="Readiness",
    )
    async def readyz() -> JSONResponse:
        """Run every dependency check concurrently; 200 if all pass, else 503 naming each."""
        results = await _run_checks(named_checks, check_timeout_s)
        ready = all(result == "ok" for result in results.values())
        body = ReadinessResponse(status="ready" if ready else "not ready", checks=results)
        return JSONResponse(body.model_dump(), status_code=200 if ready else 503)

    @router.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Metrics"}},
        summary="Prometheus metrics",
    )
    async def metrics() -> Response:
        """Expose the app's registry in the Prometheus text format."""
        return Response(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    # Appending the routes directly (instead of include_router) keeps the app's global
    # dependencies, typically authentication, off these endpoints.
    app.router.routes.extend(router.routes)
    app.openapi_schema = None  # in case the schema was already generated and cached
    return registry


async def _run_checks(checks: Mapping[str, ReadinessCheck], timeout_s: float) -> dict[str, str]:
    names = sorted(checks)
    outcomes = await asyncio.gather(*(_run_check(checks[name], timeout_s) for name in names))
    return dict(zip(names, outcomes, strict=True))


async def _run_check(check: ReadinessCheck, timeout_s: float) -> str:
    try:
        async with asyncio.timeout(timeout_s):
            await check()
    except TimeoutError:
        return f"error: timed out after {timeout_s:g} s"
    except Exception as err:  # any failure of the dependency means "not ready", never a 500
        detail = str(err).strip()
        reason = f"{type(err).__name__}: {detail}" if detail else type(err).__name__
        return f"error: {reason[:_MAX_REASON_CHARS]}"
    return "ok"


class _RequestMetricsMiddleware:
    """Count and time every HTTP request by route template (pure ASGI, so streaming works)."""

    def __init__(
        self, app: ASGIApp, *, requests_total: Counter, request_duration: Histogram
    ) -> None:
        self._app = app
        self._requests_total = requests_total
        self._request_duration = request_duration

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        status = 500  # what the client gets if the app raises before answering
        started = time.perf_counter()

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self._app(scope, receive, send_with_status)
        finally:
            # The router writes the matched route into the shared scope while handling.
            route = _route_template(scope)
            method = str(scope.get("method", "")).upper()
            method = method if method in _KNOWN_METHODS else "OTHER"
            self._request_duration.labels(method, route).observe(time.perf_counter() - started)
            self._requests_total.labels(method, route, str(status)).inc()


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) and template else UNMATCHED_ROUTE
