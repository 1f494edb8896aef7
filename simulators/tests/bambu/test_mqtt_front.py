"""The printer's MQTT front on the wire: bytes a P1/A1 sends (or never sends), client
addresses behind the proxy, and the broker outage of the ``drop_mqtt`` fault."""

import socket
import ssl
import struct
import time
from collections.abc import Callable

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from pantheon_sim.bambu.farm import BambuSimFarm, PrinterEndpoint
from pantheon_sim.bambu.ftps_client import printer_tls_context

pytestmark = pytest.mark.integration


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


def _packet(first: int, body: bytes) -> bytes:
    assert len(body) < 128
    return bytes([first, len(body)]) + body


def _read_packet(tls: ssl.SSLSocket) -> bytes:
    """One whole MQTT packet from the broker (b"" when the connection closed first)."""
    head = tls.recv(2)
    if len(head) < 2:
        return b""
    body = b""
    while len(body) < head[1]:
        chunk = tls.recv(head[1] - len(body))
        if not chunk:
            return b""
        body += chunk
    return head + body


def _session(ep: PrinterEndpoint, client_id: str) -> ssl.SSLSocket:
    """A TLS 1.2 connection that has sent CONNECT (bblp + code) and read a CONNACK 0."""
    raw = socket.create_connection((ep.host, ep.mqtt_port), timeout=5)
    tls = printer_tls_context(ep.ca_file).wrap_socket(raw, server_hostname=ep.serial)
    flags = 0xC2  # user name, password, clean session
    body = _string("MQTT") + bytes([4, flags, 0, 30]) + _string(client_id)
    tls.sendall(_packet(0x10, body + _string("bblp") + _string(ep.access_code)))
    assert _read_packet(tls) == b"\x20\x02\x00\x00"
    return tls


def _subscribe(tls: ssl.SSLSocket, topic: str, packet_id: int = 1) -> bytes:
    """SUBSCRIBE ``topic`` at QoS 0; the broker's answer, or b"" when it closed instead."""
    tls.sendall(_packet(0x82, struct.pack("!H", packet_id) + _string(topic) + b"\x00"))
    try:
        return _read_packet(tls)
    except (ConnectionError, ssl.SSLError):
        return b""


def test_p1_closes_on_a_request_subscription_without_any_suback(farm: BambuSimFarm) -> None:
    """The bytes: after the SUBSCRIBE the next thing the client reads is the end of the
    connection, never a SUBACK (0x90)."""
    ep = farm.endpoint(16)
    with _session(ep, "raw-nosy") as tls:
        assert _subscribe(tls, ep.request_topic) == b""


def test_other_serials_report_topics_are_granted_and_stay_silent(farm: BambuSimFarm) -> None:
    ep = farm.endpoint(16)
    other = ep.report_topic.replace(ep.serial, "01P00A999999999")
    with _session(ep, "raw-other") as tls:
        assert _subscribe(tls, other) == b"\x90\x03\x00\x01\x00"  # granted, QoS 0
        tls.settimeout(1.5)
        with pytest.raises(TimeoutError):
            tls.recv(1)  # nothing is ever published there


def test_x1_answers_a_request_subscription_with_suback_0x80(farm: BambuSimFarm) -> None:
    ep = farm.endpoint(31)
    with _session(ep, "raw-x1") as tls:
        assert _subscribe(tls, ep.request_topic) == b"\x90\x03\x00\x01\x80"
        assert _subscribe(tls, ep.report_topic, packet_id=2) == b"\x90\x03\x00\x02\x00"


def test_client_ids_are_mapped_to_their_real_addresses(farm: BambuSimFarm) -> None:
    """mosquitto sees every client on the front's unix socket; the control API shows where
    each client id really comes from."""
    ep = farm.endpoint(16)
    with _session(ep, "where-am-i") as tls:
        host, port = tls.getsockname()[:2]
        status = farm.printer(16)
        assert status["mqtt_peers"]["where-am-i"] == f"{host}:{port}"
        deadline = time.monotonic() + 5
        while "where-am-i" not in farm.printer(16)["mqtt_clients"]:
            assert time.monotonic() < deadline, "the broker's notice of the client"
            time.sleep(0.05)
    deadline = time.monotonic() + 5
    while "where-am-i" in farm.printer(16)["mqtt_peers"]:
        assert time.monotonic() < deadline, "the peer forgotten after the client left"
        time.sleep(0.05)


def _wait(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_drop_mqtt_drops_every_client_and_refuses_them_while_offline(
    farm: BambuSimFarm,
) -> None:
    ep = farm.endpoint(18)
    events: list[str] = []
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id="outage", protocol=paho.MQTTv311)
    c.tls_set_context(printer_tls_context(ep.ca_file))
    c.username_pw_set("bblp", ep.access_code)
    c.on_connect = lambda cl, u, f, rc, p: events.append(f"connected {rc}")
    c.on_disconnect = lambda cl, u, f, rc, p: events.append("dropped")
    c.reconnect_delay_set(1, 1)
    c.connect(ep.host, ep.mqtt_port)
    c.loop_start()
    try:
        _wait(lambda: "connected Success" in events, "connected")
        farm.drop_mqtt(18, offline_s=2.0)
        _wait(lambda: "dropped" in events, "the client dropped")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((ep.host, ep.mqtt_port), timeout=2).close()
        _wait(lambda: events.count("connected Success") == 2, "back after offline_s")
    finally:
        c.disconnect()
        c.loop_stop()
    _wait(lambda: farm.printer(18)["mqtt_up"], "broker up again")
