"""When to ask a Bambu printer for reports, and when to give up on a silent connection.

bambu-lan-protocol.md 2.5 and 4.10: ``pushall`` on connect, on UNKNOWN and after a reconnect,
never more often than every 3 s, and on P1/A1 otherwise at most every 5 min (it lags the
printer). A printer that goes quiet gets ``pushing.start`` (at most every 15 s, as Studio);
after 60 s of silence the connection is torn down and rebuilt.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pantheon_contracts.printer import FULL_REPORT_MODELS, PrinterModel

PUSHALL_MIN_INTERVAL_S = 3.0
"""Never more often than this (Studio REQUEST_PUSH_MIN_TIME)."""
PUSHALL_DELTA_MODEL_INTERVAL_S = 300.0
"""P1/A1: at most this often except on connect/UNKNOWN/reconnect (OBA warning)."""
PUSH_START_MIN_INTERVAL_S = 15.0
"""pushing.start at most this often (Studio REQUEST_START_MIN_TIME)."""


class PushallReason(StrEnum):
    """Why a full report is wanted."""

    CONNECT = "connect"
    """A fresh connection (also after a reconnect)."""
    UNKNOWN = "unknown"
    """A delta arrived before any full report."""
    SILENCE = "silence"
    """The printer has been quiet."""


_FORCED = frozenset({PushallReason.CONNECT, PushallReason.UNKNOWN})


@dataclass
class PushallPolicy:
    """Rate limit of ``pushing.pushall`` for one printer; times are monotonic seconds."""

    model: PrinterModel
    last_sent: float | None = None

    def allowed(self, reason: PushallReason, now: float) -> bool:
        """May a pushall be sent now for ``reason``?"""
        if self.last_sent is None:
            return True
        elapsed = now - self.last_sent
        if elapsed < PUSHALL_MIN_INTERVAL_S:
            return False
        if reason in _FORCED or self.model in FULL_REPORT_MODELS:
            return True
        return elapsed >= PUSHALL_DELTA_MODEL_INTERVAL_S

    def sent(self, now: float) -> None:
        """Record a pushall sent at ``now``."""
        self.last_sent = now


class SilenceAction(StrEnum):
    """What the watchdog wants done."""

    NONE = "none"
    PUSH_START = "push_start"
    """Send pushing.start (and a pushall if the policy allows)."""
    RECONNECT = "reconnect"
    """Tear the connection down and build a new one."""


@dataclass
class SilenceWatchdog:
    """Decides on silence; ``silence_timeout_s`` is 60 s on the farm, seconds in tests."""

    silence_timeout_s: float = 60.0
    push_start_after_s: float = 20.0
    push_start_min_interval_s: float = PUSH_START_MIN_INTERVAL_S
    last_push_start: float | None = None

    def check(self, now: float, last_message: float) -> SilenceAction:
        """The action due at ``now`` given the time of the last message (or the connect)."""
        quiet = now - last_message
        if quiet >= self.silence_timeout_s:
            return SilenceAction.RECONNECT
        if quiet >= self.push_start_after_s and (
            self.last_push_start is None
            or now - self.last_push_start >= self.push_start_min_interval_s
        ):
            return SilenceAction.PUSH_START
        return SilenceAction.NONE

    def push_started(self, now: float) -> None:
        """Record a pushing.start sent at ``now``."""
        self.last_push_start = now
