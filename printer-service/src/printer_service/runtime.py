"""Wiring: settings -> adapters -> service -> HTTP app, in one place (style habit 2)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from fastapi import FastAPI
from pymongo import MongoClient

from pantheon_common.amqp import AmqpPublisher
from pantheon_common.errors import ConfigurationError
from pantheon_common.farm import PrinterSpec, load_layout
from pantheon_common.gcode_store import LocalGcodeStore
from pantheon_common.http import run_blocking_check
from pantheon_common.mongo import Document, ensure_indexes, mongo_client, ping
from pantheon_contracts.names import READY_QUEUE
from pantheon_contracts.printer import PrinterModel
from printer_service.adapters.bambu_driver import BambuConfig, BambuDriver
from printer_service.adapters.outbox import OutboxSender
from printer_service.adapters.store import INDEXES, MongoFarmStore
from printer_service.adapters.tls import printer_tls_context
from printer_service.api.app import create_app
from printer_service.domain.ports import LinkState, PrinterDriver
from printer_service.service import PrinterService, ServiceConfig
from printer_service.settings import Settings, read_endpoints

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrinterTarget:
    """Where and what the printer is, after the endpoint overrides."""

    printer_id: int
    model: PrinterModel
    host: str
    mqtt_port: int
    ftps_port: int
    serial: str
    access_code: str


def resolve_target(
    settings: Settings, printer_id: int, env: Mapping[str, str] | None = None
) -> PrinterTarget:
    """The printer from the farm layout, overridden by ``BAMBU_ENDPOINTS_FILE`` if set."""
    layout = load_layout(settings.farm_layout)
    try:
        spec: PrinterSpec = layout.printer(printer_id)
    except KeyError as err:
        raise ConfigurationError(
            f"printer {printer_id} is not in the farm layout {settings.farm_layout}"
        ) from err
    host, mqtt_port, ftps_port, serial, model = (
        spec.host,
        spec.mqtt_port,
        spec.ftps_port,
        spec.serial,
        spec.model,
    )
    if settings.bambu_endpoints_file is not None:
        endpoint = read_endpoints(settings.bambu_endpoints_file).get(printer_id)
        if endpoint is None:
            raise ConfigurationError(
                f"printer {printer_id} is not in {settings.bambu_endpoints_file}"
            )
        host, mqtt_port, ftps_port, serial = (
            endpoint.host,
            endpoint.mqtt_port,
            endpoint.ftps_port,
            endpoint.serial,
        )
        if endpoint.model:
            model = PrinterModel(endpoint.model)
    return PrinterTarget(
        printer_id=printer_id,
        model=model,
        host=host,
        mqtt_port=mqtt_port,
        ftps_port=ftps_port,
        serial=serial,
        access_code=spec.access_code(env if env is not None else os.environ),
    )


def make_bambu_driver(settings: Settings, target: PrinterTarget) -> PrinterDriver:
    """The ``bambu`` driver for ``target``."""
    try:
        context = printer_tls_context(
            target.serial, settings.bambu_ca_file, insecure=settings.bambu_tls_insecure
        )
    except (ValueError, OSError) as err:
        raise ConfigurationError(f"printer TLS: {err}") from err
    return BambuDriver(
        BambuConfig(
            printer_id=target.printer_id,
            model=target.model,
            host=target.host,
            serial=target.serial,
            access_code=target.access_code,
            tls_context=context,
            mqtt_port=target.mqtt_port,
            ftps_port=target.ftps_port,
            silence_timeout_s=settings.bambu_silence_timeout_s,
            push_start_after_s=min(
                settings.bambu_push_start_after_s, settings.bambu_silence_timeout_s
            ),
            auth_retry_s=settings.bambu_auth_retry_s,
            ftps_timeout_s=settings.bambu_ftps_timeout_s,
            url_scheme=settings.bambu_url_scheme,
        )
    )


DRIVERS: dict[str, Callable[[Settings, PrinterTarget], PrinterDriver]] = {
    "bambu": make_bambu_driver,
}
"""Printer drivers by the name given on the command line."""


@dataclass
class Runtime:
    """Everything one printer-service process runs."""

    settings: Settings
    target: PrinterTarget
    service: PrinterService
    sender: OutboxSender
    app: FastAPI
    mongo: MongoClient[Document]

    def start(self) -> None:
        self.sender.start()
        self.service.start()

    def stop(self) -> None:
        self.service.stop()
        self.sender.stop()
        self.mongo.close()


def build(
    settings: Settings,
    printer_id: int,
    driver_name: str,
    *,
    env: Mapping[str, str] | None = None,
) -> Runtime:
    """Build (not start) the service of one printer; raises ConfigurationError."""
    factory = DRIVERS.get(driver_name)
    if factory is None:
        raise ConfigurationError(
            f"unknown driver {driver_name!r}; known: {', '.join(sorted(DRIVERS))}"
        )
    target = resolve_target(settings, printer_id, env)
    driver = factory(settings, target)
    mongo = mongo_client(settings.mongo_url, app_name=f"printer-service-{printer_id}")
    db = mongo[settings.mongo_db]
    store = MongoFarmStore(db)
    try:
        ensure_indexes(db, INDEXES)
    except Exception as err:  # the store may come up later; indexes are an optimisation
        log.warning("could not ensure indexes now: %s", err)
    gcode_store = LocalGcodeStore(settings.gcode_store_dir)
    publisher = AmqpPublisher(
        settings.amqp_url,
        (READY_QUEUE,),
        connection_name=f"printer-service-{printer_id}",
        retry_for_s=2.0,
    )
    sender = OutboxSender(store, publisher)
    service = PrinterService(
        ServiceConfig(
            printer_id=printer_id,
            model=target.model,
            driver=driver_name,
            serial=target.serial,
            auto_dispatch=settings.auto_dispatch,
            ready_on_failed=settings.ready_on_failed,
            mirror_min_interval_s=settings.mirror_min_interval_s,
            start_confirm_timeout_s=settings.start_confirm_timeout_s,
            dispatch_retry_s=settings.dispatch_retry_s,
        ),
        driver,
        store,
        gcode_store,
        sender,
    )

    def printer_check() -> None:
        snap = driver.snapshot()
        if snap.link != LinkState.CONNECTED:
            detail = f": {snap.last_error}" if snap.last_error else ""
            raise RuntimeError(f"{snap.link.value}{detail}")

    app = create_app(
        service,
        gcode_store,
        token=settings.service_token.get_secret_value(),
        upload_max_bytes=settings.upload_max_bytes,
        checks={
            "mongo": run_blocking_check(lambda: ping(mongo)),
            "printer": run_blocking_check(printer_check),
        },
    )
    return Runtime(settings, target, service, sender, app, mongo)
