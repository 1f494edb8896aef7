"""HTTP API of printer-service (architecture.md 3.5), on :8080 by default.

Every route except /healthz, /readyz and /metrics needs ``Authorization: Bearer
<SERVICE_TOKEN>``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request, status
from prometheus_client import Gauge
from pydantic import BaseModel, Field

from pantheon_common.auth import service_token_guard
from pantheon_common.gcode_store import (
    GcodeNotFound,
    GcodeStore,
    GcodeStoreError,
    GcodeTooLarge,
    InvalidGcodeName,
    validate_gcode_name,
)
from pantheon_common.http import ReadinessCheck, add_observability
from pantheon_common.upload import UploadRefused, receive_upload
from printer_service.domain.ports import CommandRefused, DriverError, NotConnected
from printer_service.service import DispatchFailed, NotDispatchable, PrinterService

_UNPROCESSABLE = 422


class PrintRequest(BaseModel):
    """POST /print: start a file of the G-code store now."""

    file: str = Field(description="name in the G-code store, e.g. bracket.gcode.3mf")


class PrintStarted(BaseModel):
    print_id: str
    file: str


class CommandSent(BaseModel):
    command: str
    sent: bool = True


class Uploaded(BaseModel):
    name: str
    size: int
    sha256: str | None


def create_app(
    service: PrinterService,
    gcode_store: GcodeStore,
    *,
    token: str,
    upload_max_bytes: int,
    checks: dict[str, ReadinessCheck] | None = None,
) -> FastAPI:
    """The FastAPI app; ``token`` is the shared service token (empty only in dev mode)."""

    app = FastAPI(
        title=f"printer-service {service.config.printer_id}",
        dependencies=[Depends(service_token_guard(token))],
    )
    registry = add_observability(app, service="printer-service", checks=checks)
    Gauge("printer_online", "1 while the printer connection works", registry=registry).set_function(
        lambda: float(service.driver.snapshot().online)
    )
    Gauge(
        "printer_prints_started", "prints started by this process", registry=registry
    ).set_function(lambda: float(service.prints_started))
    Gauge(
        "printer_prints_ended", "print ends handled by this process", registry=registry
    ).set_function(lambda: float(service.prints_ended))

    @app.get("/status")
    def get_status() -> dict[str, Any]:
        """The printer's normalised live state (README.md documents every field)."""
        return service.status()

    def _command(name: str, action: Callable[[], None]) -> CommandSent:
        try:
            action()
        except NotConnected as err:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(err)) from err
        except CommandRefused as err:
            raise HTTPException(status.HTTP_409_CONFLICT, str(err)) from err
        except DriverError as err:
            raise HTTPException(status.HTTP_502_BAD_GATEWAY, str(err)) from err
        return CommandSent(command=name)

    @app.post("/pause", status_code=status.HTTP_202_ACCEPTED)
    def pause() -> CommandSent:
        """Pause the running print."""
        return _command("pause", service.driver.pause)

    @app.post("/resume", status_code=status.HTTP_202_ACCEPTED)
    def resume() -> CommandSent:
        """Resume a paused print."""
        return _command("resume", service.driver.resume)

    @app.post("/stop", status_code=status.HTTP_202_ACCEPTED)
    def stop() -> CommandSent:
        """Cancel the print (the printer goes FAILED; the plate still goes to the robot)."""
        return _command("stop", service.driver.stop)

    @app.post("/print", status_code=status.HTTP_201_CREATED)
    def print_file(body: PrintRequest) -> PrintStarted:
        """Upload a stored file to the printer and start it (needs a clean plate loaded)."""
        try:
            validate_gcode_name(body.file)
            print_id = service.print_file(body.file)
        except InvalidGcodeName as err:
            raise HTTPException(_UNPROCESSABLE, str(err)) from err
        except GcodeNotFound as err:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(err)) from err
        except NotDispatchable as err:
            raise HTTPException(status.HTTP_409_CONFLICT, str(err)) from err
        except DispatchFailed as err:
            raise HTTPException(status.HTTP_502_BAD_GATEWAY, str(err)) from err
        return PrintStarted(print_id=print_id, file=body.file)

    @app.post("/upload", status_code=status.HTTP_201_CREATED)
    async def upload(request: Request) -> Uploaded:
        """Store a file into the G-code store: multipart field ``file``.

        The body is parsed as it streams in; past ``UPLOAD_MAX_BYTES`` the request is answered
        413 without reading further.
        """
        try:
            received = await receive_upload(request, upload_max_bytes)
        except UploadRefused as err:
            raise HTTPException(err.status, err.detail) from err
        try:
            info = await asyncio.to_thread(
                gcode_store.put, received.filename, received.file, max_bytes=upload_max_bytes
            )
        except GcodeTooLarge as err:
            raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, str(err)) from err
        except InvalidGcodeName as err:
            raise HTTPException(_UNPROCESSABLE, str(err)) from err
        except GcodeStoreError as err:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(err)) from err
        finally:
            received.close()
        return Uploaded(name=info.name, size=info.size, sha256=info.sha256)

    return app
