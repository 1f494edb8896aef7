"""What the poller and writer need from the outside world (real adapters and test doubles)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from printer_utilization.domain.intervals import Event
from printer_utilization.domain.targets import PrinterTarget


class StatusUnavailable(Exception):
    """The printer-service gave no usable answer (the reason is the message)."""


class TargetSource(Protocol):
    """The printer-services to poll."""

    def targets(self) -> list[PrinterTarget]:
        """Current list (never raises; falls back to the last good one)."""
        ...


class StatusSource(Protocol):
    """``GET /status`` of one printer-service."""

    async def fetch(self, target: PrinterTarget) -> Mapping[str, Any]:
        """The body; raises StatusUnavailable when there is none."""
        ...


class FilamentSource(Protocol):
    """Filament weight of a G-code file."""

    def grams(self, file: str) -> float | None:
        """Grams, or None when unknown."""
        ...


class EventSink(Protocol):
    """Where the poller puts events (the durable buffer)."""

    def put(self, events: Iterable[Event]) -> None:
        """Queue events; durable when it returns."""
        ...


class EventStore(Protocol):
    """Where the writer applies events (MySQL)."""

    def apply(self, events: Sequence[Event]) -> None:
        """Apply in order in one transaction; StoreUnavailable / StoreRejected on failure."""
        ...
