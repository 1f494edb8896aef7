"""RabbitMQ helper: durable queues with dead-lettering, confirmed publishes, manual-ack consumers.

pika does not reconnect by itself (reliability.md finding 4), so both the publisher and the
consumer own a reconnect loop with backoff that logs the first failure and the recovery.
Topology is declared on every (re)connect. pika objects are not thread-safe: use one
publisher or consumer per thread.
"""

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from pantheon_common.errors import BrokerUnavailable, PublishFailed
from pantheon_common.log import OutageLog, backoff_delays
from pantheon_contracts.names import (
    DEAD_LETTER_EXCHANGE,
    DEAD_LETTER_REASON_HEADER,
    dead_letter_queue,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

ORIGINAL_QUEUE_HEADER = "x-pantheon-original-queue"
DEAD_LETTERED_AT_HEADER = "x-pantheon-dead-lettered-at"
MAX_REASON_LENGTH = 500

_LINK_ERRORS = (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError, OSError)


class RejectMessage(Exception):
    """Raised by a handler: the message can never be processed; dead-letter it with ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RetryLater(Exception):
    """Raised by a handler: a dependency is down; requeue the message after ``delay_s``."""

    def __init__(self, reason: str, delay_s: float = 2.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay_s = delay_s


@dataclass(frozen=True)
class Delivery:
    """One message handed to a consumer's handler."""

    queue: str
    body: bytes
    message_id: str | None
    content_type: str | None
    timestamp: datetime | None
    headers: Mapping[str, Any]
    redelivered: bool


@dataclass(frozen=True)
class DeadLetter:
    """A message sitting in a dead-letter queue, with why it is there."""

    queue: str
    body: bytes
    reason: str
    message_id: str | None
    dead_lettered_at: str | None
    headers: Mapping[str, Any] = field(default_factory=dict)


def declare_queue(channel: BlockingChannel, queue: str) -> None:
    """Declare durable ``queue`` whose rejected messages go to ``<queue>.dlq`` via the DLX.

    A queue that already exists with other arguments makes RabbitMQ refuse the declaration
    (406 PRECONDITION_FAILED): drain and delete it once, then let this recreate it.
    """
    channel.exchange_declare(DEAD_LETTER_EXCHANGE, exchange_type="direct", durable=True)
    dlq = dead_letter_queue(queue)
    channel.queue_declare(dlq, durable=True)
    channel.queue_bind(dlq, DEAD_LETTER_EXCHANGE, routing_key=queue)
    channel.queue_declare(
        queue,
        durable=True,
        arguments={
            "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
            "x-dead-letter-routing-key": queue,
        },
    )


def _timestamp(props: pika.BasicProperties) -> datetime | None:
    return datetime.fromtimestamp(props.timestamp, UTC) if props.timestamp else None


class _Link:
    """One connection and confirm-mode channel, reopened with backoff when lost."""

    def __init__(self, url: str, name: str, queues: Iterable[str]) -> None:
        self._params = pika.URLParameters(url)
        self._params.client_properties = {"connection_name": name}
        self._queues = tuple(queues)
        self._outage = OutageLog(log, f"RabbitMQ ({name})")
        self.connection: pika.BlockingConnection | None = None
        self.channel: BlockingChannel | None = None

    def open(self, deadline: float | None, stop: threading.Event | None = None) -> BlockingChannel:
        """Return an open channel, reconnecting until ``deadline`` (monotonic) if needed."""
        if self.channel is not None and self.channel.is_open:
            return self.channel
        delays = backoff_delays()
        while True:
            try:
                self.connection = pika.BlockingConnection(self._params)
                channel = self.connection.channel()
                channel.confirm_delivery()
                for queue in self._queues:
                    declare_queue(channel, queue)
            except _LINK_ERRORS as err:
                self.close()
                self._outage.failure(err)
                delay = next(delays)
                if deadline is not None and time.monotonic() + delay > deadline:
                    raise BrokerUnavailable(f"RabbitMQ unreachable: {err}") from err
                if stop is not None:
                    if stop.wait(delay):
                        raise BrokerUnavailable("stopped while waiting for RabbitMQ") from err
                else:
                    time.sleep(delay)
                continue
            self._outage.success()
            self.channel = channel
            return channel

    def lost(self, err: BaseException) -> None:
        """The link broke: remember it and drop the connection."""
        self._outage.failure(err)
        self.close()

    def close(self) -> None:
        """Close quietly; the broker requeues anything unacked."""
        connection, self.connection, self.channel = self.connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except _LINK_ERRORS:
                log.debug("closing a broken AMQP connection failed", exc_info=True)


class AmqpPublisher:
    """Publishes persistent messages with publisher confirms, reconnecting as needed."""

    def __init__(
        self,
        url: str,
        queues: Iterable[str],
        *,
        connection_name: str = "pantheon-publisher",
        retry_for_s: float = 10.0,
    ) -> None:
        self._link = _Link(url, connection_name, queues)
        self._retry_for_s = retry_for_s
        self._lock = threading.Lock()

    def publish(
        self,
        queue: str,
        body: bytes,
        *,
        message_id: str | None = None,
        content_type: str = "text/plain",
        headers: Mapping[str, Any] | None = None,
        timestamp: datetime | None = None,
    ) -> None:
        """Publish to ``queue`` and return once RabbitMQ confirmed it is stored.

        Raises :class:`PublishFailed` when the broker refuses the message and
        :class:`BrokerUnavailable` when it cannot be reached within ``retry_for_s``. A confirm
        lost in a broker restart means the message may still have been stored: callers that
        must not lose a message keep it (outbox) and republish with the same ``message_id``.
        """
        stamp = timestamp or datetime.now(UTC)
        properties = pika.BasicProperties(
            delivery_mode=pika.DeliveryMode.Persistent,
            content_type=content_type,
            message_id=message_id,
            timestamp=int(stamp.timestamp()),
            headers=dict(headers) if headers else None,
        )
        deadline = time.monotonic() + self._retry_for_s
        with self._lock:
            while True:
                channel = self._link.open(deadline)
                try:
                    channel.basic_publish("", queue, body, properties=properties, mandatory=True)
                    return
                except pika.exceptions.UnroutableError as err:
                    raise PublishFailed(f"queue {queue!r} does not exist") from err
                except pika.exceptions.NackError as err:
                    raise PublishFailed(f"RabbitMQ refused the message for {queue!r}") from err
                except _LINK_ERRORS as err:
                    self._link.lost(err)
                    if time.monotonic() >= deadline:
                        raise BrokerUnavailable(f"RabbitMQ unreachable: {err}") from err

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._link.close()


Handler = Callable[[Delivery], None]


class AmqpConsumer:
    """Consumes one queue with manual acks; one bad message never stops it.

    The handler returns normally (ack), raises :class:`RejectMessage` (dead-letter with the
    reason), raises :class:`RetryLater` (requeue after a delay), or raises anything else
    (logged with its traceback, then dead-lettered with the error as reason). The ack is sent
    only after the handler returned, so a handler must record its work durably first.
    """

    def __init__(
        self,
        url: str,
        queue: str,
        handler: Handler,
        *,
        prefetch: int = 1,
        connection_name: str = "pantheon-consumer",
        poll_s: float = 0.2,
    ) -> None:
        self.queue = queue
        self._handler = handler
        self._prefetch = prefetch
        self._poll_s = poll_s
        self._link = _Link(url, connection_name, (queue,))
        self._stop = threading.Event()
        self.consuming = threading.Event()
        """Set while a consumer is registered with the broker (for tests and readiness)."""
        self.handled = 0
        self.dead_lettered = 0
        self.sessions = 0
        """How many times a consumer was registered (1 + reconnects)."""

    def stop(self) -> None:
        """Ask :meth:`run` to return (thread-safe); it does within ``poll_s``."""
        self._stop.set()

    def run(self) -> None:
        """Consume until :meth:`stop`, reconnecting and redeclaring after every broker loss."""
        while not self._stop.is_set():
            try:
                channel = self._link.open(None, self._stop)
            except BrokerUnavailable:
                break  # only raised here when stopped while waiting
            try:
                channel.basic_qos(prefetch_count=self._prefetch)
                channel.basic_consume(self.queue, self._on_message)
                self.sessions += 1
                self.consuming.set()
                connection = self._link.connection
                assert connection is not None
                while not self._stop.is_set():
                    connection.process_data_events(time_limit=self._poll_s)
            except _LINK_ERRORS as err:
                self.consuming.clear()
                self._link.lost(err)
        self.consuming.clear()
        self._link.close()

    def start_thread(self) -> threading.Thread:
        """Run :meth:`run` in a daemon thread and return it."""
        thread = threading.Thread(target=self.run, name=f"amqp-consumer-{self.queue}", daemon=True)
        thread.start()
        return thread

    def _on_message(
        self,
        channel: BlockingChannel,
        method: pika.spec.Basic.Deliver,
        props: pika.BasicProperties,
        body: bytes,
    ) -> None:
        delivery = Delivery(
            queue=self.queue,
            body=body,
            message_id=props.message_id,
            content_type=props.content_type,
            timestamp=_timestamp(props),
            headers=props.headers or {},
            redelivered=bool(method.redelivered),
        )
        tag = method.delivery_tag
        try:
            self._handler(delivery)
        except RejectMessage as reject:
            self._dead_letter(channel, tag, props, body, reject.reason)
        except RetryLater as retry:
            log.warning("requeueing a %s message in %.1f s: %s", self.queue, retry.delay_s, retry)
            connection = self._link.connection
            if connection is not None:
                connection.sleep(retry.delay_s)
            channel.basic_nack(tag, requeue=True)
        except Exception as err:
            log.exception("handler failed on a %s message; dead-lettering it", self.queue)
            self._dead_letter(
                channel, tag, props, body, f"handler error: {type(err).__name__}: {err}"
            )
        else:
            channel.basic_ack(tag)
            self.handled += 1

    def _dead_letter(
        self,
        channel: BlockingChannel,
        tag: int,
        props: pika.BasicProperties,
        body: bytes,
        reason: str,
    ) -> None:
        """Republish to the DLX with the reason (confirmed), then ack the original.

        If that publish is refused, fall back to a plain reject: the broker still
        dead-letters it through the queue's DLX (x-death reason ``rejected``).
        """
        reason = reason[:MAX_REASON_LENGTH]
        log.warning("dead-lettering a %s message: %s", self.queue, reason)
        headers = dict(props.headers or {})
        headers[DEAD_LETTER_REASON_HEADER] = reason
        headers[ORIGINAL_QUEUE_HEADER] = self.queue
        headers[DEAD_LETTERED_AT_HEADER] = datetime.now(UTC).isoformat()
        dl_props = pika.BasicProperties(
            delivery_mode=pika.DeliveryMode.Persistent,
            content_type=props.content_type,
            message_id=props.message_id,
            timestamp=props.timestamp,
            headers=headers,
        )
        try:
            channel.basic_publish(
                DEAD_LETTER_EXCHANGE, self.queue, body, properties=dl_props, mandatory=True
            )
        except (pika.exceptions.UnroutableError, pika.exceptions.NackError):
            log.exception("dead-letter publish refused; rejecting instead")
            channel.basic_nack(tag, requeue=False)
        else:
            channel.basic_ack(tag)
        self.dead_lettered += 1


def _with_channel(url: str, queue: str, fn: Callable[[BlockingChannel], T]) -> T:
    params = pika.URLParameters(url)
    try:
        connection = pika.BlockingConnection(params)
    except _LINK_ERRORS as err:
        raise BrokerUnavailable(f"RabbitMQ unreachable: {err}") from err
    try:
        channel = connection.channel()
        declare_queue(channel, queue)
        return fn(channel)
    except _LINK_ERRORS as err:
        raise BrokerUnavailable(f"RabbitMQ failed: {err}") from err
    finally:
        if connection.is_open:
            connection.close()


def peek_dead_letters(url: str, queue: str, limit: int = 100) -> list[DeadLetter]:
    """Read up to ``limit`` messages of ``<queue>.dlq`` without removing them."""

    def peek(channel: BlockingChannel) -> list[DeadLetter]:
        letters: list[DeadLetter] = []
        dlq = dead_letter_queue(queue)
        while len(letters) < limit:
            method, props, body = channel.basic_get(dlq, auto_ack=False)
            if method is None:
                break
            headers = props.headers or {}
            reason = headers.get(DEAD_LETTER_REASON_HEADER)
            if reason is None:  # rejected by the broker path: take x-death's reason
                deaths = headers.get("x-death") or [{}]
                reason = str(deaths[0].get("reason", "unknown"))
            letters.append(
                DeadLetter(
                    queue=queue,
                    body=body,
                    reason=str(reason),
                    message_id=props.message_id,
                    dead_lettered_at=headers.get(DEAD_LETTERED_AT_HEADER),
                    headers=headers,
                )
            )
        # Closing the channel without acks puts every message back, in order.
        return letters

    return _with_channel(url, queue, peek)


def queue_depth(url: str, queue: str) -> int:
    """Messages ready in ``queue`` (declares it, so a fresh broker reads 0)."""
    return _with_channel(
        url, queue, lambda ch: int(ch.queue_declare(queue, passive=True).method.message_count)
    )


def purge_queue(url: str, queue: str) -> int:
    """Drop every ready message of ``queue``; returns how many were dropped."""
    return _with_channel(url, queue, lambda ch: int(ch.queue_purge(queue).method.message_count))
