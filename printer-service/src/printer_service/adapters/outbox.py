"""The background sender of the ``ready`` outbox (reliability.md F1/F7).

A finished print is first written to the MongoDB ``outbox`` (``_id`` = print id, so a FINISH
seen twice writes one entry); this thread publishes pending entries to RabbitMQ (persistent,
publisher confirms, ``message_id`` = print id) and marks each sent only after the confirm.
While the broker is away it retries with backoff, logging the outage once; when it is back,
each pending entry is sent once. A confirm lost in a broker crash may repeat a message with the
same ``message_id``: the consumer deduplicates on it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from pantheon_common.errors import BrokerUnavailable, PublishFailed, StoreUnavailable
from pantheon_common.log import OutageLog, backoff_delays
from pantheon_contracts.ready import format_ready_body
from printer_service.domain.ports import FarmStore

log = logging.getLogger(__name__)


class Publisher(Protocol):
    """The part of pantheon_common.amqp.AmqpPublisher the sender uses."""

    def publish(
        self,
        queue: str,
        body: bytes,
        *,
        message_id: str | None = None,
        content_type: str = "text/plain",
        timestamp: datetime | None = None,
    ) -> None: ...

    def close(self) -> None: ...


class OutboxSender:
    """Publishes pending outbox entries until stopped."""

    def __init__(
        self,
        store: FarmStore,
        publisher: Publisher,
        *,
        poll_s: float = 5.0,
        backoff_max_s: float = 15.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._poll_s = poll_s
        self._backoff_max_s = backoff_max_s
        self._clock = clock
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._broker = OutageLog(log, "RabbitMQ (ready outbox)")
        self._mongo = OutageLog(log, "MongoDB (ready outbox)")
        self.sent = 0
        self.pending = 0
        """Entries waiting at the last look (for /status and metrics)."""

    @property
    def broker_down(self) -> bool:
        return self._broker.down

    def wake(self) -> None:
        """Something was added: look now instead of at the next poll."""
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ready-outbox", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
        self._publisher.close()

    def _run(self) -> None:
        delays = backoff_delays(0.5, self._backoff_max_s)
        while not self._stop.is_set():
            if self.send_pending():
                delays = backoff_delays(0.5, self._backoff_max_s)
                wait = self._poll_s
            else:
                wait = next(delays)
            self._wake.wait(wait)
            self._wake.clear()

    def send_pending(self) -> bool:
        """Publish every pending entry once; False if the broker or the store failed."""
        try:
            entries = self._store.pending_outbox()
        except StoreUnavailable as err:
            self._mongo.failure(err)
            return False
        self._mongo.success()
        self.pending = len(entries)
        for entry in entries:
            if self._stop.is_set():
                return True
            try:
                self._publisher.publish(
                    entry.queue,
                    format_ready_body(entry.printer_id),
                    message_id=entry.id,
                    content_type="text/plain",
                    timestamp=entry.created_at,
                )
            except (BrokerUnavailable, PublishFailed) as err:
                self._broker.failure(err)
                with contextlib.suppress(StoreUnavailable):
                    self._store.outbox_failed(entry.id, str(err))
                return False
            self._broker.success()
            try:
                self._store.outbox_sent(entry.id, self._clock())
            except StoreUnavailable as err:
                # Published but not marked: it goes out again with the same message_id.
                self._mongo.failure(err)
                return False
            self.sent += 1
            self.pending -= 1
            log.info("ready %s published (print %s)", entry.printer_id, entry.id)
        return True
