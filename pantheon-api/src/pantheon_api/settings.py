"""Settings of pantheon-api (pydantic-settings), built once in ``main()``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from pantheon_common.auth import AuthSettings
from pantheon_common.settings import (
    AmqpSettings,
    FarmSettings,
    GcodeStoreSettings,
    MongoSettings,
)

MiB = 1024 * 1024


class Settings(AuthSettings, MongoSettings, AmqpSettings, GcodeStoreSettings, FarmSettings):
    """Every variable pantheon-api reads (listed in ``.env.example``, block pantheon-api)."""

    http_host: str = Field(default="0.0.0.0", description="address the API listens on")  # noqa: S104
    pantheon_api_port: int = Field(default=9971, ge=1, le=65535, description="API port")

    # -- first admin (only used while no admin exists) ------------------------------------
    pantheon_admin_username: str | None = Field(
        default=None, description="create this admin at start if no admin exists"
    )
    pantheon_admin_password: SecretStr | None = Field(
        default=None, description="password of PANTHEON_ADMIN_USERNAME (>= 12 characters)"
    )

    # -- G-code store ---------------------------------------------------------------------
    gcode_store: Literal["local", "sftp"] = Field(
        default="local", description="local directory (GCODE_STORE_DIR) or the farm's SFTP server"
    )
    sftp_host: str = Field(default="127.0.0.1", description="SFTP server of the G-code store")
    sftp_port: int = Field(default=22, ge=1, le=65535)
    sftp_user: str = Field(default="gcode", description="SFTP account")
    sftp_key_file: Path | None = Field(default=None, description="private key of SFTP_USER")
    sftp_known_hosts: Path | None = Field(
        default=None, description="known_hosts file holding the SFTP server's host key"
    )
    sftp_root: str = Field(default="gcode", description="directory of the files on the server")
    sftp_timeout_s: float = Field(default=15.0, gt=0, le=300)

    # -- uploads --------------------------------------------------------------------------
    gcode_upload_max_bytes: int = Field(
        default=512 * MiB, ge=1, description="largest G-code upload accepted (413 beyond)"
    )
    gcode_max_uncompressed_bytes: int = Field(
        default=2048 * MiB, ge=1, description="3MF: largest total uncompressed size"
    )
    gcode_max_compression_ratio: float = Field(
        default=100.0, gt=1, description="3MF: largest uncompressed/compressed ratio per member"
    )
    gcode_max_members: int = Field(default=10_000, ge=1, description="3MF: most members")

    # -- other services -------------------------------------------------------------------
    printer_service_url_template: str = Field(
        default="http://printer-service-{printer_id}:8080",
        description="URL of a printer's printer-service; {printer_id} is replaced",
    )
    orchestrator_url: str = Field(default="http://robot-arm-orchestrator:9973")
    utilization_url: str = Field(default="http://printer-utilization:9972")
    control_panel_url: str = Field(default="http://control-panel-api:30000")
    upstream_timeout_s: float = Field(
        default=10.0, gt=0, le=300, description="timeout of calls to the other services"
    )

    # -- live updates and login -------------------------------------------------------------
    events_poll_s: float = Field(default=1.0, gt=0, le=60, description="SSE MongoDB poll period")
    login_max_failures: int = Field(
        default=10,
        ge=1,
        description="failed logins from one client address before it backs off (429)",
    )
