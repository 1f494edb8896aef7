"""The robot simulator's model of the physical farm: plates, printers, doors (pure, no I/O).

A plate is always in exactly one place: its home rack slot, a printer, or the arm's gripper
(while a motion carries it). :meth:`World.apply` decides whether a job is physically possible
and, if so, starts its motion; :meth:`World.complete` finishes it. Anything impossible is a
:class:`Refusal` with a reason: the simulator is the safety oracle of the farm's tests, so it
never silently accepts a job a real arm would crash on. A refusal that means the farm tried
something physically damaging carries a :class:`Violation` category, which the simulator counts.

The printers' live states (read from the printer simulator by the caller, never here) come in
as :class:`PrinterSeen` / :class:`PrinterUnseen` values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pantheon_common.farm import FarmLayout
from pantheon_contracts.printer import BUSY_STATES, PrinterState
from pantheon_contracts.robot import RobotJob, RobotJobKind, door_name


class PlaceKind(StrEnum):
    """Where a plate can be."""

    RACK = "rack"
    PRINTER = "printer"
    ARM = "arm"
    """In the gripper, during a motion."""


@dataclass(frozen=True)
class Place:
    """One place a plate can be in; exactly one of the optional fields applies per kind."""

    kind: PlaceKind
    rack: str | None = None
    slot: int | None = None
    printer_id: int | None = None

    @classmethod
    def home(cls, rack: str, slot: int) -> Place:
        """A rack slot."""
        return cls(PlaceKind.RACK, rack=rack, slot=slot)

    @classmethod
    def printer(cls, printer_id: int) -> Place:
        """Inside a printer."""
        return cls(PlaceKind.PRINTER, printer_id=printer_id)

    def describe(self) -> str:
        """Human wording for refusal reasons ("rack A slot 3", "printer 14", "the gripper")."""
        if self.kind is PlaceKind.RACK:
            return f"rack {self.rack} slot {self.slot}"
        if self.kind is PlaceKind.PRINTER:
            return f"printer {self.printer_id}"
        return "the gripper"

    def to_dict(self) -> dict[str, Any]:
        """JSON form used by the control API."""
        return {
            "kind": self.kind.value,
            "rack": self.rack,
            "slot": self.slot,
            "printer_id": self.printer_id,
        }


ARM = Place(PlaceKind.ARM)


@dataclass(frozen=True)
class Motion:
    """A physical motion the arm has started (one accepted job)."""

    kind: RobotJobKind
    printer_id: int | None
    bed_id: int | None
    job_id: str | None
    doors: tuple[str, ...]
    source: Place | None
    """Where the carried plate came from (None for homing)."""
    destination: Place | None
    """Where the carried plate ends (None for homing)."""


class Violation(StrEnum):
    """Why a refused job would have damaged something: the farm's mistakes the oracle counts.

    Refusals without a category (bad JSON, unknown ids, arm busy or latched, scripted faults,
    a printer whose state cannot be read) are the arm protecting itself, not farm damage.
    """

    PRINTER_BUSY = "printer_busy"
    """A door would open on a printer that is preparing, printing or paused."""
    TAKE_FROM_EMPTY = "take_from_empty"
    """A take from a printer that holds no plate."""
    WRONG_PLATE = "wrong_plate"
    """A take naming a plate that is not the one in the printer."""
    LOAD_INTO_OCCUPIED = "load_into_occupied"
    """A replace into a printer that still holds a plate."""
    PLATE_NOT_HOME = "plate_not_home"
    """A replace of a plate that is not in its home rack slot."""
    DOOR_NOT_OPENED = "door_not_opened"
    """A take or replace whose job does not open the printer's door."""


@dataclass(frozen=True)
class Refusal:
    """A job the arm will not execute, why, and whether it would have damaged something."""

    reason: str
    violation: Violation | None = None
    """Set when the job was physically damaging (counted); None for the arm's own refusals."""


@dataclass(frozen=True)
class PrinterSeen:
    """A printer's live state as the printer simulator reported it just before the job."""

    state: PrinterState
    gcode_state: str | None = None
    """The raw Bambu state (RUNNING, PAUSE...), for the reason text."""


@dataclass(frozen=True)
class PrinterUnseen:
    """A printer whose state could not be read (simulator down, printer unknown to it...)."""

    reason: str


PrinterView = PrinterSeen | PrinterUnseen
"""What the arm knows about a printer's state before it opens the printer's door."""


def printer_refusal(printer_id: int, view: PrinterView) -> Refusal | None:
    """Why the door of ``printer_id`` must stay shut given its state, or None if it may open.

    Only a print in progress (preparing, printing, paused) makes it a violation: an idle,
    finished or failed printer may be opened, and so may one reported offline or unknown
    (no print of ours can be running there). An unreadable state is a plain refusal.
    """
    if isinstance(view, PrinterUnseen):
        return Refusal(
            f"cannot see the state of printer {printer_id} ({view.reason}): "
            "the arm does not open a printer's door blind"
        )
    if view.state in BUSY_STATES:
        raw = f" ({view.gcode_state})" if view.gcode_state else ""
        return Refusal(
            f"printer {printer_id} is {view.state.value}{raw}: "
            "opening its door would wreck the print",
            Violation.PRINTER_BUSY,
        )
    return None


class InvalidPlacement(ValueError):
    """A requested plate placement is impossible (unknown ids, one plate in two printers...)."""


@dataclass
class World:
    """Plates, printers and doors of one farm; mutated only through apply/complete/abort."""

    printers: frozenset[int]
    homes: Mapping[int, Place]
    """bed id -> its home rack slot (static, from the layout)."""
    plates: dict[int, Place]
    """bed id -> where it is now."""
    doors_open: set[str] = field(default_factory=set)
    current: Motion | None = None

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_layout(cls, layout: FarmLayout, printers: Mapping[int, int | None]) -> World:
        """A world where ``printers`` maps printer id -> plate in it; every other plate is home."""
        homes = {b.id: Place.home(b.home.rack, b.home.slot) for b in layout.beds}
        world = cls(printers=layout.printer_ids, homes=homes, plates=dict(homes))
        world.place(printers)
        return world

    @classmethod
    def default(cls, layout: FarmLayout) -> World:
        """Every printer holds one plate of its default bed type, taken from the rack.

        Printers are served in layout order and each gets the lowest-numbered plate of its
        type still in the rack; a printer whose type has run out holds no plate.
        """
        return cls.from_layout(layout, default_placement(layout))

    def place(self, printers: Mapping[int, int | None]) -> None:
        """Put plates into printers (``None``: empty); every plate not named goes home.

        Raises :class:`InvalidPlacement` (and changes nothing) on unknown ids, a plate named
        twice, or while a motion is running.
        """
        if self.current is not None:
            raise InvalidPlacement("the arm is moving; plates cannot be placed now")
        seen: dict[int, int] = {}
        for printer_id, bed_id in printers.items():
            if printer_id not in self.printers:
                raise InvalidPlacement(f"unknown printer {printer_id}")
            if bed_id is None:
                continue
            if bed_id not in self.homes:
                raise InvalidPlacement(f"unknown bed {bed_id}")
            if bed_id in seen:
                raise InvalidPlacement(
                    f"bed {bed_id} cannot be in printers {seen[bed_id]} and {printer_id}"
                )
            seen[bed_id] = printer_id
        self.plates = dict(self.homes)
        for bed_id, printer_id in seen.items():
            self.plates[bed_id] = Place.printer(printer_id)
        self.doors_open.clear()

    # -- queries --------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """True while a motion runs."""
        return self.current is not None

    def plate_in(self, printer_id: int) -> int | None:
        """The plate inside ``printer_id``, or None."""
        target = Place.printer(printer_id)
        for bed_id, place in self.plates.items():
            if place == target:
                return bed_id
        return None

    def printer_plates(self) -> dict[int, int | None]:
        """printer id -> plate in it (None when empty), for every printer."""
        result: dict[int, int | None] = dict.fromkeys(sorted(self.printers))
        for bed_id, place in self.plates.items():
            if place.kind is PlaceKind.PRINTER and place.printer_id is not None:
                result[place.printer_id] = bed_id
        return result

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy: plates, printers, open doors, current motion."""
        current = self.current
        return {
            "plates": {str(b): p.to_dict() for b, p in sorted(self.plates.items())},
            "printers": {str(p): b for p, b in self.printer_plates().items()},
            "doors_open": sorted(self.doors_open),
            "busy": self.busy,
            "current": None
            if current is None
            else {
                "kind": current.kind.value,
                "printer_id": current.printer_id,
                "bed_id": current.bed_id,
                "job_id": current.job_id,
            },
        }

    # -- transitions ----------------------------------------------------------------------
    def door_printers(self, job: RobotJob) -> tuple[int, ...]:
        """The known printers whose doors ``job`` opens, the job's own printer first.

        These are the printers whose live state the caller must read before :meth:`check`.
        """
        by_door = {door_name(p): p for p in self.printers}
        opened = [by_door[d] for d in job.open_doors if d in by_door]
        if job.printer_id in opened:
            opened.remove(job.printer_id)
            opened.insert(0, job.printer_id)
        return tuple(dict.fromkeys(opened))

    def check(
        self, job: RobotJob, printer_states: Mapping[int, PrinterView] | None = None
    ) -> Refusal | None:
        """Why ``job`` is physically impossible now, or None if the arm may do it.

        ``printer_states`` holds the live state of each printer whose door the job opens
        (:meth:`door_printers`); None means no printer simulator is configured, so doors are
        opened without looking (a printer missing from the mapping reads as unseen). The
        checks run in this order, the first one that fails is the refusal: the arm's own
        state, unknown ids, the door of the job's printer, unknown doors, a print running
        behind an opened door, the plates, and last a printer state that could not be read
        (so a farm mistake is counted even while the printer simulator is down).
        """
        if self.current is not None:
            what = self.current.job_id or self.current.kind.value
            return Refusal(f"arm is busy with job {what}")
        if job.kind is RobotJobKind.HOMING:
            return None
        printer_id, bed_id = job.printer_id, job.bed_id
        if printer_id is None or bed_id is None:  # the contract already forbids it
            return Refusal("a take or replace needs printer_id and bed_id")
        if printer_id not in self.printers:
            return Refusal(f"unknown printer {printer_id}")
        if bed_id not in self.homes:
            return Refusal(f"unknown bed {bed_id}")
        door = door_name(printer_id)
        if door not in job.open_doors:
            return Refusal(
                f"job does not open door {door} of printer {printer_id}",
                Violation.DOOR_NOT_OPENED,
            )
        unknown_doors = [d for d in job.open_doors if d not in self._door_names()]
        if unknown_doors:
            return Refusal(f"unknown doors {unknown_doors}")
        unseen: Refusal | None = None
        if printer_states is not None:
            for opened in self.door_printers(job):
                view = printer_states.get(opened, PrinterUnseen("not read"))
                refusal = printer_refusal(opened, view)
                if refusal is not None and refusal.violation is not None:
                    return refusal
                unseen = unseen or refusal
        plates = self._plate_refusal(job.kind, printer_id, bed_id)
        return plates or unseen

    def _plate_refusal(self, kind: RobotJobKind, printer_id: int, bed_id: int) -> Refusal | None:
        inside = self.plate_in(printer_id)
        if kind is RobotJobKind.TAKE:
            if inside is None:
                return Refusal(f"printer {printer_id} holds no plate", Violation.TAKE_FROM_EMPTY)
            if inside != bed_id:
                return Refusal(
                    f"printer {printer_id} holds plate {inside}, not {bed_id}",
                    Violation.WRONG_PLATE,
                )
            return None
        # replace
        if inside is not None:
            return Refusal(
                f"printer {printer_id} still holds plate {inside}", Violation.LOAD_INTO_OCCUPIED
            )
        home, where = self.homes[bed_id], self.plates[bed_id]
        if where != home:
            return Refusal(
                f"plate {bed_id} is not in its home slot {home.describe()} "
                f"(it is in {where.describe()})",
                Violation.PLATE_NOT_HOME,
            )
        return None

    def apply(
        self, job: RobotJob, printer_states: Mapping[int, PrinterView] | None = None
    ) -> Motion | Refusal:
        """Start ``job``'s motion (the plate moves into the gripper, doors open) or refuse it.

        ``printer_states`` as in :meth:`check`.
        """
        refusal = self.check(job, printer_states)
        if refusal is not None:
            return refusal
        source: Place | None = None
        destination: Place | None = None
        if job.printer_id is not None and job.bed_id is not None:  # take or replace
            printer, home = Place.printer(job.printer_id), self.homes[job.bed_id]
            source, destination = (
                (printer, home) if job.kind is RobotJobKind.TAKE else (home, printer)
            )
            self.plates[job.bed_id] = ARM
        motion = Motion(
            kind=job.kind,
            printer_id=job.printer_id,
            bed_id=job.bed_id,
            job_id=job.job_id,
            doors=job.open_doors,
            source=source,
            destination=destination,
        )
        self.doors_open.update(job.open_doors)
        self.current = motion
        return motion

    def complete(self, motion: Motion) -> None:
        """Finish ``motion``: the plate reaches its destination, the doors close."""
        self._finish(motion, motion.destination)

    def abort(self, motion: Motion) -> None:
        """A failed motion: the arm puts the plate back where it took it from."""
        self._finish(motion, motion.source)

    def _finish(self, motion: Motion, where: Place | None) -> None:
        if self.current != motion:
            raise ValueError("that motion is not the one running")
        if motion.bed_id is not None and where is not None:
            self.plates[motion.bed_id] = where
        self.doors_open.difference_update(motion.doors)
        self.current = None

    def _door_names(self) -> set[str]:
        return {door_name(p) for p in self.printers}

    # -- invariants (used by the tests) ---------------------------------------------------
    def violations(self) -> list[str]:
        """Broken physical invariants (empty when the world is sound)."""
        problems: list[str] = []
        if set(self.plates) != set(self.homes):
            problems.append("the set of plates changed")
        in_printer: dict[int, int] = {}
        in_arm = [b for b, p in self.plates.items() if p.kind is PlaceKind.ARM]
        for bed_id, place in self.plates.items():
            if place.kind is PlaceKind.PRINTER:
                assert place.printer_id is not None
                if place.printer_id in in_printer:
                    problems.append(f"printer {place.printer_id} holds two plates")
                in_printer[place.printer_id] = bed_id
            elif place.kind is PlaceKind.RACK and place != self.homes[bed_id]:
                problems.append(f"plate {bed_id} is in a rack slot that is not its home")
        if len(in_arm) > 1 or (in_arm and self.current is None):
            problems.append(f"gripper holds {in_arm} without a matching motion")
        return problems


def default_placement(layout: FarmLayout) -> dict[int, int | None]:
    """The default initial state: each printer holds the first free plate of its bed type."""
    free = sorted(layout.beds, key=lambda b: b.id)
    placement: dict[int, int | None] = {}
    for printer in layout.printers:
        bed = next((b for b in free if b.type == printer.bed_type), None)
        placement[printer.id] = None if bed is None else bed.id
        if bed is not None:
            free.remove(bed)
    return placement


def parse_placement(data: object) -> dict[int, int | None]:
    """Read ``{"printers": {"14": 801, "15": null}}`` into printer id -> plate.

    Raises :class:`InvalidPlacement` with the reason when the shape is wrong.
    """
    if not isinstance(data, dict) or not isinstance(data.get("printers"), dict):
        raise InvalidPlacement('expected {"printers": {"<printer id>": <bed id or null>}}')
    result: dict[int, int | None] = {}
    for key, value in data["printers"].items():
        try:
            printer_id = int(key)
        except (TypeError, ValueError) as err:
            raise InvalidPlacement(f"printer id {key!r} is not an integer") from err
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise InvalidPlacement(f"bed of printer {printer_id} must be an integer or null")
        result[printer_id] = value
    return result
