"""Log files of the native farm and of the harness's servers are private to their user."""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path

from pantheon_devtools import infra as infra_mod
from pantheon_devtools.farm_run import ProcessSpec, Supervisor


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_supervised_process_logs_are_0600_in_a_0700_dir(tmp_path: Path) -> None:
    logs = tmp_path / "farm" / "logs"
    logs.mkdir(parents=True, mode=0o755)
    os.chmod(logs, 0o755)  # noqa: S103 - as an earlier run left it
    old = logs / "old-service.log"
    old.write_text("from an earlier run\n")
    os.chmod(old, 0o644)
    supervisor = Supervisor(logs)
    code = "import sys; print('ready'); sys.stdout.flush()"
    try:
        supervisor.start(ProcessSpec("new-service", [sys.executable, "-c", code], dict(os.environ)))
        supervisor.start(ProcessSpec("old-service", [sys.executable, "-c", code], dict(os.environ)))
        deadline = time.monotonic() + 10
        while "ready" not in (logs / "new-service.log").read_text():
            assert time.monotonic() < deadline, "the process wrote nothing"
            time.sleep(0.02)
    finally:
        supervisor.stop()
    assert _mode(logs) == 0o700
    assert _mode(logs / "new-service.log") == 0o600
    assert _mode(old) == 0o600
    assert old.read_text().startswith("from an earlier run\n")  # appended, not truncated


def test_harness_server_logs_are_created_or_made_0600(tmp_path: Path) -> None:
    fresh = tmp_path / "nx-27017.log"
    infra_mod._private_log(fresh)
    assert fresh.exists()
    assert _mode(fresh) == 0o600
    existing = tmp_path / "mosquitto.log"
    existing.write_text("kept\n")
    os.chmod(existing, 0o644)
    infra_mod._private_log(existing)
    assert _mode(existing) == 0o600
    assert existing.read_text() == "kept\n"
