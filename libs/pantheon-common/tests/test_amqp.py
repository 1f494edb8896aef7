"""The RabbitMQ helper against a real broker (own vhost per test)."""

import queue
import subprocess
import sys
import time
from collections.abc import Iterator
from urllib.parse import unquote, urlsplit

import pika
import pytest

from pantheon_common.amqp import (
    AmqpConsumer,
    AmqpPublisher,
    Delivery,
    RejectMessage,
    peek_dead_letters,
    purge_queue,
    queue_depth,
)
from pantheon_common.errors import BrokerUnavailable
from pantheon_contracts import READY_QUEUE, ContractError, ReadyNotification, format_ready_body


def _wait_for(predicate: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture
def publisher(amqp_url: str) -> Iterator[AmqpPublisher]:
    pub = AmqpPublisher(amqp_url, [READY_QUEUE], connection_name="test-publisher")
    yield pub
    pub.close()


def _ready_consumer(amqp_url: str, seen: "queue.Queue[ReadyNotification]") -> AmqpConsumer:
    def handle(delivery: Delivery) -> None:
        try:
            note = ReadyNotification.from_delivery(delivery.body, delivery.message_id)
        except ContractError as err:
            raise RejectMessage(err.reason) from err
        seen.put(note)

    return AmqpConsumer(amqp_url, READY_QUEUE, handle, prefetch=1, connection_name="test-consumer")


def test_publish_is_persistent_with_message_id(amqp_url: str, publisher: AmqpPublisher) -> None:
    publisher.publish(READY_QUEUE, format_ready_body(14), message_id="print-1")
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        method, props, body = connection.channel().basic_get(READY_QUEUE, auto_ack=True)
    finally:
        connection.close()
    assert method is not None
    assert body == b"14"
    assert props.message_id == "print-1"
    assert props.delivery_mode == 2
    assert props.content_type == "text/plain"
    assert props.timestamp is not None


def test_malformed_ready_is_dead_lettered_and_consumer_goes_on(
    amqp_url: str, publisher: AmqpPublisher
) -> None:
    """Acceptance: a malformed body lands in ready.dlq with its reason; the next one is served."""
    for body, mid in [(b"14.0", "bad-1"), (b"", "bad-2"), (b"\xff\xfe", "bad-3"), (b"14", "ok-1")]:
        publisher.publish(READY_QUEUE, body, message_id=mid)
    seen: queue.Queue[ReadyNotification] = queue.Queue()
    consumer = _ready_consumer(amqp_url, seen)
    thread = consumer.start_thread()
    try:
        note = seen.get(timeout=15)
        assert (note.printer_id, note.print_id) == (14, "ok-1")
        _wait_for(lambda: consumer.dead_lettered == 3)
    finally:
        consumer.stop()
        thread.join(5)
    letters = peek_dead_letters(amqp_url, READY_QUEUE)
    reasons = {letter.message_id: letter.reason for letter in letters}
    assert set(reasons) == {"bad-1", "bad-2", "bad-3"}
    assert "not a printer id" in reasons["bad-1"]
    assert "empty" in reasons["bad-2"]
    assert "UTF-8" in reasons["bad-3"]
    assert queue_depth(amqp_url, READY_QUEUE) == 0
    # peeking does not consume: the dead letters are still there for an operator
    assert len(peek_dead_letters(amqp_url, READY_QUEUE)) == 3


def test_handler_crash_is_dead_lettered_not_fatal(amqp_url: str, publisher: AmqpPublisher) -> None:
    calls: list[bytes] = []

    def handle(delivery: Delivery) -> None:
        calls.append(delivery.body)
        if delivery.body == b"boom":
            raise RuntimeError("database exploded")

    publisher.publish(READY_QUEUE, b"boom")
    publisher.publish(READY_QUEUE, b"15")
    consumer = AmqpConsumer(amqp_url, READY_QUEUE, handle)
    thread = consumer.start_thread()
    try:
        _wait_for(lambda: calls == [b"boom", b"15"] and consumer.handled == 1)
    finally:
        consumer.stop()
        thread.join(5)
    [letter] = peek_dead_letters(amqp_url, READY_QUEUE)
    assert letter.reason == "handler error: RuntimeError: database exploded"


_STUCK_CONSUMER = """
import sys, time
from pantheon_common.amqp import AmqpConsumer

def handle(delivery):
    print("got", delivery.message_id, flush=True)
    time.sleep(60)  # killed here, before the ack

AmqpConsumer(sys.argv[1], "ready", handle).run()
"""


def test_unacked_work_is_redelivered_after_consumer_is_killed(
    amqp_url: str, publisher: AmqpPublisher
) -> None:
    """Ack only after the handler returned: a consumer killed mid-work loses nothing."""
    publisher.publish(READY_QUEUE, b"21", message_id="p-21")
    proc = subprocess.Popen(
        [sys.executable, "-c", _STUCK_CONSUMER, amqp_url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().split() == ["got", "p-21"]
    finally:
        proc.kill()
        proc.wait(10)
    seen: queue.Queue[ReadyNotification] = queue.Queue()
    consumer = _ready_consumer(amqp_url, seen)
    thread = consumer.start_thread()
    try:
        note = seen.get(timeout=15)
    finally:
        consumer.stop()
        thread.join(5)
    assert (note.printer_id, note.print_id) == (21, "p-21")


def test_purge_reports_count(amqp_url: str, publisher: AmqpPublisher) -> None:
    for i in range(5):
        publisher.publish(READY_QUEUE, str(11 + i).encode())
    assert queue_depth(amqp_url, READY_QUEUE) == 5
    assert purge_queue(amqp_url, READY_QUEUE) == 5
    assert queue_depth(amqp_url, READY_QUEUE) == 0


def test_unreachable_broker_raises_own_error() -> None:
    pub = AmqpPublisher(
        "amqp://nobody:nothing@127.0.0.1:1/%2F?connection_attempts=1&socket_timeout=1",
        [READY_QUEUE],
        retry_for_s=1.0,
    )
    with pytest.raises(BrokerUnavailable):
        pub.publish(READY_QUEUE, b"14")


def test_consumer_and_publisher_survive_forced_disconnect(
    amqp_url: str, publisher: AmqpPublisher
) -> None:
    """Broker-side connection loss (as in a broker restart): both sides reconnect by themselves."""
    vhost = unquote(urlsplit(amqp_url).path.lstrip("/"))
    seen: queue.Queue[ReadyNotification] = queue.Queue()
    consumer = _ready_consumer(amqp_url, seen)
    thread = consumer.start_thread()
    try:
        publisher.publish(READY_QUEUE, b"11", message_id="before")
        assert seen.get(timeout=10).print_id == "before"
        subprocess.run(
            ["rabbitmqctl", "-q", "close_all_connections", "-p", vhost, "test: forced"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        _wait_for(lambda: consumer.sessions >= 2, timeout_s=15)
        publisher.publish(READY_QUEUE, b"12", message_id="after")
        assert seen.get(timeout=20).print_id == "after"
    finally:
        consumer.stop()
        thread.join(5)
