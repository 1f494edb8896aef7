"""Robot bus messages: ``robot_arm/job`` and ``robot_arm/status`` (architecture.md 3.2).

The real robot parses the job JSON with exactly the seed keys, in the seed order, so
:meth:`RobotJob.to_json` writes them compactly in that order; ``job_id`` is an opt-in
extension appended last only when set.
"""

import json
from enum import StrEnum
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pantheon_contracts.errors import ContractError


class RobotJobKind(StrEnum):
    """What a robot job makes the arm do."""

    TAKE = "take"
    """Take the plate (with its part) out of the printer and carry it to its home slot."""
    REPLACE = "replace"
    """Fetch a clean plate from its slot and load it into the printer."""
    HOMING = "homing"
    """Go to the home position."""


def door_name(printer_id: int) -> str:
    """The robot's name for a printer's door (``printer14``)."""
    return f"printer{printer_id}"


class RobotJob(BaseModel):
    """One job on ``robot_arm/job``. Build with :meth:`take`, :meth:`replace`, :meth:`homing`."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    printer_id: int | None = Field(description="printer to work on; null for homing")
    bed_id: int | None = Field(
        description="take: the plate now in the printer; replace: the clean plate to load"
    )
    take_from_printer: bool = Field(description="true for take, false for replace and homing")
    load_next_bed_without_homing: bool = Field(
        description="true in every take and replace (the seed's own examples: the arm homes "
        "only through the homing job); false in the homing job"
    )
    open_doors: tuple[str, ...] = Field(description="doors the robot opens, e.g. ['printer14']")
    job_id: str | None = Field(
        default=None, min_length=1, max_length=128, description="optional correlation id"
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.printer_id is None:
            if self.bed_id is not None or self.take_from_printer or self.open_doors:
                raise ValueError("a homing job has no printer, no bed, no doors and no take")
            if self.load_next_bed_without_homing:
                raise ValueError("a homing job cannot load a next bed")
        elif self.bed_id is None:
            raise ValueError("a take or replace job needs a bed_id")
        elif self.printer_id < 1 or self.bed_id < 1:
            raise ValueError("printer_id and bed_id are positive integers")
        return self

    @property
    def kind(self) -> RobotJobKind:
        """Take, replace or homing, derived from the fields."""
        if self.printer_id is None:
            return RobotJobKind.HOMING
        return RobotJobKind.TAKE if self.take_from_printer else RobotJobKind.REPLACE

    @classmethod
    def take(cls, printer_id: int, bed_id: int, *, job_id: str | None = None) -> "RobotJob":
        """Take plate ``bed_id`` out of printer ``printer_id`` (to its home slot)."""
        return cls(
            printer_id=printer_id,
            bed_id=bed_id,
            take_from_printer=True,
            load_next_bed_without_homing=True,
            open_doors=(door_name(printer_id),),
            job_id=job_id,
        )

    @classmethod
    def replace(cls, printer_id: int, bed_id: int, *, job_id: str | None = None) -> "RobotJob":
        """Load clean plate ``bed_id`` into printer ``printer_id``."""
        return cls(
            printer_id=printer_id,
            bed_id=bed_id,
            take_from_printer=False,
            load_next_bed_without_homing=True,
            open_doors=(door_name(printer_id),),
            job_id=job_id,
        )

    @classmethod
    def homing(cls, *, job_id: str | None = None) -> "RobotJob":
        """Send the arm home."""
        return cls(
            printer_id=None,
            bed_id=None,
            take_from_printer=False,
            load_next_bed_without_homing=False,
            open_doors=(),
            job_id=job_id,
        )

    def to_dict(self) -> dict[str, Any]:
        """The seed-ordered dict; ``job_id`` only when set."""
        data: dict[str, Any] = {
            "printer_id": self.printer_id,
            "bed_id": self.bed_id,
            "take_from_printer": self.take_from_printer,
            "load_next_bed_without_homing": self.load_next_bed_without_homing,
            "open_doors": list(self.open_doors),
        }
        if self.job_id is not None:
            data["job_id"] = self.job_id
        return data

    def to_json(self) -> bytes:
        """Compact JSON exactly as the seed writes it."""
        return json.dumps(self.to_dict(), separators=(",", ":")).encode("utf-8")

    @classmethod
    def parse(cls, payload: bytes | str) -> "RobotJob":
        """Parse a job payload (as the robot would) or raise :class:`ContractError`."""
        _load_object(payload, "robot job")
        try:
            return cls.model_validate_json(payload)
        except ValidationError as err:
            raise ContractError(f"robot job is invalid: {_first_error(err)}") from err


class RobotState(StrEnum):
    """States the robot reports; anything else it sends is kept as text and reads UNKNOWN."""

    AVAILABLE = "available"
    BUSY = "busy"
    ERROR = "error"
    UNKNOWN = "unknown"


class RobotStatus(BaseModel):
    """One message on ``robot_arm/status``: ``{"status": "available"}`` and friends.

    ``job_id`` and ``reason`` are extensions (the simulator sends them; the real robot may
    not). Unknown extra keys are ignored, since operators publish statuses by hand.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    status: str = Field(min_length=1, max_length=64, description="robot state as sent")
    job_id: str | None = Field(default=None, description="the job this status refers to")
    reason: str | None = Field(default=None, description="why, for an error status")

    @property
    def state(self) -> RobotState:
        """The status normalised to :class:`RobotState` (case-insensitive)."""
        try:
            return RobotState(self.status.strip().lower())
        except ValueError:
            return RobotState.UNKNOWN

    def to_json(self) -> bytes:
        """The status as the seed writes it, extensions only when set."""
        data: dict[str, str] = {"status": self.status}
        if self.job_id is not None:
            data["job_id"] = self.job_id
        if self.reason is not None:
            data["reason"] = self.reason
        return json.dumps(data).encode("utf-8")

    @classmethod
    def parse(cls, payload: bytes | str) -> "RobotStatus":
        """Parse a status payload or raise :class:`ContractError`."""
        data = _load_object(payload, "robot status")
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            raise ContractError(f"robot status is invalid: {_first_error(err)}") from err


def _load_object(payload: bytes | str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ContractError(f"{what} is not JSON: {err}") from err
    if not isinstance(data, dict):
        raise ContractError(f"{what} must be a JSON object, got {type(data).__name__}")
    return data


def _first_error(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "payload"
    return f"{where}: {first['msg']}"
