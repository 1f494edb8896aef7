"""A simulated printer's storage over real implicit FTPS."""

import ftplib
import io
import socket
import ssl
import time
import zipfile
from collections.abc import Callable
from typing import Any

import pytest

from pantheon_sim.bambu.farm import BambuSimFarm
from pantheon_sim.bambu.ftps_client import ImplicitFtpsClient, printer_tls_context
from pantheon_sim.bambu.gcode3mf import build_gcode_3mf, sample_gcode
from pantheon_sim.bambu.printer import FaultSettings

pytestmark = pytest.mark.integration


class _NoReuseClient(ImplicitFtpsClient):
    """Stock ftplib behaviour on the data channel: a NEW TLS session."""

    def ntransfercmd(
        self, cmd: str, rest: int | str | None = None
    ) -> tuple[socket.socket, int | None]:
        return ftplib.FTP_TLS.ntransfercmd(self, cmd, rest)  # noqa: S321 - the point


def test_upload_with_session_reuse_lands_whole_and_is_listed(
    farm: BambuSimFarm, ftps: Callable[[int], ImplicitFtpsClient]
) -> None:
    data = bytes(range(256)) * 4000  # ~1 MB
    f = ftps(16)
    assert f.upload(data, "part.gcode.3mf") == len(data)
    assert f.size("part.gcode.3mf") == len(data)
    assert "part.gcode.3mf" in f.nlst()
    assert (farm.storage_dir(16) / "part.gcode.3mf").read_bytes() == data
    assert "part.gcode.3mf" in farm.printer(16)["files"]
    assert {"cache", "timelapse", "image", "logger"} <= set(f.nlst())


def test_data_channel_without_session_reuse_gets_522(farm: BambuSimFarm) -> None:
    ep = farm.endpoint(16)
    f = _NoReuseClient(context=printer_tls_context(ep.ca_file), timeout=10)
    f.connect(ep.host, ep.ftps_port)
    f.login("bblp", ep.access_code)
    try:
        with pytest.raises((ftplib.error_perm, ssl.SSLError, OSError)) as caught:
            f.storbinary("STOR refused.bin", __import__("io").BytesIO(b"x" * 1000))
        reply = str(caught.value)
        if not reply.startswith("522"):
            reply = f.getresp() if isinstance(caught.value, (ssl.SSLError, OSError)) else reply
    except ftplib.error_perm as err:
        reply = str(err)
    finally:
        f.close()
    assert reply.startswith("522")


def test_wrong_password_is_refused(farm: BambuSimFarm) -> None:
    ep = farm.endpoint(16)
    f = ImplicitFtpsClient(context=printer_tls_context(ep.ca_file), timeout=10)
    f.connect(ep.host, ep.ftps_port)
    try:
        with pytest.raises(ftplib.error_perm, match="530"):
            f.login("bblp", "wrong")
    finally:
        f.close()


def test_clear_text_client_gets_no_banner(farm: BambuSimFarm) -> None:
    ep = farm.endpoint(16)
    with socket.create_connection((ep.host, ep.ftps_port), timeout=2) as s:
        s.settimeout(1)
        try:
            data = s.recv(64)
        except (TimeoutError, ConnectionResetError):
            data = b""
    assert not data.startswith(b"220")


def test_second_concurrent_transfer_gets_425_and_rate_limit_slows(
    farm: BambuSimFarm, ftps: Callable[[int], ImplicitFtpsClient]
) -> None:
    farm.set_faults(17, FaultSettings(ftps_rate_limit=50_000))
    try:
        first, second = ftps(17), ftps(17)
        first.voidcmd("TYPE I")
        conn, _ = first.ntransfercmd("STOR slow.bin")
        try:
            conn.sendall(b"a" * 16_000)
            with pytest.raises(ftplib.error_temp, match="425"):
                second.upload(b"b" * 10, "other.bin")
            started = time.monotonic()
            conn.sendall(b"a" * 104_000)
        finally:
            conn.close()
        assert first.voidresp().startswith("226")  # sent only once the file is written
        assert time.monotonic() - started > 0.8  # 120 KB at 50 KB/s
        assert first.size("slow.bin") == 120_000
    finally:
        farm.set_faults(17, FaultSettings())


@pytest.mark.parametrize("printer_id", [17, 31])  # P1 (pyftpdlib's NLST), X1 (our own)
@pytest.mark.parametrize("command", ["RETR no-such-file.3mf", "LIST no-such", "NLST no-such"])
def test_a_failed_transfer_command_frees_the_slot_at_once(
    ftps: Callable[[int], ImplicitFtpsClient], printer_id: int, command: str
) -> None:
    """A transfer command that fails (550) before its data channel is connected holds no slot:
    another connection transfers right away while the first stays open, passive port and all."""
    first, second = ftps(printer_id), ftps(printer_id)
    first.voidcmd("TYPE I")
    first.sendcmd("PASV")  # a passive port offered, never connected
    with pytest.raises(ftplib.error_perm, match="550"):
        first.sendcmd(command)
    assert second.upload(b"c" * 1000, "after-550.bin") == 1000
    second.delete("after-550.bin")
    first.voidcmd("NOOP")  # the first connection is still there


def _stor(client: ImplicitFtpsClient, name: str, data: bytes) -> str:
    """STOR ``data`` and return the final reply, whatever its code."""
    client.voidcmd("TYPE I")
    conn, _ = client.ntransfercmd(f"STOR {name}")
    try:
        conn.sendall(data)
    finally:
        conn.close()
    try:
        return client.voidresp()
    except ftplib.Error as err:
        return str(err)


def test_the_426_quirk_answers_a_whole_upload_with_426(
    farm: BambuSimFarm, ftps: Callable[[int], ImplicitFtpsClient]
) -> None:
    farm.set_faults(18, FaultSettings(ftps_426_after_write=True))
    try:
        f = ftps(18)
        data = b"G1 X1\n" * 20_000
        assert _stor(f, "quirk.gcode.3mf", data).startswith("426")
        assert f.size("quirk.gcode.3mf") == len(data)  # the file is whole all the same
        assert (farm.storage_dir(18) / "quirk.gcode.3mf").read_bytes() == data
    finally:
        farm.set_faults(18, FaultSettings())


def test_a_full_storage_answers_552_and_keeps_nothing(
    farm: BambuSimFarm, ftps: Callable[[int], ImplicitFtpsClient]
) -> None:
    used = sum(p.stat().st_size for p in farm.storage_dir(18).rglob("*") if p.is_file())
    farm.set_faults(18, FaultSettings(ftps_capacity_bytes=used + 100_000))
    try:
        f = ftps(18)
        assert _stor(f, "fits.bin", b"a" * 60_000).startswith("226")
        reply = _stor(f, "too-big.bin", b"b" * 60_000)
        assert reply.startswith("552"), reply
        assert not (farm.storage_dir(18) / "too-big.bin").exists()
        assert "too-big.bin" not in f.nlst()
        f.delete("fits.bin")
        assert _stor(f, "now-fits.bin", b"c" * 60_000).startswith("226")  # room again
    finally:
        farm.set_faults(18, FaultSettings())


@pytest.mark.parametrize(("printer_id", "expected"), [(16, "nlst.bin"), (31, "/nlst.bin")])
def test_nlst_names_are_bare_on_p1_and_full_paths_on_x1(
    ftps: Callable[[int], ImplicitFtpsClient], printer_id: int, expected: str
) -> None:
    f = ftps(printer_id)
    full = expected.startswith("/")
    f.upload(b"x" * 10, "nlst.bin")
    f.upload(b"y" * 10, "cache/nlst.bin")
    try:
        listed = f.nlst()
        assert expected in listed
        assert ("/cache" if full else "cache") in listed
        assert f.nlst("cache") == ["/cache/nlst.bin" if full else "nlst.bin"]
    finally:
        f.delete("nlst.bin")
        f.delete("cache/nlst.bin")


def _package_with_crlf() -> bytes:
    """A sliced package whose bytes hold CRLF pairs (in its ZIP comment), as an ASCII-mode
    upload through a converting server would mangle them."""
    buf = io.BytesIO(build_gcode_3mf(sample_gcode(layers=3, estimate="1m 0s")))
    with zipfile.ZipFile(buf, "a") as z:
        z.comment = b"exported\r\non Windows\r\n"
    return buf.getvalue()


def _transfer(client: ImplicitFtpsClient, command: str, data: bytes | None = None) -> bytes:
    """One data transfer in whatever TYPE the session is in (no TYPE I sent here)."""
    conn, _ = client.ntransfercmd(command)
    received = bytearray()
    try:
        if data is not None:
            conn.sendall(data)
        else:
            while chunk := conn.recv(65536):
                received += chunk
    finally:
        conn.close()
    client.voidresp()
    return bytes(received)


def test_ascii_mode_moves_bytes_unchanged_and_answers_size_like_vsftpd(
    farm: BambuSimFarm,
    ftps: Callable[[int], ImplicitFtpsClient],
    connect: Callable[..., Any],
    reset: Callable[[int], None],
) -> None:
    """vsFTPd with ascii_upload_enable/ascii_download_enable off (its defaults): TYPE A is
    accepted with vsFTPd's reply, files go byte for byte both ways and SIZE is answered in
    ASCII mode too. A client that never sends TYPE I (pyftpdlib's and RFC 959's default
    type is ASCII) uploads a package the printer can still run."""
    reset(16)
    package = _package_with_crlf()
    assert b"\r\n" in package
    f = ftps(16)
    assert f.sendcmd("TYPE A") == "200 Switching to ASCII mode."
    _transfer(f, "STOR ascii.gcode.3mf", package)
    assert f.sendcmd("SIZE ascii.gcode.3mf") == f"213 {len(package)}"
    assert (farm.storage_dir(16) / "ascii.gcode.3mf").read_bytes() == package
    assert _transfer(f, "RETR ascii.gcode.3mf") == package
    f.sendcmd("REST 10")
    with pytest.raises(ftplib.error_perm, match="550 No support for resume of ASCII transfer"):
        f.sendcmd("RETR ascii.gcode.3mf")
    assert f.sendcmd("TYPE I") == "200 Switching to Binary mode."
    assert f.sendcmd("SIZE ascii.gcode.3mf") == f"213 {len(package)}"
    with pytest.raises(ftplib.error_perm, match="500 Unrecognised TYPE command"):
        f.sendcmd("TYPE E")

    client = connect(16)
    client.pushall()
    seq = client.send(
        "print",
        "project_file",
        param="Metadata/plate_1.gcode",
        url="ftp:///ascii.gcode.3mf",
        md5="",
        use_ams=False,
    )
    assert client.reply_to(seq, "project_file")["result"] == "success"  # MD5 intact


def test_a_fresh_session_is_in_ascii_mode_and_still_stores_bytes_unchanged(
    farm: BambuSimFarm,
) -> None:
    """No TYPE at all: the first STOR of a session (ftplib's ``storlines`` path without its
    own conversion) keeps CR LF pairs."""
    ep = farm.endpoint(17)
    f = ImplicitFtpsClient(context=printer_tls_context(ep.ca_file), timeout=10)
    f.connect(ep.host, ep.ftps_port)
    f.login("bblp", ep.access_code)
    try:
        data = b"; CRLF G-code\r\nG28\r\nM104 S200\r\n"
        _transfer(f, "STOR untyped.gcode", data)
        assert f.sendcmd("SIZE untyped.gcode") == f"213 {len(data)}"
        assert (farm.storage_dir(17) / "untyped.gcode").read_bytes() == data
        f.delete("untyped.gcode")
    finally:
        f.quit()
