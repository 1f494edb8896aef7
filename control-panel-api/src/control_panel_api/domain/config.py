"""The control panel's configuration: hosts reached over SSH and the services on them.

Parsed from a plain mapping (the YAML file, see ``control-panel.example.yaml``). Checked at
start-up, so a typo in a template stops the service instead of failing at the first click.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from control_panel_api.domain.commands import (
    PARAMETERS,
    Action,
    Limits,
    placeholders,
    render,
    template_pattern,
)

__all__ = [
    "NAME_PATTERN",
    "CommandTemplates",
    "ConfigError",
    "HostConfig",
    "PanelConfig",
    "ServiceConfig",
    "parse_config",
]

NAME_PATTERN = r"^[a-z][a-z0-9-]{0,39}$"
"""Host and service names: lower-case letters, digits and dashes, as used in URLs."""
_NAME = re.compile(NAME_PATTERN)
_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ConfigError(ValueError):
    """The configuration is invalid; the message names the offending entry."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HostConfig(_Strict):
    """One machine reached over SSH with a key, its host key pinned in ``known_hosts``."""

    address: str = Field(min_length=1, description="DNS name or IP address")
    port: int = Field(default=22, ge=1, le=65535)
    user: str = Field(min_length=1)
    key_file: Path = Field(description="private key (OpenSSH or PEM), readable by the service")
    known_hosts: Path = Field(description="known_hosts file that must hold the host's key")
    connect_timeout_s: float = Field(default=5.0, gt=0, le=60)
    command_timeout_s: float = Field(default=30.0, gt=0, le=600)
    keepalive_s: int = Field(default=15, ge=0, le=600)


class CommandTemplates(_Strict):
    """The shell command of each action, with ``{{name}}`` placeholders."""

    start: str = Field(min_length=1)
    stop: str = Field(min_length=1)
    status: str = Field(
        min_length=1,
        description="exit 0 = running (first output line: start time, epoch or ISO 8601); "
        "an exit status of stopped_exit_codes = stopped; anything else = unknown",
    )
    logs: str = Field(min_length=1, description="prints the last {{lines}} lines")
    follow: str | None = Field(
        default=None,
        description="prints {{lines}} lines then follows for at most {{duration_s}} seconds",
    )

    def template(self, action: Action) -> str | None:
        """The template of ``action`` (None for an optional one left out)."""
        value: str | None = getattr(self, action.value)
        return value


class ServiceConfig(_Strict):
    """A process the panel manages on one host."""

    host: str
    description: str = ""
    vars: dict[str, str] = Field(default_factory=dict, description="fixed template values")
    commands: CommandTemplates
    stopped_exit_codes: frozenset[int] = frozenset({1, 3})

    @field_validator("vars")
    @classmethod
    def _check_vars(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not _VAR.match(name):
                raise ValueError(f"variable name {name!r} is not an identifier")
            if name in PARAMETERS[Action.FOLLOW]:
                raise ValueError(f"variable {name!r} is a request parameter")
            if "\0" in text:
                raise ValueError(f"variable {name!r} holds a NUL byte")
        return value

    @model_validator(mode="after")
    def _check_templates(self) -> ServiceConfig:
        for action in Action:
            template = self.commands.template(action)
            if template is None:
                continue
            if "\0" in template:
                raise ValueError(f"{action.value}: template holds a NUL byte")
            unknown = placeholders(template) - set(self.vars) - PARAMETERS[action]
            if unknown:
                raise ValueError(f"{action.value}: unknown placeholders {sorted(unknown)}")
        return self

    def command(self, action: Action, params: Mapping[str, int]) -> str:
        """The rendered command of ``action`` (``params`` already validated)."""
        template = self.commands.template(action)
        if template is None:
            raise ConfigError(f"no {action.value} command configured")
        return render(template, {**self.vars, **params})


class PanelConfig(_Strict):
    """Every host and service of the panel."""

    hosts: dict[str, HostConfig]
    services: dict[str, ServiceConfig]

    @model_validator(mode="after")
    def _check_names(self) -> PanelConfig:
        for kind, names in (("host", self.hosts), ("service", self.services)):
            for name in names:
                if not _NAME.match(name):
                    raise ValueError(f"{kind} name {name!r} must match {NAME_PATTERN}")
        for name, service in self.services.items():
            if service.host not in self.hosts:
                raise ValueError(f"service {name!r} runs on unknown host {service.host!r}")
        if not self.services:
            raise ValueError("no service configured")
        return self

    def is_allowed(self, command: str, limits: Limits) -> bool:
        """True when ``command`` is a rendering of a configured template with valid params.

        The audit tests use it to check what reached a host; the service itself never needs
        it, since it only ever sends rendered templates.
        """
        for service in self.services.values():
            for action in Action:
                template = service.commands.template(action)
                if template is None:
                    continue
                match = template_pattern(template, service.vars).fullmatch(command)
                if match is None:
                    continue
                if all(
                    limits.range_of(name)[0] <= int(value) <= limits.range_of(name)[1]
                    for name, value in match.groupdict().items()
                ):
                    return True
        return False


def parse_config(raw: Any) -> PanelConfig:
    """Validate a loaded YAML document; raise `ConfigError` with every problem named."""
    if not isinstance(raw, Mapping):
        raise ConfigError("the configuration must be a mapping with hosts and services")
    try:
        return PanelConfig.model_validate(raw)
    except ValidationError as err:
        problems = []
        for error in err.errors():
            location = ".".join(str(part) for part in error["loc"]) or "configuration"
            problems.append(f"{location}: {error['msg']}")
        raise ConfigError("invalid control panel configuration: " + "; ".join(problems)) from err
