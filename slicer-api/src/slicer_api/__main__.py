"""Entry point: ``slicer-api`` serves HTTP on :9980; ``install-engine`` installs PrusaSlicer."""

from __future__ import annotations

import argparse
import logging
import sys

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from pantheon_common.errors import ConfigurationError
from pantheon_common.gcode_store import LocalGcodeStore
from pantheon_common.log import configure_logging
from pantheon_common.settings import load_settings
from slicer_api.adapters.engine import Engine, ensure_engine, install_engine
from slicer_api.adapters.limits import ProcessLimits
from slicer_api.adapters.mesh_readers import ZipLimits
from slicer_api.adapters.pantheon import PantheonClient
from slicer_api.adapters.pricing_config import load_rates
from slicer_api.adapters.profiles import load_catalog
from slicer_api.api.app import create_app
from slicer_api.errors import EngineMissing
from slicer_api.service import SlicerService
from slicer_api.settings import Settings

log = logging.getLogger("slicer_api")


def build(settings: Settings) -> FastAPI:
    """Wire settings -> engine, catalog, rates, clients -> service -> app (no I/O at import)."""
    if not settings.api_key_digests:
        if not settings.dev_mode:
            raise ConfigurationError(
                "SLICER_API_KEYS is empty: set the sha256 hex digest of each shop API key"
            )
        log.warning("SLICER_API_KEYS is empty: every authenticated route answers 401")
    binary = ensure_engine(settings.slicer_engine, install=settings.slicer_install_engine)
    catalog = load_catalog(settings.slicer_profiles_dir)
    registry = CollectorRegistry()
    service = SlicerService(
        catalog=catalog,
        engine=Engine(
            binary,
            catalog,
            ProcessLimits(settings.slicer_engine_memory_mb, settings.slicer_engine_cpu_s),
            standby=settings.slicer_standby_engines,
        ),
        rates=load_rates(settings),
        pantheon=PantheonClient(
            settings.pantheon_api_url,
            settings.pantheon_api_key.get_secret_value() if settings.pantheon_api_key else "",
            settings.pantheon_api_timeout_s,
        ),
        registry=registry,
        work_dir=settings.slicer_work_dir,
        gcode_store=(
            LocalGcodeStore(settings.slicer_gcode_store_dir)
            if settings.slicer_gcode_store_dir is not None
            else None
        ),
        workers=settings.slicer_workers,
        max_queued=settings.slicer_max_queued,
        slice_timeout_s=settings.slicer_timeout_s,
        parse_timeout_s=settings.slicer_parse_timeout_s,
        parse_limits=ProcessLimits(settings.slicer_parse_memory_mb, settings.slicer_parse_cpu_s),
        zip_limits=ZipLimits(settings.slicer_zip_max_bytes, settings.slicer_zip_max_ratio),
        max_triangles=settings.slicer_max_triangles,
        job_ttl_s=settings.slicer_job_ttl_s,
    )
    return create_app(
        service,
        api_key_digests=settings.api_key_digests,
        max_upload_bytes=settings.slicer_max_upload_bytes,
        registry=registry,
    )


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run."""
    parser = argparse.ArgumentParser(prog="slicer-api", description=__doc__)
    parser.add_argument(
        "command",
        nargs="?",
        default="serve",
        choices=["serve", "install-engine"],
        help="serve (default) or install-engine (apt-get install prusa-slicer, as root)",
    )
    args = parser.parse_args(argv)
    if args.command == "install-engine":
        configure_logging("slicer-api", "INFO", "text")
        try:
            path = ensure_engine("prusa-slicer", install=True)
        except EngineMissing as err:
            print(f"slicer-api: {err.reason}", file=sys.stderr)
            raise SystemExit(1) from err
        print(path)
        return
    try:
        settings = load_settings(Settings)
        configure_logging("slicer-api", settings.log_level, settings.log_format)
        app = build(settings)
    except (ConfigurationError, EngineMissing) as err:
        print(f"slicer-api: {err}", file=sys.stderr)
        raise SystemExit(2) from err
    import uvicorn

    uvicorn.run(
        app,
        host=settings.slicer_api_host,
        port=settings.slicer_api_port,
        log_config=None,
        workers=1,  # jobs live in this process's memory; scale with SLICER_WORKERS
    )


__all__ = ["build", "install_engine", "main"]

if __name__ == "__main__":
    main()
