"""Fixtures: one in-process simulated farm per test session, real TLS MQTT and FTPS clients."""

import json
import queue
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from pantheon_contracts.printer import PrinterModel
from pantheon_sim.bambu.farm import BambuSimFarm, FarmConfig, PrinterEndpoint
from pantheon_sim.bambu.ftps_client import ImplicitFtpsClient, printer_tls_context
from pantheon_sim.bambu.printer import SimTiming

ACCESS_CODE = "12345678"
TIMING = SimTiming(
    speed=900.0,
    prepare_s=0.4,
    report_interval_s=0.1,
    idle_report_interval_s=0.5,
    cancel_error_s=0.5,
)
MODELS = {
    14: PrinterModel.P1S,
    15: PrinterModel.P1S,
    16: PrinterModel.P1S,
    17: PrinterModel.P1S,
    18: PrinterModel.P1S,
    19: PrinterModel.P1S,
    31: PrinterModel.X1C,
}
TLS13_HANGS = 19
"""Behind the P2S gate: every test client caps TLS at 1.2, so they all pass through it."""


@pytest.fixture(scope="session")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BambuSimFarm]:
    config = FarmConfig.for_ids(
        sorted(MODELS),
        models=MODELS,
        data_dir=tmp_path_factory.mktemp("bambu-sim"),
        access_code=ACCESS_CODE,
        mqtt_base=None,
        ftps_base=None,
        pasv_base=None,
        timing=TIMING,
        topic_prefix=f"test/{uuid.uuid4().hex[:8]}/",
        control_port=0,
        tls13_hangs=frozenset({TLS13_HANGS}),
    )
    with BambuSimFarm(config) as sim:
        yield sim


class PrinterClient:
    """A Bambu-style client: TLS 1.2 with the sim's CA, CN checked against the serial."""

    def __init__(self, ep: PrinterEndpoint, *, password: str | None = None) -> None:
        self.ep = ep
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self.log: list[dict[str, Any]] = []
        self.state: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []
        """The merged state after every push_status, oldest first."""
        self.connack: list[str] = []
        self._seq = 100
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"test-{uuid.uuid4().hex[:8]}",
            protocol=paho.MQTTv311,
        )
        self.client.tls_set_context(printer_tls_context(ep.ca_file))
        self.client.username_pw_set("bblp", ep.access_code if password is None else password)
        self.client.on_connect = lambda c, u, f, rc, p: self.connack.append(str(rc))
        self.client.on_message = self._on_message

    def _on_message(self, client: Any, userdata: Any, msg: paho.MQTTMessage) -> None:
        self.messages.put(json.loads(msg.payload))

    def connect(self, timeout: float = 10.0) -> "PrinterClient":
        self.client.connect(self.ep.host, self.ep.mqtt_port, keepalive=30)
        self.client.loop_start()
        deadline = time.monotonic() + timeout
        while not self.connack and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.connack, "no CONNACK"
        if self.connack[0] == "Success":
            sock = self.client.socket()
            assert isinstance(sock, ssl.SSLSocket)
            cert = sock.getpeercert()
            cn = dict(x[0] for x in cert["subject"])["commonName"]
            assert cn == self.ep.serial
            result, _mid = self.client.subscribe(self.ep.report_topic, qos=0)
            assert result == paho.MQTT_ERR_SUCCESS
            time.sleep(0.2)  # SUBACK: paho gives no blocking wait; the next read proves it
        return self

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def send(self, subsystem: str, command: str, **params: Any) -> str:
        self._seq += 1
        seq = str(self._seq)
        body = {"sequence_id": seq, "command": command, **params}
        self.client.publish(self.ep.request_topic, json.dumps({subsystem: body}), qos=1)
        return seq

    def next(self, timeout: float) -> dict[str, Any] | None:
        try:
            msg = self.messages.get(timeout=timeout)
        except queue.Empty:
            return None
        self.log.append(msg)
        body = msg.get("print")
        if isinstance(body, dict) and body.get("command") == "push_status":
            if body.get("msg") == 0:
                self.state = dict(body)
            else:
                self.state.update(body)
            self.history.append(dict(self.state))
        return msg

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            msg = self.next(min(left, 0.5))
            if msg is not None and predicate(msg):
                return msg
        raise AssertionError(f"no matching message in {timeout} s; state={self.state}")

    def reply_to(self, seq: str, command: str, timeout: float = 10.0) -> dict[str, Any]:
        msg = self.wait_for(
            lambda m: any(
                isinstance(b, dict) and b.get("sequence_id") == seq and b.get("command") == command
                for b in m.values()
            ),
            timeout,
        )
        return next(iter(msg.values()))

    def pushall(self) -> dict[str, Any]:
        self.send("pushing", "pushall", version=1, push_target=1)
        msg = self.wait_for(lambda m: m.get("print", {}).get("msg") == 0)
        return dict(msg["print"])

    def wait_state(self, gcode_state: str, timeout: float = 10.0) -> dict[str, Any]:
        self.wait_for(lambda m: self.state.get("gcode_state") == gcode_state, timeout)
        return self.state


@pytest.fixture
def connect(farm: BambuSimFarm) -> Iterator[Callable[..., PrinterClient]]:
    clients: list[PrinterClient] = []

    def make(printer_id: int, **kw: Any) -> PrinterClient:
        c = PrinterClient(farm.endpoint(printer_id), **kw)
        clients.append(c)
        return c.connect()

    yield make
    for c in clients:
        c.close()


@pytest.fixture
def ftps(farm: BambuSimFarm) -> Iterator[Callable[[int], ImplicitFtpsClient]]:
    opened: list[ImplicitFtpsClient] = []

    def make(printer_id: int) -> ImplicitFtpsClient:
        ep = farm.endpoint(printer_id)
        f = ImplicitFtpsClient(
            context=printer_tls_context(ep.ca_file), timeout=10, expected_serial=ep.serial
        )
        f.connect(ep.host, ep.ftps_port)
        f.login("bblp", ep.access_code)
        opened.append(f)
        return f

    yield make
    for f in opened:
        try:
            f.quit()
        except Exception:
            f.close()


@pytest.fixture
def reset(farm: BambuSimFarm) -> Callable[[int], None]:
    """Reset a printer between tests: no faults, clean plate, IDLE, connections kept."""

    def run(pid: int) -> None:
        farm.reset(pid, plate="clean", bed_id=800 + pid)

    return run
