"""``printer-utilization [serve|migrate]``: poll printer-services, keep utilization in MySQL."""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn

from pantheon_common.errors import ConfigurationError, StoreUnavailable
from pantheon_common.log import configure_logging
from pantheon_common.settings import load_settings, redact_url
from printer_utilization.adapters.db import make_engine
from printer_utilization.adapters.migrate import upgrade
from printer_utilization.runtime import build
from printer_utilization.settings import Settings

log = logging.getLogger("printer_utilization")


def main(argv: list[str] | None = None) -> int:
    """Parse the command line; ``serve`` (default) or ``migrate``."""
    parser = argparse.ArgumentParser(prog="printer-utilization", description=__doc__)
    parser.add_argument(
        "command",
        nargs="?",
        default="serve",
        choices=["serve", "migrate"],
        help="serve: poll and answer HTTP (migrates first); migrate: apply migrations and exit",
    )
    args = parser.parse_args(argv)
    try:
        settings = load_settings(Settings)
    except ConfigurationError as err:
        print(f"printer-utilization: {err}", file=sys.stderr)
        return 2
    configure_logging("printer-utilization", settings.log_level, settings.log_format)
    if args.command == "migrate":
        engine = make_engine(settings.mysql_url)
        try:
            upgrade(engine)
        except StoreUnavailable as err:
            print(f"printer-utilization: {err}", file=sys.stderr)
            return 1
        finally:
            engine.dispose()
        log.info("schema of %s is up to date", redact_url(settings.mysql_url))
        return 0
    runtime = build(settings)
    log.info(
        "printer-utilization serving on :%s, polling every %.1f s (%s)",
        settings.http_port,
        settings.poll_interval_s,
        settings.printer_service_url_template,
    )
    uvicorn.run(
        runtime.app,
        host=settings.http_host,
        port=settings.http_port,
        log_level=settings.log_level.lower(),
        access_log=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
