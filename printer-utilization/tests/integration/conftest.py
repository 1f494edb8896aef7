"""Test parts for the integration tests: a scripted /status server, a TCP proxy, the store."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from pantheon_common.sockets import pump
from printer_utilization.adapters.db import make_engine
from printer_utilization.adapters.migrate import upgrade
from printer_utilization.adapters.store import MysqlStore

TOKEN = "test-service-token-0123"

StatusScript = Callable[[int], dict[str, Any] | None]
"""printer id -> /status body, or None to answer 503."""


class StatusServer:
    """A real HTTP server speaking printer-service's ``GET /status`` contract (token checked).

    ``GET /p/<id>/status`` answers what ``script(id)`` returns at that moment.
    """

    def __init__(self, token: str) -> None:
        self.token = token
        self.script: StatusScript = lambda _: None
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests += 1
                parts = self.path.strip("/").split("/")
                if len(parts) != 3 or parts[0] != "p" or parts[2] != "status":
                    self._send(404, {"detail": "not found"})
                    return
                if self.headers.get("Authorization") != f"Bearer {outer.token}":
                    self._send(401, {"detail": "service token required"})
                    return
                body = outer.script(int(parts[1]))
                if body is None:
                    self._send(503, {"detail": "scripted outage"})
                else:
                    self._send(200, body)

            def _send(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, printer_id: int) -> str:
        return f"http://127.0.0.1:{self.port}/p/{printer_id}"

    @property
    def template(self) -> str:
        return f"http://127.0.0.1:{self.port}/p/{{id}}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class TcpProxy:
    """A TCP forwarder to ``target`` on a fixed local port that can be stopped and restarted.

    Stopping closes the listener and every forwarded connection, so the client sees MySQL
    refuse and drop connections without the shared server being touched.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, []
        if listener is not None:
            listener.close()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=pump, args=(a, b), daemon=True).start()


@pytest.fixture
def status_server() -> Iterator[StatusServer]:
    server = StatusServer(TOKEN)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def store(mysql_url: str) -> Iterator[MysqlStore]:
    """A migrated store on the test's own database."""
    engine = make_engine(mysql_url)
    upgrade(engine)
    try:
        yield MysqlStore(engine)
    finally:
        engine.dispose()
