"""The door interlock: when the arm may reach into a printer, and what a ``ready`` is about.

The arm opens a printer's door only when printer-service's live record says the print there is
over and nothing new is starting (architecture.md 3.2). Two pure decisions live here:

- :func:`bind_ready`: which print a ``ready`` delivery is about. A ``message_id`` must name a
  print of that printer, and the printer's latest one; a hand-typed body stands for the
  printer's latest print. A ready that names no such print never becomes a swap: it is
  dead-lettered with the reason, or acked as a repeat.
- :func:`door_check`: whether the door of a printer may be opened now for a take or a replace.
  Made at intake and again just before each job is published; anything but a clear yes holds
  the task with the reason (or, while the task's own print still runs, until that print ends).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from pantheon_contracts.beds import BedState
from pantheon_contracts.printer import PrinterState
from pantheon_contracts.robot import RobotJobKind
from pantheon_contracts.store import PrinterBed, PrinterStart, PrinterSwap

TAKE_STATES: Final = frozenset({PrinterState.FINISHED, PrinterState.FAILED, PrinterState.IDLE})
"""A take may open the door in these states (idle only with a plate that holds a part)."""
REPLACE_STATES: Final = TAKE_STATES
"""A replace may load a plate into an empty printer in these states."""


@dataclass(frozen=True)
class PrintRef:
    """A print as the interlock needs it (``printers.current_print`` or ``prints``)."""

    print_id: str
    printer_id: int
    ended: bool
    """printer-service recorded its end (``ended_at`` set)."""


@dataclass(frozen=True)
class PrinterLive:
    """printer-service's live record of one printer (``printers`` document)."""

    printer_id: int
    model: str = ""
    state: PrinterState = PrinterState.UNKNOWN
    online: bool = False
    last_seen: datetime | None = None
    """Time of the printer's last report, as printer-service mirrored it."""
    bed: PrinterBed | None = None
    current_print: PrintRef | None = None
    """The printer's latest print (kept after it ends)."""
    starting: PrinterStart | None = None
    swap: PrinterSwap | None = None
    nozzle_target: float | None = None
    bed_target: float | None = None
    progress_pct: int | None = None

    @property
    def current_print_id(self) -> str | None:
        """The id of the latest print, if any."""
        return self.current_print.print_id if self.current_print else None

    def describe(self) -> str:
        """``printing, 42 %`` and the like, for reasons a person reads."""
        if self.state is PrinterState.PRINTING and self.progress_pct is not None:
            return f"{self.state.value}, {self.progress_pct} %"
        return self.state.value


# -- which print a ready is about -------------------------------------------------------------


@dataclass(frozen=True)
class Bound:
    """The ready is about ``print_id`` (record its take and replace, idempotent on the id)."""

    print_id: str
    ended: bool
    """The print has ended; otherwise the swap waits (held) until it does."""
    synthetic: bool = False
    """No print is known on the printer: the id was made up for this one hand-typed ready."""


@dataclass(frozen=True)
class DeadLetter:
    """The ready names no print it could be about: dead-letter it with ``reason``."""

    reason: str


@dataclass(frozen=True)
class Repeat:
    """The ready repeats one that was served (or is being served): ack, nothing new."""

    reason: str


Binding = Bound | DeadLetter | Repeat


def bind_ready(
    *,
    printer: PrinterLive,
    message_id: str | None,
    named: PrintRef | None,
    recorded: bool,
    open_swap: str | None,
    new_id: str,
) -> Binding:
    """Which print a ``ready`` is about (architecture.md 3.1/3.2; a ready is about a print).

    ``message_id`` is the delivery's (printer-service sets it to the print id), ``named`` the
    print it names (``prints``), ``recorded`` whether tasks exist for ``message_id`` already,
    ``open_swap`` an open take/replace task of this printer (for hand-typed bodies), ``new_id``
    a fresh id for a hand-typed ready on a printer with no known print.
    """
    pid = printer.printer_id
    if message_id is not None:
        if named is None or named.printer_id != pid:
            return DeadLetter(f"message_id {message_id} names no print of printer {pid}")
        latest = printer.current_print_id
        if latest is not None and latest != named.print_id:
            if recorded:
                return Repeat(f"print {named.print_id} was recorded before")
            return DeadLetter(
                f"print {named.print_id} is not the latest print of printer {pid} (print "
                f"{latest} started since): a stale ready never moves the arm"
            )
        return Bound(named.print_id, ended=named.ended)
    current = printer.current_print
    if current is not None:
        return Bound(current.print_id, ended=current.ended)
    # Hand-typed, and printer-service knows no print on this printer.
    if open_swap is not None:
        return Repeat(f"printer {pid} already has swap task {open_swap} open")
    bed = printer.bed
    if bed is not None and bed.state is not BedState.WITH_PART:
        return DeadLetter(
            f"printer {pid} holds plate {bed.bed_id} ({bed.state.value}) and no print is known "
            "on it: there is nothing to swap"
        )
    return Bound(new_id, ended=True, synthetic=True)


# -- may the door be opened ------------------------------------------------------------------


@dataclass(frozen=True)
class DoorCheck:
    """The interlock's answer for one take or replace."""

    safe: bool
    reason: str = ""
    until_print_end: bool = False
    """Unsafe because the task's own print has not ended: the task waits for that end (it is
    re-armed by itself when printer-service records it), not for a person."""


SAFE: Final = DoorCheck(True)


def door_check(
    kind: RobotJobKind,
    printer: PrinterLive,
    *,
    print_id: str | None,
    print_ended: bool | None,
    now: datetime,
    max_age_s: float,
    group: str | None = None,
) -> DoorCheck:
    """May the arm open ``printer``'s door for a ``kind`` (take or replace) now?

    ``print_id``/``print_ended``: the print the task serves and whether it has ended (None for
    an id made up for a hand-typed ready). ``group`` is the task's print id: a swap marker of
    the same swap does not stop it. Safe only when every one of these holds:

    - the print the task serves has ended (printer-service recorded it);
    - the record is fresh: a report within ``max_age_s``, and the printer online;
    - the printer is finished, failed or idle (not preparing, printing, paused, offline,
      unknown), no heater is set to heat, and printer-service recorded the end of its latest
      print (settled);
    - no print is starting on it (``printers.starting``) and no other swap is under way;
    - take: a plate that holds a part is in it; replace: it is empty.
    """
    pid = printer.printer_id
    if print_id is not None and print_ended is False:
        return DoorCheck(
            False,
            f"print {print_id} has not ended on printer {pid} ({printer.describe()}): nothing "
            "is sent; the swap follows by itself once printer-service records its end",
            until_print_end=True,
        )
    if printer.last_seen is None:
        return DoorCheck(False, f"printer {pid} has never reported: its state is unknown")
    age = (now - printer.last_seen).total_seconds()
    if age > max_age_s:
        return DoorCheck(
            False,
            f"printer {pid}'s last report is {age:.0f} s old (bound {max_age_s:g} s): its "
            "state is unknown",
        )
    if not printer.online:
        return DoorCheck(False, f"printer {pid} is offline")
    allowed = TAKE_STATES if kind is RobotJobKind.TAKE else REPLACE_STATES
    if printer.state not in allowed:
        return DoorCheck(False, f"printer {pid} is {printer.describe()}")
    heating = [
        f"{name} target {value:g} °C"
        for name, value in (("nozzle", printer.nozzle_target), ("bed", printer.bed_target))
        if value
    ]
    if heating:
        return DoorCheck(False, f"printer {pid} is heating ({', '.join(heating)})")
    current = printer.current_print
    if current is not None and not current.ended:
        return DoorCheck(
            False,
            f"printer-service has not recorded the end of print {current.print_id} on "
            f"printer {pid}",
        )
    if printer.starting is not None:
        return DoorCheck(
            False,
            f"printer-service is starting a print on printer {pid} ({printer.starting.what})",
        )
    swap = printer.swap
    if swap is not None and (group is None or swap.print_id != group):
        return DoorCheck(False, f"another swap of printer {pid} is under way ({swap.task_id})")
    bed = printer.bed
    if kind is RobotJobKind.TAKE:
        if bed is None:
            return DoorCheck(False, f"printer {pid} holds no plate: nothing to take")
        if bed.state is not BedState.WITH_PART:
            return DoorCheck(
                False,
                f"printer {pid} holds plate {bed.bed_id} ({bed.state.value}), not a plate "
                "with a part: nothing to take",
            )
    elif bed is not None:
        return DoorCheck(False, f"printer {pid} still holds plate {bed.bed_id}")
    return SAFE
