"""The daily homing: which day's slot is due now (recorded once per day, idempotently)."""

from datetime import UTC, datetime, time, timedelta
from typing import Final

CATCH_UP: Final = timedelta(hours=6)
"""A slot missed while the orchestrator was down is still recorded this long after it."""


def due_homing_slot(now: datetime, at: time, catch_up: timedelta = CATCH_UP) -> str | None:
    """The id of the daily homing slot due at ``now`` (``daily-2026-11-23``), or None.

    A slot is due from ``at`` (UTC) on its day until ``catch_up`` later; the caller records a
    task with this id (a duplicate insert means it was recorded already).
    """
    now = now.astimezone(UTC)
    for day in (now.date(), now.date() - timedelta(days=1)):
        slot = datetime.combine(day, at, tzinfo=UTC)
        if slot <= now < slot + catch_up:
            return f"daily-{day.isoformat()}"
    return None
