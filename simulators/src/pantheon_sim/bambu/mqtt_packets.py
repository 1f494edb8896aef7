"""Just enough MQTT to read a client's CONNECT and SUBSCRIBE packets on their way to the broker.

The printer's MQTT front (``mqtt_front.py``) relays a client's bytes to mosquitto untouched,
except that it must see each SUBSCRIBE whole before the broker does: P1/A1 printers drop a
client that subscribes to a request topic before any SUBACK is sent (protocol doc 2.3, 11.4),
which mosquitto alone cannot do. :class:`PacketScanner` splits the client-to-broker stream by
the fixed header (packet type, remaining-length varint); every other packet streams through
as it arrives. No I/O here.
"""

import struct
from dataclasses import dataclass
from typing import Final

CONNECT: Final = 1
SUBSCRIBE: Final = 8
INSPECTED: Final = frozenset({CONNECT, SUBSCRIBE})
"""Packet types held back until they are whole."""
MAX_INSPECTED: Final = 65536
"""Largest CONNECT or SUBSCRIBE the front accepts (a printer client's are tiny)."""
MQTT5: Final = 5


class MalformedPacket(Exception):
    """The client's bytes are not MQTT a broker would accept: the front closes it."""


@dataclass(frozen=True)
class Packet:
    """A whole CONNECT or SUBSCRIBE: its type, its bytes as sent, and its body."""

    kind: int
    raw: bytes
    body: bytes
    """Variable header and payload (``raw`` without the fixed header)."""


class PacketScanner:
    """Splits a client's stream into pass-through bytes and whole inspected packets.

    :meth:`feed` returns, in stream order, ``bytes`` to forward at once and :class:`Packet`
    objects (CONNECT, SUBSCRIBE) held until complete. It never holds more than one packet.
    """

    def __init__(self) -> None:
        self._head = bytearray()
        self._kind = 0
        self._left = 0
        """Bytes of the current packet's body still to come (after its fixed header)."""
        self._body: bytearray | None = None
        """The body collected so far of an inspected packet; None while streaming."""
        self._in_body = False

    def feed(self, data: bytes) -> list[bytes | Packet]:
        out: list[bytes | Packet] = []
        view = memoryview(data)
        while view:
            if not self._in_body:
                view = self._read_header(view, out)
                continue
            take = view[: self._left]
            view = view[len(take) :]
            self._left -= len(take)
            if self._body is None:
                out.append(bytes(take))
            else:
                self._body += take
            if self._left == 0:
                self._finish(out)
        return out

    def _read_header(self, view: memoryview, out: list[bytes | Packet]) -> memoryview:
        """Consume fixed-header bytes; once the header is whole, start the body."""
        while view:
            self._head.append(view[0])
            view = view[1:]
            if len(self._head) == 1:
                continue
            if self._head[-1] & 0x80:
                if len(self._head) > 4:
                    raise MalformedPacket("remaining length longer than 4 bytes")
                continue
            self._kind = self._head[0] >> 4
            self._left = _varint(self._head[1:])
            self._in_body = True
            if self._kind in INSPECTED:
                if self._left > MAX_INSPECTED:
                    raise MalformedPacket(f"packet type {self._kind} of {self._left} bytes")
                self._body = bytearray()
            else:
                out.append(bytes(self._head))
                self._body = None
            if self._left == 0:
                self._finish(out)
            return view
        return view

    def _finish(self, out: list[bytes | Packet]) -> None:
        if self._body is not None:
            body = bytes(self._body)
            out.append(Packet(self._kind, bytes(self._head) + body, body))
        self._head = bytearray()
        self._body = None
        self._in_body = False


def _varint(data: bytes | bytearray) -> int:
    value = 0
    for shift, byte in enumerate(data):
        value |= (byte & 0x7F) << (7 * shift)
    return value


def _read_varint(body: bytes, at: int) -> tuple[int, int]:
    """(value, offset after it) of a variable byte integer at ``at``."""
    value = 0
    for shift in range(4):
        if at >= len(body):
            break
        byte = body[at]
        at += 1
        value |= (byte & 0x7F) << (7 * shift)
        if not byte & 0x80:
            return value, at
    raise MalformedPacket("bad variable byte integer")


def _read_string(body: bytes, at: int) -> tuple[str, int]:
    try:
        (length,) = struct.unpack_from("!H", body, at)
    except struct.error as err:
        raise MalformedPacket("string length cut short") from err
    end = at + 2 + length
    if end > len(body):
        raise MalformedPacket("string cut short")
    return body[at + 2 : end].decode("utf-8", errors="replace"), end


@dataclass(frozen=True)
class Connect:
    """What the front keeps of a CONNECT."""

    level: int
    """Protocol level: 4 = MQTT 3.1.1, 5 = MQTT 5 (3 = 3.1)."""
    client_id: str


def parse_connect(body: bytes) -> Connect:
    """The protocol level and client id of a CONNECT body."""
    _name, at = _read_string(body, 0)
    if at + 4 > len(body):
        raise MalformedPacket("CONNECT header cut short")
    level = body[at]
    at += 4  # level, flags, keep alive
    if level == MQTT5:
        length, at = _read_varint(body, at)
        at += length
    client_id, _ = _read_string(body, at)
    return Connect(level, client_id)


def subscribe_filters(body: bytes, level: int) -> list[str]:
    """The topic filters of a SUBSCRIBE body (``level``: the connection's protocol level)."""
    at = 2  # packet identifier
    if level == MQTT5:
        length, at = _read_varint(body, at)
        at += length
    filters: list[str] = []
    while at < len(body):
        topic, at = _read_string(body, at)
        at += 1  # requested QoS / subscription options
        filters.append(topic)
    if at != len(body) or not filters:
        raise MalformedPacket("SUBSCRIBE payload malformed")
    return filters


def filters_intersect(a: str, b: str) -> bool:
    """Could one topic match both filters ``a`` and ``b`` (MQTT ``+`` and ``#`` rules)?"""
    left, right = a.split("/"), b.split("/")
    for x, y in zip(left, right, strict=False):
        if "#" in (x, y):
            return True
        if x != y and "+" not in (x, y):
            return False
    shorter = min(len(left), len(right))
    rest = left[shorter:] or right[shorter:]
    return not rest or rest == ["#"]  # "a/#" also matches "a"


def suback(packet_id: int, codes: list[int], level: int) -> bytes:
    """A SUBACK packet (MQTT 5 adds an empty property length)."""
    body = struct.pack("!H", packet_id) + (b"\x00" if level == MQTT5 else b"") + bytes(codes)
    return bytes([0x90, len(body)]) + body


REFUSED: Final = 0x80
"""SUBACK return code "failure" (MQTT 3.1.1; also "unspecified error" in MQTT 5)."""


def only_requests(topic_filter: str, prefix: str) -> bool:
    """Could ``topic_filter`` deliver request topics but never a report topic? (X1 refuses
    those; ``#`` or ``device/#`` also match the reports and are granted.)"""
    return is_request_filter(topic_filter, prefix) and not filters_intersect(
        topic_filter, f"{prefix}device/+/report"
    )


def is_request_filter(topic_filter: str, prefix: str) -> bool:
    """Could ``topic_filter`` deliver a printer's request topic (``<prefix>device/<serial>/
    request``, any serial)? ``device/+/request``, ``device/#`` and ``#`` can; a report
    topic cannot."""
    return filters_intersect(topic_filter, f"{prefix}device/+/request")
