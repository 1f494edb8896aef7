"""control-panel-api: settings -> configuration -> SSH hosts, queues, audit -> panel -> HTTP."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import uvicorn

from control_panel_api.adapters.audit import AuditLog
from control_panel_api.adapters.config_file import load_config
from control_panel_api.adapters.queues import AmqpQueues
from control_panel_api.adapters.ssh import SshHosts
from control_panel_api.api.app import create_app
from control_panel_api.domain.commands import Limits
from control_panel_api.domain.config import ConfigError
from control_panel_api.domain.panel import ControlPanel
from control_panel_api.settings import Settings
from pantheon_common.auth import Authenticator
from pantheon_common.errors import ConfigurationError
from pantheon_common.http import run_blocking_check
from pantheon_common.log import configure_logging
from pantheon_common.settings import load_settings
from pantheon_contracts.names import READY_QUEUE

log = logging.getLogger("control_panel_api")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the HTTP server until interrupted; exit 2 on a configuration problem."""
    parser = argparse.ArgumentParser(prog="control-panel-api", description=__doc__)
    parser.add_argument("--check-config", action="store_true", help="validate and exit")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(Settings)
        configure_logging("control-panel-api", settings.log_level, settings.log_format)
        config = load_config(settings.control_panel_config)
        authenticator = Authenticator.from_settings(settings)
    except (ConfigurationError, ConfigError) as err:
        print(f"control-panel-api: {err}", file=sys.stderr)
        return 2
    if args.check_config:
        print(f"control-panel-api: {settings.control_panel_config} is valid")
        return 0
    limits = Limits(settings.control_panel_max_log_lines, settings.control_panel_max_follow_s)
    hosts = SshHosts(config.hosts)
    queues = AmqpQueues(settings.amqp_url)
    audit = AuditLog(settings.control_panel_audit_log)
    panel = ControlPanel(config, hosts, queues, audit, limits)
    app = create_app(
        panel,
        authenticator,
        readiness={"rabbitmq": run_blocking_check(lambda: queues.depth(READY_QUEUE))},
    )
    log.info(
        "control-panel-api on %s:%d managing %s",
        settings.control_panel_host,
        settings.control_panel_port,
        ", ".join(config.services),
    )
    try:
        uvicorn.run(
            app,
            host=settings.control_panel_host,
            port=settings.control_panel_port,
            log_config=None,
            access_log=False,
        )
    finally:
        hosts.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
