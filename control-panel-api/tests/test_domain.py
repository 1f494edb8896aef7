"""Domain: template rendering and quoting, parameter checks, status reading, configuration,
and the panel's decisions with fake hosts (no SSH, no broker)."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from control_panel_api.adapters.config_file import load_config
from control_panel_api.domain.commands import (
    Action,
    InvalidParameter,
    Limits,
    TemplateError,
    placeholders,
    render,
    validate_parameters,
)
from control_panel_api.domain.config import ConfigError, parse_config
from control_panel_api.domain.panel import (
    ActionInProgress,
    CommandFailed,
    ControlPanel,
    PanelError,
    ServiceAction,
    UnknownService,
)
from control_panel_api.domain.ports import CommandResult, HostHealth
from control_panel_api.domain.status import ServiceState, interpret_status, parse_since
from pantheon_common.auth import Principal, Role

LIMITS = Limits(max_log_lines=100, max_follow_s=60)
EXAMPLE = Path(__file__).resolve().parents[1] / "control-panel.example.yaml"
OLGA = Principal("olga", Role.OPERATOR, "user")


@given(st.text().filter(lambda s: "\0" not in s))
def test_a_rendered_value_is_exactly_one_shell_word(value: str) -> None:
    command = render("tail -n 5 {{file}} --", {"file": value})
    assert shlex.split(command) == ["tail", "-n", "5", value, "--"]


def test_render_leaves_other_braces_and_refuses_unknown_names() -> None:
    template = "docker inspect -f '{{.State.Running}}' {{ name }} ${HOME}"
    assert placeholders(template) == {"name"}
    assert (
        render(template, {"name": "a b"}) == "docker inspect -f '{{.State.Running}}' 'a b' ${HOME}"
    )
    with pytest.raises(TemplateError):
        render("{{missing}}", {})
    with pytest.raises(TemplateError):
        render("{{x}}", {"x": "a\0b"})


@pytest.mark.parametrize(
    ("action", "params", "ok"),
    [
        (Action.LOGS, {"lines": 1}, True),
        (Action.LOGS, {"lines": 100}, True),
        (Action.LOGS, {"lines": 0}, False),
        (Action.LOGS, {"lines": 101}, False),
        (Action.LOGS, {"lines": True}, False),
        (Action.LOGS, {"lines": "5"}, False),
        (Action.LOGS, {}, False),
        (Action.LOGS, {"lines": 5, "file": 1}, False),
        (Action.FOLLOW, {"lines": 5, "duration_s": 60}, True),
        (Action.FOLLOW, {"lines": 5, "duration_s": 61}, False),
        (Action.START, {}, True),
        (Action.START, {"lines": 5}, False),
    ],
)
def test_parameters_are_integers_in_range(action: Action, params: dict[str, Any], ok: bool) -> None:
    if ok:
        assert validate_parameters(action, params, LIMITS) == params
    else:
        with pytest.raises(InvalidParameter):
            validate_parameters(action, params, LIMITS)


@pytest.mark.parametrize(
    ("exit_status", "stdout", "state", "since"),
    [
        (0, "1700000000\n", ServiceState.RUNNING, datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        (
            0,
            "2024-05-01T10:00:00.123456789Z",
            ServiceState.RUNNING,
            datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC),
        ),
        (0, "", ServiceState.RUNNING, None),
        (0, "0001-01-01T00:00:00Z", ServiceState.RUNNING, None),
        (0, "garbage", ServiceState.RUNNING, None),
        (3, "", ServiceState.STOPPED, None),
        (1, "", ServiceState.STOPPED, None),
        (127, "", ServiceState.UNKNOWN, None),
    ],
)
def test_status_reading(
    exit_status: int, stdout: str, state: ServiceState, since: datetime | None
) -> None:
    reading = interpret_status(exit_status, stdout, "sh: tmux: not found", {1, 3})
    assert (reading.state, reading.since) == (state, since)
    if state is ServiceState.UNKNOWN:
        assert reading.detail == "status command exited 127: sh: tmux: not found"


def test_parse_since_without_offset_is_utc() -> None:
    assert parse_since("2024-05-01 10:00:00") == datetime(2024, 5, 1, 10, tzinfo=UTC)


def _raw(**service: Any) -> dict[str, Any]:
    return {
        "hosts": {"robot": {"address": "h", "user": "u", "key_file": "/k", "known_hosts": "/kh"}},
        "services": {
            "robot-arm": {
                "host": "robot",
                "vars": {"log": "/var/log/arm.log"},
                "commands": {
                    "start": "start-arm",
                    "stop": "stop-arm",
                    "status": "status-arm",
                    "logs": "tail -n {{lines}} {{log}}",
                    "follow": "timeout {{duration_s}} tail -n {{lines}} -F {{log}}",
                },
                **service,
            }
        },
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"host": "nowhere"}, "unknown host"),
        ({"vars": {"bad name": "x"}}, "not an identifier"),
        ({"vars": {"lines": "5"}}, "request parameter"),
        (
            {"commands": {"start": "{{nope}}", "stop": "s", "status": "s", "logs": "l"}},
            "unknown placeholders",
        ),
        (
            {"commands": {"start": "s", "stop": "s", "status": "{{lines}}", "logs": "l"}},
            "unknown placeholders",
        ),
        ({"shell": "bash"}, "Extra inputs"),
    ],
)
def test_bad_configurations_are_refused(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(_raw(**change))


def test_bad_service_name_is_refused() -> None:
    raw = _raw()
    raw["services"] = {"Robot Arm;": raw["services"]["robot-arm"]}
    with pytest.raises(ConfigError, match="must match"):
        parse_config(raw)


def test_is_allowed_accepts_only_renderings_with_valid_integers() -> None:
    config = parse_config(_raw())
    assert config.is_allowed("tail -n 5 /var/log/arm.log", LIMITS)
    assert config.is_allowed("timeout 60 tail -n 100 -F /var/log/arm.log", LIMITS)
    assert config.is_allowed("start-arm", LIMITS)
    for command in (
        "tail -n 0 /var/log/arm.log",
        "tail -n 101 /var/log/arm.log",
        "tail -n 05 /var/log/arm.log",
        "tail -n 5 /var/log/arm.log; id",
        "tail -n 5 /etc/passwd",
        "start-arm\nid",
        "id",
    ):
        assert not config.is_allowed(command, LIMITS), command


def test_the_example_configuration_loads(tmp_path: Path) -> None:
    config = load_config(
        EXAMPLE,
        {
            "ROBOT_ARM_SSH_HOST": "192.168.1.50",
            "ROBOT_ARM_SSH_USER": "robot",
            "ROBOT_ARM_SSH_PORT": "2222",
        },
    )
    assert set(config.services) == {"robot-arm", "orchestrator"}
    assert config.hosts["robot"].port == 2222
    assert config.hosts["farm"].address == "host.docker.internal"
    command = config.services["orchestrator"].command(Action.STATUS, {})
    assert "{{.State.Running}} {{.State.StartedAt}}" in command
    logs = config.services["robot-arm"].command(Action.LOGS, {"lines": 7})
    assert logs == "tail -n 7 /home/robot/robot_arm/robot_arm.log"
    with pytest.raises(ConfigError, match="ROBOT_ARM_SSH_HOST"):
        load_config(EXAMPLE, {})


# ---------------------------------------------------------------- the panel with fakes


class FakeHosts:
    def __init__(self, exit_statuses: dict[str, int] | None = None) -> None:
        self.commands: list[tuple[str, str]] = []
        self.exit_statuses = exit_statuses or {}

    def run(self, host: str, command: str) -> CommandResult:
        self.commands.append((host, command))
        return CommandResult(self.exit_statuses.get(command, 0), "1700000000\n", "boom", 0.01)

    def stream(self, host: str, command: str, max_duration_s: float) -> Iterator[str]:
        self.commands.append((host, command))
        return iter(["a", "b"])

    def probe(self, host: str) -> HostHealth:
        return HostHealth(host, "h", 22, True, True, 1.0)


class FakeQueues:
    def purge(self, queue: str) -> int:
        return {"ready": 50, "homing": 1}[queue]


class FakeAudit:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def record(self, **entry: Any) -> None:
        self.records.append(entry)


def _panel(hosts: FakeHosts) -> tuple[ControlPanel, FakeAudit]:
    audit = FakeAudit()
    return ControlPanel(parse_config(_raw()), hosts, FakeQueues(), audit, LIMITS), audit


def test_restart_is_stop_then_start_and_is_audited() -> None:
    hosts = FakeHosts()
    panel, audit = _panel(hosts)
    panel.act("robot-arm", ServiceAction.RESTART, OLGA)
    assert hosts.commands == [("robot", "stop-arm"), ("robot", "start-arm")]
    assert audit.records == [
        {
            "user": "olga",
            "role": "operator",
            "action": "restart",
            "target": "robot-arm",
            "outcome": "ok",
            "stop_exit_status": 0,
            "start_exit_status": 0,
        }
    ]


def test_a_failed_stop_skips_the_start_and_is_audited_as_an_error() -> None:
    hosts = FakeHosts({"stop-arm": 2})
    panel, audit = _panel(hosts)
    with pytest.raises(CommandFailed, match="stop of robot-arm failed with exit status 2: boom"):
        panel.act("robot-arm", ServiceAction.RESTART, OLGA)
    assert hosts.commands == [("robot", "stop-arm")]
    assert audit.records[0]["outcome"] == "error"


def test_one_action_per_service_at_a_time() -> None:
    panel, _ = _panel(FakeHosts())
    lock = panel._locks["robot-arm"]
    lock.acquire()
    try:
        with pytest.raises(ActionInProgress):
            panel.act("robot-arm", ServiceAction.START, OLGA)
    finally:
        lock.release()


def test_unknown_services_and_queues_are_refused_before_anything_runs() -> None:
    hosts = FakeHosts()
    panel, audit = _panel(hosts)
    with pytest.raises(UnknownService):
        panel.act("robot-arm; id", ServiceAction.START, OLGA)
    with pytest.raises(InvalidParameter):
        panel.logs("robot-arm", 1000, OLGA)
    with pytest.raises(PanelError):
        panel.purge(["ready", "amq.gen"], OLGA)
    assert hosts.commands == []
    assert audit.records == []


def test_purge_reports_per_queue_counts() -> None:
    panel, audit = _panel(FakeHosts())
    assert panel.purge(["ready", "homing", "ready"], OLGA) == {"ready": 50, "homing": 1}
    assert [r["purged"] for r in audit.records] == [50, 1]
