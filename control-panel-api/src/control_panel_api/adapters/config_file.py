"""Loading the YAML configuration, with ``${VAR}`` / ``${VAR:-default}`` in the hosts section."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from control_panel_api.domain.config import ConfigError, PanelConfig, parse_config

__all__ = ["expand_env", "load_config"]

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(value: Any, environ: Mapping[str, str], where: str) -> Any:
    """``value`` with ``${NAME}`` and ``${NAME:-default}`` replaced in every string."""
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            found = environ.get(name, "")
            if found:
                return found
            if default is not None:
                return default
            raise ConfigError(f"{where}: environment variable {name} is not set")

        return _VARIABLE.sub(substitute, value)
    if isinstance(value, dict):
        return {k: expand_env(v, environ, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, environ, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> PanelConfig:
    """Read and check the configuration file.

    Only the ``hosts`` section is expanded from the environment: service templates are shell
    text where ``${...}`` belongs to the remote shell.
    """
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"cannot read the control panel configuration {path}: {err}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from err
    if isinstance(raw, dict) and "hosts" in raw:
        env = os.environ if environ is None else environ
        raw = {**raw, "hosts": expand_env(raw["hosts"], env, "hosts")}
    return parse_config(raw)
