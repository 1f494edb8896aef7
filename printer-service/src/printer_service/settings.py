"""printer-service settings (pydantic-settings), built once in ``main()``."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from pantheon_common.errors import ConfigurationError
from pantheon_common.settings import (
    AmqpSettings,
    FarmSettings,
    GcodeStoreSettings,
    MongoSettings,
    ServiceTokenSettings,
)


class Settings(AmqpSettings, MongoSettings, ServiceTokenSettings, FarmSettings, GcodeStoreSettings):
    """Environment of one printer-service; the printer id and driver come from the command line.

    The printer's LAN access code is ``PRINTER_<id>_ACCESS_CODE``.
    """

    http_host: str = Field(default="0.0.0.0", description="address the HTTP API binds")  # noqa: S104
    http_port: int = Field(default=8080, ge=1, le=65535, description="HTTP API port")
    bambu_ca_file: Path | None = Field(
        default=None, description="CA bundle that signed the printers' certificates"
    )
    bambu_tls_insecure: bool = Field(
        default=False, description="skip printer certificate checks (explicit opt-in, warned)"
    )
    bambu_endpoints_file: Path | None = Field(
        default=None,
        description="bambu-sim endpoints.json overriding host/ports/serial/model of the layout",
    )
    bambu_silence_timeout_s: float = Field(
        default=60.0, gt=0, description="rebuild the MQTT connection after this much silence"
    )
    bambu_push_start_after_s: float = Field(
        default=20.0, gt=0, description="send pushing.start after this much silence"
    )
    bambu_auth_retry_s: float = Field(
        default=300.0, gt=0, description="wait after 'access code refused' before retrying"
    )
    bambu_ftps_timeout_s: float = Field(default=60.0, gt=0, description="FTPS control timeout")
    bambu_url_scheme: str = Field(
        default="ftp:///", description="project_file url prefix (ftp:/// or file:///sdcard/)"
    )
    auto_dispatch: bool = Field(default=True, description="claim queued jobs automatically")
    ready_on_failed: bool = Field(
        default=True, description="publish ready after a FAILED print too (plate may hold plastic)"
    )
    start_confirm_timeout_s: float = Field(
        default=180.0,
        gt=0,
        description="wait this long for PREPARE/RUNNING after project_file; without a start or "
        "a refusal, hold the job as long again in case the printer starts late",
    )
    dispatch_retry_s: float = Field(
        default=15.0, ge=0, description="pause after a failed dispatch before the next claim"
    )
    upload_max_bytes: int = Field(
        default=1024**3, gt=0, description="largest accepted POST /upload file, bytes"
    )
    mirror_min_interval_s: float = Field(
        default=1.0,
        ge=0,
        description="at most one printers write per interval (state changes excepted)",
    )


class Endpoint(BaseModel):
    """One printer in bambu-sim's ``endpoints.json``."""

    model_config = ConfigDict(extra="ignore")

    host: str
    mqtt_port: int
    ftps_port: int
    serial: str
    model: str | None = None


def read_endpoints(path: Path) -> dict[int, Endpoint]:
    """Parse ``endpoints.json`` ({"<id>": {host, mqtt_port, ftps_port, serial, model}})."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return {int(k): Endpoint.model_validate(v) for k, v in raw.items()}
    except (OSError, ValueError, AttributeError) as err:
        raise ConfigurationError(f"cannot read printer endpoints {path}: {err}") from err
