"""Command injection (reliability.md S8): hostile text in every parameter never reaches a shell.

Each payload goes into every path parameter, query parameter and JSON body field of the API,
as an operator. Every answer must be a 4xx, and the test sshd's forced command, which logs
byte-exactly what each client asked to run, must show only rendered allow-listed templates.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from control_panel_api.domain.commands import Action
from pantheon_common.auth import Role

from .conftest import Api, Rig

CANARY = Path("/tmp/control-panel-injection-canary")

_CORES = [
    ";id",
    "; id",
    "$(id)",
    "`id`",
    "\nid",
    "\r\nid",
    "&& id",
    "|| id",
    "| id",
    "|nc 127.0.0.1 9",
    "& id &",
    f"; touch {CANARY}",
    f"$(touch {CANARY})",
    f"`touch {CANARY}`",
    f"\ntouch {CANARY}",
    f"' ; touch {CANARY} ; '",
    f'" ; touch {CANARY} ; "',
    f"'$(touch {CANARY})'",
    "--help",
    "-n 1 /etc/passwd",
    "--follow",
    "-F /etc/shadow",
    "--lines=999999",
    "-1",
    "-0",
    "1e3",
    "0x10",
    "0o17",
    "5_0",
    "+5",
    "5.0",
    " 5",
    "5 ",
    "99999999999999999999999999",
    "${IFS}id",
    "$IFS",
    "*",
    "?",
    "~root",
    "../../etc/passwd",
    "/etc/passwd",
    "%0aid",
    "%00",
    "\x00",
    "a\x00b",
    f"\x00; touch {CANARY}",
    "\uff1bid",  # full-width semicolon
    "\uff04(id)",  # full-width dollar
    "\u202eid",  # right-to-left override
    "robot\u2010arm",  # unicode hyphen
    "robot-arm\u200b",  # zero-width space
    "\uff52\uff4f\uff42\uff4f\uff54",  # full-width "robot"
    "\u0665",  # Arabic-Indic five
    "\uff15",  # full-width five
    "\t",
    "\x1b[31m",
    "ROBOT-ARM",
    "A" * 5000,
    ";" * 1000,
    "$((1+1))",
    "{{lines}}",
    "{{script}}",
    ">/tmp/x",
    "<(id)",
    "\\",
    "'",
    '"',
    "#",
    "null",
    "true",
    "[]",
    "{}",
]


def _payloads(valid: str) -> list[str]:
    """Each core alone, appended to and wrapped around a valid value (never the valid value)."""
    found: list[str] = []
    for core in _CORES:
        for candidate in (core, valid + core, core + valid, valid + core + valid):
            if candidate != valid and candidate not in found:
                found.append(candidate)
    return found


Send = Callable[[Api, str], httpx.Response]


def _path(template: str, method: str = "GET") -> Send:
    def send(api: Api, payload: str) -> httpx.Response:
        url = template.format(quote(payload, safe=""))
        return api.client.request(method, url, headers=api.headers(Role.OPERATOR))

    return send


def _query(url: str, name: str, others: dict[str, str]) -> Send:
    def send(api: Api, payload: str) -> httpx.Response:
        params = {**others, name: payload}
        return api.client.get(url, params=params, headers=api.headers(Role.OPERATOR))

    return send


def _body(make: Callable[[str], object]) -> Send:
    def send(api: Api, payload: str) -> httpx.Response:
        return api.client.post(
            "/queues/purge",
            content=json.dumps(make(payload)),
            headers={**api.headers(Role.OPERATOR), "Content-Type": "application/json"},
        )

    return send


SLOTS: dict[str, tuple[Send, str]] = {
    "path:status": (_path("/services/{}"), "robot-arm"),
    "path:start": (_path("/services/{}/start", "POST"), "robot-arm"),
    "path:stop": (_path("/services/{}/stop", "POST"), "robot-arm"),
    "path:restart": (_path("/services/{}/restart", "POST"), "robot-arm"),
    "path:logs": (_path("/services/{}/logs"), "robot-arm"),
    "path:follow": (_path("/services/{}/logs/follow"), "robot-arm"),
    "query:logs.lines": (_query("/services/robot-arm/logs", "lines", {}), "5"),
    "query:follow.lines": (
        _query("/services/robot-arm/logs/follow", "lines", {"duration_s": "1"}),
        "5",
    ),
    "query:follow.duration_s": (
        _query("/services/robot-arm/logs/follow", "duration_s", {"lines": "1"}),
        "5",
    ),
    "body:queues[]": (_body(lambda p: {"queues": [p]}), "ready"),
    "body:queues[1]": (_body(lambda p: {"queues": ["ready", p]}), "homing"),
    "body:queues": (_body(lambda p: {"queues": p}), "ready"),
    "body:key": (_body(lambda p: {"queues": ["ready"], p: ["homing"]}), "queues"),
    "body:raw": (_body(lambda p: p), "ready"),
}


def test_there_are_at_least_200_payloads_per_parameter() -> None:
    for _, valid in SLOTS.values():
        assert len(_payloads(valid)) >= 200


@pytest.mark.parametrize("slot", sorted(SLOTS))
def test_payloads_are_refused_with_4xx_and_nothing_else_runs(api: Api, rig: Rig, slot: str) -> None:
    send, valid = SLOTS[slot]
    CANARY.unlink(missing_ok=True)
    rig.sshd.clear_command_log()
    problems = []
    for payload in _payloads(valid):
        response = send(api, payload)
        if not 400 <= response.status_code < 500:
            problems.append((payload[:60], response.status_code, response.text[:200]))
    assert problems == []
    # A valid request still works, so the log is live: it records this one command only.
    assert api.client.get(
        "/services/robot-arm/logs", params={"lines": "5"}, headers=api.headers(Role.OPERATOR)
    ).status_code in (200, 502)
    logged = rig.sshd.logged_commands()
    expected = api.panel.service("robot-arm").command(Action.LOGS, {"lines": 5})
    assert logged == [expected]
    assert all(api.panel.config.is_allowed(c, api.panel.limits) for c in logged)
    assert not CANARY.exists()
