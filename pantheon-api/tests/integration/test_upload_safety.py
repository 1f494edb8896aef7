"""Hostile uploads are refused with a 4xx and leave nothing behind, in or outside the store."""

from __future__ import annotations

import io
import select
import socket
import stat
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from pantheon_common.auth import Role
from pantheon_sim.bambu.gcode3mf import build_gcode_3mf, sample_gcode

from .conftest import Api, ApiFactory


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return buf.getvalue()


def _tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.fixture
def fenced(api_factory: ApiFactory, tmp_path: Path) -> tuple[Api, Path]:
    """The store is tmp/outer/store; anything appearing in tmp/outer besides it escaped."""
    outer = tmp_path / "outer"
    store = outer / "store"
    store.mkdir(parents=True)
    from pantheon_common.gcode_store import LocalGcodeStore

    return api_factory(gcode_store=LocalGcodeStore(store)), outer


def _upload(api: Api, name: str, data: bytes) -> tuple[int, str]:
    r = api.client.post(
        "/api/files", files={"file": (name, data)}, headers=api.headers(Role.OPERATOR)
    )
    return r.status_code, r.json()["detail"] if r.status_code >= 400 else ""


@pytest.mark.parametrize(
    ("members", "reason"),
    [
        ([("Metadata/plate_1.gcode", b"G28\n"), ("../../escape.gcode", b"x")], "'..'"),
        ([("Metadata/../../../escape.txt", b"x")], "'..'"),
        ([("/etc/evil.gcode", b"x")], "absolute"),
        ([("C:/evil.gcode", b"x")], "absolute"),
        ([("Metadata\\..\\evil.gcode", b"x")], "backslash"),
        ([("Metadata/plate_1.gcode", b"\0" * (60 * 1024 * 1024))], "expands"),
    ],
)
def test_hostile_3mf_is_refused_and_nothing_is_written(
    fenced: tuple[Api, Path], members: list[tuple[str, bytes]], reason: str
) -> None:
    api, outer = fenced
    status, detail = _upload(api, "bad.gcode.3mf", _zip(members))
    assert status == 422
    assert reason in detail
    assert _tree(outer) == ["store"]  # nothing escaped, nothing left in the store
    assert api.ctx.store.find("gcode_files", {}) == []


def test_total_uncompressed_budget(api_factory: ApiFactory) -> None:
    api = api_factory(gcode_max_uncompressed_bytes=1024 * 1024, gcode_max_compression_ratio=1e9)
    members = [(f"Metadata/part_{i}.bin", b"A" * 400_000) for i in range(3)]
    status, detail = _upload(api, "wide.gcode.3mf", _zip(members))
    assert status == 422
    assert "uncompressed" in detail
    assert _tree(api.store_dir) == []


def test_too_many_members(api_factory: ApiFactory) -> None:
    api = api_factory(gcode_max_members=20)
    status, detail = _upload(api, "many.3mf", _zip([(f"m/{i}.txt", b"x") for i in range(21)]))
    assert status == 422
    assert "members" in detail


def test_billion_laughs_in_slice_info_is_refused(api: Api) -> None:
    xml = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><config>&lol2;</config>'
    )
    data = build_gcode_3mf(sample_gcode(), extra=[("Metadata/slice_info.config", xml)])
    status, detail = _upload(api, "laughs.gcode.3mf", data)
    assert status == 422
    assert "DTD" in detail


def test_not_a_zip_is_refused(api: Api) -> None:
    status, detail = _upload(api, "fake.gcode.3mf", b"this is not a zip file")
    assert status == 422
    assert "ZIP" in detail
    assert _tree(api.store_dir) == []


@pytest.mark.parametrize(
    "name", ["../x.gcode", "x.exe", ".hidden.gcode", "a/b.gcode", "x.gcode\0.txt"]
)
def test_bad_names_are_refused(api: Api, name: str) -> None:
    status, _ = _upload(api, name, b"G28\n")
    assert status in (400, 422)
    assert _tree(api.store_dir) == []


def test_sound_3mf_is_accepted_with_metadata(api: Api) -> None:
    slice_info = (
        b'<?xml version="1.0" encoding="UTF-8"?><config><plate>'
        b'<metadata key="index" value="1"/><metadata key="printer_model_id" value="C12"/>'
        b'<metadata key="prediction" value="5400"/><metadata key="weight" value="23.45"/>'
        b"</plate></config>"
    )
    data = build_gcode_3mf(
        sample_gcode(),
        extra=[
            ("Metadata/slice_info.config", slice_info),
            ("Metadata/plate_1.json", b'{"bed_type": "cool_plate"}'),
        ],
    )
    status, _ = _upload(api, "bracket.gcode.3mf", data)
    assert status == 201
    meta = api.client.get("/api/files/bracket.gcode.3mf", headers=api.headers(Role.VIEWER)).json()
    assert meta["printer_model"] == "P1S"
    assert meta["bed_type"] == "cool_plate"
    assert meta["estimated_s"] == 5400
    assert meta["filament_g"] == 23.45
    assert meta["plate_count"] == 1
    download = api.client.get(
        "/api/files/bracket.gcode.3mf/download", headers=api.headers(Role.VIEWER)
    )
    assert download.content == data


def test_content_length_over_the_limit_is_413_before_reading(api_factory: ApiFactory) -> None:
    api = api_factory(gcode_upload_max_bytes=1000)
    read = []

    def body() -> Iterator[bytes]:
        read.append(1)
        yield b"x" * 10

    r = api.client.post(
        "/api/files",
        content=body(),
        headers={
            **api.headers(Role.OPERATOR),
            "Content-Type": "multipart/form-data; boundary=abc",
            "Content-Length": str(50 * 1024 * 1024),
        },
    )
    assert r.status_code == 413
    assert _tree(api.store_dir) == []


def test_streamed_body_over_the_limit_is_413_without_reading_it_all(
    api_factory: ApiFactory,
) -> None:
    """Over a real socket (uvicorn): chunked body, no Content-Length; the 413 arrives while
    the client is still sending, long before the 64 MiB it would send."""
    api = api_factory(gcode_upload_max_bytes=1024 * 1024)
    config = uvicorn.Config(api.runtime.app, host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    head = (
        b'--abc\r\nContent-Disposition: form-data; name="file"; filename="big.gcode"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n"
    )
    chunk = b"G1 X1\n" * 10922  # 64 KiB
    sent = 0
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                b"POST /api/files HTTP/1.1\r\nHost: test\r\n"
                + f"Authorization: Bearer {api.tokens[Role.OPERATOR]}\r\n".encode()
                + b"Content-Type: multipart/form-data; boundary=abc\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            sock.sendall(b"%x\r\n%s\r\n" % (len(head), head))
            answer = b""
            for _ in range(1024):
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    break
                try:
                    sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                except OSError:
                    break  # the server closed the connection after answering
                sent += 1
            sock.settimeout(10)
            answer = sock.recv(4096)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 200  # refused after ~1 MiB, not after 64 MiB
    assert _tree(api.store_dir) == []


def test_octoprint_upload_and_print(api: Api) -> None:
    created = api.client.post(
        "/api/api-keys", json={"name": "prusaslicer", "role": "operator"}, headers=api.headers()
    ).json()
    key = {"X-Api-Key": created["key"]}
    version = api.client.get("/api/version", headers=key).json()
    assert version["text"].startswith("OctoPrint")
    gcode = b"; printer_model = Bambu Lab X1 Carbon\n; curr_bed_type = Engineering Plate\nG28\n"
    r = api.client.post(
        "/api/files/local",
        files={"file": ("part.gcode", gcode)},
        data={"print": "true"},
        headers=key,
    )
    assert r.status_code == 201, r.text
    assert r.json()["done"] is True
    assert r.json()["effectivePrint"] is True
    jobs = api.client.get("/api/jobs", headers=key).json()
    assert [(j["file"], j["target"]["model"], j["bed_type"]) for j in jobs] == [
        ("part.gcode", "X1C", "engineering")
    ]


# -- empty files, special ZIP entries, cut-off bodies ------------------------------------------


@pytest.mark.parametrize("name", ["empty.gcode", "empty.bgcode", "empty.gcode.3mf"])
def test_an_empty_file_is_422_and_not_stored(api: Api, name: str) -> None:
    status, detail = _upload(api, name, b"")
    assert status == 422
    assert "empty (0 bytes)" in detail
    assert _tree(api.store_dir) == []
    assert api.client.get("/api/files", headers=api.headers(Role.VIEWER)).json() == []


def _package_with(kind: int, name: str, content: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("Metadata/slice_info.config", "<config/>")
        zf.writestr("Metadata/plate_1.json", '{"bed_type": "textured_plate"}')
        info = zipfile.ZipInfo(name)
        info.create_system = 3  # made on Unix: the high 16 bits of external_attr are st_mode
        info.external_attr = (kind | 0o777) << 16
        zf.writestr(info, content)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("kind", "name", "content", "what"),
    [
        (stat.S_IFLNK, "Metadata/plate_1.gcode", b"/etc/shadow", "a symbolic link"),
        (stat.S_IFLNK, "Metadata/plate_2.gcode", b"../../../../root/.ssh/id_rsa", "symbolic"),
        (stat.S_IFIFO, "Metadata/plate_1.gcode", b"", "a FIFO"),
        (stat.S_IFCHR, "Metadata/plate_1.gcode", b"", "a character device"),
        (stat.S_IFLNK, "Metadata/top_1.png", b"/etc/passwd", "a symbolic link"),
    ],
)
def test_a_package_with_a_symlink_or_special_entry_is_422(
    fenced: tuple[Api, Path], kind: int, name: str, content: bytes, what: str
) -> None:
    api, outer = fenced
    status, detail = _upload(api, "part.gcode.3mf", _package_with(kind, name, content))
    assert status == 422
    assert what in detail
    assert name in detail
    assert _tree(outer) == ["store"]


def test_a_multipart_body_without_its_closing_boundary_is_400(api: Api) -> None:
    body = (
        b'--abc\r\nContent-Disposition: form-data; name="file"; filename="cut.gcode"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n" + b"G1 X1 Y1\n" * 1000
    )  # the client died before "\r\n--abc--\r\n"
    r = api.client.post(
        "/api/files",
        content=body,
        headers={**api.headers(Role.OPERATOR), "Content-Type": "multipart/form-data; boundary=abc"},
    )
    assert r.status_code == 400
    assert "closing boundary" in r.json()["detail"]
    assert _tree(api.store_dir) == []
