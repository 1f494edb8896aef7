"""Which printer-services to poll, and where: MongoDB ``printers`` first, the farm layout else.

A ``printers`` document may carry ``service_url`` (e.g. ``http://10.0.0.7:8080``); otherwise the
URL comes from ``PRINTER_SERVICE_URL_TEMPLATE`` with ``{id}`` (or ``{printer_id}``) and ``{port}``
(the published host port ``500NN``) filled in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import pymongo.errors
from pymongo import MongoClient

from pantheon_common.farm import FarmLayout
from pantheon_common.log import OutageLog
from pantheon_contracts.names import Collections
from printer_utilization.domain.targets import PrinterTarget, service_url

log = logging.getLogger(__name__)

Document = dict[str, Any]


class PrinterDirectory:
    """Lists the printers to poll; remembers the last good list while MongoDB is away."""

    def __init__(
        self,
        template: str,
        *,
        mongo: MongoClient[Document] | None = None,
        mongo_db: str = "pantheon",
        layout: Callable[[], FarmLayout] | None = None,
    ) -> None:
        self._template = template
        self._mongo = mongo
        self._db = mongo_db
        self._layout = layout
        self._last: list[PrinterTarget] = []
        self._outage = OutageLog(log, "MongoDB printers")

    def targets(self) -> list[PrinterTarget]:
        """Printers of MongoDB ``printers`` (if any), else of the farm layout (sorted by id)."""
        found = self._from_mongo()
        if found is None:
            found = self._last or self._from_layout()
        elif not found:
            found = self._from_layout()
        self._last = found
        return list(found)

    def _from_mongo(self) -> list[PrinterTarget] | None:
        if self._mongo is None:
            return None
        try:
            docs: Sequence[Document] = list(
                self._mongo[self._db][Collections.PRINTERS].find({}, {"_id": 1, "service_url": 1})
            )
        except pymongo.errors.PyMongoError as err:
            self._outage.failure(err)
            return None
        self._outage.success()
        targets: dict[int, PrinterTarget] = {}
        for doc in docs:
            try:
                printer_id = int(doc["_id"])
            except (KeyError, TypeError, ValueError):
                continue
            url = doc.get("service_url")
            base = (
                str(url).rstrip("/")
                if isinstance(url, str) and url
                else service_url(self._template, printer_id)
            )
            targets[printer_id] = PrinterTarget(printer_id, base)
        return [targets[k] for k in sorted(targets)]

    def _from_layout(self) -> list[PrinterTarget]:
        if self._layout is None:
            return []
        try:
            layout = self._layout()
        except Exception as err:  # a broken layout file must not stop the poller
            log.warning("cannot read the farm layout: %s", err)
            return []
        return [
            PrinterTarget(p.id, service_url(self._template, p.id))
            for p in sorted(layout.printers, key=lambda p: p.id)
        ]


class FilamentLookup:
    """Grams of filament of a G-code file from MongoDB ``gcode_files`` (None when unknown).

    Looks the file up by ``name`` (or ``_id``) and reads ``filament_g`` (or ``filament_grams``).
    """

    def __init__(self, mongo: MongoClient[Document], mongo_db: str) -> None:
        self._mongo = mongo
        self._db = mongo_db

    def grams(self, file: str) -> float | None:
        """Filament weight of ``file``; None if not recorded or MongoDB is away."""
        if not file:
            return None
        try:
            doc = self._mongo[self._db][Collections.GCODE_FILES].find_one(
                {"$or": [{"name": file}, {"_id": file}]},
                {"filament_g": 1, "filament_grams": 1},
            )
        except pymongo.errors.PyMongoError:
            return None
        if not doc:
            return None
        for key in ("filament_g", "filament_grams"):
            value = doc.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
        return None
