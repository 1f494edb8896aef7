"""Settings of control-panel-api (built once in main())."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from pantheon_common.auth import AuthSettings
from pantheon_common.settings import AmqpSettings

__all__ = ["Settings"]


class Settings(AuthSettings, AmqpSettings):
    """Environment of control-panel-api (every variable is listed in .env.example)."""

    control_panel_config: Path = Field(
        default=Path("/etc/pantheon/control-panel.yaml"),
        description="YAML file of the managed hosts and services",
    )
    control_panel_host: str = Field(default="0.0.0.0", description="address to listen on")  # noqa: S104
    control_panel_port: int = Field(default=30000, ge=1, le=65535)
    control_panel_audit_log: Path | None = Field(
        default=Path("/var/lib/control-panel/audit.jsonl"),
        description="JSON-lines audit file (every action with its user); empty = logger only",
    )
    control_panel_max_log_lines: int = Field(default=2000, ge=1, le=100_000)
    control_panel_max_follow_s: int = Field(default=300, ge=1, le=3600)
