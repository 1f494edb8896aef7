"""Credentials never reach a log line: the redaction table, and uvicorn's real access log."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from pantheon_common.log import REDACTED, configure_logging, redact

SECRET = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXBheWxvYWQ.c2lnbmF0dXJl"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            f'127.0.0.1:5 - "GET /api/events?access_token={SECRET} HTTP/1.1" 200',
            f'127.0.0.1:5 - "GET /api/events?access_token={REDACTED} HTTP/1.1" 200',
        ),
        (
            f"GET /api/events?duration_s=5&access_token={SECRET}&x=1",
            f"GET /api/events?duration_s=5&access_token={REDACTED}&x=1",
        ),
        ("/a?token=t1;api_key=k2&key=k3", f"/a?token={REDACTED};api_key={REDACTED}&key={REDACTED}"),
        (
            "/a?password=p&Api-Key=k&shop_key=s",
            f"/a?password={REDACTED}&Api-Key={REDACTED}&shop_key={REDACTED}",
        ),
        ("/a?access%5Ftoken=t", f"/a?access%5Ftoken={REDACTED}"),  # %-encoded name
        ("/a?ACCESS_TOKEN=t#frag", f"/a?ACCESS_TOKEN={REDACTED}#frag"),
        (
            "/a?client_secret=s&refresh_token=r",
            f"/a?client_secret={REDACTED}&refresh_token={REDACTED}",
        ),
        (
            "amqp://pantheon:hunter2@127.0.0.1:5672/%2F",
            f"amqp://pantheon:{REDACTED}@127.0.0.1:5672/%2F",
        ),
        # nothing to hide: unchanged
        ("/api/utilization?group=day&printer_id=14", "/api/utilization?group=day&printer_id=14"),
        ("printer 14 is idle? yes", "printer 14 is idle? yes"),
        ("/a?token", "/a?token"),
    ],
)
def test_credentials_in_urls_are_redacted(line: str, expected: str) -> None:
    assert redact(line) == expected


UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Logging as a fresh service process has it (uvicorn run with ``log_config=None``): an
    earlier test's uvicorn may have given its loggers handlers, levels, ``propagate=False``."""
    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in UVICORN_LOGGERS)]
    saved = [(lg, lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    for lg in loggers[1:]:
        lg.handlers[:] = []
        lg.setLevel(logging.NOTSET)
        lg.propagate = True
    try:
        yield
    finally:
        for lg, handlers, level, propagate in saved:
            lg.handlers[:] = handlers
            lg.setLevel(level)
            lg.propagate = propagate


def _serve(app: FastAPI) -> tuple[uvicorn.Server, threading.Thread, int]:
    # As the services run it (pantheon-api, slicer-api): uvicorn's loggers go to our handler.
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    return server, thread, server.servers[0].sockets[0].getsockname()[1]


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_uvicorn_access_log_never_shows_a_query_token(
    fmt: str, capfd: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    app = FastAPI()

    @app.get("/api/events")
    def events(access_token: str = "") -> dict[str, int]:
        logging.getLogger("test").info("served /api/events?access_token=%s", access_token)
        return {"length": len(access_token)}

    configure_logging("test-service", "INFO", fmt)
    server, thread, port = _serve(app)
    try:
        url = f"http://127.0.0.1:{port}/api/events?duration_s=5&access_token={SECRET}"
        assert httpx.get(url, timeout=10).json() == {"length": len(SECRET)}
        # httpx logs the request URL itself (an httpx.URL object, not a string argument)
        logging.getLogger("httpx").info("HTTP Request: GET %s", httpx.URL(url))
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    logged = capfd.readouterr().err
    access = [line for line in logged.splitlines() if "GET /api/events" in line]
    assert access, logged  # the access line is there...
    assert f"access_token={REDACTED}" in access[0]
    assert "duration_s=5" in access[0]
    assert SECRET not in logged  # ...and the token is nowhere
    assert logged.count(REDACTED) >= 3
    if fmt == "json":
        assert all(json.loads(line)["service"] == "test-service" for line in logged.splitlines())
