"""End to end against a real OpenSSH server: start, status, logs, follow, stop, host keys."""

from __future__ import annotations

import json
import time
from pathlib import Path

from control_panel_api.domain.config import parse_config
from pantheon_common.auth import Role
from pantheon_devtools.sshd import start_sshd

from .conftest import UNUSED_AMQP_URL, Api, Rig, build_api, host_entry, service_entry


def _wait_for(predicate, timeout_s: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_start_status_logs_follow_stop_end_to_end(api: Api, rig: Rig) -> None:
    operator = api.headers(Role.OPERATOR, "olga")
    viewer = api.headers(Role.VIEWER, "vic")
    client = api.client

    assert client.get("/services/robot-arm", headers=viewer).json()["state"] == "stopped"

    started = client.post("/services/robot-arm/start", headers=operator)
    assert started.status_code == 200, started.text
    body = started.json()
    assert body["status"]["state"] == "running"
    assert body["status"]["since"] is not None
    assert body["commands"][0]["exit_status"] == 0
    pid = int((rig.dirs["robot-arm"] / "pid").read_text())
    assert Path(f"/proc/{pid}").exists()

    # starting twice: the start command refuses, the API says so
    again = client.post("/services/robot-arm/start", headers=operator)
    assert again.status_code == 502
    assert again.json()["code"] == "command_failed"
    assert "already running" in again.json()["detail"]

    listing = {s["name"]: s["state"] for s in client.get("/services", headers=viewer).json()}
    assert listing == {"robot-arm": "running", "orchestrator": "stopped"}

    log_file = rig.dirs["robot-arm"] / "service.log"
    assert _wait_for(lambda: log_file.exists() and len(log_file.read_text().splitlines()) >= 5)
    logs = client.get("/services/robot-arm/logs", params={"lines": 3}, headers=viewer)
    assert logs.status_code == 200, logs.text
    lines = logs.json()["lines"]
    assert len(lines) == 3
    assert all(line.startswith("tick ") for line in lines)

    follow_started = time.monotonic()
    with client.stream(
        "GET",
        "/services/robot-arm/logs/follow",
        params={"lines": 2, "duration_s": 1},
        headers=viewer,
    ) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = [line for line in stream.iter_lines() if line.startswith("data: ")]
    assert time.monotonic() - follow_started < 6
    ticks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert len(ticks) >= 4  # 2 old lines plus new ones written during the second
    assert all(t.startswith("tick ") for t in ticks)
    numbers = [int(t.split()[1]) for t in ticks]
    assert numbers == sorted(numbers)

    restarted = client.post("/services/robot-arm/restart", headers=operator)
    assert restarted.status_code == 200, restarted.text
    assert [c["exit_status"] for c in restarted.json()["commands"]] == [0, 0]
    new_pid = int((rig.dirs["robot-arm"] / "pid").read_text())
    assert new_pid != pid

    stopped = client.post("/services/robot-arm/stop", headers=operator)
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["status"]["state"] == "stopped"
    assert _wait_for(lambda: not Path(f"/proc/{new_pid}/cmdline").exists())

    records = api.audit.read()
    assert [(r["user"], r["action"], r["target"], r["outcome"]) for r in records] == [
        ("olga", "start", "robot-arm", "ok"),
        ("olga", "start", "robot-arm", "error"),
        ("vic", "logs", "robot-arm", "ok"),
        ("vic", "follow", "robot-arm", "started"),
        ("olga", "restart", "robot-arm", "ok"),
        ("olga", "stop", "robot-arm", "ok"),
    ]
    assert all(r["role"] in {"operator", "viewer"} for r in records)

    # everything that reached the host was a rendered template of the configuration
    logged = rig.sshd.logged_commands()
    assert logged
    assert all(api.panel.config.is_allowed(c, api.panel.limits) for c in logged), logged


def test_the_connection_is_reused_and_reopened_after_a_drop(api: Api) -> None:
    viewer = api.headers(Role.VIEWER)
    first = api.client.get("/services/orchestrator", headers=viewer)
    assert first.status_code == 200
    transport = api.hosts._hosts["farm"].transport()
    assert api.client.get("/services/orchestrator", headers=viewer).status_code == 200
    assert api.hosts._hosts["farm"].transport() is transport
    transport.close()  # the link drops (host rebooted, NAT timeout...)
    assert api.client.get("/services/orchestrator", headers=viewer).status_code == 200
    assert api.hosts._hosts["farm"].transport() is not transport


def test_hosts_report_reachability_host_key_and_latency(api: Api) -> None:
    response = api.client.get("/hosts", headers=api.headers(Role.VIEWER))
    assert response.status_code == 200
    hosts = {h["name"]: h for h in response.json()}
    assert set(hosts) == {"robot", "farm"}
    for host in hosts.values():
        assert host["reachable"] is True
        assert host["host_key_ok"] is True
        assert 0 < host["latency_ms"] < 2000
        assert host["error"] is None


def _api_with_known_hosts(rig: Rig, tmp_path: Path, known_hosts_text: str) -> Api:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(known_hosts_text)
    raw = {
        "hosts": {"robot": host_entry(rig.sshd, known_hosts)},
        "services": {"robot-arm": service_entry("robot", rig.script, rig.dirs["robot-arm"])},
    }
    return build_api(parse_config(raw), tmp_path / "audit.jsonl", UNUSED_AMQP_URL)


def test_a_host_missing_from_known_hosts_is_refused(rig: Rig, tmp_path: Path) -> None:
    rig.sshd.clear_command_log()
    api = _api_with_known_hosts(rig, tmp_path, "")
    try:
        response = api.client.post("/services/robot-arm/start", headers=api.headers(Role.OPERATOR))
        assert response.status_code == 502
        assert response.json()["code"] == "host_key_unknown"
        assert "not in known_hosts" in response.json()["detail"]
        health = api.client.get("/hosts", headers=api.headers(Role.VIEWER)).json()
        assert health[0]["host_key_ok"] is False
        assert "host key unknown" in health[0]["error"]
        # the refused action is audited as an error, and nothing ran on the host
        assert api.audit.read()[0]["outcome"] == "error"
        assert rig.sshd.logged_commands() == []
        assert not (rig.dirs["robot-arm"] / "pid").exists()
    finally:
        api.hosts.close()


def test_a_host_whose_key_changed_is_refused(rig: Rig, tmp_path: Path) -> None:
    # Another sshd (another host key) answers in place of the pinned one: impersonation.
    with start_sshd(tmp_path / "impostor") as impostor:
        pinned = f"[{impostor.host}]:{impostor.port} {rig.sshd.host_public_key}\n"
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text(pinned)
        entry = host_entry(impostor, known_hosts)
        raw = {
            "hosts": {"robot": entry},
            "services": {"robot-arm": service_entry("robot", rig.script, rig.dirs["robot-arm"])},
        }
        api = build_api(parse_config(raw), tmp_path / "audit.jsonl", UNUSED_AMQP_URL)
        try:
            response = api.client.get("/services/robot-arm", headers=api.headers(Role.VIEWER))
            assert response.status_code == 502
            assert response.json()["code"] == "host_key_mismatch"
            assert "host key CHANGED" in response.json()["detail"]
            assert impostor.logged_commands() == []
        finally:
            api.hosts.close()


def test_an_unreachable_host_answers_502_quickly(rig: Rig, tmp_path: Path) -> None:
    raw = {
        "hosts": {"robot": {**host_entry(rig.sshd), "port": 1, "connect_timeout_s": 2}},
        "services": {"robot-arm": service_entry("robot", rig.script, rig.dirs["robot-arm"])},
    }
    api = build_api(parse_config(raw), tmp_path / "audit.jsonl", UNUSED_AMQP_URL)
    try:
        response = api.client.get("/services/robot-arm", headers=api.headers(Role.VIEWER))
        assert response.status_code == 502
        assert response.json()["code"] == "host_unreachable"
        health = api.client.get("/hosts", headers=api.headers(Role.VIEWER)).json()
        assert health[0]["reachable"] is False
    finally:
        api.hosts.close()
