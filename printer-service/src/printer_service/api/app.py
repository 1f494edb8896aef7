"""HTTP API of printer-service (architecture.md 3.5), on :8080 by default.

Every route except /healthz, /readyz and /metrics needs ``Authorization: Bearer
<SERVICE_TOKEN>``.
"""

from __future__ import annotations

import asyncio
import hmac
import tempfile
from collections.abc import Callable
from typing import Annotated, Any, BinaryIO

from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import Gauge
from pydantic import BaseModel, Field
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from pantheon_common.gcode_store import (
    GcodeNotFound,
    GcodeStore,
    GcodeStoreError,
    GcodeTooLarge,
    InvalidGcodeName,
    validate_gcode_name,
)
from pantheon_common.http import ReadinessCheck, add_observability
from printer_service.domain.ports import CommandRefused, DriverError, NotConnected
from printer_service.service import DispatchFailed, NotDispatchable, PrinterService

_bearer = HTTPBearer(auto_error=False)
_UNPROCESSABLE = 422
# Multipart framing (boundaries, part headers) on top of the file itself.
_MULTIPART_SLACK = 64 * 1024


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

    def authorized(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        given = credentials.credentials if credentials is not None else ""
        if not token or not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "service token required",
                headers={"WWW-Authenticate": "Bearer"},
            )

    app = FastAPI(
        title=f"printer-service {service.config.printer_id}",
        dependencies=[Depends(authorized)],
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
        declared = request.headers.get("content-length")
        too_big = upload_max_bytes + _MULTIPART_SLACK
        if declared is not None and declared.isdigit() and int(declared) > too_big:
            raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "file too large")
        name, spool = await _receive_file(request, upload_max_bytes)
        try:
            info = await asyncio.to_thread(gcode_store.put, name, spool, max_bytes=upload_max_bytes)
        except GcodeTooLarge as err:
            raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, str(err)) from err
        except InvalidGcodeName as err:
            raise HTTPException(_UNPROCESSABLE, str(err)) from err
        except GcodeStoreError as err:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(err)) from err
        finally:
            spool.close()
        return Uploaded(name=info.name, size=info.size, sha256=info.sha256)

    return app


async def _receive_file(request: Request, limit: int) -> tuple[str, BinaryIO]:
    """Stream the multipart body into a spooled file; 413 as soon as the file passes ``limit``."""
    content_type = request.headers.get("content-type", "")
    mime, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if mime != b"multipart/form-data" or not boundary:
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "send multipart/form-data")
    spool: Any = tempfile.SpooledTemporaryFile(max_size=1024 * 1024)  # noqa: SIM115
    state: dict[str, Any] = {"in_file": False, "name": None, "size": 0, "headers": {}}
    header_field: list[bytes] = []
    header_value: list[bytes] = []

    def on_part_begin() -> None:
        state["headers"] = {}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.append(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.append(data[start:end])

    def on_header_end() -> None:
        state["headers"][b"".join(header_field).lower()] = b"".join(header_value)
        header_field.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        disposition = state["headers"].get(b"content-disposition", b"")
        _, options = parse_options_header(disposition)
        is_file = options.get(b"name") == b"file" and b"filename" in options
        state["in_file"] = is_file and state["name"] is None
        if state["in_file"]:
            state["name"] = options[b"filename"].decode("utf-8", "replace")

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state["in_file"]:
            state["size"] += end - start
            if state["size"] > limit:
                raise _TooLarge
            spool.write(data[start:end])

    def on_part_end() -> None:
        state["in_file"] = False

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except _TooLarge as err:
        spool.close()
        raise HTTPException(
            status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, f"file larger than {limit} bytes"
        ) from err
    except MultipartParseError as err:
        spool.close()
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"bad multipart body: {err}") from err
    if state["name"] is None:
        spool.close()
        raise HTTPException(_UNPROCESSABLE, "no file field in the form")
    spool.seek(0)
    return str(state["name"]), spool


class _TooLarge(Exception):
    pass
