"""The streaming multipart reader of pantheon_common.upload, behind a real FastAPI app."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from fastapi import FastAPI, HTTPException, Request
from fastapi.testclient import TestClient

from pantheon_common import upload as upload_module
from pantheon_common.upload import FIELD_MAX_BYTES, UploadRefused, receive_upload

LIMIT = 10_000
BOUNDARY = "b0undary"


class _Spools:
    """Every temp file the reader opens (to check none stays open after a refusal)."""

    def __init__(self) -> None:
        self.files: list[IO[bytes]] = []
        self._open = tempfile.TemporaryFile

    def __call__(self, *args: Any, **kwargs: Any) -> IO[bytes]:
        spool: IO[bytes] = self._open(*args, **kwargs)
        self.files.append(spool)
        return spool


@pytest.fixture
def spools(monkeypatch: pytest.MonkeyPatch) -> _Spools:
    recorder = _Spools()
    monkeypatch.setattr(upload_module.tempfile, "TemporaryFile", recorder)
    return recorder


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    path.mkdir()
    return path


@pytest.fixture
def client(store: Path) -> TestClient:
    app = FastAPI()

    @app.post("/upload")
    async def upload(request: Request) -> dict[str, Any]:
        try:
            received = await receive_upload(request, LIMIT)
        except UploadRefused as err:
            raise HTTPException(err.status, err.detail) from err
        try:
            at = received.file.tell()
            data = received.file.read()
        finally:
            received.close()
        (store / received.filename).write_bytes(data)
        return {
            "filename": received.filename,
            "size": received.size,
            "read": len(data),
            "offset": at,
            "sha256": hashlib.sha256(data).hexdigest(),
            "fields": received.fields,
        }

    return TestClient(app)


def _part(name: str, data: bytes, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    return (
        (
            f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n"
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + b"\r\n"
    )


def _body(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def _post(client: TestClient, body: bytes | Iterator[bytes], **headers: str) -> Any:
    return client.post(
        "/upload",
        content=body,
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", **headers},
    )


def test_a_file_within_the_limit_is_spooled_with_its_size_and_fields(
    client: TestClient, store: Path, spools: _Spools
) -> None:
    data = bytes(range(256)) * (LIMIT // 256)  # binary, CR/LF included, just under the limit
    response = client.post(
        "/upload",
        files={"file": ("part.gcode", data)},
        data={"printer_model": "P1S", "bed_type": "cool_plate"},
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["filename"] == "part.gcode"
    assert answer["size"] == answer["read"] == len(data)
    assert answer["offset"] == 0
    assert answer["sha256"] == hashlib.sha256(data).hexdigest()
    assert answer["fields"] == {"printer_model": "P1S", "bed_type": "cool_plate"}
    assert (store / "part.gcode").read_bytes() == data
    assert [spool.closed for spool in spools.files] == [True]


def test_a_file_of_exactly_the_limit_is_accepted(client: TestClient) -> None:
    data = b"G" * LIMIT
    response = _post(client, _body(_part("file", data, "edge.gcode")))
    assert response.status_code == 200, response.text
    assert response.json()["size"] == LIMIT


def test_only_the_first_file_part_of_the_file_field_counts(client: TestClient) -> None:
    body = _body(
        _part("other", b"ignored bytes", "other.bin"),
        _part("file", b"first", "first.gcode"),
        _part("file", b"second", "second.gcode"),
        _part("note", b"caf\xc3\xa9"),
    )
    answer = _post(client, body).json()
    assert (answer["filename"], answer["read"]) == ("first.gcode", 5)
    assert answer["fields"] == {"note": "café"}


def test_a_file_over_the_limit_is_413_and_nothing_is_kept(
    client: TestClient, store: Path, spools: _Spools
) -> None:
    response = client.post("/upload", files={"file": ("big.gcode", b"G1 X1\n" * 2000)})
    assert response.status_code == 413
    assert response.json() == {"detail": f"upload larger than the limit of {LIMIT} bytes"}
    assert list(store.iterdir()) == []
    assert spools.files
    assert all(spool.closed for spool in spools.files)


def test_a_declared_content_length_over_the_limit_is_413_before_reading(
    client: TestClient, spools: _Spools
) -> None:
    reads: list[int] = []

    def body() -> Iterator[bytes]:
        reads.append(1)
        yield _body(_part("file", b"G28", "x.gcode"))

    response = _post(client, body(), **{"Content-Length": str(50 * 1024 * 1024)})
    assert response.status_code == 413
    assert reads == []
    assert spools.files == []


def test_a_body_past_limit_and_overhead_is_413_even_in_ignored_parts(
    client: TestClient, store: Path, spools: _Spools
) -> None:
    """Bytes of parts that are neither the file nor a field still count against the body."""
    body = _body(
        _part("other", b"x" * (LIMIT + 300 * 1024), "other.bin"), _part("file", b"G28", "x.gcode")
    )
    response = _post(client, body)
    assert response.status_code == 413
    assert list(store.iterdir()) == []
    assert all(spool.closed for spool in spools.files)


def test_form_fields_over_their_limit_are_413(client: TestClient, store: Path) -> None:
    body = _body(_part("note", b"n" * (FIELD_MAX_BYTES + 1)), _part("file", b"G28", "x.gcode"))
    response = _post(client, body)
    assert response.status_code == 413
    assert list(store.iterdir()) == []
    # the limit is for all fields together
    half = b"n" * (FIELD_MAX_BYTES // 2 + 1)
    response = _post(client, _body(_part("a", half), _part("b", half), _part("file", b"G", "x")))
    assert response.status_code == 413


def test_a_form_without_the_file_part_is_422(client: TestClient, spools: _Spools) -> None:
    for body in (
        _body(_part("note", b"hello")),
        _body(_part("file", b"no filename, so a field")),
        _body(_part("upload", b"G28", "x.gcode")),
    ):
        response = _post(client, body)
        assert response.status_code == 422, body
        assert response.json() == {"detail": "no file in the multipart field 'file'"}
    assert all(spool.closed for spool in spools.files)


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "multipart/form-data", "text/plain; boundary=x", ""],
)
def test_a_body_that_is_not_multipart_with_a_boundary_is_415(
    client: TestClient, content_type: str
) -> None:
    response = client.post("/upload", content=b"{}", headers={"Content-Type": content_type})
    assert response.status_code == 415
    assert response.json() == {"detail": "send the file as multipart/form-data"}


def test_a_malformed_multipart_body_is_400(client: TestClient, spools: _Spools) -> None:
    response = _post(client, b"--not-the-boundary\r\n\r\ngarbage")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("malformed multipart body: ")
    assert all(spool.closed for spool in spools.files)


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(lambda body: body[: -len(f"--{BOUNDARY}--\r\n")], id="no-closing-boundary"),
        pytest.param(lambda body: body[:-5], id="closing-boundary-cut"),
        pytest.param(lambda body: body[: len(body) // 2], id="cut-inside-the-file"),
    ],
)
def test_a_body_without_its_closing_boundary_is_400(
    client: TestClient, store: Path, spools: _Spools, cut: Any
) -> None:
    """A cut-off upload (client gone, proxy timeout) is never stored as if it were whole."""
    body = _body(_part("file", b"G28\n" * 200, "part.gcode"))
    response = _post(client, cut(body))
    assert response.status_code == 400, response.text
    assert "closing boundary" in response.json()["detail"]
    assert not (store / "part.gcode").exists()
    assert all(spool.closed for spool in spools.files)


def test_an_empty_file_is_422_with_the_reason(
    client: TestClient, store: Path, spools: _Spools
) -> None:
    response = _post(client, _body(_part("file", b"", "empty.gcode")))
    assert response.status_code == 422
    assert response.json() == {"detail": "the file 'empty.gcode' is empty (0 bytes)"}
    assert not (store / "empty.gcode").exists()
    assert all(spool.closed for spool in spools.files)
