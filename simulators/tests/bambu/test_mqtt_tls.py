"""A simulated printer's MQTT over real TLS: auth, certificates, pushall, full vs delta."""

import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from pantheon_sim.bambu.certs import ensure_ca
from pantheon_sim.bambu.farm import BambuSimFarm
from pantheon_sim.bambu.ftps_client import printer_tls_context
from pantheon_sim.bambu.tls_gate import TLS13, offered_versions

pytestmark = pytest.mark.integration

TLS13_HANGS = 19  # conftest.TLS13_HANGS: the printer behind the P2S gate


def test_pushall_gives_a_full_report_then_p1s_sends_deltas(
    connect: Callable[..., object], reset: Callable[[int], None]
) -> None:
    reset(14)
    client = connect(14)
    full = client.pushall()  # type: ignore[attr-defined]
    assert full["msg"] == 0
    assert full["gcode_state"] == "IDLE"
    assert full["stg_cur"] == 255
    assert isinstance(full["sequence_id"], str)
    assert {"mc_percent", "mc_remaining_time", "nozzle_temper", "hms", "print_error"} <= set(full)
    delta = client.wait_for(lambda m: m.get("print", {}).get("msg") == 1, timeout=5)  # type: ignore[attr-defined]
    assert "gcode_state" not in delta["print"]  # unchanged keys are left out
    assert int(delta["print"]["sequence_id"]) > int(full["sequence_id"])


def test_x1c_sends_full_reports_every_time(
    connect: Callable[..., object], reset: Callable[[int], None]
) -> None:
    reset(31)
    client = connect(31)
    full = client.pushall()  # type: ignore[attr-defined]
    assert full["stg_cur"] == -1
    for _ in range(2):
        msg = client.wait_for(lambda m: "print" in m, timeout=5)  # type: ignore[attr-defined]
        assert msg["print"]["msg"] == 0
        assert msg["print"]["gcode_state"] == "IDLE"


def test_reports_are_pretty_printed_json(farm: BambuSimFarm, reset: Callable[[int], None]) -> None:
    reset(15)
    ep = farm.endpoint(15)
    raw: list[bytes] = []
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id="raw-reader", protocol=paho.MQTTv311)
    c.tls_set_context(printer_tls_context(ep.ca_file))
    c.username_pw_set("bblp", ep.access_code)
    c.on_message = lambda cl, u, m: raw.append(m.payload)
    c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(ep.report_topic)
    c.connect(ep.host, ep.mqtt_port)
    c.loop_start()
    try:
        deadline = time.monotonic() + 5
        while not raw and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        c.disconnect()
        c.loop_stop()
    assert raw, "no report within 5 s"
    assert raw[0].startswith(b'{\n    "print": {\n        "command": "push_status"')


def test_wrong_access_code_is_not_authorized(connect: Callable[..., object]) -> None:
    client = connect(14, password="87654321")
    assert client.connack == ["Not authorized"]  # type: ignore[attr-defined]


def test_plain_tcp_gets_no_connack(farm: BambuSimFarm) -> None:
    ep = farm.endpoint(14)
    with socket.create_connection((ep.host, ep.mqtt_port), timeout=2) as s:
        # an MQTT 3.1.1 CONNECT in clear text: the TLS listener never answers with a CONNACK
        s.sendall(bytes.fromhex("101000044d5154540402003c0004746573740000"))
        s.settimeout(2)
        try:
            data = s.recv(16)
        except (TimeoutError, ConnectionResetError):
            data = b""
    assert not data.startswith(b"\x20")


def test_a_foreign_ca_is_refused(farm: BambuSimFarm, tmp_path: Path) -> None:
    other = ensure_ca(tmp_path / "other")
    ep = farm.endpoint(14)
    ctx = printer_tls_context(other.cert_file)
    with (
        socket.create_connection((ep.host, ep.mqtt_port), timeout=5) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        ctx.wrap_socket(raw)


def test_tls_is_capped_at_1_2(farm: BambuSimFarm) -> None:
    ep = farm.endpoint(14)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((ep.host, ep.mqtt_port), timeout=5) as raw,
        ctx.wrap_socket(raw) as tls,
    ):
        assert tls.version() == "TLSv1.2"
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    with (
        socket.create_connection((ep.host, ep.mqtt_port), timeout=5) as raw,
        pytest.raises(ssl.SSLError),
    ):
        ctx.wrap_socket(raw)


@pytest.mark.parametrize(
    ("printer_id", "topic", "dropped"),
    [
        (15, "device/{serial}/request", True),
        (15, "device/+/request", True),
        (15, "#", True),
        (31, "device/{serial}/request", False),
        (31, "device/+/request", False),
        (31, "#", False),
    ],
)
def test_subscribing_to_requests_drops_the_client_on_p1_not_on_x1(
    farm: BambuSimFarm, reset: Callable[[int], None], printer_id: int, topic: str, dropped: bool
) -> None:
    """Section 11.4: on P1/A1 a client that subscribes to a filter that could deliver a
    request topic loses its connection and never gets a SUBACK (a client that stops
    subscribing when dropped before the SUBACK then works); X1 refuses a subscription to
    request topics only (SUBACK 0x80) and grants ``#`` (which then delivers the printer's
    reports, OBA mqtt.md), keeping the client. A well-behaved client on the same printer keeps
    receiving reports either way."""
    reset(printer_id)
    ep = farm.endpoint(printer_id)
    topic_filter = topic if topic == "#" else ep.topic_prefix + topic.format(serial=ep.serial)
    dropped_before = farm.printer(printer_id)["request_subscribers_dropped"]

    def client(client_id: str) -> tuple[paho.Client, list[str], list[bytes]]:
        events: list[str] = []
        reports: list[bytes] = []
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311)
        c.tls_set_context(printer_tls_context(ep.ca_file))
        c.username_pw_set("bblp", ep.access_code)
        c.on_connect = lambda cl, u, f, rc, p: events.append("connected")
        c.on_disconnect = lambda cl, u, f, rc, p: events.append("disconnected")
        c.on_subscribe = lambda cl, u, mid, codes, p: events.append(f"suback {codes[0].value}")
        c.on_message = lambda cl, u, m: reports.append(m.payload)
        c.reconnect_delay_set(30, 30)  # a dropped client stays dropped during the test
        c.connect(ep.host, ep.mqtt_port)
        c.loop_start()
        return c, events, reports

    def wait(check: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, what
            time.sleep(0.05)

    good, good_events, reports = client(f"good-{printer_id}")
    nosy, events, nosy_reports = client(f"nosy {printer_id}")  # a client id with a space
    try:
        wait(lambda: "connected" in good_events and "connected" in events, "both connected")
        good.subscribe(ep.report_topic)
        nosy.subscribe(topic_filter)
        if dropped:
            wait(lambda: "disconnected" in events, "the nosy client dropped")
            time.sleep(0.3)
            assert not any(e.startswith("suback") for e in events), events  # never granted
            assert farm.printer(printer_id)["request_subscribers_dropped"] == dropped_before + 1
        else:
            wait(lambda: any(e.startswith("suback") for e in events), "the SUBACK")
            assert events[-1] == ("suback 0" if topic == "#" else "suback 128")
            time.sleep(1.0)
            assert "disconnected" not in events
            assert nosy.is_connected()
            if topic == "#":  # the printer's reports, and nothing of its requests
                wait(lambda: bool(nosy_reports), "a report through #")
                good.publish(ep.request_topic, b'{"pushing": {"command": "pushall"}}')
                time.sleep(0.5)
                assert all(b"pushing" not in r for r in nosy_reports)
        reports.clear()
        wait(lambda: bool(reports), "a report to the well-behaved client")
        assert "disconnected" not in good_events
    finally:
        for c in (good, nosy):
            c.disconnect()
            c.loop_stop()


def _client_hello(context: ssl.SSLContext) -> bytes:
    """The first TLS record a client with ``context`` sends."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="printer")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_client_hello_versions_are_read_from_the_record() -> None:
    default = ssl.create_default_context()
    capped = ssl.create_default_context()
    capped.maximum_version = ssl.TLSVersion.TLSv1_2
    offered, capped_offer = (offered_versions(_client_hello(c)) for c in (default, capped))
    assert offered is not None
    assert TLS13 in offered
    assert capped_offer is not None  # a whole ClientHello...
    assert TLS13 not in capped_offer  # ...that does not offer TLS 1.3
    assert offered_versions(b"\x10\x0c\x00\x04MQTT") is None  # plain MQTT CONNECT
    assert offered_versions(_client_hello(default)[:40]) is None  # cut short


def test_p2s_gate_never_answers_tls13_and_passes_tls12_through(farm: BambuSimFarm) -> None:
    """Protocol doc 2.2: the P2S firmware never answers a ClientHello offering TLS 1.3. A
    client that caps TLS at 1.2 (printer-service, these tests) talks to the broker as usual."""
    ep = farm.endpoint(TLS13_HANGS)
    held = farm.printer(TLS13_HANGS)["tls13_hellos_held"]
    offering_13 = printer_tls_context(ep.ca_file)
    offering_13.maximum_version = ssl.TLSVersion.TLSv1_3
    with (
        socket.create_connection((ep.host, ep.mqtt_port), timeout=1.5) as raw,
        pytest.raises(TimeoutError),
    ):
        offering_13.wrap_socket(raw, server_hostname=ep.serial)
    assert farm.printer(TLS13_HANGS)["tls13_hellos_held"] == held + 1

    capped = printer_tls_context(ep.ca_file)
    with (
        socket.create_connection((ep.host, ep.mqtt_port), timeout=5) as raw,
        capped.wrap_socket(raw, server_hostname=ep.serial) as tls,
    ):
        assert tls.version() == "TLSv1.2"
    assert farm.printer(TLS13_HANGS)["tls13_hellos_held"] == held + 1
    assert farm.printer(14)["tls13_hellos_held"] is None  # the other printers have no gate
