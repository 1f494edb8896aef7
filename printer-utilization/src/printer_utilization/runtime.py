"""Wiring: settings -> clients -> adapters -> poller, writer and HTTP app (one place)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Gauge
from pymongo import MongoClient

from pantheon_common.errors import PantheonError, StoreUnavailable
from pantheon_common.farm import load_layout
from pantheon_common.http import run_blocking_check
from pantheon_common.mongo import mongo_client
from printer_utilization.adapters.db import make_engine
from printer_utilization.adapters.migrate import upgrade
from printer_utilization.adapters.printers import FilamentLookup, PrinterDirectory
from printer_utilization.adapters.spool import EventBuffer
from printer_utilization.adapters.status_http import HttpStatusSource
from printer_utilization.adapters.store import MysqlStore
from printer_utilization.api.app import create_app
from printer_utilization.domain.intervals import IntervalTracker
from printer_utilization.poller import Poller
from printer_utilization.settings import Settings
from printer_utilization.writer import Writer

log = logging.getLogger("printer_utilization")


@dataclass
class Runtime:
    """Everything one printer-utilization process runs."""

    settings: Settings
    store: MysqlStore
    buffer: EventBuffer
    tracker: IntervalTracker
    poller: Poller
    writer: Writer
    status_source: HttpStatusSource
    mongo: MongoClient[dict[str, object]] | None
    registry: CollectorRegistry
    app: FastAPI = field(init=False)
    _stop: asyncio.Event | None = None
    _task: asyncio.Task[None] | None = None

    def prepare_database(self, wait_s: float) -> None:
        """Migrate and load the open intervals, waiting up to ``wait_s`` for MySQL.

        When MySQL stays away polling starts anyway with no open intervals (the writer
        migrates later, and opening an interval closes any stale open one), so no sample is
        lost to a slow database.
        """
        deadline = time.monotonic() + wait_s
        while True:
            try:
                upgrade(self.store.engine)
                opened = self.store.load_open_intervals()
            except StoreUnavailable as err:
                if time.monotonic() >= deadline:
                    log.warning("MySQL not available at start (%s); polling anyway", err)
                    return
                time.sleep(1.0)
                continue
            for printer_id, interval in opened.items():
                self.tracker.resume(printer_id, interval)
            log.info("schema up to date; %d open intervals resumed", len(opened))
            return

    async def start(self) -> None:
        """Start the writer thread and the poller task."""
        await asyncio.to_thread(self.prepare_database, self.settings.startup_db_wait_s)
        self.writer.start()
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(
            self.poller.run(self.settings.poll_interval_s, self._stop), name="poller"
        )

    async def stop(self) -> None:
        """Stop polling, then let the writer drain what it can."""
        if self._stop is not None:
            self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.to_thread(self.writer.stop)
        await self.status_source.aclose()
        if self.mongo is not None:
            self.mongo.close()
        self.store.engine.dispose()


def build(settings: Settings) -> Runtime:
    """Build the runtime from settings (opens no socket yet)."""
    registry = CollectorRegistry()
    engine = make_engine(settings.mysql_url)
    store = MysqlStore(engine)
    mongo: MongoClient[dict[str, object]] = mongo_client(
        settings.mongo_url, app_name="printer-utilization", timeout_ms=3000
    )
    directory = PrinterDirectory(
        settings.printer_service_url_template,
        mongo=mongo,
        mongo_db=settings.mongo_db,
        layout=partial(load_layout, settings.farm_layout),
    )
    buffer = EventBuffer(settings.spool_path, settings.buffer_max_events)
    tracker = IntervalTracker(settings.gap_s)
    source = HttpStatusSource(settings.service_token.get_secret_value(), settings.poll_timeout_s)
    poller = Poller(
        directory,
        source,
        tracker,
        buffer,
        filament=FilamentLookup(mongo, settings.mongo_db),
        registry=registry,
    )
    writer = Writer(store, buffer, prepare=partial(upgrade, engine), registry=registry)
    Gauge(
        "utilization_buffer_pending", "Events waiting for MySQL.", registry=registry
    ).set_function(lambda: float(len(buffer)))
    Gauge(
        "utilization_buffer_dropped",
        "Events dropped: buffer full, unreadable or refused.",
        registry=registry,
    ).set_function(lambda: float(buffer.dropped + writer.rejected))
    Gauge("utilization_mysql_up", "0 while writes to MySQL fail.", registry=registry).set_function(
        lambda: 0.0 if writer.mysql_down else 1.0
    )
    Gauge(
        "utilization_printers_polled", "Printers in the last poll cycle.", registry=registry
    ).set_function(lambda: float(len(poller.known_printers)))
    runtime = Runtime(settings, store, buffer, tracker, poller, writer, source, mongo, registry)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = create_app(
        store,
        token=settings.service_token.get_secret_value(),
        known_printers=lambda: set(poller.known_printers),
        checks={"mysql": run_blocking_check(store.ping)},
        registry=registry,
    )
    app.router.lifespan_context = lifespan
    runtime.app = app
    return runtime


__all__ = ["PantheonError", "Runtime", "build"]
