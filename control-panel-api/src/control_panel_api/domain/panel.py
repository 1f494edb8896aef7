"""The control panel's decisions: which command to run for a request, and what it means.

Every command sent to a host is a configured template rendered with validated integers and
configured values; the panel has no path by which a request's text reaches a shell.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from control_panel_api.domain.commands import Action, Limits, validate_parameters
from control_panel_api.domain.config import PanelConfig, ServiceConfig
from control_panel_api.domain.ports import (
    AuditSink,
    CommandResult,
    HostHealth,
    QueuePurger,
    RemoteHosts,
)
from control_panel_api.domain.status import ServiceState, interpret_status
from pantheon_common.auth import Principal
from pantheon_contracts.names import HOMING_QUEUE, READY_QUEUE

__all__ = [
    "PURGEABLE_QUEUES",
    "ActionInProgress",
    "CommandFailed",
    "ControlPanel",
    "NotConfigured",
    "PanelError",
    "ServiceAction",
    "ServiceStatus",
    "UnknownService",
]

PURGEABLE_QUEUES = (READY_QUEUE, HOMING_QUEUE)
_OUTPUT_TAIL = 2000  # characters of a failed command's output kept in errors and audit


class PanelError(Exception):
    """A request the panel cannot fulfil."""


class UnknownService(PanelError):
    """No service of that name is configured."""


class NotConfigured(PanelError):
    """The service has no template for this action."""


class ActionInProgress(PanelError):
    """Another start/stop/restart of the same service is running."""


class CommandFailed(PanelError):
    """A start or stop command exited non-zero."""

    def __init__(self, service: str, action: str, result: CommandResult) -> None:
        output = (result.stderr.strip() or result.stdout.strip())[-_OUTPUT_TAIL:]
        super().__init__(
            f"{action} of {service} failed with exit status {result.exit_status}"
            + (f": {output}" if output else "")
        )
        self.result = result


class ServiceAction(StrEnum):
    """What an operator may do to a service."""

    START = "start"
    STOP = "stop"
    RESTART = "restart"


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    """A service's state as reported by its host."""

    name: str
    host: str
    description: str
    state: ServiceState
    since: datetime | None
    detail: str | None


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    """The commands run for one operator action, in order."""

    service: str
    action: ServiceAction
    results: tuple[CommandResult, ...]


class ControlPanel:
    """Status, start/stop/restart, logs and queue purges, each audited with its caller."""

    def __init__(
        self,
        config: PanelConfig,
        hosts: RemoteHosts,
        purger: QueuePurger,
        audit: AuditSink,
        limits: Limits,
    ) -> None:
        self.config = config
        self.limits = limits
        self._hosts = hosts
        self._purger = purger
        self._audit = audit
        self._locks = {name: threading.Lock() for name in config.services}

    # ------------------------------------------------------------------ reading

    def service_names(self) -> list[str]:
        """Configured services, in configuration order."""
        return list(self.config.services)

    def service(self, name: str) -> ServiceConfig:
        """The configuration of ``name``; `UnknownService` if there is none."""
        try:
            return self.config.services[name]
        except KeyError:
            raise UnknownService(f"no service named {name!r}") from None

    def status(self, name: str) -> ServiceStatus:
        """Run the status command of ``name`` and interpret its answer."""
        service = self.service(name)
        result = self._hosts.run(service.host, service.command(Action.STATUS, {}))
        reading = interpret_status(
            result.exit_status, result.stdout, result.stderr, service.stopped_exit_codes
        )
        return ServiceStatus(
            name=name,
            host=service.host,
            description=service.description,
            state=reading.state,
            since=reading.since,
            detail=reading.detail,
        )

    def logs(self, name: str, lines: int, who: Principal) -> list[str]:
        """The last ``lines`` lines of the service's log."""
        service = self.service(name)
        params = validate_parameters(Action.LOGS, {"lines": lines}, self.limits)
        with self._audited(who, "logs", name, lines=lines):
            result = self._hosts.run(service.host, service.command(Action.LOGS, params))
            if result.exit_status != 0:
                raise CommandFailed(name, "logs", result)
        return result.stdout.splitlines()[-lines:]

    def follow(self, name: str, lines: int, duration_s: int, who: Principal) -> Iterator[str]:
        """Validate and audit a log follow; return the line iterator (bounded in time)."""
        service = self.service(name)
        params = validate_parameters(
            Action.FOLLOW, {"lines": lines, "duration_s": duration_s}, self.limits
        )
        if service.commands.follow is None:
            raise NotConfigured(f"{name} has no follow command configured")
        command = service.command(Action.FOLLOW, params)
        self._audit.record(
            user=who.subject,
            role=who.role.value,
            action="follow",
            target=name,
            outcome="started",
            lines=lines,
            duration_s=duration_s,
        )
        # a little grace beyond the remote `timeout` so the last lines arrive
        return self._hosts.stream(service.host, command, duration_s + 2.0)

    def hosts_health(self) -> list[HostHealth]:
        """Reachability, host key check and latency of every configured host."""
        return [self._hosts.probe(name) for name in self.config.hosts]

    # ------------------------------------------------------------------ acting

    def act(self, name: str, action: ServiceAction, who: Principal) -> ActionOutcome:
        """Start, stop or restart (stop, then start) ``name``; one action per service at once."""
        service = self.service(name)
        lock = self._locks[name]
        if not lock.acquire(blocking=False):
            raise ActionInProgress(f"another action on {name} is in progress")
        try:
            steps = (
                [Action.STOP, Action.START]
                if action is ServiceAction.RESTART
                else [Action(action.value)]
            )
            results: list[CommandResult] = []
            with self._audited(who, action.value, name) as details:
                for step in steps:
                    result = self._hosts.run(service.host, service.command(step, {}))
                    results.append(result)
                    details[f"{step.value}_exit_status"] = result.exit_status
                    if result.exit_status != 0:
                        raise CommandFailed(name, step.value, result)
            return ActionOutcome(service=name, action=action, results=tuple(results))
        finally:
            lock.release()

    def purge(self, queues: Sequence[str], who: Principal) -> dict[str, int]:
        """Drop every ready message of each queue; return how many each held."""
        unknown = [queue for queue in queues if queue not in PURGEABLE_QUEUES]
        if unknown:
            raise PanelError(f"only {', '.join(PURGEABLE_QUEUES)} can be purged")
        purged: dict[str, int] = {}
        for queue in dict.fromkeys(queues):
            with self._audited(who, "purge", queue) as details:
                purged[queue] = self._purger.purge(queue)
                details["purged"] = purged[queue]
        return purged

    # ------------------------------------------------------------------ audit

    def _audited(self, who: Principal, action: str, target: str, **details: Any) -> _Audit:
        return _Audit(self._audit, who, action, target, dict(details))


class _Audit:
    """Context manager writing one audit record: outcome ok, or error with the reason."""

    def __init__(
        self, sink: AuditSink, who: Principal, action: str, target: str, details: dict[str, Any]
    ) -> None:
        self._sink = sink
        self._who = who
        self._action = action
        self._target = target
        self._details = details

    def __enter__(self) -> dict[str, Any]:
        return self._details

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if exc is not None:
            self._details["error"] = f"{type(exc).__name__}: {exc}"[:_OUTPUT_TAIL]
        self._sink.record(
            user=self._who.subject,
            role=self._who.role.value,
            action=self._action,
            target=self._target,
            outcome="ok" if exc is None else "error",
            **self._details,
        )
