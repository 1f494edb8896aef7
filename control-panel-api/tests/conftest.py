"""Shared fixtures: a real sshd with two fake managed services, the app, and tokens per role."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from control_panel_api.adapters.audit import AuditLog
from control_panel_api.adapters.queues import AmqpQueues
from control_panel_api.adapters.ssh import SshHosts
from control_panel_api.api.app import create_app
from control_panel_api.domain.commands import Limits
from control_panel_api.domain.config import PanelConfig, parse_config
from control_panel_api.domain.panel import ControlPanel
from pantheon_common.auth import Authenticator, Role
from pantheon_devtools.sshd import SshServer, start_sshd

SECRET_KEY = "control-panel-test-secret-key-0123456789abcdef"
SERVICE_TOKEN = "control-panel-service-token-0123456789"
LIMITS = Limits(max_log_lines=500, max_follow_s=30)

# A managed "service" on the test host: started in the background with a pid file and a log,
# exactly like the robot arm in its tmux session (the shape of the commands is the same).
FAKE_SERVICE = r"""#!/bin/sh
# fake-service start|stop|status|logs|follow DIR [LINES] [DURATION_S]
set -u
action=$1
dir=$2
pidf="$dir/pid"
logf="$dir/service.log"
running() { [ -f "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; }
case "$action" in
start)
    if running; then echo "already running" >&2; exit 1; fi
    mkdir -p "$dir"
    setsid sh -c 'date +%s > "$1.since"; echo $$ > "$1.tmp"; mv "$1.tmp" "$1"; n=0;
        while :; do n=$((n+1)); echo "tick $n" >> "$2"; sleep 0.05; done' \
        fake "$pidf" "$logf" </dev/null >/dev/null 2>&1 &
    i=0
    while [ ! -f "$pidf" ] && [ "$i" -lt 250 ]; do sleep 0.02; i=$((i+1)); done
    running ;;
stop)
    if running; then kill "$(cat "$pidf")"; fi
    rm -f "$pidf"
    exit 0 ;;
status)
    running || exit 3
    cat "$pidf.since" ;;
logs)
    tail -n "$3" "$logf" ;;
follow)
    timeout "$4" tail -n "$3" -F "$logf" 2>/dev/null
    exit 0 ;;
*)
    exit 64 ;;
esac
"""


@dataclass
class Rig:
    """The sshd, the managed services' directories and a configuration pointing at them."""

    sshd: SshServer
    script: Path
    dirs: dict[str, Path]
    raw_config: dict[str, Any]

    @property
    def config(self) -> PanelConfig:
        return parse_config(self.raw_config)

    def stop_everything(self) -> None:
        for directory in self.dirs.values():
            pid_file = directory / "pid"
            if pid_file.exists():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid_file.read_text()), signal.SIGTERM)
                pid_file.unlink(missing_ok=True)


def host_entry(server: SshServer, known_hosts: Path | None = None) -> dict[str, Any]:
    return {
        "address": server.host,
        "port": server.port,
        "user": server.user,
        "key_file": str(server.client_key),
        "known_hosts": str(known_hosts or server.known_hosts),
        "connect_timeout_s": 5,
        "command_timeout_s": 10,
    }


def service_entry(host: str, script: Path, directory: Path) -> dict[str, Any]:
    return {
        "host": host,
        "description": f"fake service in {directory.name}",
        "vars": {"script": str(script), "dir": str(directory)},
        "commands": {
            "start": "{{script}} start {{dir}}",
            "stop": "{{script}} stop {{dir}}",
            "status": "{{script}} status {{dir}}",
            "logs": "{{script}} logs {{dir}} {{lines}}",
            "follow": "{{script}} follow {{dir}} {{ lines }} {{duration_s}}",
        },
    }


@pytest.fixture(scope="session")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """One sshd for the session; the fake robot arm and orchestrator live in its work dir."""
    with start_sshd(tmp_path_factory.mktemp("cp-sshd")) as server:
        script = server.work_dir / "fake service"  # a space: quoting is exercised everywhere
        script.write_text(FAKE_SERVICE)
        script.chmod(0o755)
        dirs = {
            "robot-arm": server.work_dir / "robot arm",
            "orchestrator": server.work_dir / "orchestrator's",
        }
        raw = {
            "hosts": {"robot": host_entry(server), "farm": host_entry(server)},
            "services": {
                "robot-arm": service_entry("robot", script, dirs["robot-arm"]),
                "orchestrator": service_entry("farm", script, dirs["orchestrator"]),
            },
        }
        rig = Rig(sshd=server, script=script, dirs=dirs, raw_config=raw)
        try:
            yield rig
        finally:
            rig.stop_everything()


@dataclass
class Api:
    """A TestClient with the panel behind it and headers per role."""

    client: TestClient
    panel: ControlPanel
    hosts: SshHosts
    audit: AuditLog
    authenticator: Authenticator

    def headers(self, role: Role | None, subject: str = "alice") -> dict[str, str]:
        if role is None:
            return {}
        return {"Authorization": f"Bearer {self.authenticator.issue(subject, role)}"}

    @property
    def service_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {SERVICE_TOKEN}"}


def build_api(config: PanelConfig, audit_path: Path, amqp_url: str) -> Api:
    authenticator = Authenticator(SECRET_KEY, SERVICE_TOKEN)
    hosts = SshHosts(config.hosts)
    audit = AuditLog(audit_path)
    panel = ControlPanel(config, hosts, AmqpQueues(amqp_url), audit, LIMITS)
    app = create_app(panel, authenticator)
    return Api(TestClient(app), panel, hosts, audit, authenticator)


# Never contacted: tests that do not purge must not depend on RabbitMQ.
UNUSED_AMQP_URL = "amqp://nobody:nothing@127.0.0.1:1/%2F"


@pytest.fixture
def api(rig: Rig, tmp_path: Path) -> Iterator[Api]:
    """The app against the session's sshd (no broker needed)."""
    built = build_api(rig.config, tmp_path / "audit.jsonl", UNUSED_AMQP_URL)
    try:
        yield built
    finally:
        built.hosts.close()
        rig.stop_everything()
