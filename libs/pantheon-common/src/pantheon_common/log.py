"""Structured logging: one JSON object per line in containers, plain text in a terminal.

Every line passes `RedactCredentials` first: credentials in URLs (``?access_token=...``,
``&api_key=...``, ``user:password@host``) are replaced with ``[REDACTED]`` before anything is
written, whichever logger wrote them (uvicorn's access log, httpx, our own).
"""

import json
import logging
import re
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message"}

REDACTED = "[REDACTED]"
CREDENTIAL_PARAMS = frozenset(
    {
        "access_token",
        "refresh_token",
        "id_token",
        "token",
        "api_key",
        "apikey",
        "key",
        "password",
        "passwd",
        "pwd",
        "pass",
        "secret",
        "client_secret",
        "auth",
        "authorization",
        "signature",
        "sig",
        "session",
        "sessionid",
        "code",
        "access_code",
    }
)
"""Query parameters whose value is a credential (compared lower-case, ``-`` read as ``_``)."""
_CREDENTIAL_PARTS = ("token", "password", "passwd", "secret", "api_key", "apikey", "access_code")
# A query string: from "?" to the first character that cannot be part of a URL in a log line.
_QUERY = re.compile(r"\?([^\s\"'<>`#]*)")
# user:password@ in a URL (amqp://user:pw@host, mysql+pymysql://u:p@h/db).
_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/:@\"']*):([^\s/@\"']*)@")


def is_credential_param(name: str) -> bool:
    """True when a query parameter called ``name`` (raw, maybe %-encoded) carries a secret."""
    normalised = unquote_plus(name).strip().lower().replace("-", "_")
    return (
        normalised in CREDENTIAL_PARAMS
        or normalised.endswith("_key")
        or any(part in normalised for part in _CREDENTIAL_PARTS)
    )


def _redact_query(match: re.Match[str]) -> str:
    pairs = re.split(r"([&;])", match.group(1))
    for i in range(0, len(pairs), 2):
        name, sep, _value = pairs[i].partition("=")
        if sep and is_credential_param(name):
            pairs[i] = f"{name}={REDACTED}"
    return "?" + "".join(pairs)


def redact(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced by ``[REDACTED]``."""
    if "?" in text:
        text = _QUERY.sub(_redact_query, text)
    if "@" in text:
        text = _USERINFO.sub(rf"\1:{REDACTED}@", text)
    return text


class RedactCredentials(logging.Filter):
    """Redacts each record with `redact` (installed on every handler `configure_logging` sets).

    String arguments are redacted in place, so formatters that read ``record.args`` (uvicorn's
    access formatter) keep working; if the formatted message still holds a secret (an argument
    that is an object, e.g. an ``httpx.URL``), the record carries the redacted text instead.
    String ``extra`` fields and the traceback text are redacted too.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {
                k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()
            }
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: the formatter reports it as usual
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        for key, value in list(record.__dict__.items()):
            if key not in _RESERVED and isinstance(value, str) and not key.startswith("_"):
                record.__dict__[key] = redact(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(_TRACEBACKS.formatException(record.exc_info))
        return True


_TRACEBACKS = logging.Formatter()


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
        if record.exc_text:  # set (and redacted) by RedactCredentials
            entry["exc"] = record.exc_text
        elif record.exc_info:
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
    handler.addFilter(RedactCredentials())
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
