"""The MQTT front's packet reading, without sockets: splitting, CONNECT, SUBSCRIBE, filters."""

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pantheon_sim.bambu.mqtt_packets import (
    CONNECT,
    SUBSCRIBE,
    MalformedPacket,
    Packet,
    PacketScanner,
    filters_intersect,
    is_request_filter,
    only_requests,
    parse_connect,
    suback,
    subscribe_filters,
)


def _packet(kind: int, body: bytes, flags: int = 0) -> bytes:
    length, encoded = len(body), bytearray()
    while True:
        byte, length = length % 128, length // 128
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            return bytes([kind << 4 | flags, *encoded]) + body


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


def _connect(client_id: str, level: int = 4) -> bytes:
    properties = b"\x00" if level == 5 else b""
    return _packet(
        CONNECT, _string("MQTT") + bytes([level, 0xC2, 0, 30]) + properties + _string(client_id)
    )


def _subscribe(*filters: str, level: int = 4) -> bytes:
    body = b"\x00\x07" + (b"\x00" if level == 5 else b"")
    body += b"".join(_string(f) + b"\x00" for f in filters)
    return _packet(SUBSCRIBE, body, flags=2)


PUBLISH = _packet(3, _string("device/S/request") + b'{"pushing": {"command": "pushall"}}' * 300)
PINGREQ = _packet(12, b"")


@given(cuts=st.lists(st.integers(1, 64), min_size=1, max_size=200))
def test_any_split_of_the_stream_gives_back_the_same_bytes_and_whole_packets(
    cuts: list[int],
) -> None:
    stream = _connect("ha-bambulab-1") + PUBLISH + PINGREQ + _subscribe("device/S/report") + PINGREQ
    scanner, out, at = PacketScanner(), [], 0
    for size in cuts * (len(stream) // sum(cuts) + 1):
        out += scanner.feed(stream[at : at + size])
        at += size
        if at >= len(stream):
            break
    assert b"".join(o.raw if isinstance(o, Packet) else o for o in out) == stream
    assert [o.kind for o in out if isinstance(o, Packet)] == [CONNECT, SUBSCRIBE]


def test_a_publish_streams_through_before_it_is_whole() -> None:
    scanner = PacketScanner()
    out = scanner.feed(PUBLISH[:100])
    assert b"".join(o for o in out if isinstance(o, bytes)) == PUBLISH[:100]


@pytest.mark.parametrize("level", [4, 5])
def test_connect_and_subscribe_are_read(level: int) -> None:
    [connect, subscribe] = PacketScanner().feed(
        _connect("bambuddy_01P_1 2", level) + _subscribe("device/S/report", "#", level=level)
    )
    assert isinstance(connect, Packet)
    assert isinstance(subscribe, Packet)
    assert parse_connect(connect.body).client_id == "bambuddy_01P_1 2"
    assert parse_connect(connect.body).level == level
    assert subscribe_filters(subscribe.body, level) == ["device/S/report", "#"]


@pytest.mark.parametrize(
    "stream",
    [bytes([0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]), _packet(SUBSCRIBE, b"\x00" * 70_000, 2)],
    ids=["5-byte-length", "huge-subscribe"],
)
def test_malformed_streams_are_refused(stream: bytes) -> None:
    with pytest.raises(MalformedPacket):
        PacketScanner().feed(stream)


def test_a_subscribe_without_filters_is_malformed() -> None:
    with pytest.raises(MalformedPacket):
        subscribe_filters(b"\x00\x01", 4)


@pytest.mark.parametrize(
    ("topic_filter", "delivers_requests"),
    [
        ("pfx/device/01P00A000000014/request", True),
        ("pfx/device/OTHER/request", True),  # any serial's request topic
        ("pfx/device/+/request", True),
        ("pfx/device/+/+", True),
        ("pfx/device/#", True),
        ("pfx/#", True),
        ("#", True),
        ("+/device/+/request", True),
        ("pfx/device/01P00A000000014/report", False),
        ("pfx/device/+/report", False),
        ("pfx/device/01P00A000000014/request/x", False),
        ("other/#", False),
        ("device/+/request", False),  # without the prefix: another farm's topics
    ],
)
def test_request_filters(topic_filter: str, delivers_requests: bool) -> None:
    assert is_request_filter(topic_filter, "pfx/") is delivers_requests


@pytest.mark.parametrize(
    ("a", "b", "meet"),
    [("a/#", "a", True), ("a/+", "a", False), ("+/+", "a/b", True), ("a/b", "a/c", False)],
)
def test_filters_intersect(a: str, b: str, meet: bool) -> None:
    assert filters_intersect(a, b) is meet
    assert filters_intersect(b, a) is meet


@pytest.mark.parametrize(
    ("topic_filter", "refused"),
    [
        ("pfx/device/S/request", True),
        ("pfx/device/+/request", True),
        ("+/device/+/request", True),
        ("#", False),  # also the reports: granted (OBA: "wildcard subscriptions with #")
        ("pfx/device/#", False),
        ("pfx/device/+/+", False),
        ("pfx/device/S/report", False),
    ],
)
def test_x1_refuses_filters_that_can_only_deliver_requests(
    topic_filter: str, refused: bool
) -> None:
    assert only_requests(topic_filter, "pfx/") is refused


@pytest.mark.parametrize(
    ("level", "packet"),
    [(4, b"\x90\x04\x00\x07\x80\x80"), (5, b"\x90\x05\x00\x07\x00\x80\x80")],
)
def test_suback(level: int, packet: bytes) -> None:
    assert suback(7, [0x80, 0x80], level) == packet
