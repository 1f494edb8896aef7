"""A printer's storage over implicit FTPS, as vsFTPd on the printers serves it (6.1, 11.10).

TLS starts at byte 0 (no ``AUTH TLS``), TLS 1.2 at most, login ``bblp`` + access code, passive
mode, the data channel protected by default and required to RESUME the control channel's TLS
session (``522`` otherwise, like ``require_ssl_reuse``). One data transfer at a time per
printer (``425`` otherwise), ``226`` only after the file is closed, an optional throughput cap,
a storage size (``552`` and no file past it) and the P2S quirk of ``426`` after a whole upload.
``TYPE A`` is accepted but changes nothing: vsFTPd's defaults (``ascii_upload_enable`` and
``ascii_download_enable`` off) move every file byte for byte and answer ``SIZE`` in any mode.
Each printer's server runs its own pyftpdlib IO loop in one thread.
"""

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from OpenSSL import SSL
from OpenSSL._util import lib as _ssl_lib  # SSL_session_reused has no public wrapper
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.exceptions import FilesystemError
from pyftpdlib.handlers import TLS_DTPHandler, TLS_FTPHandler
from pyftpdlib.handlers.ftp.data import ThrottledDTPHandler
from pyftpdlib.ioloop import IOLoop
from pyftpdlib.servers import FTPServer
from pyftpdlib.utils import strerror

log = logging.getLogger(__name__)

STORAGE_FOLDERS = ("cache", "timelapse", "image", "logger")
"""Folders a printer's storage holds besides the root where uploads go (section 11.12)."""


@dataclass(frozen=True)
class FtpsSettings:
    """What one printer's FTPS server needs."""

    name: str
    host: str
    port: int
    """0 picks a free port (see :attr:`FtpsServer.port`)."""
    root: Path
    cert_file: Path
    key_file: Path
    access_code: str
    passive_ports: range | None
    rate_limit: Callable[[], int | None]
    """Current throughput cap in bytes/s (read at each data connection), None = unlimited."""
    masquerade_address: str | None = None
    """IPv4 address named in passive replies; None = the control connection's local address."""
    reply_426_after_write: Callable[[], bool] = lambda: False
    """Fault (P2S quirk): answer a complete upload with 426 instead of 226 (read per upload)."""
    capacity_bytes: Callable[[], int | None] = lambda: None
    """Storage size in bytes (read per upload); None = unlimited."""
    nlst_full_paths: bool = False
    """``NLST`` answers full paths (X1) instead of bare names (P1/A1)."""


class _Gate:
    """The printer's single data-transfer slot."""

    def __init__(self) -> None:
        self.holder: object | None = None


class _ReuseRequiredDTP(TLS_DTPHandler, ThrottledDTPHandler):  # type: ignore[misc]
    """Data channel: TLS session reuse required, optional throttle, frees the slot on close."""

    def __init__(self, sock: Any, cmd_channel: Any) -> None:
        limit = cmd_channel.rate_limit()
        self.read_limit = self.write_limit = int(limit or 0)
        super().__init__(sock, cmd_channel)

    def handle_ssl_established(self) -> None:
        if not _ssl_lib.SSL_session_reused(self.socket._ssl):
            self.cmd_channel.respond("522 SSL connection failed: session reuse required")
            self.cmd_channel.log("data channel without TLS session reuse: 522")
            self.close()

    def close(self) -> None:
        if not self._closed and self.receive and self._resp and self._resp[0].startswith("226"):
            self._answer_complete_upload()
        gate: _Gate = self.cmd_channel.gate
        if gate.holder is self.cmd_channel:
            gate.holder = None
        super().close()

    def _answer_complete_upload(self) -> None:
        """A whole file arrived: 552 (and no file) past the storage size, or the 426 quirk."""
        channel = self.cmd_channel
        capacity = channel.capacity_bytes()
        if capacity is not None and self.file_obj is not None:
            self.file_obj.close()
            if _used_bytes(Path(channel.fs.root)) > capacity:
                Path(self.file_obj.name).unlink(missing_ok=True)
                self.transfer_finished = False
                self._resp = ("552 Requested file action aborted. Exceeded storage allocation.",
                              log.info)  # fmt: skip
                return
        if channel.reply_426_after_write():
            self._resp = ("426 Failure writing network stream.", log.info)


def _used_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


class _ImplicitTlsHandler(TLS_FTPHandler):  # type: ignore[misc]
    """Control channel: TLS from the first byte, greeting inside TLS, one transfer at a time."""

    dtp_handler = _ReuseRequiredDTP
    tls_control_required = True
    tls_data_required = True
    banner = "Welcome to Bambu FTP Server"  # clients sniff vsFTPd banners; keep it neutral
    gate: _Gate
    rate_limit: Callable[[], int | None]
    reply_426_after_write: Callable[[], bool]
    capacity_bytes: Callable[[], int | None]
    nlst_full_paths: bool
    ascii_declared: bool
    """The client's last ``TYPE`` was ASCII (only the replies and a resumed RETR differ)."""
    _restart_position: int  # pyftpdlib's REST mark

    def handle(self) -> None:
        self.on_connect()
        self.secure_connection(self.ssl_context)
        self._pbsz = True
        self._prot = True
        self._binary_only()

    def handle_ssl_established(self) -> None:
        self.respond(f"220 {self.banner}")

    def flush_account(self) -> None:
        super().flush_account()
        self._pbsz = True
        self._prot = True
        self._binary_only()

    def _binary_only(self) -> None:
        """pyftpdlib's transfer type stays binary whatever the client says: vsFTPd (the
        printers' server) with ``ascii_upload_enable``/``ascii_download_enable`` off (its
        defaults) stores and sends bytes unchanged in ASCII mode too, so a ``.gcode.3mf``
        uploaded without ``TYPE I`` keeps its CRLF bytes and its MD5."""
        self._current_type = "i"
        self.ascii_declared = True  # vsFTPd starts in ASCII mode, like RFC 959 says

    def ftp_TYPE(self, line: str) -> None:  # noqa: N802 - pyftpdlib names
        """vsFTPd's ``handle_type``: I, L8, "L 8" binary; A, "A N" ASCII (in name only)."""
        kind = line.upper()
        if kind in ("I", "L8", "L 8"):
            self.ascii_declared = False
            self.respond("200 Switching to Binary mode.")
        elif kind in ("A", "A N"):
            self.ascii_declared = True
            self.respond("200 Switching to ASCII mode.")
        else:
            self.respond("500 Unrecognised TYPE command.")

    def ftp_AUTH(self, line: str) -> None:  # noqa: N802 - pyftpdlib names
        self.respond("503 Already using TLS (implicit FTPS).")

    def _in_slot(self, command: Callable[..., Any], *args: Any) -> Any:
        """Run a transfer command in the printer's one transfer slot (425 while another
        connection holds it). A command that fails before any transfer (pyftpdlib returns
        None: 550 no such file, 554 ...) gives the slot back at once; otherwise the data
        channel frees it when it closes."""
        if self.gate.holder not in (None, self):
            self.respond("425 Can't open data connection.")
            return None
        self.gate.holder = self
        result = command(*args)
        if result is None and self.gate.holder is self:
            self.gate.holder = None
        return result

    def ftp_STOR(self, file: str, mode: str = "w") -> Any:  # noqa: N802 - pyftpdlib names
        return self._in_slot(super().ftp_STOR, file, mode)

    def ftp_RETR(self, file: str) -> Any:  # noqa: N802 - pyftpdlib names
        if self.ascii_declared and self._restart_position:
            self._restart_position = 0  # vsFTPd resets the REST mark before refusing
            self.respond("550 No support for resume of ASCII transfer.")
            return None
        return self._in_slot(super().ftp_RETR, file)

    def ftp_LIST(self, path: str) -> Any:  # noqa: N802 - pyftpdlib names
        return self._in_slot(super().ftp_LIST, path)

    def ftp_NLST(self, path: str) -> Any:  # noqa: N802 - pyftpdlib names
        if not self.nlst_full_paths:
            return self._in_slot(super().ftp_NLST, path)
        return self._in_slot(self._nlst_full_paths, path)

    def _nlst_full_paths(self, path: str) -> Any:
        """X1: every name as a path from the storage root."""
        try:
            if self.fs.isdir(path):
                folder = self.fs.fs2ftp(path).rstrip("/")
                names = sorted(self.run_as_current_user(self.fs.listdir, path))
                listing = [f"{folder}/{name}" for name in names]
            else:
                self.fs.lstat(path)
                listing = [self.fs.fs2ftp(path)]
        except (OSError, FilesystemError) as err:
            self.respond(f"550 {strerror(err)}.")
            return None
        data = "".join(f"{entry}\r\n" for entry in listing)
        self.push_dtp_data(data.encode(self.encoding, self.unicode_errors), cmd="NLST")
        return path

    def ftp_MLSD(self, path: str) -> Any:  # noqa: N802 - pyftpdlib names
        return self._in_slot(super().ftp_MLSD, path)

    def close(self) -> None:
        if getattr(self, "gate", None) is not None and self.gate.holder is self:
            self.gate.holder = None
        super().close()


class FtpsServer:
    """One printer's implicit-FTPS server in its own thread."""

    def __init__(self, settings: FtpsSettings) -> None:
        self.settings = settings
        settings.root.mkdir(parents=True, exist_ok=True)
        for folder in STORAGE_FOLDERS:
            (settings.root / folder).mkdir(exist_ok=True)
        authorizer = DummyAuthorizer()
        authorizer.add_user("bblp", settings.access_code, str(settings.root), perm="elradfmwMT")
        ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
        ctx.use_certificate_chain_file(str(settings.cert_file))
        ctx.use_privatekey_file(str(settings.key_file))
        ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
        ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
        ctx.set_session_id(f"bambu-sim-{settings.name}".encode()[:32])
        ctx.set_session_cache_mode(SSL.SESS_CACHE_SERVER)
        handler = type(
            f"PrinterFtps{settings.name}",
            (_ImplicitTlsHandler,),
            {
                "authorizer": authorizer,
                "ssl_context": ctx,
                "passive_ports": list(settings.passive_ports) if settings.passive_ports else None,
                "masquerade_address": settings.masquerade_address,
                "gate": _Gate(),
                "rate_limit": staticmethod(settings.rate_limit),
                "reply_426_after_write": staticmethod(settings.reply_426_after_write),
                "capacity_bytes": staticmethod(settings.capacity_bytes),
                "nlst_full_paths": settings.nlst_full_paths,
                "timeout": 120,
                "auth_failed_timeout": 1,  # vsftpd delay_failed_login
            },
        )
        self._ioloop = IOLoop()
        self._server = FTPServer((settings.host, settings.port), handler, ioloop=self._ioloop)
        self.port: int = int(self._server.socket.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"ftps-{settings.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._ioloop.loop(timeout=0.1, blocking=False)
        except Exception:
            log.exception("FTPS server of printer %s crashed", self.settings.name)
        finally:
            self._server.close_all()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
