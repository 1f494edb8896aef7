"""The P2S "TLS 1.3 hangs" behaviour in front of a printer's broker (protocol doc 2.2, 11.1).

P2S firmware 01.02.00.00 never answers a ClientHello that offers TLS 1.3 on 8883: the client
waits until its own timeout. A :class:`Tls13Gate` listens on the printer's MQTT address and
reads each connection's first TLS record. A ClientHello whose ``supported_versions`` extension
lists TLS 1.3 (0x0304) gets no answer (the connection is held open, unread, until the client
gives up); any other connection is passed through, byte for byte, to the broker's real TLS
listener on a loopback port. Clients capped at TLS 1.2 (printer-service) never notice it.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading

from pantheon_common.sockets import pump

log = logging.getLogger(__name__)

TLS13: int = 0x0304
_HANDSHAKE = 0x16
_CLIENT_HELLO = 0x01
_SUPPORTED_VERSIONS = 0x002B
_MAX_RECORD = 16384 + 2048
_FIRST_RECORD_TIMEOUT_S = 10.0


def offered_versions(record: bytes) -> set[int] | None:
    """TLS versions a ClientHello record offers in ``supported_versions``; an empty set when
    it has no such extension (a TLS 1.2-only client); None when ``record`` is not a whole
    ClientHello record."""
    try:
        if record[0] != _HANDSHAKE or len(record) < 5 + 4:
            return None
        (length,) = struct.unpack_from("!H", record, 3)
        body = record[5 : 5 + length]
        if len(body) < length or body[0] != _CLIENT_HELLO:
            return None
        at = 4 + 2 + 32  # handshake header, legacy_version, random
        at += 1 + body[at]  # session id
        (suites,) = struct.unpack_from("!H", body, at)
        at += 2 + suites
        at += 1 + body[at]  # compression methods
        if at == len(body):
            return set()
        (ext_total,) = struct.unpack_from("!H", body, at)
        at += 2
        end = min(len(body), at + ext_total)
        while at + 4 <= end:
            ext_type, ext_len = struct.unpack_from("!HH", body, at)
            at += 4
            if ext_type == _SUPPORTED_VERSIONS:
                count = body[at]
                data = body[at + 1 : at + 1 + count]
                return {struct.unpack_from("!H", data, i)[0] for i in range(0, len(data) - 1, 2)}
            at += ext_len
        return set()
    except (IndexError, struct.error):
        return None


class Tls13Gate:
    """Listens on ``(host, port)``; forwards to ``backend`` unless a client offers TLS 1.3."""

    def __init__(self, host: str, port: int, backend: tuple[str, int], name: str) -> None:
        self.host = host
        self.port = port
        self.backend = backend
        self.name = name
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.held = 0
        """Connections left unanswered (TLS 1.3 offered) so far."""

    def start(self) -> None:
        """Bind and accept in a thread."""
        self._stopping.clear()
        listener = socket.create_server((self.host, self.port), reuse_port=False)
        listener.settimeout(0.5)
        self._listener = listener
        threading.Thread(target=self._accept, name=f"tls13-gate-{self.name}", daemon=True).start()

    def stop(self) -> None:
        """Close the listener and every connection it holds or forwards."""
        self._stopping.set()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            sockets, self._sockets = set(self._sockets), set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _forget(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)
        sock.close()

    def _accept(self) -> None:
        listener = self._listener
        while listener is not None and not self._stopping.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._track(client)
            threading.Thread(
                target=self._serve, args=(client,), name=f"tls13-gate-{self.name}", daemon=True
            ).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            first = _first_record(client)
            versions = offered_versions(first) if first else None
            if versions is not None and TLS13 in versions:
                self.held += 1
                log.info("printer %s: a TLS 1.3 ClientHello, never answered (P2S)", self.name)
                client.settimeout(None)
                while not self._stopping.is_set() and client.recv(65536):
                    pass  # unanswered: only the client's close (or ours) ends it
                return
            if not first:
                return
            backend = socket.create_connection(self.backend, timeout=5)
        except OSError:
            self._forget(client)
            return
        self._track(backend)
        try:
            backend.settimeout(None)
            client.settimeout(None)
            backend.sendall(first)
        except OSError:
            self._forget(backend)
            self._forget(client)
            return
        threading.Thread(
            target=self._pump, args=(backend, client), name=f"tls13-gate-{self.name}", daemon=True
        ).start()
        self._pump(client, backend)

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        pump(source, target)
        self._forget(source)
        self._forget(target)


def _first_record(sock: socket.socket) -> bytes:
    """The connection's first TLS record, whole (b"" if the client closed first)."""
    sock.settimeout(_FIRST_RECORD_TIMEOUT_S)
    data = b""
    while len(data) < 5:
        chunk = sock.recv(5 - len(data))
        if not chunk:
            return data
        data += chunk
    if data[0] != _HANDSHAKE:
        return data  # not TLS: the broker answers it as it answers any such client
    (length,) = struct.unpack_from("!H", data, 3)
    want = 5 + min(length, _MAX_RECORD)
    while len(data) < want:
        chunk = sock.recv(want - len(data))
        if not chunk:
            break
        data += chunk
    return data
