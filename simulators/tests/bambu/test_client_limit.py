"""A printer's MQTT client cap (protocol doc 2.4, 11.3): refuse the newcomer, or drop the oldest."""

import time
from collections.abc import Callable, Iterator

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from pantheon_sim.bambu.farm import BambuSimFarm, FarmConfig
from pantheon_sim.bambu.ftps_client import printer_tls_context
from pantheon_sim.bambu.mqtt_endpoint import _connected_id, _says_gone
from pantheon_sim.bambu.printer import SimTiming

ACCESS_CODE = "97531864"
TIMING = SimTiming(speed=900.0, prepare_s=0.4, report_interval_s=0.1, idle_report_interval_s=0.5)


@pytest.mark.parametrize(
    ("line", "client_id"),
    [
        ("New client connected from 127.0.0.1:50312 as ps-14 (p2, c1, k60, u'bblp').", "ps-14"),
        ("New client connected from 127.0.0.1:5 as a b (c) (p2, c1, k60, u'bblp').", "a b (c)"),
        ("New client connected from /tmp/x.sock:0 as bambu-sim-1 (p2, c1, k30).", "bambu-sim-1"),
    ],
)
def test_connected_client_ids_are_read_from_the_notice(line: str, client_id: str) -> None:
    assert _connected_id(line) == client_id


@pytest.mark.parametrize(
    ("line", "gone"),
    [
        ("Client ps-14 disconnected.", True),
        ("Client ps-14 closed its connection.", True),
        ("Client ps-14 has exceeded timeout, disconnecting.", True),
        ("Client ps-14 already connected, closing old connection.", True),
        ("Client ps-14 disconnected due to protocol error.", True),
        ("Client ps-14 disconnected: connection reset.", True),
        ("Bad socket read/write on client ps-14: Connection reset by peer", False),
        ("Client ps-140 disconnected.", False),  # another client
        ("New client connected from 127.0.0.1:1 as ps-14 (p2, c1, k60, u'bblp').", False),
    ],
)
def test_a_client_gone_is_read_from_the_notice(line: str, gone: bool) -> None:
    assert _says_gone(line, "ps-14") is gone


@pytest.fixture(scope="module")
def evicting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BambuSimFarm]:
    config = FarmConfig.for_ids(
        [14],
        data_dir=tmp_path_factory.mktemp("bambu-sim-evict"),
        access_code=ACCESS_CODE,
        mqtt_base=None,
        ftps_base=None,
        pasv_base=None,
        timing=TIMING,
        topic_prefix="evict/",
        control_port=None,
        client_limit="drop_oldest",
    )
    with BambuSimFarm(config) as farm:
        yield farm


def _wait(check: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _client(
    farm: BambuSimFarm, client_id: str, events: list[str], printer_id: int = 14
) -> paho.Client:
    ep = farm.endpoint(printer_id)
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311)
    c.tls_set_context(printer_tls_context(ep.ca_file))
    c.username_pw_set("bblp", ep.access_code)
    c.on_connect = lambda cl, u, f, rc, p: events.append(f"{client_id} connected {rc}")
    c.on_disconnect = lambda cl, u, f, rc, p: events.append(f"{client_id} dropped")
    c.reconnect_delay_set(30, 30)  # a dropped client stays away during the test
    try:
        c.connect(ep.host, ep.mqtt_port)
    except OSError:  # closed by the broker during the TLS handshake: refused
        events.append(f"{client_id} refused")
        return c
    c.loop_start()
    return c


@pytest.mark.integration
def test_past_the_cap_the_oldest_client_is_dropped(evicting: BambuSimFarm) -> None:
    """P1S: 4 clients. A fifth gets in and the first one loses its connection."""
    events: list[str] = []
    clients: list[paho.Client] = []
    try:
        for n in range(4):
            clients.append(_client(evicting, f"tool-{n}", events))
            _wait(lambda n=n: f"tool-{n} connected Success" in events, f"tool-{n} connected")
        _wait(lambda: len(evicting.printer(14)["mqtt_clients"]) == 4, "4 clients seen")
        clients.append(_client(evicting, "newcomer", events))
        _wait(lambda: "newcomer connected Success" in events, "the newcomer let in")
        _wait(lambda: "tool-0 dropped" in events, "the oldest dropped")
        remaining = ["tool-1", "tool-2", "tool-3", "newcomer"]
        _wait(lambda: evicting.printer(14)["mqtt_clients"] == remaining, "the oldest gone")
        assert not any(e.endswith("dropped") and not e.startswith("tool-0") for e in events)
    finally:
        for c in clients:
            c.disconnect()
            c.loop_stop()
    _wait(lambda: evicting.printer(14)["mqtt_clients"] == [], "every client gone")


@pytest.mark.integration
def test_by_default_the_newcomer_is_refused(farm: BambuSimFarm) -> None:
    """The session farm refuses past the cap (mosquitto max_connections): nobody is dropped."""
    events: list[str] = []
    clients: list[paho.Client] = []
    try:
        for n in range(4):
            clients.append(_client(farm, f"cap-{n}", events, printer_id=17))
            _wait(lambda n=n: f"cap-{n} connected Success" in events, f"cap-{n} connected")
        clients.append(_client(farm, "cap-late", events, printer_id=17))
        time.sleep(2.0)
        assert "cap-late connected Success" not in events  # refused, or dropped unanswered
        assert [e for e in events if e.endswith("dropped") and not e.startswith("cap-late")] == []
        assert sorted(farm.printer(17)["mqtt_clients"]) == [f"cap-{n}" for n in range(4)]
    finally:
        for c in clients:
            c.disconnect()
            c.loop_stop()
