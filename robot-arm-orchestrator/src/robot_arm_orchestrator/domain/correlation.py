"""Correlating robot statuses with the one job in flight (architecture.md 3.2).

Every status gets a sequence number when it arrives. :meth:`Correlator.sent` records the last
sequence number seen before the job was published: anything at or below it (a retained or stale
``available``) can never complete the job.

- ``echo`` mode (the robot echoes ``job_id``, ``ROBOT_ECHOES_JOB_ID=true``): ``available`` with
  our ``job_id`` completes it, ``error`` with our ``job_id`` fails it; statuses naming another
  job are ignored. An ``error`` naming no job while ours is in flight also fails it (doubt).
  With a confirmation window (``confirm_s`` > 0), an ``available`` naming our job completes it
  only once ``confirm_s`` passed without a status naming our job as still running: the arm
  repeats its status while it moves (``busy`` + job_id every second or so), so an
  ``available`` that anyone can forge by copying the job_id off the bus is contradicted by the
  arm's next ``busy`` and never ends a motion that is still going on.
- ``adopt`` (echo mode, after a restart of the orchestrator with the job ``sent``): every
  status received since the restart counts; ``available`` naming our job (confirmed as above)
  completes it, ``busy`` naming it means it still runs, and ``available`` naming *another*
  job is doubt: the arm stands idle with another job as its last one, so ours is not proven.
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

    def __init__(self, *, echo: bool, confirm_s: float = 0.0) -> None:
        self.echo = echo
        self.confirm_s = confirm_s
        self._job_id: str | None = None
        self._after_seq = 0
        self._left_available = False
        self._adopted = False
        self._available_at: float | None = None
        self._verdict = PENDING
        self.contradicted = 0
        """How many ``available`` naming the job in flight were contradicted (forged)."""

    @property
    def job_id(self) -> str | None:
        """The job in flight, if any."""
        return self._job_id

    def sent(self, job_id: str, last_seq_seen: int) -> None:
        """A job is about to be published; statuses numbered ``<= last_seq_seen`` are older."""
        self._job_id = job_id
        self._after_seq = last_seq_seen
        self._left_available = False
        self._adopted = False
        self._available_at = None
        self._verdict = PENDING

    def adopt(self, job_id: str, last_seq_seen: int = 0) -> None:
        """After a restart: follow a job sent by the previous process (echo mode only).
        ``last_seq_seen``: statuses numbered at or below it were seen before the restart's
        adoption and are not evidence (0: everything received since the start counts)."""
        self.sent(job_id, last_seq_seen)
        self._adopted = True

    def clear(self) -> None:
        """No job in flight any more."""
        self._job_id = None
        self._adopted = False
        self._available_at = None
        self._verdict = PENDING

    def status(self, status: RobotStatus, seq: int, now: float = 0.0) -> Verdict:
        """Feed one status (in arrival order) received at ``now`` (monotonic seconds); returns
        the verdict so far (final once not pending: later statuses do not change it)."""
        if self._job_id is None or self._verdict.outcome is not Outcome.PENDING:
            return self._verdict
        if seq <= self._after_seq:
            return PENDING  # received before the job was sent: stale or retained
        state = status.state
        if self.echo:
            self._verdict = self._echo(status, state, now)
        else:
            self._verdict = self._transition(status, state)
        return self._verdict

    def tick(self, now: float) -> Verdict:
        """The verdict at ``now``: an uncontradicted ``available`` is confirmed once
        ``confirm_s`` has passed."""
        if (
            self._job_id is not None
            and self._verdict.outcome is Outcome.PENDING
            and self._available_at is not None
            and now - self._available_at >= self.confirm_s
        ):
            self._verdict = Verdict(
                Outcome.DONE,
                "robot available with our job id"
                + (f", not contradicted for {self.confirm_s:g} s" if self.confirm_s else ""),
            )
        return self._verdict

    def _echo(self, status: RobotStatus, state: RobotState, now: float) -> Verdict:
        if status.job_id is None:
            if state is RobotState.ERROR:
                return Verdict(Outcome.ERROR, _error_text(status, "robot error (no job id)"))
            return PENDING
        if status.job_id != self._job_id:
            if self._adopted and state is RobotState.AVAILABLE:
                return Verdict(
                    Outcome.ERROR,
                    f"after the restart the robot is available with job {status.job_id} as "
                    f"its last one, not {self._job_id}: it is not proven that {self._job_id} "
                    "ran",
                )
            return PENDING
        if state is RobotState.AVAILABLE:
            if self._available_at is None:
                self._available_at = now
            return self.tick(now)
        if state is RobotState.ERROR:
            return Verdict(Outcome.ERROR, _error_text(status, "robot error"))
        if self._available_at is not None:
            # The arm says it is still running our job after an "available" naming it: that
            # available was not the arm's (forged or stale). Wait for the real one.
            self._available_at = None
            self.contradicted += 1
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
