"""Resource limits for child processes (applied in the child, before it runs anything)."""

from __future__ import annotations

import resource
import shutil
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ProcessLimits:
    """RLIMIT_AS caps the address space (allocation fails beyond it); RLIMIT_CPU sends
    SIGXCPU, then SIGKILL, after that many CPU seconds; RLIMIT_CORE=0 keeps crashes from
    leaving core files in the job folder. Wall-clock time is limited by the caller."""

    memory_mb: int
    cpu_s: int

    def apply(self) -> None:
        """Set the limits on the calling process (the child)."""
        memory = self.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CPU, (self.cpu_s, self.cpu_s + 5))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    def preexec(self) -> Callable[[], None]:
        """For ``subprocess``'s ``preexec_fn`` (runs in the child between fork and exec)."""
        return self.apply

    def prlimit_prefix(self) -> list[str] | None:
        """``prlimit`` (util-linux) arguments that set the same limits, then exec the command;
        None where there is no ``prlimit``.

        A ``preexec_fn`` makes Python fork the whole (large) service process, and the child
        touches its copy-on-write pages before exec: ~20 ms for a 150 MB service. Without
        one, Python starts the child with vfork, and ``prlimit`` sets the limits itself.
        """
        binary = shutil.which("prlimit")
        if binary is None:
            return None
        memory = self.memory_mb * 1024 * 1024
        return [
            binary,
            f"--as={memory}:{memory}",
            f"--cpu={self.cpu_s}:{self.cpu_s + 5}",
            "--core=0:0",
            "--",
        ]
