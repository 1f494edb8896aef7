"""Shapes of the MongoDB documents several services share (architecture.md 3.3).

Each collection has one owner that writes most of it; these models are the agreement between
writers and readers. Documents may carry more fields than listed (owners add their own); the
listed ones keep these names and meanings. Times are aware UTC datetimes.
"""

from datetime import datetime
from enum import StrEnum
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from pantheon_contracts.beds import BedState, BedType


class JobStatus(StrEnum):
    """Life cycle of a job in the print queue (``jobs``)."""

    QUEUED = "queued"
    """Waiting for a printer; claimable."""
    ASSIGNED = "assigned"
    """Claimed by a printer-service (``printer_id`` set)."""
    UPLOADING = "uploading"
    """File being sent to the printer over FTPS."""
    PRINTING = "printing"
    """The printer accepted it (PREPARE/RUNNING seen)."""
    FINISHED = "finished"
    """Every copy printed."""
    FAILED = "failed"
    """Gave up after ``max_attempts`` or a failed print (policy)."""
    CANCELLED = "cancelled"
    """An operator cancelled it."""


ACTIVE_JOB_STATUSES: Final = frozenset(
    {JobStatus.ASSIGNED, JobStatus.UPLOADING, JobStatus.PRINTING}
)
"""A printer-service holds the job."""
OPEN_JOB_STATUSES: Final = ACTIVE_JOB_STATUSES | {JobStatus.QUEUED}
"""Not yet done: a G-code file used by such a job must not be deleted."""


class JobTarget(BaseModel):
    """Where a job may print: one printer, or any printer of a model (or anywhere if both None)."""

    model_config = ConfigDict(frozen=True)

    printer_id: int | None = None
    model: str | None = None


class JobDoc(BaseModel):
    """A document of ``jobs``: one queued print (``copies`` times the same file).

    Claimed atomically with ``find_one_and_update({"status": "queued", ...}, sort=[("priority",
    -1), ("seq", 1)])``: highest priority first, then first in.
    """

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    id: str = Field(alias="_id", description="job id (uuid4 hex)")
    file: str = Field(description="G-code store name, e.g. bracket.gcode.3mf")
    copies: int = Field(default=1, ge=1, description="how many times to print it")
    copies_done: int = Field(default=0, ge=0, description="copies finished so far")
    priority: int = Field(default=0, description="higher prints first")
    seq: int = Field(default=0, description="monotonic creation order (ties by priority)")
    target: JobTarget = Field(default_factory=JobTarget)
    bed_type: BedType = Field(description="plate type the file was sliced for")
    status: JobStatus = JobStatus.QUEUED
    printer_id: int | None = Field(default=None, description="printer holding it, once claimed")
    attempts: int = Field(default=0, ge=0, description="dispatch attempts that failed")
    max_attempts: int = Field(default=3, ge=1)
    last_error: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class PrintResult(StrEnum):
    """How a print ended."""

    FINISHED = "finished"
    FAILED = "failed"


class PrintDoc(BaseModel):
    """A document of ``prints``: one physical print on one printer (history).

    Written by printer-service when it starts a job; ``print_id`` is the AMQP ``message_id``
    of the ``ready`` message announcing its end.
    """

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    id: str = Field(alias="_id", description="print id (uuid4 hex), unique per print")
    printer_id: int
    job_id: str | None = None
    file: str
    bed_id: int | None = Field(default=None, description="plate it was printed on")
    started_at: datetime
    ended_at: datetime | None = None
    result: PrintResult | None = None
    error: str | None = Field(default=None, description="print_error/HMS text on failure")


class PrinterBed(BaseModel):
    """``printers.bed``: the plate in a printer, or None when it holds none."""

    model_config = ConfigDict(frozen=True)

    bed_id: int | None = Field(description="plate id (None if a plate of unknown id)")
    state: BedState = Field(description="in_printer: clean and loaded; with_part: for the robot")


class PrinterSwap(BaseModel):
    """``printers.swap``: the robot is working on this printer's plate (None otherwise).

    Written by the orchestrator with a compare-and-set (only while ``printers.starting`` is
    None) just before it publishes a take, and cleared once the printer holds a clean plate
    again (the replace done) or a person closed the swap. While it is set, printer-service
    starts no print on the printer, whatever a job or a person asks (architecture.md 3.2): its
    auto-dispatch and ``POST /print`` refuse naming ``task_id`` and ``since``. Any non-null
    value counts as a swap (printer-service's guard is ``{"_id": id, "swap": None}``).
    """

    model_config = ConfigDict(frozen=True)

    task_id: str = Field(description="the robot task that set it (<print_id>:take|replace)")
    print_id: str | None = Field(default=None, description="the print whose plate is swapped")
    since: datetime


class PrinterStart(BaseModel):
    """``printers.starting``: printer-service is starting a print on this printer (None
    otherwise).

    Written by printer-service with a compare-and-set (only while ``printers.swap`` is None:
    ``update_one({"_id": id, "swap": None}, {"$set": {"starting": ...}})``) before
    it claims a job or uploads a file for a start, cleared (set None) once the start is
    confirmed and ``current_print`` written (the print is tracked) or given up. It stays set
    while printer-service waits for a start the printer has not confirmed in time (a late ack
    is still a print). While it is set, the orchestrator opens no door of the printer. A
    printer-service clears its own marker when it starts again (a crash may have left it).
    """

    model_config = ConfigDict(frozen=True)

    what: str = Field(description="what is being started, e.g. 'job <id>' or 'file <name>'")
    since: datetime


class CurrentPrint(BaseModel):
    """``printers.current_print``: the last print started on a printer (kept after it ends,
    like Bambu's sticky FINISH, so a hand-typed ``ready`` body can be resolved)."""

    model_config = ConfigDict(frozen=True)

    print_id: str
    job_id: str | None = None
    file: str
    bed_id: int | None = None
    started_at: datetime
    ended_at: datetime | None = None
    result: PrintResult | None = None


class RobotTaskStatus(StrEnum):
    """``robot_tasks.status``: the orchestrator's durable task log."""

    PENDING = "pending"
    """Recorded, not sent yet."""
    SENT = "sent"
    """Published to robot_arm/job; waiting for the robot."""
    DONE = "done"
    FAILED = "failed"
    HELD = "held"
    """In doubt (timeout, error, restart while sent): a person decides; never re-sent alone."""
    ABORTED = "aborted"
    """A person aborted it."""
    WAITING = "waiting"
    """A replace with no clean plate of the right type yet."""
