"""Request and response models of the API (requests refuse unknown fields: no mass assignment)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pantheon_api.domain.accounts import USERNAME_PATTERN
from pantheon_common.auth import Role
from pantheon_common.farm import Location
from pantheon_contracts.beds import BedState, BedType
from pantheon_contracts.printer import PrinterModel
from pantheon_contracts.store import JobStatus, PrintResult

_IN = ConfigDict(extra="forbid")
_OUT = ConfigDict(extra="ignore")


class ErrorOut(BaseModel):
    """Every error: ``{"detail": "reason"}``."""

    detail: str


# -- auth and accounts ---------------------------------------------------------------------


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 token type
    expires_in: int = Field(description="seconds")
    role: Role


class MeOut(BaseModel):
    subject: str
    role: Role
    kind: Literal["user", "service"]


class UserCreate(BaseModel):
    model_config = _IN
    username: str = Field(pattern=USERNAME_PATTERN)
    password: str = Field(min_length=8, max_length=1024)
    role: Role = Role.VIEWER


class UserUpdate(BaseModel):
    model_config = _IN
    password: str | None = Field(default=None, min_length=8, max_length=1024)
    role: Role | None = None
    disabled: bool | None = None


class UserOut(BaseModel):
    model_config = _OUT
    username: str
    role: Role
    disabled: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None


class ApiKeyCreate(BaseModel):
    model_config = _IN
    name: str = Field(min_length=1, max_length=100, pattern=r"^[\w .@-]+$")
    role: Role = Role.OPERATOR


class ApiKeyOut(BaseModel):
    model_config = _OUT
    id: str
    name: str
    role: Role
    prefix: str = Field(description="first characters of the key, to recognise it")
    created_by: str | None = None
    created_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="the key itself: shown once, store it now")


# -- printers ------------------------------------------------------------------------------


class PrinterBedOut(BaseModel):
    model_config = _OUT
    bed_id: int | None = None
    state: BedState


class PrinterOut(BaseModel):
    """A printer: static fields (layout) and live state (mirrored by its printer-service)."""

    model_config = _OUT
    id: int
    model: str | None = None
    driver: str | None = None
    host: str | None = None
    serial: str | None = None
    location: Location | None = None
    default_bed_type: str | None = None
    in_layout: bool = True
    state: str = "unknown"
    gcode_state: str | None = None
    online: bool = False
    link: str | None = None
    progress_pct: float | None = None
    remaining_min: float | None = None
    layer: int | None = None
    total_layers: int | None = None
    temps: dict[str, float | None] | None = None
    subtask_name: str | None = None
    gcode_file: str | None = None
    print_error: int | None = None
    last_error: str | None = None
    last_seen: datetime | None = None
    bed: PrinterBedOut | None = None
    current_print: dict[str, Any] | None = None


class LocationIn(BaseModel):
    model_config = _IN
    row: int = Field(ge=0, le=10_000)
    col: int = Field(ge=0, le=10_000)


class PrinterCreate(BaseModel):
    model_config = _IN
    id: int = Field(ge=1, le=999_999)
    model: PrinterModel
    host: str = Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.:_-]+$")
    serial: str = Field(pattern=r"^[A-Z0-9]{8,20}$")
    driver: str = Field(default="bambu", pattern=r"^[a-z][a-z0-9_]{0,31}$")
    default_bed_type: BedType = BedType.TEXTURED_PEI
    mqtt_port: int = Field(default=8883, ge=1, le=65535)
    ftps_port: int = Field(default=990, ge=1, le=65535)
    location: LocationIn | None = None


class PrinterUpdate(BaseModel):
    model_config = _IN
    model: PrinterModel | None = None
    host: str | None = Field(
        default=None, min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.:_-]+$"
    )
    serial: str | None = Field(default=None, pattern=r"^[A-Z0-9]{8,20}$")
    driver: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]{0,31}$")
    default_bed_type: BedType | None = None
    mqtt_port: int | None = Field(default=None, ge=1, le=65535)
    ftps_port: int | None = Field(default=None, ge=1, le=65535)
    location: LocationIn | None = None


class PrintFileIn(BaseModel):
    model_config = _IN
    file: str = Field(min_length=1, max_length=255)


class CommandOut(BaseModel):
    """What the printer-service answered."""

    printer_id: int
    command: str
    result: dict[str, Any] = Field(default_factory=dict)


# -- files ---------------------------------------------------------------------------------


class GcodeFileOut(BaseModel):
    model_config = _OUT
    name: str
    size: int
    sha256: str | None = None
    printer_model: PrinterModel | None = None
    printer_model_raw: str | None = None
    bed_type: BedType | None = None
    estimated_s: float | None = None
    filament_g: float | None = None
    plate_count: int = 1
    uploaded_by: str | None = None
    uploaded_at: datetime | None = None


# -- jobs ----------------------------------------------------------------------------------


class TargetIn(BaseModel):
    model_config = _IN
    printer_id: int | None = Field(default=None, ge=1, le=999_999)
    model: PrinterModel | None = None


class JobCreate(BaseModel):
    """A print job: ``file`` ``copies`` times on ``target`` (a printer, a model, or anywhere)."""

    model_config = _IN
    file: str = Field(min_length=1, max_length=255)
    copies: int = Field(default=1, ge=1, le=1000)
    priority: int = Field(default=0, ge=-1000, le=1000, description="higher prints first")
    target: TargetIn = Field(default_factory=TargetIn)
    bed_type: BedType | None = Field(default=None, description="default: the file's plate type")
    max_attempts: int = Field(default=3, ge=1, le=20)


class JobUpdate(BaseModel):
    """Reorder a queued job: new priority and/or to the front or back of its priority."""

    model_config = _IN
    priority: int | None = Field(default=None, ge=-1000, le=1000)
    position: Literal["front", "back"] | None = None


class JobOut(BaseModel):
    model_config = _OUT
    id: str
    file: str
    copies: int = 1
    copies_done: int = 0
    priority: int = 0
    seq: int = 0
    target: TargetIn = Field(default_factory=TargetIn)
    bed_type: BedType
    status: JobStatus
    printer_id: int | None = None
    attempts: int = 0
    max_attempts: int = 3
    last_error: str | None = None
    created_by: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class PrintOut(BaseModel):
    model_config = _OUT
    id: str
    printer_id: int
    job_id: str | None = None
    file: str
    bed_id: int | None = None
    started_at: datetime
    ended_at: datetime | None = None
    result: PrintResult | None = None
    error: str | None = None


# -- beds ----------------------------------------------------------------------------------


class HomeIn(BaseModel):
    model_config = _IN
    rack: str = Field(pattern=r"^[A-Za-z0-9_-]{1,16}$")
    slot: int = Field(ge=1, le=1000)


class BedLocationOut(BaseModel):
    model_config = _OUT
    rack: str | None = None
    slot: int | None = None
    printer_id: int | None = None


class BedOut(BaseModel):
    model_config = _OUT
    id: int
    type: BedType
    state: BedState
    home: HomeIn | None = None
    location: BedLocationOut | None = None
    cycles: int = 0
    in_layout: bool = True
    updated_at: datetime | None = None


class BedCreate(BaseModel):
    model_config = _IN
    id: int = Field(ge=1, le=999_999)
    type: BedType
    home: HomeIn


class BedUpdate(BaseModel):
    model_config = _IN
    type: BedType | None = None
    home: HomeIn | None = None


class BedCleanOut(BaseModel):
    bed: BedOut
    orchestrator_nudged: bool
    detail: str | None = None


# -- robot, control panel, utilization -------------------------------------------------------


class ResolveIn(BaseModel):
    model_config = _IN
    action: Literal["done", "retry", "abort"]
    note: str = Field(default="", max_length=500)
    bed_id: int | None = Field(
        default=None, description="done on a replace an operator did by hand: the plate loaded"
    )


class PauseIn(BaseModel):
    model_config = _IN
    reason: str = Field(default="", max_length=500)


class HomingOut(BaseModel):
    queued: bool
    message_id: str


class PurgeIn(BaseModel):
    model_config = _IN
    queues: list[Literal["ready", "homing"]] = Field(min_length=1, max_length=2)


class OctoVersion(BaseModel):
    api: str
    server: str
    text: str


class OctoUploadOut(BaseModel):
    """OctoPrint's answer to an upload (``done`` and ``files.local``)."""

    done: bool
    files: dict[str, Any]
    effectivePrint: bool = False  # noqa: N815 - OctoPrint's field name
    effectiveSelect: bool = False  # noqa: N815
