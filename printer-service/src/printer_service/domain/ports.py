"""What the service needs from a printer driver and from the farm store (style habit 4).

The ``bambu`` driver (adapters/bambu_driver.py) and the MongoDB store (adapters/store.py)
implement these; unit tests use the in-memory doubles in ``printer_service.fakes``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pantheon_contracts.beds import BedType
from pantheon_contracts.printer import PrinterState
from pantheon_contracts.store import (
    CurrentPrint,
    JobDoc,
    JobStatus,
    PrintDoc,
    PrinterBed,
    PrinterStart,
    PrinterSwap,
)
from printer_service.domain.normalize import LiveState


class LinkState(StrEnum):
    """The driver's connection to its printer, as /status shows it."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    """Connected and subscribed; reports may still be missing (state UNKNOWN)."""
    AUTH_REFUSED = "access code refused"
    """The printer refused the LAN access code: no retry until the slow auth retry."""
    TLS_ERROR = "tls error"
    """Certificate or TLS handshake failure (wrong CA, CN != serial, TLS version)."""
    UNREACHABLE = "unreachable"
    SILENT = "silent"
    """Connected but no report for the silence timeout: being rebuilt."""
    STOPPED = "stopped"


class DriverError(Exception):
    """A printer operation failed; the message is fit for an operator."""


class NotConnected(DriverError):
    """No working connection to the printer."""


class CommandRefused(DriverError):
    """The printer answered a command with a failure (result failed or err_code)."""


class UploadFailed(DriverError):
    """The file did not reach the printer's storage intact."""


@dataclass(frozen=True)
class Transition:
    """One change of the normalised state seen in the reports."""

    index: int
    state: PrinterState
    subtask_name: str | None


@dataclass(frozen=True)
class DriverSnapshot:
    """A consistent view of the driver at one instant."""

    link: LinkState
    live: LiveState
    last_seen: datetime | None = None
    """Wall-clock time of the last report (any message from the printer)."""
    last_error: str | None = None
    """Last connection problem (cleared when a connection works)."""
    connections: int = 0
    """Successful connections so far (1 + reconnects)."""
    transitions: tuple[Transition, ...] = ()
    """Recent state changes, oldest first (a fast print may pass PREPARE between two looks)."""
    transition_count: int = 0
    """Index of the latest transition (0 before any)."""

    @property
    def online(self) -> bool:
        return self.link == LinkState.CONNECTED


@dataclass(frozen=True)
class StartRequest:
    """Everything ``project_file`` needs (bambu-lan-protocol.md 5.5)."""

    file: str
    """Bare name on the printer's storage root, e.g. ``bracket.gcode.3mf``."""
    subtask_name: str
    md5: str = ""


class PrinterDriver(Protocol):
    """The only connection to one printer. Thread-safe."""

    def start(self) -> None:
        """Connect in the background and keep the connection alive; returns at once."""

    def close(self) -> None:
        """Disconnect and stop every background thread."""

    def snapshot(self) -> DriverSnapshot:
        """The current link and normalised state."""

    def pause(self) -> None:
        """Ask the printer to pause; raises :class:`DriverError`."""

    def resume(self) -> None:
        """Ask the printer to resume; raises :class:`DriverError`."""

    def stop(self) -> None:
        """Ask the printer to cancel the job; raises :class:`DriverError`."""

    def upload(self, name: str, data: bytes) -> None:
        """Store ``data`` as ``name`` on the printer and verify it; raises :class:`UploadFailed`."""

    def delete_file(self, name: str) -> None:
        """Remove ``name`` from the printer's storage (best effort)."""

    def start_print(self, request: StartRequest) -> str:
        """Send the start command; returns a ticket for :meth:`reply`. Raises on no link."""

    def refusal(self, ticket: str) -> str | None:
        """Why the printer refused command ``ticket``; None while no refusal has arrived."""


class OutboxEntry(BaseModel):
    """``outbox`` document: one ``ready`` notification to publish (``_id`` = print id)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    id: str = Field(alias="_id", description="print id: the AMQP message_id")
    printer_id: int
    queue: str
    created_at: datetime
    sent_at: datetime | None = None
    attempts: int = 0
    last_error: str | None = None


RECORD_FIELDS = ("bed", "current_print", "swap", "starting")
"""The ``printers`` fields a :class:`PrinterRecord` is read from (the store's projection)."""


@dataclass(frozen=True)
class PrinterRecord:
    """What the service reads back from its ``printers`` document."""

    bed: PrinterBed | None
    current_print: CurrentPrint | None
    swap: PrinterSwap | None = None
    """The robot is swapping the plate (set by the orchestrator): no print starts."""
    starting: PrinterStart | None = None
    """A start of this printer-service under way (its own marker, for /status)."""

    @property
    def print_open(self) -> bool:
        """A print is being tracked (started, its end not recorded yet)."""
        return self.current_print is not None and self.current_print.ended_at is None

    @classmethod
    def from_document(cls, doc: Mapping[str, Any], *, read_at: datetime) -> PrinterRecord:
        """Read the record from a ``printers`` document; absent or null fields are None.

        A ``swap`` is None only when null or missing, as for the compare-and-set filter
        (``start_guard_filter``): any other value blocks a start, and one that is not a
        :class:`PrinterSwap` (edited by hand) shows as unreadable, since ``read_at``.
        """
        bed, current = doc.get("bed"), doc.get("current_print")
        return cls(
            bed=PrinterBed.model_validate(bed) if isinstance(bed, dict) else None,
            current_print=(
                CurrentPrint.model_validate(current) if isinstance(current, dict) else None
            ),
            swap=_read_swap(doc.get("swap"), read_at),
            starting=_read_start(doc.get("starting")),
        )


def _read_swap(raw: object, read_at: datetime) -> PrinterSwap | None:
    if raw is None:
        return None
    try:
        return PrinterSwap.model_validate(raw)
    except ValidationError:
        return PrinterSwap(task_id=f"? (unreadable printers.swap {str(raw)[:80]!r})", since=read_at)


def _read_start(raw: object) -> PrinterStart | None:
    # Informative only (our own marker): an unreadable one reads as none.
    try:
        return PrinterStart.model_validate(raw) if raw is not None else None
    except ValidationError:
        return None


class FarmStore(Protocol):
    """The MongoDB collections printer-service reads and writes (architecture.md 3.3)."""

    def load_printer(self, printer_id: int) -> PrinterRecord:
        """The plate, current print, swap and start marker of the printer (an absent document
        reads empty)."""

    def bed_type(self, bed_id: int) -> BedType | None:
        """The type of plate ``bed_id``, None if unknown."""

    def mirror(self, printer_id: int, fields: dict[str, Any]) -> None:
        """``$set`` the live-state fields of the printer document."""

    def mark_starting(self, printer_id: int, start: PrinterStart) -> bool:
        """Set ``printers.starting`` unless a plate swap is under way (compare-and-set on
        ``swap`` null or missing); False when it matched nothing."""

    def clear_starting(self, printer_id: int) -> None:
        """Set ``printers.starting`` to None (the start is over, or a leftover of a crash)."""

    def next_job(self, printer_id: int, model: str, bed_type: BedType) -> JobDoc | None:
        """The job :meth:`claim_job` would claim now (a read: nothing is written)."""

    def claim_job(
        self,
        printer_id: int,
        model: str,
        bed_type: BedType,
        now: datetime,
        *,
        job_id: str | None = None,
    ) -> JobDoc | None:
        """Atomically claim the next matching queued job (only ``job_id`` if given), or None."""

    def active_jobs(self, printer_id: int) -> list[JobDoc]:
        """Jobs this printer holds (assigned, uploading, printing)."""

    def set_job_status(
        self, job_id: str, printer_id: int, status: JobStatus, now: datetime
    ) -> bool:
        """Move a job this printer holds to ``status``; False if it no longer holds it."""

    def job_attempt_failed(self, job: JobDoc, printer_id: int, error: str, now: datetime) -> None:
        """Give the job back to the queue with attempts+1 (or ``failed`` at the limit)."""

    def print_started(self, printer_id: int, doc: PrintDoc, current: CurrentPrint) -> None:
        """Insert the ``prints`` document and set ``printers.current_print``."""

    def record_print_end(
        self,
        printer_id: int,
        current: CurrentPrint,
        *,
        finished: bool,
        error: str | None,
        ended_at: datetime,
    ) -> None:
        """Record the end in ``prints`` and in the job (both idempotent per print id)."""

    def mark_plate_with_part(self, printer_id: int, bed_id: int | None) -> None:
        """``printers.bed.state`` and the ``beds`` document become ``with_part``."""

    def close_current_print(
        self, printer_id: int, current: CurrentPrint, *, finished: bool, ended_at: datetime
    ) -> None:
        """Set ``ended_at``/``result`` on ``printers.current_print`` (the end is handled)."""

    def set_last_error(self, printer_id: int, error: str | None) -> None:
        """Operator-visible ``printers.last_error``."""

    def add_outbox(self, entry: OutboxEntry) -> bool:
        """Insert the entry unless one with its id exists; True if it was new."""

    def pending_outbox(self, limit: int = 20) -> list[OutboxEntry]:
        """Entries not yet confirmed by the broker, oldest first."""

    def outbox_sent(self, entry_id: str, now: datetime) -> None:
        """Mark an entry as confirmed."""

    def outbox_failed(self, entry_id: str, error: str) -> None:
        """Count a failed publish attempt."""
