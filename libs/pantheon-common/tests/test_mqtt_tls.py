"""MQTT helper over TLS with a password (as Bambu printers speak), and reconnect after a broker
restart, against a private Mosquitto started by the test on a free port."""

import os
import queue
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr

from pantheon_common.errors import BrokerUnavailable
from pantheon_common.mqtt import MqttClient, MqttMessage
from pantheon_common.settings import MqttSettings

pytestmark = pytest.mark.skipif(
    shutil.which("mosquitto") is None or shutil.which("openssl") is None,
    reason="mosquitto and openssl are installed by the harness (./farm test)",
)

SERIAL = "01P00A000000014"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Broker:
    """A private Mosquitto: TLS listener with a password file, and a plain one."""

    workdir: Path
    tls_port: int
    plain_port: int
    password: str
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["mosquitto", "-c", str(self.workdir / "mosquitto.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.plain_port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("private mosquitto did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    tmp_path.chmod(0o755)
    password = os.urandom(8).hex()
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem"),
            "-subj", f"/CN={SERIAL}", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    subprocess.run(
        ["mosquitto_passwd", "-c", "-b", str(tmp_path / "passwd"), "bblp", password],
        check=True,
        capture_output=True,
    )
    for f in ("key.pem", "cert.pem", "passwd"):
        (tmp_path / f).chmod(0o644)
    b = Broker(tmp_path, _free_port(), _free_port(), password)
    (tmp_path / "mosquitto.conf").write_text(
        f"""per_listener_settings true
user root
persistence false
listener {b.plain_port} 127.0.0.1
allow_anonymous true
listener {b.tls_port} 127.0.0.1
certfile {tmp_path}/cert.pem
keyfile {tmp_path}/key.pem
allow_anonymous false
password_file {tmp_path}/passwd
"""
    )
    b.start()
    yield b
    b.kill()


def _tls_settings(b: Broker, **changes: object) -> MqttSettings:
    base = MqttSettings(
        pantheon_env="dev",
        mqtt_host="127.0.0.1",
        mqtt_port=b.tls_port,
        mqtt_tls=True,
        mqtt_ca_file=b.workdir / "cert.pem",
        mqtt_username="bblp",
        mqtt_password=SecretStr(b.password),
    )
    return base.model_copy(update=changes)


def _round_trip(client: MqttClient) -> bytes:
    got: queue.Queue[MqttMessage] = queue.Queue()
    client.subscribe(f"device/{SERIAL}/report", got.put)
    client.publish(f"device/{SERIAL}/report", b'{"print":{"command":"push_status"}}')
    return got.get(timeout=5).payload


def test_tls_with_ca_and_password(broker: Broker) -> None:
    client = MqttClient(_tls_settings(broker), "tls-ok")
    client.start()
    try:
        client.wait_connected(5)
        assert b"push_status" in _round_trip(client)
    finally:
        client.stop()


def test_tls_insecure_opt_in(broker: Broker) -> None:
    client = MqttClient(
        _tls_settings(broker, mqtt_ca_file=None, mqtt_tls_insecure=True), "tls-insecure"
    )
    client.start()
    try:
        client.wait_connected(5)
    finally:
        client.stop()


def test_wrong_password_is_reported_as_such(broker: Broker) -> None:
    client = MqttClient(_tls_settings(broker, mqtt_password=SecretStr("wrong-code")), "tls-bad")
    client.start()
    try:
        with pytest.raises(BrokerUnavailable, match=r"[Nn]ot authori[sz]ed"):
            client.wait_connected(3)
    finally:
        client.stop()


def test_unverified_certificate_is_refused(broker: Broker) -> None:
    # no CA given and no insecure opt-in: the self-signed certificate must not be trusted
    client = MqttClient(_tls_settings(broker, mqtt_ca_file=None), "tls-untrusted")
    client.start()
    try:
        with pytest.raises(BrokerUnavailable):
            client.wait_connected(2)
    finally:
        client.stop()


def test_reconnects_and_resubscribes_after_broker_restart(broker: Broker) -> None:
    settings = MqttSettings(mqtt_host="127.0.0.1", mqtt_port=broker.plain_port)
    sub = MqttClient(settings, "restart-sub", min_reconnect_s=1, max_reconnect_s=1)
    pub = MqttClient(settings, "restart-pub", min_reconnect_s=1, max_reconnect_s=1)
    got: queue.Queue[MqttMessage] = queue.Queue()
    for c in (sub, pub):
        c.start()
        c.wait_connected(5)
    sub.subscribe("robot_arm/status", got.put)
    try:
        broker.kill()
        deadline = time.monotonic() + 5
        while sub.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not sub.connected
        broker.start()  # a fresh broker without persistence: the session is gone
        sub.wait_connected(15)
        pub.wait_connected(15)
        # the subscription was renewed by on_connect: give the SUBSCRIBE a moment to land
        deadline = time.monotonic() + 5
        while got.empty() and time.monotonic() < deadline:
            pub.publish("robot_arm/status", b'{"status": "available"}')
            time.sleep(0.2)
        assert got.get(timeout=1).payload == b'{"status": "available"}'
    finally:
        sub.stop()
        pub.stop()
