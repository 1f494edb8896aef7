"""One observation of one printer: what ``GET /status`` of its printer-service said."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from pantheon_contracts import PrinterState
from printer_utilization.domain.states import PlateState, UtilState, classify


@dataclass(frozen=True)
class PrintObservation:
    """A print as ``/status`` ``current_print`` describes it (kept after it ends)."""

    print_id: str
    printer_id: int
    file: str
    started_at: datetime
    ended_at: datetime | None = None
    result: str | None = None
    """``finished`` or ``failed`` once ended."""
    job_id: str | None = None
    filament_g: float | None = None
    """Grams of filament of the file, when the G-code metadata knows it."""

    @property
    def duration_s(self) -> float | None:
        """Seconds from start to end, once ended."""
        if self.ended_at is None:
            return None
        return max(0.0, (self.ended_at - self.started_at).total_seconds())

    def with_filament(self, grams: float | None) -> PrintObservation:
        """The same print with its filament weight."""
        return replace(self, filament_g=grams)


@dataclass(frozen=True)
class StatusSample:
    """The state of one printer at one instant (``at`` is aware UTC)."""

    printer_id: int
    at: datetime
    state: UtilState
    printer_state: PrinterState | None = None
    """None when the printer-service did not answer."""
    plate: PlateState = PlateState.UNKNOWN
    current_print: PrintObservation | None = None
    reason: str | None = None
    """Why the sample is offline, when it is (``unreachable: ...``, ``HTTP 401``)."""


def unreachable(printer_id: int, at: datetime, reason: str) -> StatusSample:
    """The sample of a printer-service that did not answer: offline."""
    return StatusSample(printer_id, at, classify(None), reason=reason)


def parse_status(printer_id: int, body: Mapping[str, Any], at: datetime) -> StatusSample:
    """Read a printer-service ``/status`` body; anything unreadable degrades to unknown."""
    state = _printer_state(body.get("state"))
    plate = _plate(body)
    return StatusSample(
        printer_id=printer_id,
        at=at,
        state=classify(state, plate),
        printer_state=state,
        plate=plate,
        current_print=_current_print(printer_id, body.get("current_print")),
    )


def _printer_state(value: object) -> PrinterState:
    try:
        return PrinterState(str(value).strip().lower())
    except ValueError:
        return PrinterState.UNKNOWN


def _plate(body: Mapping[str, Any]) -> PlateState:
    if "bed" not in body:
        return PlateState.UNKNOWN
    bed = body["bed"]
    if bed is None:
        return PlateState.NONE
    if not isinstance(bed, Mapping):
        return PlateState.UNKNOWN
    try:
        return PlateState(str(bed.get("state")))
    except ValueError:
        return PlateState.UNKNOWN


def parse_time(value: object) -> datetime | None:
    """An ISO 8601 timestamp as aware UTC (naive values are taken as UTC), or None."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _current_print(printer_id: int, value: object) -> PrintObservation | None:
    if not isinstance(value, Mapping):
        return None
    print_id = value.get("print_id")
    started_at = parse_time(value.get("started_at"))
    if not isinstance(print_id, str) or not print_id or started_at is None:
        return None
    result = value.get("result")
    job_id = value.get("job_id")
    return PrintObservation(
        print_id=print_id,
        printer_id=printer_id,
        file=str(value.get("file") or ""),
        started_at=started_at,
        ended_at=parse_time(value.get("ended_at")),
        result=str(result) if result else None,
        job_id=str(job_id) if job_id else None,
    )
