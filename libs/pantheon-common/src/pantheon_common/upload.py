"""Streaming multipart reader: the file part goes to a temp file, counted as it arrives.

Starlette's ``request.form()`` spools the whole body before the route sees it; here the
body is parsed chunk by chunk (python-multipart's push parser) so an upload over the limit is
refused as soon as it passes the limit (and before reading anything when ``Content-Length``
already says so). Small non-file form fields are kept too (``FIELD_MAX_BYTES`` together).

In a route::

    try:
        upload = await receive_upload(request, limit)
    except UploadRefused as err:
        raise HTTPException(err.status, err.detail) from err
    try:
        ...  # upload.filename, upload.file (at offset 0), upload.size, upload.fields
    finally:
        upload.close()

Refused: not multipart (415), over the limit (413), a malformed body or one that ends before
its closing boundary (400: a cut-off upload is never taken for a whole file), no file part or
an empty file (422).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from typing import IO, Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

__all__ = ["FIELD_MAX_BYTES", "ReceivedUpload", "UploadRefused", "receive_upload"]

FIELD_MAX_BYTES = 64 * 1024
"""All non-file form fields together."""
_OVERHEAD_BYTES = 256 * 1024
"""Multipart boundaries, part headers and small fields on top of the file limit."""


class UploadRefused(Exception):
    """The body is refused; ``status`` 413, 415 or 400/422."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class _TooLarge(Exception):
    pass


@dataclass
class ReceivedUpload:
    """The file part (in a temp file, positioned at 0) and the other fields."""

    filename: str
    file: IO[bytes]
    size: int
    fields: dict[str, str] = field(default_factory=dict)

    def close(self) -> None:
        self.file.close()


async def receive_upload(request: Request, limit: int, file_field: str = "file") -> ReceivedUpload:
    """Parse the multipart body of ``request``; the part named ``file_field`` is the file."""
    mime, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if mime != b"multipart/form-data" or not boundary:
        raise UploadRefused(415, "send the file as multipart/form-data")
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            declared_size = int(declared)
        except ValueError as err:
            raise UploadRefused(400, "invalid Content-Length") from err
        if declared_size > limit + _OVERHEAD_BYTES:
            raise UploadRefused(413, f"upload larger than the limit of {limit} bytes")
    spool = tempfile.TemporaryFile(prefix="pantheon-upload-")  # noqa: SIM115 - returned
    state: dict[str, Any] = {
        "headers": {},
        "kind": None,  # "file", "field" or None (ignored part)
        "name": "",
        "filename": None,
        "size": 0,
        "field_bytes": 0,
        "body": 0,
        "ended": False,  # the closing boundary was read
    }
    fields: dict[str, str] = {}
    buffers: dict[str, list[bytes]] = {}
    header_field: list[bytes] = []
    header_value: list[bytes] = []

    def on_part_begin() -> None:
        state["headers"] = {}
        state["kind"] = None

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.append(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.append(data[start:end])

    def on_header_end() -> None:
        state["headers"][b"".join(header_field).lower()] = b"".join(header_value)
        header_field.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        _, options = parse_options_header(state["headers"].get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if name == file_field and b"filename" in options and state["filename"] is None:
            state["kind"] = "file"
            state["filename"] = options[b"filename"].decode("utf-8", "replace")
        elif b"filename" not in options and name:
            state["kind"] = "field"
            state["name"] = name
            buffers[name] = []
        else:
            state["kind"] = None

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state["kind"] == "file":
            state["size"] += end - start
            if state["size"] > limit:
                raise _TooLarge
            spool.write(data[start:end])
        elif state["kind"] == "field":
            state["field_bytes"] += end - start
            if state["field_bytes"] > FIELD_MAX_BYTES:
                raise _TooLarge
            buffers[state["name"]].append(data[start:end])

    def on_part_end() -> None:
        if state["kind"] == "field":
            fields[state["name"]] = b"".join(buffers.pop(state["name"])).decode("utf-8", "replace")
        state["kind"] = None

    def on_end() -> None:
        state["ended"] = True

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
            "on_end": on_end,
        },
    )
    try:
        async for chunk in request.stream():
            state["body"] += len(chunk)
            if state["body"] > limit + _OVERHEAD_BYTES:
                raise _TooLarge
            parser.write(chunk)
        parser.finalize()
    except _TooLarge as err:
        spool.close()
        raise UploadRefused(413, f"upload larger than the limit of {limit} bytes") from err
    except MultipartParseError as err:
        spool.close()
        raise UploadRefused(400, f"malformed multipart body: {err}") from err
    except BaseException:
        spool.close()
        raise
    if not state["ended"]:
        # A body cut off in transit (client died, proxy timeout) parses "fine" up to where it
        # stops: without its closing boundary the file may be truncated anywhere.
        spool.close()
        raise UploadRefused(
            400, "malformed multipart body: it ends before its closing boundary (truncated?)"
        )
    if state["filename"] is None:
        spool.close()
        raise UploadRefused(422, f"no file in the multipart field {file_field!r}")
    if state["size"] == 0:
        spool.close()
        raise UploadRefused(422, f"the file {state['filename']!r} is empty (0 bytes)")
    spool.flush()
    spool.seek(0)
    return ReceivedUpload(filename=state["filename"], file=spool, size=state["size"], fields=fields)
