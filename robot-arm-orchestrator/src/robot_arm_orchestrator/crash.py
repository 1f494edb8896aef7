"""Test-only crash points (reliability.md F4): SIGKILL the process at a named step."""

import logging
import os
import signal

log = logging.getLogger(__name__)


class CrashPoints:
    """Kills the process when a step named in ``ORCHESTRATOR_CRASHPOINT`` is reached.

    Empty in production. Several names may be given, separated by commas.
    """

    def __init__(self, configured: str) -> None:
        self._names = frozenset(n.strip() for n in configured.split(",") if n.strip())

    def reached(self, name: str) -> None:
        """SIGKILL ourselves if ``name`` is configured (exactly what ``kill -9`` does)."""
        if name in self._names:
            log.warning("crash point %s reached: SIGKILL", name)
            for handler in logging.getLogger().handlers:
                handler.flush()
            os.kill(os.getpid(), signal.SIGKILL)
