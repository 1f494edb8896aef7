"""printer-utilization settings (pydantic-settings), built once in ``main()``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from pantheon_common.settings import (
    FarmSettings,
    MongoSettings,
    MysqlSettings,
    ServiceTokenSettings,
)


class Settings(MysqlSettings, MongoSettings, ServiceTokenSettings, FarmSettings):
    """Environment of printer-utilization (see README and ``.env.example``)."""

    http_host: str = Field(default="0.0.0.0", description="address the HTTP API binds")  # noqa: S104
    http_port: int = Field(default=9972, ge=1, le=65535, description="HTTP API port")
    printer_service_url_template: str = Field(
        default="http://printer-service-{id}:8080",
        description="printer-service base URL; {id}/{printer_id} and {port} (500NN) filled in",
    )
    poll_interval_s: float = Field(default=5.0, gt=0, description="seconds between poll cycles")
    poll_timeout_s: float = Field(default=3.0, gt=0, description="timeout of one GET /status")
    data_gap_s: float | None = Field(
        default=None,
        gt=0,
        description="no sample for longer than this ends an interval (default 3 poll intervals)",
    )
    spool_path: Path | None = Field(
        default=Path("/var/lib/pantheon/utilization/spool.jsonl"),
        description="on-disk copy of the write buffer (empty: memory only)",
    )
    buffer_max_events: int = Field(
        default=100_000, ge=100, description="pending writes kept; the oldest are dropped beyond"
    )
    startup_db_wait_s: float = Field(
        default=10.0, ge=0, description="how long start-up waits for MySQL before polling anyway"
    )

    @field_validator("data_gap_s", "spool_path", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        # An empty variable in .env means "not set" (default gap, memory-only buffer).
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def gap_s(self) -> float:
        """The effective data gap."""
        return self.data_gap_s if self.data_gap_s is not None else 3 * self.poll_interval_s
