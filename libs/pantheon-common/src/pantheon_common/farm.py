"""The farm layout (``farm.yaml``): printers, racks, plates and the robot, and seeding MongoDB.

The layout holds the static facts of the farm. Secrets never live in it: a printer's LAN
access code comes from ``PRINTER_<id>_ACCESS_CODE``. Seeding is idempotent: static fields
are (re)written from the file, live state (printer state, where a plate is, its state and
cycle count) is only set when the document is first created.
"""

import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import pymongo.errors
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pymongo.database import Database

from pantheon_common.errors import ConfigurationError, StoreUnavailable
from pantheon_common.mongo import ASCENDING, Document, IndexSpec, ensure_indexes
from pantheon_contracts.beds import BedState, BedType
from pantheon_contracts.names import Collections, printer_service_published_port
from pantheon_contracts.printer import PrinterModel, PrinterState


class Location(BaseModel):
    """Where a printer stands: shelf row and column."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    row: int = Field(ge=0)
    col: int = Field(ge=0)


class PrinterSpec(BaseModel):
    """One printer of the farm."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: int = Field(ge=1, le=999_999, description="printer id; tens digit = row, units = column")
    model: PrinterModel
    driver: str = Field(default="bambu", pattern=r"^[a-z][a-z0-9_]*$")
    host: str = Field(min_length=1, description="address of the printer (or its simulator)")
    serial: str = Field(pattern=r"^[A-Z0-9]{8,20}$", description="Bambu serial, the MQTT CN")
    bed_type: BedType = Field(default=BedType.TEXTURED_PEI, description="default plate type")
    location: Location | None = Field(default=None, description="derived from the id if absent")
    mqtt_port: int = Field(default=8883, ge=1, le=65535)
    ftps_port: int = Field(default=990, ge=1, le=65535)

    @property
    def where(self) -> Location:
        """The given location, or row/column read from the id (14 -> row 1, col 4)."""
        return self.location or Location(row=self.id // 10, col=self.id % 10)

    def access_code(self, env: Mapping[str, str] | None = None) -> str:
        """The LAN access code from ``PRINTER_<id>_ACCESS_CODE``; raises if it is not set."""
        source = os.environ if env is None else env
        name = f"PRINTER_{self.id}_ACCESS_CODE"
        code = source.get(name, "")
        if not code:
            raise ConfigurationError(
                f"{name} is not set (the LAN access code of printer {self.id})"
            )
        return code


class RackSpec(BaseModel):
    """A storage rack: it stands next to printer row ``row``; slots are numbered from 1."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,16}$")
    row: float = Field(ge=0, description="position along the rows of printers")
    slots: int = Field(ge=1, le=1000)


class HomeSlot(BaseModel):
    """A plate's home: a slot of a rack."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rack: str
    slot: int = Field(ge=1)


class BedSpec(BaseModel):
    """A removable print plate."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: int = Field(ge=1)
    type: BedType
    home: HomeSlot


class RobotSpec(BaseModel):
    """The robot arm."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "robot-arm-1"
    host: str = Field(default="127.0.0.1", description="the arm's ROS host (control-panel-api)")


class FarmLayout(BaseModel):
    """The whole farm; validated for unique ids and consistent plate homes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    printers: tuple[PrinterSpec, ...]
    racks: tuple[RackSpec, ...] = ()
    beds: tuple[BedSpec, ...] = ()
    robot: RobotSpec = RobotSpec()

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        _unique("printer id", [p.id for p in self.printers])
        _unique("printer serial", [p.serial for p in self.printers])
        _unique("printer endpoint", [(p.host, p.mqtt_port) for p in self.printers])
        _unique("rack id", [r.id for r in self.racks])
        _unique("bed id", [b.id for b in self.beds])
        _unique("bed home slot", [(b.home.rack, b.home.slot) for b in self.beds])
        racks = {r.id: r for r in self.racks}
        for bed in self.beds:
            rack = racks.get(bed.home.rack)
            if rack is None:
                raise ValueError(f"bed {bed.id}: unknown rack {bed.home.rack!r}")
            if bed.home.slot > rack.slots:
                raise ValueError(f"bed {bed.id}: rack {rack.id} has only {rack.slots} slots")
        return self

    def printer(self, printer_id: int) -> PrinterSpec:
        """The printer with ``printer_id``; KeyError if the farm has none."""
        for p in self.printers:
            if p.id == printer_id:
                return p
        raise KeyError(printer_id)

    @property
    def printer_ids(self) -> frozenset[int]:
        """Every printer id in the farm."""
        return frozenset(p.id for p in self.printers)


def _unique(what: str, values: list[Any]) -> None:
    seen: set[Any] = set()
    for v in values:
        if v in seen:
            raise ValueError(f"duplicate {what}: {v}")
        seen.add(v)


def parse_printer_ids(spec: str) -> list[int]:
    """Parse ``11-15,21,31-32`` into sorted unique ids; ValueError with a reason otherwise."""
    ids: set[int] = set()
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError(f"bad printer range {part!r}; expected e.g. 11-15,21")
        first, last = int(lo), int(hi) if sep else int(lo)
        if first > last:
            raise ValueError(f"bad printer range {part!r}: {first} > {last}")
        ids.update(range(first, last + 1))
    if not ids:
        raise ValueError("no printer ids given")
    return sorted(ids)


def load_layout(path: Path) -> FarmLayout:
    """Read and validate a layout file; :class:`ConfigurationError` says what is wrong."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigurationError(f"cannot read farm layout {path}: {err}") from err
    except yaml.YAMLError as err:
        raise ConfigurationError(f"farm layout {path} is not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise ConfigurationError(f"farm layout {path} must be a mapping with 'printers'")
    try:
        return FarmLayout.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'layout'}: {e['msg']}" for e in err.errors()
        )
        raise ConfigurationError(f"farm layout {path} is invalid: {problems}") from err


def printer_service_url(template: str, printer_id: int) -> str:
    """The URL of a printer's printer-service from ``PRINTER_SERVICE_URL_TEMPLATE``.

    The template may use ``{id}`` or ``{printer_id}`` (format specs allowed, e.g. ``{id:03d}``)
    and ``{port}``, the published port 500NN: ``http://printer-service-{id}:8080`` in Docker,
    ``http://127.0.0.1:{port}`` natively.
    """
    try:
        url = template.format(
            id=printer_id,
            printer_id=printer_id,
            port=printer_service_published_port(printer_id),
        )
    except (KeyError, IndexError, ValueError) as err:
        raise ConfigurationError(
            f"PRINTER_SERVICE_URL_TEMPLATE {template!r} is invalid: use {{id}} and {{port}}"
        ) from err
    return url.rstrip("/")


def default_layout_path() -> Path:
    """``FARM_LAYOUT`` if set, else ``farm.yaml`` in the current directory."""
    return Path(os.environ.get("FARM_LAYOUT", "farm.yaml"))


FARM_INDEXES = (
    IndexSpec(Collections.PRINTERS, [("model", ASCENDING)]),
    IndexSpec(Collections.PRINTERS, [("location.row", ASCENDING), ("location.col", ASCENDING)]),
    IndexSpec(Collections.BEDS, [("state", ASCENDING), ("type", ASCENDING)]),
    IndexSpec(Collections.BEDS, [("location.printer_id", ASCENDING)]),
    IndexSpec(Collections.BEDS, [("home.rack", ASCENDING), ("home.slot", ASCENDING)], unique=True),
)
"""Indexes of the collections the layout seeds (owners of other collections add theirs)."""


def seed_farm(db: Database[Document], layout: FarmLayout) -> dict[str, int]:
    """Write the layout into MongoDB idempotently; returns how many documents were new.

    Static fields are set from the layout each time; live fields only on insert, so a
    re-seed of a running farm never moves a plate or resets a printer's state. Documents
    whose id left the layout are kept, flagged ``in_layout: false`` for an operator.
    """
    now = datetime.now(UTC)
    created = {"printers": 0, "racks": 0, "beds": 0}
    try:
        ensure_indexes(db, FARM_INDEXES)
        for p in layout.printers:
            static = {
                "model": p.model.value,
                "driver": p.driver,
                "host": p.host,
                "serial": p.serial,
                "mqtt_port": p.mqtt_port,
                "ftps_port": p.ftps_port,
                "default_bed_type": p.bed_type.value,
                "location": p.where.model_dump(),
                "in_layout": True,
            }
            live = {
                "state": PrinterState.UNKNOWN.value,
                "online": False,
                "bed": None,
                "created_at": now,
            }
            result = db[Collections.PRINTERS].update_one(
                {"_id": p.id}, {"$set": static, "$setOnInsert": live}, upsert=True
            )
            created["printers"] += result.upserted_id is not None
        for r in layout.racks:
            result = db[Collections.RACKS].update_one(
                {"_id": r.id},
                {"$set": {"row": r.row, "slots": r.slots, "in_layout": True}},
                upsert=True,
            )
            created["racks"] += result.upserted_id is not None
        for b in layout.beds:
            static = {"type": b.type.value, "home": b.home.model_dump(), "in_layout": True}
            live = {
                "state": BedState.CLEAN.value,
                "location": {"rack": b.home.rack, "slot": b.home.slot, "printer_id": None},
                "cycles": 0,
                "created_at": now,
            }
            result = db[Collections.BEDS].update_one(
                {"_id": b.id}, {"$set": static, "$setOnInsert": live}, upsert=True
            )
            created["beds"] += result.upserted_id is not None
        _flag_removed(db, Collections.PRINTERS, [p.id for p in layout.printers])
        _flag_removed(db, Collections.RACKS, [r.id for r in layout.racks])
        _flag_removed(db, Collections.BEDS, [b.id for b in layout.beds])
    except pymongo.errors.PyMongoError as err:
        raise StoreUnavailable(f"seeding the farm into MongoDB failed: {err}") from err
    return created


def _flag_removed(db: Database[Document], collection: str, ids: list[Any]) -> None:
    db[collection].update_many({"_id": {"$nin": ids}}, {"$set": {"in_layout": False}})
