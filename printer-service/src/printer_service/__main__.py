"""``printer-service <printer_id> <driver>``: the one service of one printer."""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn

from pantheon_common.errors import ConfigurationError
from pantheon_common.log import configure_logging
from pantheon_common.settings import load_settings
from printer_service.runtime import DRIVERS, build
from printer_service.settings import Settings

log = logging.getLogger("printer_service")


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, build settings and adapters, serve HTTP until stopped."""
    parser = argparse.ArgumentParser(prog="printer-service", description=__doc__)
    parser.add_argument("printer_id", type=int, help="printer id of the farm layout, e.g. 14")
    parser.add_argument("driver", choices=sorted(DRIVERS), help="printer driver, e.g. bambu")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(Settings)
        configure_logging("printer-service", settings.log_level, settings.log_format)
        runtime = build(settings, args.printer_id, args.driver)
    except ConfigurationError as err:
        print(f"printer-service: {err}", file=sys.stderr)
        return 2
    runtime.start()
    log.info(
        "printer-service %s (%s %s at %s) serving on :%s",
        args.printer_id,
        runtime.target.model.value,
        runtime.target.serial,
        runtime.target.host,
        settings.http_port,
    )
    try:
        uvicorn.run(
            runtime.app,
            host=settings.http_host,
            port=settings.http_port,
            log_level=settings.log_level.lower(),
            access_log=False,
        )
    finally:
        runtime.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
