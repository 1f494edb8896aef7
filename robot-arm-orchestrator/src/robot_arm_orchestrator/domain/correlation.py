"""Correlating robot statuses with the one job in flight (architecture.md 3.2).

Every status gets a sequence number when it arrives. :meth:`Correlator.sent` records the last
sequence number seen before the job was published: anything at or below it (a retained or stale
``available``) can never complete the job.

- ``echo`` mode (the robot echoes ``job_id``, ``ROBOT_ECHOES_JOB_ID=true``): ``available`` with
  our ``job_id`` completes it, ``error`` with our ``job_id`` fails it; statuses naming another
  job are ignored. An ``error`` naming no job while ours is in flight also fails it (doubt).
- transition mode (the real robot): the robot must first leave ``available`` (``busy`` or any
  other non-error state) and then come back to ``available``. A bare ``available`` that is
  not preceded by a departure after the send completes nothing.
"""

from dataclasses import dataclass
from enum import StrEnum

from pantheon_contracts.robot import RobotState, RobotStatus


class Outcome(StrEnum):
    """What the statuses say about the job in flight."""

    PENDING = "pending"
    DONE = "done"
    ERROR = "error"


@dataclass(frozen=True)
class Verdict:
    """An outcome with the reason (kept in the task log)."""

    outcome: Outcome
    reason: str = ""


PENDING = Verdict(Outcome.PENDING)


class Correlator:
    """Follows one job at a time; pure (no clock, no I/O)."""

    def __init__(self, *, echo: bool) -> None:
        self.echo = echo
        self._job_id: str | None = None
        self._after_seq = 0
        self._left_available = False
        self._verdict = PENDING

    @property
    def job_id(self) -> str | None:
        """The job in flight, if any."""
        return self._job_id

    def sent(self, job_id: str, last_seq_seen: int) -> None:
        """A job is about to be published; statuses numbered ``<= last_seq_seen`` are older."""
        self._job_id = job_id
        self._after_seq = last_seq_seen
        self._left_available = False
        self._verdict = PENDING

    def clear(self) -> None:
        """No job in flight any more."""
        self._job_id = None
        self._verdict = PENDING

    def status(self, status: RobotStatus, seq: int) -> Verdict:
        """Feed one status (in arrival order); returns the verdict so far (final once not
        pending: later statuses do not change it)."""
        if self._job_id is None or self._verdict.outcome is not Outcome.PENDING:
            return self._verdict
        if seq <= self._after_seq:
            return PENDING  # received before the job was sent: stale or retained
        state = status.state
        if self.echo:
            self._verdict = self._echo(status, state)
        else:
            self._verdict = self._transition(status, state)
        return self._verdict

    def _echo(self, status: RobotStatus, state: RobotState) -> Verdict:
        if status.job_id is None:
            if state is RobotState.ERROR:
                return Verdict(Outcome.ERROR, _error_text(status, "robot error (no job id)"))
            return PENDING
        if status.job_id != self._job_id:
            return PENDING
        if state is RobotState.AVAILABLE:
            return Verdict(Outcome.DONE, "robot available with our job id")
        if state is RobotState.ERROR:
            return Verdict(Outcome.ERROR, _error_text(status, "robot error"))
        return PENDING

    def _transition(self, status: RobotStatus, state: RobotState) -> Verdict:
        if state is RobotState.ERROR:
            return Verdict(Outcome.ERROR, _error_text(status, "robot error"))
        if state is RobotState.AVAILABLE:
            if self._left_available:
                return Verdict(Outcome.DONE, "robot left available and came back")
            return PENDING
        self._left_available = True  # busy, or any other state that is not available
        return PENDING


def _error_text(status: RobotStatus, prefix: str) -> str:
    return f"{prefix}: {status.reason}" if status.reason else prefix
