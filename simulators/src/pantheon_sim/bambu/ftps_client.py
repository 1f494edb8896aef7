"""An implicit-FTPS client that Bambu printers accept (bambu-lan-protocol.md 6.2).

``ftplib.FTP_TLS`` adapted four ways: TLS from the first byte (no ``AUTH TLS``), TLS 1.2
pinned, the data channel resuming the control channel's TLS session (else ``522``), and uploads
that skip ``unwrap()`` (which hangs on the printers) but still read the ``226`` and then
compare ``SIZE`` with what was sent.
"""

import ftplib
import io
import socket
import ssl
from pathlib import Path
from typing import Any, BinaryIO


class UploadIncomplete(Exception):
    """The printer holds fewer bytes than were sent."""


def printer_tls_context(ca_file: str | Path | None = None) -> ssl.SSLContext:
    """TLS 1.2 only; verify with ``ca_file`` but not the hostname (CN = serial), or not at all."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    if ca_file is None:
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=str(ca_file))
    return ctx


def peer_common_name(sock: ssl.SSLSocket) -> str | None:
    """The CN of the verified peer certificate (None without verification)."""
    cert = sock.getpeercert()
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for attribute in rdn:
            if attribute[0] == "commonName":
                return str(attribute[1])
    return None


class ImplicitFtpsClient(ftplib.FTP_TLS):
    """``FTP_TLS`` for port-990 printers; use :meth:`upload` for files."""

    def __init__(
        self,
        *,
        context: ssl.SSLContext,
        timeout: float = 60.0,
        expected_serial: str | None = None,
    ) -> None:
        self._expected_serial = expected_serial
        self._wrapped: ssl.SSLSocket | socket.socket | None = None
        super().__init__(context=context, timeout=timeout)

    # ftplib assigns ``self.sock`` in connect(); wrap it before the greeting is read.
    @property
    def sock(self) -> Any:
        return self._wrapped

    @sock.setter
    def sock(self, value: Any) -> None:
        if value is not None and not isinstance(value, ssl.SSLSocket):
            value = self.context.wrap_socket(value, server_hostname=self.host or None)
            if self._expected_serial is not None:
                cn = peer_common_name(value)
                if cn != self._expected_serial:
                    value.close()
                    raise ssl.SSLError(
                        f"printer certificate CN {cn!r} is not the serial {self._expected_serial!r}"
                    )
        self._wrapped = value

    def login(self, user: str = "", passwd: str = "", acct: str = "", secure: bool = True) -> str:
        """Log in, then protect the data channel (``PBSZ 0`` + ``PROT P``)."""
        reply = ftplib.FTP.login(self, user, passwd, acct)  # noqa: S321 - TLS from byte 0
        self.prot_p()
        return reply

    def ntransfercmd(
        self, cmd: str, rest: int | str | None = None
    ) -> tuple[socket.socket, int | None]:
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)  # noqa: S321 - wrapped below
        if getattr(self, "_prot_p", False):
            control = self.sock
            conn = self.context.wrap_socket(
                conn, server_hostname=self.host or None, session=control.session
            )
        return conn, size

    def storbinary_no_unwrap(self, cmd: str, fp: BinaryIO, blocksize: int = 65536) -> str:
        """``STOR`` without TLS close_notify, still reading the final reply (``226``)."""
        self.voidcmd("TYPE I")
        conn, _ = self.ntransfercmd(cmd)
        try:
            while chunk := fp.read(blocksize):
                conn.sendall(chunk)
        finally:
            conn.close()
        return self.voidresp()

    def upload(self, data: bytes | Path, remote_name: str) -> int:
        """Upload and verify with ``SIZE``; returns the size; UploadIncomplete otherwise."""
        payload = data.read_bytes() if isinstance(data, Path) else data
        try:
            self.storbinary_no_unwrap(f"STOR {remote_name}", io.BytesIO(payload))
        except ftplib.error_temp as err:
            # 426 after a complete write is a known quirk: only SIZE decides.
            if not str(err).startswith("426"):
                raise
        self.voidcmd("TYPE I")
        size = self.size(remote_name)
        if size != len(payload):
            raise UploadIncomplete(f"{remote_name}: printer has {size} of {len(payload)} bytes")
        return len(payload)
