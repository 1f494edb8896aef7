"""Rules of the print queue: what an operator may do with a job in each status."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pantheon_contracts.beds import BedType
from pantheon_contracts.printer import PrinterModel
from pantheon_contracts.store import ACTIVE_JOB_STATUSES, OPEN_JOB_STATUSES, JobStatus

__all__ = [
    "CANCELLABLE",
    "REORDERABLE",
    "RETRYABLE",
    "JobRuleError",
    "check_cancel",
    "check_reorder",
    "check_retry",
    "check_target",
    "choose_bed_type",
    "file_in_use",
]

CANCELLABLE: Final = frozenset({JobStatus.QUEUED, JobStatus.FAILED})
"""Statuses an operator may cancel from the API (an active job is stopped on its printer first)."""
REORDERABLE: Final = frozenset({JobStatus.QUEUED})
"""Only a waiting job changes its place in the queue."""
RETRYABLE: Final = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})
"""A failed (or cancelled) job may be queued again, attempts reset."""


class JobRuleError(Exception):
    """The action is not allowed for the job as it is (HTTP 409 / 422)."""

    def __init__(self, reason: str, *, conflict: bool = True) -> None:
        super().__init__(reason)
        self.conflict = conflict


@dataclass(frozen=True, slots=True)
class Target:
    """Where a new job may print (validated)."""

    printer_id: int | None
    model: PrinterModel | None


def check_target(
    printer_id: int | None,
    model: PrinterModel | None,
    printer_model: PrinterModel | None,
    file_model: PrinterModel | None,
) -> Target:
    """Validate a job's target against the printer (``printer_model``) and the file's model.

    A printer id and a model together must agree; a file sliced for one model must not be
    sent to a printer of another (Bambu printers refuse or misprint it).
    """
    if printer_id is not None and printer_model is None:
        raise JobRuleError(f"printer {printer_id} is not in the farm", conflict=False)
    if printer_id is not None and model is not None and printer_model != model:
        raise JobRuleError(
            f"printer {printer_id} is a {printer_model}, not a {model}", conflict=False
        )
    effective = printer_model if printer_id is not None else model
    if file_model is not None and effective is not None and effective != file_model:
        raise JobRuleError(
            f"the file was sliced for a {file_model}, the target is a {effective}",
            conflict=False,
        )
    if printer_id is None and model is None and file_model is not None:
        model = file_model  # "anywhere" means any printer that can print this file
    return Target(printer_id=printer_id, model=model)


def choose_bed_type(requested: BedType | None, from_file: BedType | None) -> BedType:
    """The job's plate type: the request, else what the file was sliced for."""
    if requested is not None and from_file is not None and requested != from_file:
        raise JobRuleError(
            f"the file was sliced for {from_file.value}, not {requested.value}", conflict=False
        )
    chosen = requested or from_file
    if chosen is None:
        raise JobRuleError(
            "bed_type is required: the file does not say which plate it was sliced for",
            conflict=False,
        )
    return chosen


def check_cancel(status: JobStatus) -> None:
    """Raise unless a job in ``status`` may be cancelled."""
    if status in ACTIVE_JOB_STATUSES:
        raise JobRuleError(
            f"job is {status.value} on a printer: stop the print on the printer first"
        )
    if status not in CANCELLABLE:
        raise JobRuleError(f"a {status.value} job cannot be cancelled")


def check_retry(status: JobStatus) -> None:
    """Raise unless a job in ``status`` may be queued again."""
    if status not in RETRYABLE:
        raise JobRuleError(f"only a failed or cancelled job can be retried, this one is {status}")


def check_reorder(status: JobStatus) -> None:
    """Raise unless a job in ``status`` may change priority or place."""
    if status not in REORDERABLE:
        raise JobRuleError(f"only a queued job can be reordered, this one is {status.value}")


def file_in_use(statuses: list[JobStatus]) -> bool:
    """True when a job in one of ``statuses`` still needs its file (deletion refused)."""
    return any(s in OPEN_JOB_STATUSES for s in statuses)
