"""What the panel needs from the outside world, as protocols (fakes in the unit tests)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["AuditSink", "CommandResult", "HostHealth", "QueuePurger", "RemoteHosts"]


@dataclass(frozen=True, slots=True)
class CommandResult:
    """Outcome of one remote command."""

    exit_status: int
    stdout: str
    stderr: str
    duration_s: float
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class HostHealth:
    """Whether a host answers over SSH, and how fast."""

    host: str
    address: str
    port: int
    reachable: bool
    host_key_ok: bool | None
    latency_ms: float | None
    error: str | None = None


class RemoteHosts(Protocol):
    """Runs allow-listed commands on configured hosts."""

    def run(self, host: str, command: str) -> CommandResult:
        """Run ``command`` on ``host`` and wait for it (bounded by the host's timeout)."""
        ...

    def stream(self, host: str, command: str, max_duration_s: float) -> Iterator[str]:
        """Yield ``command``'s output lines for at most ``max_duration_s`` seconds."""
        ...

    def probe(self, host: str) -> HostHealth:
        """Connect (or reuse the connection) and measure one round trip; never raises."""
        ...


class QueuePurger(Protocol):
    """Drops every ready message of a work queue."""

    def purge(self, queue: str) -> int:
        """Purge ``queue``; return how many messages were dropped."""
        ...


class AuditSink(Protocol):
    """Where every action is recorded, with who asked."""

    def record(
        self, *, user: str, role: str, action: str, target: str, outcome: str, **details: Any
    ) -> None:
        """Append one audit record."""
        ...
