"""The poller: every interval, ``GET /status`` of every printer-service concurrently."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter

from printer_utilization.domain.intervals import IntervalTracker
from printer_utilization.domain.ports import (
    EventSink,
    FilamentSource,
    StatusSource,
    StatusUnavailable,
    TargetSource,
)
from printer_utilization.domain.samples import StatusSample, parse_status, unreachable
from printer_utilization.domain.targets import PrinterTarget

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The wall clock, aware UTC."""
    return datetime.now(UTC)


class Poller:
    """Polls, turns answers into samples, samples into events, events into the buffer."""

    def __init__(
        self,
        targets: TargetSource,
        source: StatusSource,
        tracker: IntervalTracker,
        sink: EventSink,
        *,
        clock: Clock = utc_now,
        filament: FilamentSource | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._targets = targets
        self._source = source
        self._tracker = tracker
        self._sink = sink
        self._clock = clock
        self._filament = filament
        self._grams: OrderedDict[str, float | None] = OrderedDict()
        self._offline_reason: dict[int, str] = {}
        self.cycles = 0
        self.last_cycle_at: datetime | None = None
        self.known_printers: set[int] = set()
        self._polls = Counter(
            "utilization_polls",
            "GET /status calls by outcome (ok, unavailable).",
            ["outcome"],
            registry=registry,
        )

    async def poll_once(self, at: datetime | None = None) -> list[StatusSample]:
        """One cycle; every sample of the cycle carries the same instant (``at`` or now)."""
        targets = await asyncio.to_thread(self._targets.targets)
        at = at if at is not None else self._clock()
        samples = list(await asyncio.gather(*(self._sample(t, at) for t in targets)))
        events = []
        for sample in samples:
            enriched = await self._with_filament(sample)
            events.extend(self._tracker.observe(enriched))
        await asyncio.to_thread(self._sink.put, events)
        self.cycles += 1
        self.last_cycle_at = at
        self.known_printers |= {t.printer_id for t in targets}
        return samples

    async def run(self, interval_s: float, stop: asyncio.Event) -> None:
        """Poll every ``interval_s`` until ``stop`` is set; a failed cycle is logged, not fatal."""
        while not stop.is_set():
            started = time.monotonic()
            try:
                await self.poll_once()
            except Exception:  # the loop must survive anything one cycle meets
                log.exception("poll cycle failed")
            remaining = interval_s - (time.monotonic() - started)
            if remaining > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), remaining)

    async def _sample(self, target: PrinterTarget, at: datetime) -> StatusSample:
        try:
            body = await self._source.fetch(target)
        except StatusUnavailable as err:
            self._polls.labels("unavailable").inc()
            reason = str(err)
            if self._offline_reason.get(target.printer_id) != reason:
                log.warning(
                    "printer-service %s at %s: %s", target.printer_id, target.base_url, reason
                )
                self._offline_reason[target.printer_id] = reason
            return unreachable(target.printer_id, at, reason)
        self._polls.labels("ok").inc()
        if self._offline_reason.pop(target.printer_id, None) is not None:
            log.info("printer-service %s answers again", target.printer_id)
        return parse_status(target.printer_id, body, at)

    async def _with_filament(self, sample: StatusSample) -> StatusSample:
        observed = sample.current_print
        if observed is None or self._filament is None:
            return sample
        if observed.print_id not in self._grams:
            grams = await asyncio.to_thread(self._filament.grams, observed.file)
            self._grams[observed.print_id] = grams
            while len(self._grams) > 1000:
                self._grams.popitem(last=False)
        grams = self._grams[observed.print_id]
        if grams is None:
            return sample
        return StatusSample(
            sample.printer_id,
            sample.at,
            sample.state,
            sample.printer_state,
            sample.plate,
            observed.with_filament(grams),
            sample.reason,
        )
