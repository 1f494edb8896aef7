"""Implicit FTPS to a Bambu printer's storage (bambu-lan-protocol.md 6).

``ftplib`` needs three changes for these printers: TLS from byte 0 (implicit, port 990, never
``AUTH TLS``), data connections that resume the control connection's TLS session (vsFTPd
``require_ssl_reuse`` answers 522 otherwise), and uploads that close the data socket without
``unwrap()`` (the firmware never answers close_notify) but still read the ``226``. Every upload
is verified with ``SIZE``. One short-lived session per operation, serialized per printer.
"""

from __future__ import annotations

import ftplib
import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from printer_service.domain.ports import DriverError, UploadFailed

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
USER = "bblp"


class ImplicitFtpTls(ftplib.FTP_TLS):
    """``FTP_TLS`` speaking implicit TLS and resuming the control session on data channels."""

    def connect(
        self,
        host: str = "",
        port: int = 0,
        timeout: float = -999,
        source_address: tuple[str, int] | None = None,
    ) -> str:
        if host:
            self.host = host
        if port:
            self.port = port
        if timeout != -999:
            self.timeout = timeout
        raw = socket.create_connection((self.host, self.port), self.timeout)
        try:
            self.sock = self.context.wrap_socket(raw, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise
        self.af = self.sock.family
        self.file = self.sock.makefile("r", encoding=self.encoding)
        self.welcome = self.getresp()
        return self.welcome

    def ntransfercmd(
        self, cmd: str, rest: int | str | None = None
    ) -> tuple[socket.socket, int | None]:
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)  # noqa: S321 (then TLS-wrapped)
        if self._prot_p:  # type: ignore[attr-defined]
            control = self.sock
            session = control.session if isinstance(control, ssl.SSLSocket) else None
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=session)
        return conn, size


class BambuFtps:
    """Uploads to one printer's storage root."""

    def __init__(
        self,
        host: str,
        port: int,
        access_code: str,
        context: ssl.SSLContext,
        *,
        timeout_s: float = 60.0,
    ) -> None:
        self._host = host
        self._port = port
        self._access_code = access_code
        self._context = context
        self._timeout_s = timeout_s
        self._lock = threading.Lock()  # the printer serves one transfer at a time (6.1)

    @contextmanager
    def _session(self) -> Iterator[ImplicitFtpTls]:
        ftp = ImplicitFtpTls(context=self._context, timeout=self._timeout_s)
        try:
            ftp.connect(self._host, self._port, timeout=self._timeout_s)
            ftp.login(USER, self._access_code)
            ftp.prot_p()  # PBSZ 0 + PROT P
            ftp.set_pasv(True)
            yield ftp
        finally:
            try:
                ftp.quit()
            except (OSError, EOFError, ftplib.Error):
                ftp.close()

    def upload(self, name: str, data: bytes) -> None:
        """Store ``data`` as ``/<name>`` and check its size; raises :class:`UploadFailed`."""
        with self._lock:
            try:
                with self._session() as ftp:
                    ftp.voidcmd("TYPE I")
                    conn = ftp.transfercmd(f"STOR {name}")
                    try:
                        view = memoryview(data)
                        for offset in range(0, len(view), CHUNK):
                            conn.sendall(view[offset : offset + CHUNK])
                    finally:
                        # No unwrap(): the firmware never answers close_notify (6.2 step 4).
                        _close_quietly(conn)
                    self._read_transfer_reply(ftp)
                    remote = self._size(ftp, name)
            except (OSError, EOFError, ftplib.Error) as err:
                raise UploadFailed(f"upload of {name} to the printer failed: {err}") from err
            if remote != len(data):
                raise UploadFailed(
                    f"upload of {name} truncated: printer has {remote} of {len(data)} bytes"
                )

    @staticmethod
    def _read_transfer_reply(ftp: ImplicitFtpTls) -> None:
        try:
            ftp.voidresp()  # the 226: skipping it lets the transfer truncate silently
        except ftplib.error_temp as err:
            # 426 after a complete write is a known quirk (P2S); SIZE decides.
            if not str(err).startswith("426"):
                raise
            log.warning("printer answered %s after an upload; checking SIZE", err)

    @staticmethod
    def _size(ftp: ImplicitFtpTls, name: str) -> int | None:
        ftp.voidcmd("TYPE I")
        return ftp.size(name)

    def size(self, name: str) -> int | None:
        """Size of ``/<name>`` on the printer, None when absent."""
        with self._lock:
            try:
                with self._session() as ftp:
                    return self._size(ftp, name)
            except ftplib.error_perm:
                return None
            except (OSError, EOFError, ftplib.Error) as err:
                raise DriverError(f"FTPS SIZE {name} failed: {err}") from err

    def delete(self, name: str) -> None:
        """Delete ``/<name>``; a missing file is fine."""
        with self._lock:
            try:
                with self._session() as ftp:
                    ftp.delete(name)
            except ftplib.error_perm:
                return
            except (OSError, EOFError, ftplib.Error) as err:
                raise DriverError(f"FTPS DELE {name} failed: {err}") from err


def _close_quietly(conn: Any) -> None:
    try:
        conn.close()
    except OSError:
        log.debug("closing an FTPS data socket failed", exc_info=True)
