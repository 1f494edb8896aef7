"""Finding 1: FTPS in ASCII mode, the FTP default, as vsFTPd on the printers serves it.

A client that never sends ``TYPE I`` stays in ASCII (RFC 959's default). The printers run
vsFTPd, whose default (``ascii_upload_enable=NO``, ``ascii_download_enable=NO``) stores and
sends every byte as is in ASCII mode, and answers ``SIZE`` in any mode. So a ``.gcode.3mf``
holding CRLF bytes keeps its size and MD5 and prints; a server that rewrites CRLF to LF in
ASCII ``STOR`` (pyftpdlib's default) truncates the ZIP and the printer refuses it with
0x05004003, and one that answers ``550 SIZE not allowed in ASCII mode.`` breaks the upload
check every integration does (bambu-lan-protocol.md 6.2 step 5).

The client is ``stranger.StrangerFtps``: implicit TLS and session reuse, nothing else.
"""

import ftplib
import hashlib
from collections.abc import Callable

import pytest

from pantheon_sim.bambu.farm import BambuSimFarm

from .simfarm import MODELS
from .stranger import StrangerFtps, StrangerMqtt, build_3mf, gcode_text, project_file

pytestmark = pytest.mark.integration

CANNOT_PARSE = 0x05004003


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


@pytest.mark.parametrize("model", MODELS)
def test_size_is_answered_in_ascii_mode(
    model: str, printer: int, ftps: Callable[[int], StrangerFtps]
) -> None:
    """``SIZE`` without ``TYPE I`` answers ``213 <size>`` for a file and a plain 550 for a
    missing one (never "not allowed in ASCII mode")."""
    data = b"\x00\x01 binary \xff" * 100
    ftps(printer).upload("size-probe.bin", data, type_i=True)

    stranger = ftps(printer)  # a fresh session: ASCII, as every session starts
    assert stranger.sendcmd("SIZE size-probe.bin") == f"213 {len(data)}"
    with pytest.raises(ftplib.error_perm) as missing:
        stranger.sendcmd("SIZE no-such-file.bin")
    assert str(missing.value).startswith("550")
    assert "ascii" not in str(missing.value).lower()


@pytest.mark.parametrize("model", MODELS)
def test_ascii_stor_keeps_every_byte_and_the_package_prints(
    model: str,
    printer: int,
    farm: BambuSimFarm,
    ftps: Callable[[int], StrangerFtps],
    mqtt: Callable[[int], StrangerMqtt],
) -> None:
    """``STOR`` without ``TYPE I`` of a ``.gcode.3mf`` with CRLF bytes: the printer holds the
    same bytes (size and MD5, read back with ``RETR``), and ``project_file`` prints it with
    no 0x05004003 "unable to parse the file"."""
    package = build_3mf(gcode_text(minutes=10, crlf=True))
    assert package.count(b"\r\n") > 100  # CRLF line ends are bytes of the file
    name = f"crlf-{model.lower()}.gcode.3mf"

    stranger = ftps(printer)
    with pytest.raises(ftplib.error_perm, match=r"^550"):
        stranger.size(name)  # "is it there already?": not yet
    assert stranger.upload(name, package).startswith("226")
    stored = ftps(printer).download(name)
    crlf_sent, crlf_kept = package.count(b"\r\n"), stored.count(b"\r\n")
    assert (len(stored), _md5(stored)) == (len(package), _md5(package)), (
        f"ASCII STOR changed the file: {len(package)} bytes sent, {len(stored)} stored "
        f"({crlf_sent} CRLF sent, {crlf_kept} kept)"
    )

    client = mqtt(printer)
    client.pushall()
    mark = client.mark()
    seq = client.send("print", "project_file", **project_file(name))
    echo = client.reply(seq, "project_file", start=mark)
    assert str(echo.get("result", "")).lower() == "success", echo
    state = client.wait_state("FINISH", timeout=15, start=mark)
    assert state["print_error"] != CANNOT_PARSE
    assert state["print_error"] == 0
    assert farm.printer(printer)["gcode_state"] == "FINISH"
