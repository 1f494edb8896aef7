"""Utilization states and how a printer-service ``/status`` maps onto them.

The mapping (the table test in ``tests/unit/test_states.py`` mirrors it row by row):

| printer state (PrinterState)    | plate (``/status`` ``bed``)          | utilization state |
|---|---|---|
| preparing, printing             | any                                  | printing          |
| paused                          | any                                  | paused            |
| idle                            | any                                  | idle              |
| finished                        | with_part, none (plate out), unknown | waiting_for_robot |
| finished                        | in_printer (clean plate loaded)      | idle              |
| failed                          | with_part, none (plate out), unknown | error             |
| failed                          | in_printer (clean plate loaded)      | idle              |
| offline, unknown                | any                                  | offline           |
| printer-service unreachable     | -                                    | offline           |

Why: Bambu's FINISH and FAILED are sticky until the next job starts. While the plate still
holds the part (or the robot has taken it out and not yet loaded a clean one) the printer is
waiting for the robot (finished) or for the robot/an operator after a failure (error). Once a
clean plate is loaded the printer is ready for work, which is idle whatever the sticky state says.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from pantheon_contracts import PrinterState


class UtilState(StrEnum):
    """What a printer's time is spent on, as the utilization reports count it."""

    PRINTING = "printing"
    PAUSED = "paused"
    IDLE = "idle"
    WAITING_FOR_ROBOT = "waiting_for_robot"
    ERROR = "error"
    OFFLINE = "offline"


REPORT_STATES: Final = tuple(UtilState)
"""Report column order."""


class PlateState(StrEnum):
    """The plate in the printer as ``/status`` ``bed`` tells it."""

    IN_PRINTER = "in_printer"
    """A clean plate is loaded."""
    WITH_PART = "with_part"
    """The plate holds the finished (or failed) part."""
    NONE = "none"
    """``bed`` is null: no plate in the printer."""
    UNKNOWN = "unknown"
    """``bed`` absent or unreadable."""


_PRINTING: Final = frozenset({PrinterState.PREPARING, PrinterState.PRINTING})
_OFFLINE: Final = frozenset({PrinterState.OFFLINE, PrinterState.UNKNOWN})


def classify(state: PrinterState | None, plate: PlateState = PlateState.UNKNOWN) -> UtilState:
    """Utilization state of a printer in ``state`` (None: printer-service unreachable)."""
    if state is None or state in _OFFLINE:
        return UtilState.OFFLINE
    if state in _PRINTING:
        return UtilState.PRINTING
    if state is PrinterState.PAUSED:
        return UtilState.PAUSED
    if state is PrinterState.IDLE:
        return UtilState.IDLE
    if plate is PlateState.IN_PRINTER:
        # Sticky FINISH/FAILED with a clean plate loaded: ready for the next job.
        return UtilState.IDLE
    if state is PrinterState.FINISHED:
        return UtilState.WAITING_FOR_ROBOT
    return UtilState.ERROR
