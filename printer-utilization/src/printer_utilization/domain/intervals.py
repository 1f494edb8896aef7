"""Turning samples into state intervals and print records (pure; the writer applies events).

Rules:
- A printer has at most one open interval. A sample in the same state extends it (``IntervalSeen``
  moves its ``last_seen_at``); a different state closes it at the sample's instant and opens the
  next one there, so consecutive intervals touch.
- A sample more than ``gap_s`` after the previous one (the poller was stopped, or could not run)
  first closes the open interval at the previous sample: the time in between has no data and
  reports count it as offline.
- Events carry the interval's ``started_at``, so applying one twice changes nothing (the spool
  may replay events after a crash, a restart may repeat what the database already holds).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from printer_utilization.domain.samples import PrintObservation, StatusSample
from printer_utilization.domain.states import UtilState


@dataclass(frozen=True)
class IntervalOpened:
    """Insert the interval ``(printer_id, started_at)`` (and close any older open one)."""

    printer_id: int
    state: UtilState
    started_at: datetime


@dataclass(frozen=True)
class IntervalClosed:
    """Set ``ended_at`` of the open interval ``(printer_id, started_at)``."""

    printer_id: int
    started_at: datetime
    ended_at: datetime


@dataclass(frozen=True)
class IntervalSeen:
    """The open interval ``(printer_id, started_at)`` still held at ``seen_at``."""

    printer_id: int
    started_at: datetime
    seen_at: datetime


@dataclass(frozen=True)
class PrintObserved:
    """Upsert the print record (start, and end/result once known)."""

    print: PrintObservation


Event = IntervalOpened | IntervalClosed | IntervalSeen | PrintObserved


@dataclass
class OpenInterval:
    """A printer's current interval as the tracker (and the database) holds it."""

    state: UtilState
    started_at: datetime
    last_seen_at: datetime


def _print_key(p: PrintObservation) -> tuple[str, datetime | None, str | None, float | None]:
    return (p.print_id, p.ended_at, p.result, p.filament_g)


class IntervalTracker:
    """Per printer: the open interval and the last print reported; emits events for changes."""

    def __init__(
        self, gap_s: float, open_intervals: Mapping[int, OpenInterval] | None = None
    ) -> None:
        if gap_s <= 0:
            raise ValueError("gap_s must be positive")
        self._gap_s = gap_s
        self._open: dict[int, OpenInterval] = dict(open_intervals or {})
        self._prints: dict[int, tuple[str, datetime | None, str | None, float | None]] = {}

    def resume(self, printer_id: int, interval: OpenInterval) -> None:
        """Continue an interval the database holds open (at start, before any sample)."""
        self._open.setdefault(printer_id, interval)

    def open_interval(self, printer_id: int) -> OpenInterval | None:
        """The printer's open interval, if any."""
        return self._open.get(printer_id)

    def known_print(self, printer_id: int) -> str | None:
        """Print id last reported for the printer."""
        key = self._prints.get(printer_id)
        return key[0] if key else None

    def observe(self, sample: StatusSample) -> list[Event]:
        """Events that record ``sample`` (empty when it is older than what was seen)."""
        events: list[Event] = []
        printer_id = sample.printer_id
        current = self._open.get(printer_id)
        if current is not None and sample.at <= current.last_seen_at:
            return events  # duplicate or out of order: the interval already covers it
        if current is not None and (sample.at - current.last_seen_at).total_seconds() > self._gap_s:
            events.append(IntervalClosed(printer_id, current.started_at, current.last_seen_at))
            current = None
        if current is not None and current.state == sample.state:
            current.last_seen_at = sample.at
            events.append(IntervalSeen(printer_id, current.started_at, sample.at))
        else:
            if current is not None:
                events.append(IntervalClosed(printer_id, current.started_at, sample.at))
            self._open[printer_id] = OpenInterval(sample.state, sample.at, sample.at)
            events.append(IntervalOpened(printer_id, sample.state, sample.at))
        observed = sample.current_print
        if observed is not None and self._prints.get(printer_id) != _print_key(observed):
            self._prints[printer_id] = _print_key(observed)
            events.append(PrintObserved(observed))
        return events
