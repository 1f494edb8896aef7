"""Reading a status command's answer: running since when, stopped, or unknown."""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

__all__ = ["ServiceState", "StatusReading", "interpret_status", "parse_since"]

_FRACTION = re.compile(r"(\.\d{6})\d+")  # docker prints nanoseconds; datetime keeps micro
_MAX_DETAIL = 300


class ServiceState(StrEnum):
    """State of a managed service as its status command reports it."""

    RUNNING = "running"
    STOPPED = "stopped"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class StatusReading:
    """What a status command said."""

    state: ServiceState
    since: datetime | None = None
    detail: str | None = None


def parse_since(text: str) -> datetime | None:
    """A start time printed as epoch seconds or ISO 8601 (UTC assumed without offset)."""
    value = text.strip()
    if not value:
        return None
    try:
        epoch = float(value)
    except ValueError:
        pass
    else:
        if 0 < epoch < 2**33:
            return datetime.fromtimestamp(epoch, tz=UTC)
        return None
    try:
        parsed = datetime.fromisoformat(_FRACTION.sub(r"\1", value))
    except ValueError:
        return None
    if parsed.year < 1971:  # docker prints 0001-01-01 for a container that never started
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def interpret_status(
    exit_status: int, stdout: str, stderr: str, stopped_exit_codes: Collection[int]
) -> StatusReading:
    """Exit 0 = running (first line: since), a stopped code = stopped, else unknown."""
    if exit_status == 0:
        first = next((line for line in stdout.splitlines() if line.strip()), "")
        return StatusReading(ServiceState.RUNNING, since=parse_since(first))
    if exit_status in stopped_exit_codes:
        return StatusReading(ServiceState.STOPPED)
    detail = (stderr.strip() or stdout.strip())[-_MAX_DETAIL:]
    return StatusReading(
        ServiceState.UNKNOWN,
        detail=f"status command exited {exit_status}" + (f": {detail}" if detail else ""),
    )
