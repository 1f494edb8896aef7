"""The writer thread: drains the buffer into MySQL, waits out outages with backoff."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter

from pantheon_common.errors import StoreUnavailable
from pantheon_common.log import OutageLog, backoff_delays
from printer_utilization.adapters.spool import EventBuffer
from printer_utilization.adapters.store import StoreRejected
from printer_utilization.domain.ports import EventStore

log = logging.getLogger(__name__)


class Writer:
    """Applies pending events in batches; a batch leaves the buffer only once committed."""

    def __init__(
        self,
        store: EventStore,
        buffer: EventBuffer,
        *,
        prepare: Callable[[], None] | None = None,
        batch_size: int = 500,
        idle_wait_s: float = 1.0,
        max_backoff_s: float = 10.0,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._store = store
        self._buffer = buffer
        self._prepare = prepare
        self._prepared = prepare is None
        self._batch_size = batch_size
        self._idle_wait_s = idle_wait_s
        self._max_backoff_s = max_backoff_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._outage = OutageLog(log, "MySQL")
        self.rejected = 0
        """Events MySQL refused as data (logged and dropped, never retried forever)."""
        self._written = Counter(
            "utilization_events_written", "Events committed to MySQL.", registry=registry
        )
        self._failures = Counter(
            "utilization_write_failures",
            "Write attempts that failed because MySQL was unavailable.",
            registry=registry,
        )

    @property
    def mysql_down(self) -> bool:
        """True between a failed write and the next good one."""
        return self._outage.down

    def start(self) -> None:
        """Start the thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="utilization-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask the thread to finish (one last drain attempt) and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def drain_once(self) -> int:
        """Apply one batch; the number of events applied. Raises StoreUnavailable."""
        if not self._prepared:
            assert self._prepare is not None
            self._prepare()
            self._prepared = True
        batch = self._buffer.peek(self._batch_size)
        if not batch:
            return 0
        try:
            self._store.apply([event for _, event in batch])
        except StoreRejected as err:
            log.warning("batch refused (%s); applying its events one by one", err)
            for seq, event in batch:
                try:
                    self._store.apply([event])
                except StoreRejected as one:
                    self.rejected += 1
                    log.error("dropping an event MySQL refuses: %s (%s)", event, one)
                self._buffer.ack([seq])
            self._written.inc(len(batch))
            return len(batch)
        self._buffer.ack(seq for seq, _ in batch)
        self._written.inc(len(batch))
        return len(batch)

    def _run(self) -> None:
        delays = backoff_delays(0.5, self._max_backoff_s)
        while True:
            stopping = self._stop.is_set()
            try:
                applied = self.drain_once()
            except StoreUnavailable as err:
                self._failures.inc()
                self._outage.failure(err)
                if stopping:
                    return
                self._stop.wait(next(delays))
                continue
            except Exception:  # never let the thread die: the buffer keeps everything
                log.exception("writer failed unexpectedly")
                if stopping:
                    return
                self._stop.wait(next(delays))
                continue
            self._outage.success()
            delays = backoff_delays(0.5, self._max_backoff_s)
            if applied:
                continue
            if stopping:
                return
            self._buffer.wait(self._idle_wait_s)
