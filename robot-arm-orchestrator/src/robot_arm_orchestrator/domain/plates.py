"""Plate choice for a replace: which plate type the printer needs next, and the nearest clean one.

Distance from a printer to a plate's home slot, compared as a tuple (smaller is nearer):

1. ``|rack.row - printer.row|``: racks stand beside the rows of printers (farm.yaml ``row``,
   e.g. rack A at 1.5 serves rows 1 and 2), so another rack means travelling along the rows;
2. ``|slot - printer.col|``: slots are numbered from column 1 onwards along the rack;
3. the plate id, so the choice is deterministic.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pantheon_contracts.beds import BedState, BedType
from pantheon_contracts.store import JobDoc, JobStatus


@dataclass(frozen=True)
class PlateView:
    """A plate as the choice needs it (from a ``beds`` document)."""

    bed_id: int
    type: BedType
    state: BedState
    rack: str
    slot: int
    reserved_for: str | None = None


@dataclass(frozen=True)
class PrinterPlace:
    """Where a printer stands and what it is."""

    printer_id: int
    model: str
    row: int
    col: int
    default_bed_type: BedType


def job_fits_printer(job: JobDoc, printer: PrinterPlace) -> bool:
    """True when ``printer`` could take ``job``: targeted at it, at its model, or untargeted."""
    target = job.target
    if target.printer_id is not None:
        return target.printer_id == printer.printer_id
    if target.model is not None:
        return target.model.upper() == printer.model.upper()
    return True


def bed_type_for_next_job(jobs: Iterable[JobDoc], printer: PrinterPlace) -> BedType:
    """Plate type of the highest-priority queued job the printer could take (first in on a tie),
    else the printer's default plate type from the layout."""
    fitting = [j for j in jobs if j.status is JobStatus.QUEUED and job_fits_printer(j, printer)]
    if not fitting:
        return printer.default_bed_type
    best = min(fitting, key=lambda j: (-j.priority, j.seq, j.id))
    return best.bed_type


def plate_distance(
    plate: PlateView, printer: PrinterPlace, rack_rows: Mapping[str, float]
) -> tuple[float, int, int]:
    """The documented distance tuple; a plate of an unknown rack sorts last."""
    row = rack_rows.get(plate.rack)
    rack_gap = abs(row - printer.row) if row is not None else float("inf")
    return (rack_gap, abs(plate.slot - printer.col), plate.bed_id)


def home_in_layout(plate: PlateView, rack_slots: Mapping[str, int]) -> bool:
    """True when the plate's home is a slot of a rack of the layout (1..slots of that rack)."""
    slots = rack_slots.get(plate.rack)
    return slots is not None and 1 <= plate.slot <= slots


def plate_candidates(
    plates: Iterable[PlateView],
    printer: PrinterPlace,
    bed_type: BedType,
    rack_rows: Mapping[str, float],
    rack_slots: Mapping[str, int] | None = None,
) -> list[PlateView]:
    """Clean, unreserved plates of ``bed_type`` in their rack slots, nearest first.

    A plate whose home is not in the layout (a rack it does not have; with ``rack_slots``, a
    slot past the rack's end) is never one: the arm would be sent to a slot that is not there.
    The caller reserves them in this order with a compare-and-set; the first that succeeds wins.
    """
    usable = [
        p
        for p in plates
        if p.type is bed_type
        and p.state is BedState.CLEAN
        and p.reserved_for is None
        and p.rack in rack_rows
        and (rack_slots is None or home_in_layout(p, rack_slots))
    ]
    return sorted(usable, key=lambda p: plate_distance(p, printer, rack_rows))


def hand_load_problem(plate: PlateView | None, bed_id: int, task_id: str) -> str | None:
    """Why plate ``bed_id`` cannot be the one an operator loaded by hand for replace
    ``task_id``, or None: it must exist, be clean (in its rack: a plate in a printer is
    ``in_printer``) and not be reserved for another replace."""
    if plate is None:
        return f"there is no plate {bed_id}"
    if plate.state is not BedState.CLEAN:
        return f"plate {bed_id} is {plate.state.value}, not clean"
    if plate.reserved_for not in (None, task_id):
        return f"plate {bed_id} is reserved for {plate.reserved_for}"
    return None
