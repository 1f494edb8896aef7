"""Builds the FastAPI application around a SlicerService."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry

from pantheon_common.http import add_observability
from slicer_api import __version__
from slicer_api.api.deps import BodyLimitMiddleware, require_api_key
from slicer_api.api.routes import router
from slicer_api.errors import SlicerError
from slicer_api.service import SlicerService

log = logging.getLogger(__name__)


def create_app(
    service: SlicerService,
    *,
    api_key_digests: tuple[str, ...],
    max_upload_bytes: int,
    registry: CollectorRegistry,
) -> FastAPI:
    """The app: authenticated routes, health/readiness/metrics, the upload limit."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(
        title="slicer-api",
        version=__version__,
        description="Models to Bambu .gcode.3mf with PrusaSlicer; quotes for the web shop.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.api_key_digests = api_key_digests
    app.include_router(router, dependencies=[Depends(require_api_key)])

    @app.exception_handler(SlicerError)
    async def slicer_error(request: Request, err: SlicerError) -> JSONResponse:
        body = err.public_json()
        if body["detail"] != err.reason:  # the full reason (with its paths) stays here
            log.info(
                "%s %s answered %d: %s", request.method, request.url.path, err.status, err.reason
            )
        return JSONResponse(body, status_code=err.status)

    async def engine_ready() -> None:
        if not Path(service.engine.binary).is_file():
            log.warning("the slicing engine %s is missing", service.engine.binary)
            raise RuntimeError("the slicing engine is not installed")

    add_observability(app, service="slicer-api", checks={"engine": engine_ready}, registry=registry)
    app.add_middleware(BodyLimitMiddleware, limit=max_upload_bytes)
    return app
