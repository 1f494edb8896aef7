"""Structured logging: one JSON object per line in containers, plain text in a terminal."""

import json
import logging
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line; ``extra={...}`` keys become fields."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    """Configure the root logger once, from ``main()``; safe to call again (replaces handlers)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)s {service} %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # pika and paho are chatty at INFO about every reconnect attempt; we log transitions.
    logging.getLogger("pika").setLevel(logging.WARNING)


class OutageLog:
    """Logs a link's first failure and its recovery, not every retry (style habit 8)."""

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self._logger = logger
        self._what = what
        self._down_since: float | None = None
        self.failures = 0

    @property
    def down(self) -> bool:
        """True between a failure and the next success."""
        return self._down_since is not None

    def failure(self, err: BaseException) -> None:
        """Record a failed attempt; only the first of a run is logged (as a warning)."""
        self.failures += 1
        if self._down_since is None:
            self._down_since = time.monotonic()
            self._logger.warning("%s unavailable: %s", self._what, err)

    def success(self) -> None:
        """Record a working link; logs the recovery if it was down."""
        if self._down_since is not None:
            outage = time.monotonic() - self._down_since
            self._logger.info(
                "%s back after %.1f s (%d failed attempts)", self._what, outage, self.failures
            )
            self._down_since = None
            self.failures = 0


def backoff_delays(
    initial: float = 0.5, maximum: float = 10.0, factor: float = 2.0
) -> Iterator[float]:
    """Endless generator of retry delays: initial, initial*factor, ... capped at maximum."""
    delay = initial
    while True:
        yield delay
        delay = min(maximum, delay * factor)
