"""Wiring: settings -> adapters -> context -> app, in one place."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import httpx
from argon2 import PasswordHasher
from fastapi import FastAPI
from pymongo import MongoClient

from pantheon_api.adapters.sftp_store import SftpConfig, SftpGcodeStore
from pantheon_api.adapters.store import FarmStore
from pantheon_api.adapters.upstream import Upstream
from pantheon_api.api.app import create_app
from pantheon_api.api.deps import Context
from pantheon_api.domain.login import LoginBackoff
from pantheon_api.domain.metadata import ArchiveLimits
from pantheon_api.settings import Settings
from pantheon_common.amqp import AmqpPublisher
from pantheon_common.auth import Authenticator
from pantheon_common.errors import ConfigurationError
from pantheon_common.farm import load_layout, printer_service_url
from pantheon_common.gcode_store import GcodeStore, LocalGcodeStore
from pantheon_common.http import run_blocking_check
from pantheon_common.mongo import Document, mongo_client
from pantheon_contracts.names import HOMING_QUEUE

log = logging.getLogger(__name__)


def make_gcode_store(settings: Settings) -> GcodeStore:
    """The configured G-code store (local directory or SFTP)."""
    if settings.gcode_store == "local":
        return LocalGcodeStore(settings.gcode_store_dir)
    if settings.sftp_key_file is None or settings.sftp_known_hosts is None:
        raise ConfigurationError(
            "GCODE_STORE=sftp needs SFTP_KEY_FILE and SFTP_KNOWN_HOSTS (the server's host key)"
        )
    return SftpGcodeStore(
        SftpConfig(
            host=settings.sftp_host,
            port=settings.sftp_port,
            user=settings.sftp_user,
            key_file=Path(settings.sftp_key_file),
            known_hosts=Path(settings.sftp_known_hosts),
            root=settings.sftp_root,
            timeout_s=settings.sftp_timeout_s,
        )
    )


@dataclass
class Runtime:
    """The app and what must be closed with it."""

    app: FastAPI
    context: Context
    mongo: MongoClient[Document]
    http: httpx.AsyncClient
    publisher: AmqpPublisher

    def close(self) -> None:
        self.publisher.close()
        self.mongo.close()


def build(
    settings: Settings,
    *,
    gcode_store: GcodeStore | None = None,
    http_client: httpx.AsyncClient | None = None,
) -> Runtime:
    """Build (not start) the API from settings; raises ConfigurationError."""
    authenticator = Authenticator.from_settings(settings)
    layout = load_layout(settings.farm_layout)
    printer_service_url(settings.printer_service_url_template, 1)  # a bad template fails now
    mongo = mongo_client(settings.mongo_url, app_name="pantheon-api")
    store = FarmStore(mongo[settings.mongo_db])
    try:
        store.ensure_indexes()
    except Exception as err:  # the store may come up later; indexes are an optimisation
        log.warning("could not ensure indexes now: %s", err)
    gcode = gcode_store if gcode_store is not None else make_gcode_store(settings)
    http = http_client or httpx.AsyncClient(
        timeout=httpx.Timeout(settings.upstream_timeout_s), follow_redirects=False
    )
    token = settings.service_token.get_secret_value()
    publisher = AmqpPublisher(
        settings.amqp_url, (HOMING_QUEUE,), connection_name="pantheon-api", retry_for_s=5.0
    )

    def publish_homing(message_id: str) -> None:
        publisher.publish(HOMING_QUEUE, b"homing", message_id=message_id)

    ctx = Context(
        store=store,
        gcode=gcode,
        authenticator=authenticator,
        hasher=PasswordHasher(),
        printer_service=Upstream("printer-service", "http://printer-service", token, http),
        printer_url_template=settings.printer_service_url_template,
        orchestrator=Upstream("robot-arm-orchestrator", settings.orchestrator_url, token, http),
        utilization=Upstream("printer-utilization", settings.utilization_url, token, http),
        control_panel=Upstream("control-panel-api", settings.control_panel_url, token, http),
        publish_homing=publish_homing,
        upload_limit=settings.gcode_upload_max_bytes,
        archive_limits=ArchiveLimits(
            max_uncompressed_bytes=settings.gcode_max_uncompressed_bytes,
            max_ratio=settings.gcode_max_compression_ratio,
            max_members=settings.gcode_max_members,
        ),
        dev_mode=settings.dev_mode,
        events_poll_s=settings.events_poll_s,
        throttle=LoginBackoff(settings.login_max_failures),
        layout=layout,
    )
    app = create_app(ctx, checks={"mongodb": run_blocking_check(store.ping)})
    return Runtime(app=app, context=ctx, mongo=mongo, http=http, publisher=publisher)
