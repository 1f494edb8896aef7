"""Fixtures: the engine (installed from Debian when missing), a fake pantheon-api, the service."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from pantheon_devtools.farm_run import wait_http
from slicer_api.__main__ import build
from slicer_api.adapters.engine import EngineMissing, ensure_engine
from slicer_api.settings import Settings

API_KEY = "shop-key-for-tests-0123456789"
UPLOAD_LIMIT = 1024 * 1024


@pytest.fixture(scope="session")
def engine_binary() -> str:
    """prusa-slicer, installed with apt-get (as root) when missing; a clear failure otherwise."""
    try:
        return ensure_engine("prusa-slicer", install=True)
    except EngineMissing as err:
        pytest.fail(f"the slicing engine is required: {err.reason}")


@dataclass
class FakePantheon:
    """A small HTTP server speaking pantheon-api's upload and job contract."""

    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture(scope="session")
def fake_pantheon() -> Iterator[FakePantheon]:
    """Records POST /api/files (multipart) and POST /api/jobs (JSON); checks X-API-Key."""
    state = FakePantheon(url="")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            state.requests.append(
                {
                    "path": self.path,
                    "api_key": self.headers.get("X-API-Key"),
                    "content_type": self.headers.get("Content-Type", ""),
                    "body": body,
                }
            )
            if self.headers.get("X-API-Key") != "pantheon-key-for-tests":
                self._answer(401, {"detail": "bad key"})
            elif self.path == "/api/files":
                self._answer(201, {"name": f"stored-{len(state.requests)}.gcode.3mf"})
            elif self.path == "/api/jobs":
                self._answer(201, {"id": "job-" + json.loads(body)["file"]})
            else:
                self._answer(404, {"detail": "no route"})

        def _answer(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@dataclass
class Service:
    """The running service: its URL and its job folder root."""

    url: str
    work_dir: Path
    store_dir: Path
    api_key: str = API_KEY
    upload_limit: int = UPLOAD_LIMIT

    def job_dirs(self) -> set[str]:
        """Job folders present now."""
        return {p.name for p in self.work_dir.iterdir()}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def service(
    engine_binary: str, fake_pantheon: FakePantheon, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    """slicer-api on a free loopback port (uvicorn in a thread), real engine, 1 MiB uploads."""
    work_dir = tmp_path_factory.mktemp("slicer-work")
    store_dir = tmp_path_factory.mktemp("farm-gcode-store")
    settings = Settings(
        pantheon_env="dev",
        slicer_api_keys=hashlib.sha256(API_KEY.encode()).hexdigest(),
        slicer_engine=engine_binary,
        slicer_work_dir=work_dir,
        slicer_gcode_store_dir=store_dir,
        slicer_max_upload_bytes=UPLOAD_LIMIT,
        pantheon_api_url=fake_pantheon.url,
        pantheon_api_key="pantheon-key-for-tests",
        price_material_per_kg="PLA=25,PETG=32",
    )
    app = build(settings)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/healthz", 20, "slicer-api")
    except RuntimeError as err:
        pytest.fail(str(err))
    yield Service(url, work_dir, store_dir)
    server.should_exit = True
    thread.join(15)
    shutil.rmtree(work_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def client(service: Service) -> Iterator[httpx.Client]:
    """Authenticated client of the service."""
    with httpx.Client(base_url=service.url, headers={"X-API-Key": API_KEY}, timeout=60) as c:
        yield c
