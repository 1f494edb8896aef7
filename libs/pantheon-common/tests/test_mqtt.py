"""The MQTT helper against a real Mosquitto (own topic prefix per test)."""

import queue
from collections.abc import Iterator

import pytest

from pantheon_common.errors import BrokerUnavailable
from pantheon_common.mqtt import MqttClient, MqttMessage
from pantheon_common.settings import MqttSettings
from pantheon_contracts import ROBOT_JOB_TOPIC, ROBOT_STATUS_TOPIC, RobotJob, RobotStatus


@pytest.fixture
def settings(mqtt_endpoint: tuple[str, int], mqtt_prefix: str) -> MqttSettings:
    host, port = mqtt_endpoint
    return MqttSettings(mqtt_host=host, mqtt_port=port, mqtt_topic_prefix=mqtt_prefix)


@pytest.fixture
def client_pair(settings: MqttSettings) -> Iterator[tuple[MqttClient, MqttClient]]:
    a = MqttClient(settings, "test-a")
    b = MqttClient(settings, "test-b")
    a.start()
    b.start()
    a.wait_connected()
    b.wait_connected()
    yield a, b
    a.stop()
    b.stop()


def test_robot_job_round_trip_qos1(client_pair: tuple[MqttClient, MqttClient]) -> None:
    robot, orchestrator = client_pair
    got: queue.Queue[MqttMessage] = queue.Queue()
    robot.subscribe(ROBOT_JOB_TOPIC, got.put)
    # subscribing is asynchronous: publish until the first copy arrives
    job = RobotJob.take(14, 801, job_id="t-1")
    orchestrator.publish(ROBOT_JOB_TOPIC, job.to_json())
    message = got.get(timeout=5)
    assert message.topic == ROBOT_JOB_TOPIC  # the prefix is stripped
    assert message.qos == 1
    assert RobotJob.parse(message.payload) == job


def test_prefix_isolates(
    settings: MqttSettings, client_pair: tuple[MqttClient, MqttClient]
) -> None:
    a, _ = client_pair
    other = MqttClient(settings.model_copy(update={"mqtt_topic_prefix": "other/"}), "test-c")
    other.start()
    other.wait_connected()
    try:
        got: queue.Queue[MqttMessage] = queue.Queue()
        a.subscribe(ROBOT_STATUS_TOPIC, got.put)
        other.publish(ROBOT_STATUS_TOPIC, RobotStatus(status="busy").to_json())
        a.publish(ROBOT_STATUS_TOPIC, RobotStatus(status="available").to_json())
        assert RobotStatus.parse(got.get(timeout=5).payload).status == "available"
        assert got.empty()
    finally:
        other.stop()


def test_handler_exception_does_not_kill_client(client_pair: tuple[MqttClient, MqttClient]) -> None:
    a, b = client_pair
    got: queue.Queue[bytes] = queue.Queue()

    def handler(message: MqttMessage) -> None:
        if message.payload == b"bad":
            raise ValueError("bad payload")
        got.put(message.payload)

    a.subscribe("t/#", handler)
    b.publish("t/x", b"bad")
    b.publish("t/x", b"good")
    assert got.get(timeout=5) == b"good"


def test_publish_when_disconnected_refuses(settings: MqttSettings) -> None:
    client = MqttClient(settings.model_copy(update={"mqtt_port": 1}), "test-down")
    client.start()
    try:
        with pytest.raises(BrokerUnavailable):
            client.wait_connected(timeout_s=1)
        with pytest.raises(BrokerUnavailable):
            client.publish(ROBOT_JOB_TOPIC, RobotJob.homing().to_json())
    finally:
        client.stop()


def test_subscribe_returns_once_acknowledged_without_waiting_out_the_timeout(
    client_pair: tuple[MqttClient, MqttClient],
) -> None:
    """A SUBACK that arrives before subscribe() registered its waiter must still count."""
    import time

    a, _ = client_pair
    started = time.monotonic()
    for i in range(20):
        a.subscribe(f"fast/{i}", lambda _m: None, wait_s=5)
    assert time.monotonic() - started < 5  # one missed SUBACK alone would cost 5 s
