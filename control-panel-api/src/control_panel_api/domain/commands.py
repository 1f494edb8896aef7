"""Command templates: the only strings ever sent to a remote shell, with quoted parameters.

A template is a fixed shell command from the configuration with ``{{name}}`` placeholders.
Rendering replaces each placeholder with ``shlex.quote(value)``; nothing else of a request
reaches the remote shell. Other braces (``{{.State.Running}}`` of a docker Go template, shell
``${VAR}``) are left alone: a placeholder is an identifier and nothing else.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "PARAMETERS",
    "PLACEHOLDER",
    "Action",
    "InvalidParameter",
    "Limits",
    "TemplateError",
    "placeholders",
    "render",
    "template_pattern",
    "validate_parameters",
]

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class Action(StrEnum):
    """What a template does; every configured service defines one template per action."""

    START = "start"
    STOP = "stop"
    STATUS = "status"
    LOGS = "logs"
    FOLLOW = "follow"


PARAMETERS: Mapping[Action, frozenset[str]] = {
    Action.START: frozenset(),
    Action.STOP: frozenset(),
    Action.STATUS: frozenset(),
    Action.LOGS: frozenset({"lines"}),
    Action.FOLLOW: frozenset({"lines", "duration_s"}),
}
"""Parameters a request supplies per action (integers only); everything else is configured."""


class TemplateError(ValueError):
    """A template references an unknown name or cannot be rendered."""


class InvalidParameter(ValueError):
    """A request parameter is missing, of the wrong type, or out of its range."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Ranges of the request parameters (inclusive)."""

    max_log_lines: int = 2000
    max_follow_s: int = 300

    def range_of(self, name: str) -> tuple[int, int]:
        """(lowest, highest) value ``name`` may take."""
        if name == "lines":
            return 1, self.max_log_lines
        if name == "duration_s":
            return 1, self.max_follow_s
        raise InvalidParameter(f"unknown parameter {name!r}")


def placeholders(template: str) -> set[str]:
    """Names the template references."""
    return {match.group(1) for match in PLACEHOLDER.finditer(template)}


def validate_parameters(
    action: Action, params: Mapping[str, object], limits: Limits
) -> dict[str, int]:
    """Exactly the parameters ``action`` takes, each an int inside its range."""
    expected = PARAMETERS[action]
    unknown = set(params) - expected
    if unknown:
        raise InvalidParameter(f"{action.value} takes no parameter {sorted(unknown)}")
    checked: dict[str, int] = {}
    for name in sorted(expected):
        if name not in params:
            raise InvalidParameter(f"{action.value} needs the parameter {name!r}")
        value = params[name]
        # bool is an int subclass: True must not become "1"
        if type(value) is not int:
            raise InvalidParameter(f"{name} must be an integer")
        low, high = limits.range_of(name)
        if not low <= value <= high:
            raise InvalidParameter(f"{name} must be between {low} and {high}")
        checked[name] = value
    return checked


def render(template: str, values: Mapping[str, str | int]) -> str:
    """``template`` with every placeholder replaced by its quoted value."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise TemplateError(f"no value for {{{{{name}}}}}")
        value = values[name]
        text = str(value) if isinstance(value, int) else value
        if "\0" in text:
            raise TemplateError(f"value of {name} holds a NUL byte")
        return shlex.quote(text)

    return PLACEHOLDER.sub(substitute, template)


def template_pattern(template: str, fixed: Mapping[str, str]) -> re.Pattern[str]:
    """A regex matching every rendering of ``template`` with ``fixed`` values and any integers.

    Used to check, after the fact, that a command seen on a host is an allow-listed one.
    """
    parts: list[str] = []
    seen: set[str] = set()
    position = 0
    for match in PLACEHOLDER.finditer(template):
        parts.append(re.escape(template[position : match.start()]))
        name = match.group(1)
        if name in fixed:
            parts.append(re.escape(shlex.quote(fixed[name])))
        elif name in seen:
            parts.append(f"(?P={name})")
        else:
            # str(int) of a positive integer: no sign, no leading zero
            parts.append(f"(?P<{name}>[1-9][0-9]*)")
            seen.add(name)
        position = match.end()
    parts.append(re.escape(template[position:]))
    return re.compile("".join(parts), re.DOTALL)
