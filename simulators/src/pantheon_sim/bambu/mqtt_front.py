"""A printer's MQTT port: TLS 1.2 ends here, MQTT goes on to the printer's mosquitto.

Mosquitto cannot close a connection instead of answering a SUBSCRIBE, yet that is what P1/A1
printers do to a client that subscribes to a request topic: the connection drops and no
SUBACK ever arrives (protocol doc 2.3, 11.4; Doridian/OpenBambuAPI#26). So each printer's
MQTT address is a :class:`MqttFront`: it terminates TLS with the printer's certificate (TLS
1.2 only), opens one unix-socket connection to the printer's mosquitto per client, relays
the bytes both ways, and reads only the client's packet headers (``mqtt_packets.py``). On a
printer that drops request subscribers (P1/A1), a SUBSCRIBE whose filters could deliver a
request topic closes both sides before the broker sees it; on the others (X1) a SUBSCRIBE
whose filters can only deliver request topics is answered by the front with SUBACK 0x80
(mosquitto 2.0 would grant it and then deliver nothing). The front also holds the printer's client
cap: past ``max_clients`` open connections a new one is closed at once, before its TLS
handshake (what mosquitto's ``max_connections`` did on its TLS listener; mosquitto 2.0 does
not apply it to a unix-socket listener). Everything else stays mosquitto's: the password
check (CONNACK 5), the ACL (what a granted subscription may receive: ``#`` gets the
printer's reports only), the takeover of a duplicate client id, and every report.

The front also holds the P2S "TLS 1.3 hangs" firmware behaviour (``tls_gate.py``): a
ClientHello offering TLS 1.3 is never answered.

One thread per printer runs a selector over the listener, every client socket and every
broker socket (non-blocking, TLS through memory BIOs), so 20 printers cost 20 mostly idle
threads and no copy beyond one TLS record at a time.
"""

import contextlib
import logging
import selectors
import socket
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from pantheon_sim.bambu.mqtt_packets import (
    CONNECT,
    REFUSED,
    SUBSCRIBE,
    MalformedPacket,
    Packet,
    PacketScanner,
    is_request_filter,
    only_requests,
    parse_connect,
    suback,
    subscribe_filters,
)
from pantheon_sim.bambu.tls_gate import TLS13, first_record, offered_versions

log = logging.getLogger(__name__)

_CHUNK: Final = 65536
_BUFFER_LIMIT: Final = 1 << 20
"""Bytes queued for one side before the front stops reading the other (back pressure)."""
_HELLO_LIMIT: Final = 32768


class FrontError(Exception):
    """The front could not bind the printer's MQTT address."""


@dataclass(frozen=True)
class FrontSettings:
    """One printer's MQTT front."""

    name: str
    host: str
    port: int
    backend: Path
    """The mosquitto unix socket the clients' MQTT goes to."""
    cert_file: Path
    key_file: Path
    topic_prefix: str = ""
    max_clients: int = 0
    """Open connections allowed at once (0 = no cap)."""
    drop_request_subscribers: bool = False
    """P1/A1: close a client that subscribes to a request topic, before any SUBACK; else
    (X1) answer a subscription to request topics only with SUBACK 0x80."""
    tls13_hangs: bool = False
    """P2S firmware: never answer a ClientHello that offers TLS 1.3."""


@dataclass(eq=False)
class _Conn:
    """One client: its TCP socket, its TLS state, its broker socket, what waits for each."""

    client: socket.socket
    peer: str
    backend: socket.socket
    hello: bytearray = field(default_factory=bytearray)
    """The first TLS record while it is still arriving (read before any TLS)."""
    tls: ssl.SSLObject | None = None
    incoming: ssl.MemoryBIO = field(default_factory=ssl.MemoryBIO)
    outgoing: ssl.MemoryBIO = field(default_factory=ssl.MemoryBIO)
    handshaken: bool = False
    held: bool = False
    """A TLS 1.3 ClientHello on a P2S: read and ignored until the client gives up."""
    scanner: PacketScanner = field(default_factory=PacketScanner)
    level: int = 4
    client_id: str | None = None
    to_client: bytearray = field(default_factory=bytearray)
    to_backend: bytearray = field(default_factory=bytearray)
    closed: bool = False


class MqttFront:
    """The printer's MQTT listener (see the module docstring); start/stop repeatable."""

    def __init__(self, settings: FrontSettings) -> None:
        self.settings = settings
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.maximum_version = ssl.TLSVersion.TLSv1_2  # the printers speak 1.2 only (2.2)
        context.load_cert_chain(settings.cert_file, settings.key_file)
        self._context = context
        self.held = 0
        """TLS 1.3 ClientHellos left unanswered so far (P2S)."""
        self.dropped_subscribers = 0
        """Connections closed for subscribing to a request topic."""
        self._lock = threading.Lock()
        self._peers: dict[str, str] = {}
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._wake_w: socket.socket | None = None
        self._selector: selectors.BaseSelector = selectors.DefaultSelector()
        self._masks: dict[socket.socket, int] = {}
        """What the selector watches each socket for (0 = not registered); loop thread only."""

    # ----- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Bind the printer's MQTT address and serve it from a thread of its own."""
        if self._thread is not None:
            return
        s = self.settings
        family = socket.AF_INET6 if ":" in s.host else socket.AF_INET
        try:
            listener = socket.create_server((s.host, s.port), family=family, backlog=64)
        except OSError as err:
            where = f"{s.host}:{s.port}"
            raise FrontError(f"printer {s.name}: cannot listen on {where}: {err}") from err
        listener.setblocking(False)
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        self._wake_w = wake_w
        self._stopping.clear()
        self._selector = selectors.DefaultSelector()
        self._masks = {}
        self._thread = threading.Thread(
            target=self._run, args=(listener, wake_r), name=f"mqtt-front-{s.name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop listening and close every client connection (the port refuses until start)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")
        thread.join(timeout=5)
        if self._wake_w is not None:
            self._wake_w.close()
            self._wake_w = None

    def peers(self) -> dict[str, str]:
        """Client id -> ``host:port`` of the clients connected through the front now."""
        with self._lock:
            return dict(self._peers)

    # ----- the loop ---------------------------------------------------------------------

    def _run(self, listener: socket.socket, wake: socket.socket) -> None:
        selector = self._selector
        selector.register(listener, selectors.EVENT_READ, "accept")
        selector.register(wake, selectors.EVENT_READ, "wake")
        conns: set[_Conn] = set()
        try:
            while not self._stopping.is_set():
                for key, mask in selector.select():
                    if key.data == "accept":
                        self._accept(listener, conns)
                    elif key.data == "wake":
                        with contextlib.suppress(OSError):
                            wake.recv(64)
                    else:
                        conn, side = key.data
                        if not conn.closed:
                            self._serve(conn, side, mask)
                        if conn.closed:
                            conns.discard(conn)
        except Exception:
            log.exception("printer %s: MQTT front failed", self.settings.name)
        finally:
            for conn in list(conns):
                self._close(conn, flush=False)
            selector.close()
            listener.close()
            wake.close()
            with self._lock:
                self._peers.clear()

    def _accept(self, listener: socket.socket, conns: set[_Conn]) -> None:
        while True:
            try:
                client, address = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                log.warning("printer %s: accept failed", self.settings.name, exc_info=True)
                return
            peer = f"{address[0]}:{address[1]}"
            cap = self.settings.max_clients
            if cap and len(conns) >= cap:
                log.info(
                    "printer %s: %s refused: %d clients already connected",
                    self.settings.name,
                    peer,
                    len(conns),
                )
                client.close()
                continue
            # One broker connection per client, opened at once: a broker that is down makes
            # the printer unreachable before any TLS.
            backend = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                backend.settimeout(2)
                backend.connect(str(self.settings.backend))
            except OSError:
                backend.close()
                client.close()  # the broker is down: the printer is unreachable
                continue
            for sock in (client, backend):
                sock.setblocking(False)
            with contextlib.suppress(OSError):
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(client=client, peer=peer, backend=backend)
            conns.add(conn)
            self._watch(conn)

    def _serve(self, conn: _Conn, side: str, mask: int) -> None:
        try:
            if mask & selectors.EVENT_WRITE:
                self._send(conn, side)
            if mask & selectors.EVENT_READ and not conn.closed:
                if side == "client":
                    self._from_client(conn)
                else:
                    self._from_backend(conn)
            if not conn.closed:  # hand on at once what this event produced
                self._send(conn, "client")
                self._send(conn, "backend")
        except (OSError, ssl.SSLError, MalformedPacket) as err:
            log.debug("printer %s: %s closed: %s", self.settings.name, conn.peer, err)
            self._close(conn, flush=False)
            return
        if not conn.closed:
            self._watch(conn)

    # ----- client -> broker -------------------------------------------------------------

    def _from_client(self, conn: _Conn) -> None:
        data = _recv(conn.client)
        if data is None:
            return
        if not data:
            self._close(conn, flush=True)
            return
        if conn.held:
            return  # a P2S never answers: only the client's close ends this
        if conn.tls is None:
            conn.hello += data
            record = first_record(bytes(conn.hello))
            if record is None:
                if len(conn.hello) > _HELLO_LIMIT:
                    self._close(conn, flush=False)
                return
            versions = offered_versions(record)
            if self.settings.tls13_hangs and versions is not None and TLS13 in versions:
                conn.held = True
                self.held += 1
                conn.hello.clear()
                log.info(
                    "printer %s: a TLS 1.3 ClientHello from %s, never answered (P2S)",
                    self.settings.name,
                    conn.peer,
                )
                return
            conn.tls = self._context.wrap_bio(conn.incoming, conn.outgoing, server_side=True)
            data, conn.hello = bytes(conn.hello), bytearray()
        conn.incoming.write(data)
        self._run_tls(conn)

    def _run_tls(self, conn: _Conn) -> None:
        """Advance the handshake, then decrypt what the client sent and scan it."""
        tls = conn.tls
        assert tls is not None
        try:
            if not conn.handshaken:
                try:
                    tls.do_handshake()
                except ssl.SSLWantReadError:
                    return
                conn.handshaken = True
            while True:
                try:
                    plain = tls.read(_CHUNK)
                except ssl.SSLWantReadError:
                    break
                except ssl.SSLZeroReturnError:
                    self._close(conn, flush=True)
                    return
                if not plain:
                    self._close(conn, flush=True)
                    return
                if not self._scan(conn, plain):
                    return
        finally:
            conn.to_client += conn.outgoing.read()

    def _scan(self, conn: _Conn, plain: bytes) -> bool:
        """Queue the client's MQTT bytes for the broker; False once the connection is gone."""
        for item in conn.scanner.feed(plain):
            if isinstance(item, bytes):
                conn.to_backend += item
                continue
            if item.kind == CONNECT:
                self._connected(conn, item)
            elif item.kind == SUBSCRIBE:
                if self._drops(conn, item):
                    return False
                if self._refuses(conn, item):
                    continue
            conn.to_backend += item.raw
        return True

    def _connected(self, conn: _Conn, packet: Packet) -> None:
        connect = parse_connect(packet.body)
        conn.level = connect.level
        conn.client_id = connect.client_id
        with self._lock:
            self._peers[connect.client_id] = conn.peer
        log.debug("printer %s: client %r from %s", self.settings.name, conn.client_id, conn.peer)

    def _drops(self, conn: _Conn, packet: Packet) -> bool:
        """P1/A1: a SUBSCRIBE that could deliver a request topic ends the connection before
        the broker sees it (no SUBACK). What the client sent before it still reaches the
        broker, in order."""
        if not self.settings.drop_request_subscribers:
            return False
        filters = subscribe_filters(packet.body, conn.level)
        wanted = [f for f in filters if is_request_filter(f, self.settings.topic_prefix)]
        if not wanted:
            return False
        self.dropped_subscribers += 1
        log.info(
            "printer %s: dropping client %r (%s): it subscribed to %s",
            self.settings.name,
            conn.client_id,
            conn.peer,
            ", ".join(wanted),
        )
        self._close(conn, flush=True, notify=False)
        return True

    def _refuses(self, conn: _Conn, packet: Packet) -> bool:
        """X1: a SUBSCRIBE whose every filter can only deliver request topics gets SUBACK
        0x80 from the front, the connection kept. One that also asks for something else
        goes to the broker whole (granted; the ACL delivers no request)."""
        if self.settings.drop_request_subscribers:
            return False
        filters = subscribe_filters(packet.body, conn.level)
        prefix = self.settings.topic_prefix
        if not all(only_requests(f, prefix) for f in filters):
            return False
        assert conn.tls is not None
        packet_id = int.from_bytes(packet.body[:2], "big")
        conn.tls.write(suback(packet_id, [REFUSED] * len(filters), conn.level))
        conn.to_client += conn.outgoing.read()
        log.info(
            "printer %s: refused %r (%s) the subscription to %s",
            self.settings.name,
            conn.client_id,
            conn.peer,
            ", ".join(filters),
        )
        return True

    # ----- broker -> client -------------------------------------------------------------

    def _from_backend(self, conn: _Conn) -> None:
        data = _recv(conn.backend)
        if data is None:
            return
        if not data:
            # The broker closed it (refused login after its CONNACK, past the client cap,
            # a takeover of the client id, the broker stopping): the client goes too.
            self._close(conn, flush=True)
            return
        if conn.tls is None or not conn.handshaken:
            return  # nothing from the broker before the client's CONNECT
        conn.tls.write(data)
        conn.to_client += conn.outgoing.read()

    # ----- plumbing ---------------------------------------------------------------------

    def _send(self, conn: _Conn, side: str) -> None:
        sock, buffer = (
            (conn.client, conn.to_client) if side == "client" else (conn.backend, conn.to_backend)
        )
        while buffer:
            try:
                sent = sock.send(buffer[:_CHUNK])
            except (BlockingIOError, InterruptedError):
                return
            del buffer[:sent]

    def _watch(self, conn: _Conn) -> None:
        """Register what each socket waits for: write while data waits for it, read while
        the other side's queue is not full."""
        self._interest(
            conn.client,
            (conn, "client"),
            (selectors.EVENT_READ if len(conn.to_backend) < _BUFFER_LIMIT else 0)
            | (selectors.EVENT_WRITE if conn.to_client else 0),
        )
        self._interest(
            conn.backend,
            (conn, "backend"),
            (selectors.EVENT_READ if len(conn.to_client) < _BUFFER_LIMIT else 0)
            | (selectors.EVENT_WRITE if conn.to_backend else 0),
        )

    def _interest(self, sock: socket.socket, data: tuple[_Conn, str], mask: int) -> None:
        current = self._masks.get(sock, 0)
        if mask == current:
            return
        if not current:
            self._selector.register(sock, mask, data)
        elif not mask:
            self._selector.unregister(sock)
        else:
            self._selector.modify(sock, mask, data)
        self._masks[sock] = mask

    def _close(self, conn: _Conn, *, flush: bool, notify: bool = True) -> None:
        """Close both sides. ``flush``: first hand each side what is queued for it (a CONNACK
        refusal, the client's DISCONNECT); ``notify``: end the TLS session with close_notify
        as mosquitto did (a P1/A1 dropping a request subscriber just closes)."""
        if conn.closed:
            return
        conn.closed = True
        if conn.client_id is not None:
            with self._lock:
                if self._peers.get(conn.client_id) == conn.peer:
                    del self._peers[conn.client_id]
        if flush:
            if notify and conn.tls is not None and conn.handshaken:
                with contextlib.suppress(ssl.SSLError):
                    conn.tls.unwrap()
                conn.to_client += conn.outgoing.read()
            for sock, buffer in ((conn.client, conn.to_client), (conn.backend, conn.to_backend)):
                with contextlib.suppress(OSError):
                    sock.send(buffer)
        for sock in (conn.client, conn.backend):
            if self._masks.pop(sock, 0):
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(sock)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def _recv(sock: socket.socket) -> bytes | None:
    """What arrived (b"" = closed), or None when nothing is there after all."""
    try:
        return sock.recv(_CHUNK)
    except (BlockingIOError, InterruptedError):
        return None
    except ConnectionError:
        return b""
