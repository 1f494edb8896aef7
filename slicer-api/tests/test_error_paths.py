"""No error answered to a client shows a server path (work dir, temp dir, the checkout, the
engine's location); the reason stays readable with relative names.

Regression: a STEP the engine could not read answered
``the STEP file cannot be read: /tmp/.../slicer-work0/job-x/input.step: ...``.
Each error path is provoked for real: the real engine on bad models, and a service whose engine
fails the way an engine does (naming the files it was given), then disappears.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn

from pantheon_devtools.farm_run import wait_http
from slicer_api import testing as models
from slicer_api.__main__ import build
from slicer_api.errors import EngineFailed, without_paths
from slicer_api.settings import Settings

Service = Any  # conftest.Service
API_KEY = "shop-key-for-tests-0123456789"  # conftest.API_KEY
REPO = Path(__file__).resolve().parents[2]
CUBE = models.stl_binary(models.box((20, 20, 20)))


def _components(*roots: Path | str) -> set[str]:
    found: set[str] = set()
    for root in roots:
        for path in {Path(root), Path(root).resolve()}:
            found.update(p for p in path.parts if p not in ("/", ""))
    return found


def assert_no_server_path(text: str, *roots: Path | str) -> None:
    """No '/' followed by a component of the server's paths; no absolute path at all."""
    for component in _components(tempfile.gettempdir(), REPO, sys.prefix, *roots):
        assert f"/{component}" not in text, f"server path component {component!r} in {text}"
    assert not re.search(r"(?<![\w:/.])/(?:tmp|work|var|usr|home|root|etc|opt)/", text), text


@pytest.mark.parametrize(
    ("text", "public"),
    [
        (
            "the STEP file cannot be read: /tmp/p/slicer-work0/job-ab1/input.step: bad header",
            "the STEP file cannot be read: input.step: bad header",
        ),
        ("prlimit: failed to execute /usr/bin/prusa-slicer: No such file", "prlimit: failed to "
         "execute prusa-slicer: No such file"),
        ('error "/var/lib/slicer/job-1/model.stl" (open)', 'error "model.stl" (open)'),
        # no paths: unchanged (URLs, ratios, units)
        ("pantheon-api failed: http://127.0.0.1:9/api/files", "pantheon-api failed: "
         "http://127.0.0.1:9/api/files"),
        ("infill 20/30 at 150 mm/s", "infill 20/30 at 150 mm/s"),
    ],
)  # fmt: skip
def test_absolute_paths_become_relative_names(text: str, public: str) -> None:
    assert without_paths(text) == public


def test_an_error_keeps_the_full_reason_for_the_log() -> None:
    err = EngineFailed("cannot read /srv/slicer/job-1/model.stl", files=["/srv/slicer/x.ini"])
    assert err.reason == "cannot read /srv/slicer/job-1/model.stl"
    assert err.public_json() == {
        "error": "engine_failed",
        "detail": "cannot read model.stl",
        "files": ["x.ini"],
    }


# -- the real engine, bad models ------------------------------------------------------------

BAD = [
    ("cut.step", models.step_box((30, 20, 10))[:900], 422, "input.step"),
    ("garbage.step", b"ISO-10303-21;\nHEADER;\nnot a model\n", 422, "STEP"),
    ("empty.stl", models.stl_binary(np.zeros((0, 3, 3))), 422, "no triangles"),
    ("short.stl", CUBE[:150], 422, "truncated"),
    ("bad.3mf", b"PK\x03\x04 not a zip", 422, "zip"),
    ("evil.3mf", models.threemf(models.box((20, 20, 20)), {"../../evil.txt": b"x"}), 422, "'..'"),
    ("bad.obj", b"v 1 2\nf 1 2 3\n", 422, "OBJ"),
    ("big.stl", models.stl_binary(models.box((300, 20, 20))), 422, "300.0"),
    ("notes.txt", b"hello", 415, "STL"),
]


@pytest.mark.parametrize(("name", "data", "status", "reason"), BAD)
@pytest.mark.parametrize("route", ["/price", "/slice"])
def test_bad_models_answer_without_server_paths(
    client: httpx.Client, service: Service, route: str, name: str, data: bytes, status: int,
    reason: str,
) -> None:  # fmt: skip
    response = client.post(route, files={"file": (name, data)})
    assert response.status_code == status, response.text
    assert reason in response.json()["detail"]  # still says what is wrong
    assert_no_server_path(response.text, service.work_dir)


def test_other_refusals_answer_without_server_paths(client: httpx.Client, service: Service) -> None:
    answers = [
        client.get("/slice/not-a-job"),
        client.get("/slice/not-a-job/result"),
        client.delete("/slice/not-a-job"),
        client.post("/price", files={"file": ("c.stl", CUBE)}, data={"printer_model": "X9Z"}),
        httpx.get(f"{service.url}/profiles"),  # no key
        httpx.get(f"{service.url}/readyz"),
    ]
    for response in answers:
        assert_no_server_path(response.text, service.work_dir)


# -- an engine that fails, then is gone --------------------------------------------------------

FAILING_ENGINE = """#!/bin/sh
# Fails the way PrusaSlicer does on a file it cannot use: it names the files it was given.
for last; do :; done
echo "[error] Failed loading the input file $last: cannot read" >&2
echo "[error] profile $PWD/profile.ini" >&2
exit 1
"""


@dataclass
class Broken:
    url: str
    work_dir: Path
    engine: Path


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broken]:
    """slicer-api whose engine always fails (no standby engines: each slice starts it)."""
    root = tmp_path_factory.mktemp("broken-slicer")
    engine = root / "engine-dir" / "prusa-slicer"
    engine.parent.mkdir()
    engine.write_text(FAILING_ENGINE)
    engine.chmod(stat.S_IRWXU)
    work_dir = root / "work"
    settings = Settings(
        pantheon_env="dev",
        slicer_api_keys=hashlib.sha256(API_KEY.encode()).hexdigest(),
        slicer_engine=str(engine),
        slicer_standby_engines=0,
        slicer_work_dir=work_dir,
    )
    app = build(settings)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/healthz", 20, "slicer-api")
    except RuntimeError as err:
        pytest.fail(str(err))
    yield Broken(url, work_dir, engine)
    server.should_exit = True
    thread.join(15)
    shutil.rmtree(root, ignore_errors=True)


def _failed_job(client: httpx.Client) -> dict[str, Any]:
    response = client.post("/slice", files={"file": ("cube.stl", CUBE)})
    assert response.status_code == 202, response.text
    deadline = time.monotonic() + 30
    while True:
        status: dict[str, Any] = client.get(f"/slice/{response.json()['job_id']}?wait=5").json()
        if status["state"] in ("done", "failed"):
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.05)


def test_engine_failures_answer_without_server_paths(broken: Broken) -> None:
    roots = (broken.work_dir, broken.engine)
    with httpx.Client(base_url=broken.url, headers={"X-API-Key": API_KEY}, timeout=60) as client:
        # a slice the engine fails: the job's status, and its result
        status = _failed_job(client)
        assert status["state"] == "failed"
        assert status["error_code"] == "engine_failed"
        assert "model.stl" in status["error"]  # the engine's reason, with a relative name
        assert_no_server_path(str(status), *roots)
        result = client.get(f"/slice/{status['job_id']}/result")
        assert result.status_code == 409
        assert_no_server_path(result.text, *roots)
        # an exact quote (a slice through the queue)
        quote = client.post("/price", files={"file": ("cube.stl", CUBE)}, data={"mode": "exact"})
        assert quote.status_code == 422, quote.text
        assert quote.json()["error"] == "engine_failed"
        assert_no_server_path(quote.text, *roots)
        # a STEP the engine cannot convert
        step = client.post("/price", files={"file": ("box.step", models.step_box((30, 20, 10)))})
        assert step.status_code == 422, step.text
        assert "input.step" in step.json()["detail"]
        assert_no_server_path(step.text, *roots)
        # the engine is gone: starting it fails, readiness says so, without its path
        os.unlink(broken.engine)
        gone = _failed_job(client)
        assert gone["state"] == "failed"
        assert gone["error"]
        assert_no_server_path(str(gone), *roots)
        ready = httpx.get(f"{broken.url}/readyz")
        assert ready.status_code == 503
        assert "not installed" in ready.text
        assert_no_server_path(ready.text, *roots)
