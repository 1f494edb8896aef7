"""Printer states, normalised from Bambu ``gcode_state`` (bambu-lan-protocol.md 4.3)."""

from enum import StrEnum
from typing import Final


class PrinterState(StrEnum):
    """A printer's state as the whole suite speaks of it."""

    IDLE = "idle"
    """Nothing loaded, ready for a job."""
    PREPARING = "preparing"
    """Job accepted: downloading, heating, levelling (Bambu PREPARE, SLICING)."""
    PRINTING = "printing"
    """Bambu RUNNING."""
    PAUSED = "paused"
    """Bambu PAUSE (user, runout, HMS)."""
    FINISHED = "finished"
    """Bambu FINISH: sticky until the next job; the plate holds a part."""
    FAILED = "failed"
    """Bambu FAILED (including a user stop): sticky like FINISH."""
    OFFLINE = "offline"
    """No connection, or the printer said OFFLINE."""
    UNKNOWN = "unknown"
    """Connected but no full report merged yet, or INIT/UNKNOWN/unrecognised values."""


BAMBU_GCODE_STATES: Final[dict[str, PrinterState]] = {
    "IDLE": PrinterState.IDLE,
    "PREPARE": PrinterState.PREPARING,
    "SLICING": PrinterState.PREPARING,
    "RUNNING": PrinterState.PRINTING,
    "PAUSE": PrinterState.PAUSED,
    "FINISH": PrinterState.FINISHED,
    "FAILED": PrinterState.FAILED,
    "OFFLINE": PrinterState.OFFLINE,
    "INIT": PrinterState.UNKNOWN,
    "UNKNOWN": PrinterState.UNKNOWN,
}


def from_bambu(gcode_state: str | None) -> PrinterState:
    """Normalise a Bambu ``gcode_state``; unknown or missing values read UNKNOWN."""
    if gcode_state is None:
        return PrinterState.UNKNOWN
    return BAMBU_GCODE_STATES.get(gcode_state.strip().upper(), PrinterState.UNKNOWN)


BUSY_STATES: Final = frozenset({PrinterState.PREPARING, PrinterState.PRINTING, PrinterState.PAUSED})
"""A job runs: no new job may be sent (Studio's "busy" set)."""
DISPATCHABLE_STATES: Final = frozenset(
    {PrinterState.IDLE, PrinterState.FINISHED, PrinterState.FAILED}
)
"""The firmware accepts a new job in these states (the plate must also be clean)."""
DONE_STATES: Final = frozenset({PrinterState.FINISHED, PrinterState.FAILED})
"""The last job ended; the plate may hold a part for the robot."""
ERROR_STATES: Final = frozenset({PrinterState.FAILED})
"""The last job ended badly; an operator should look."""
UNAVAILABLE_STATES: Final = frozenset({PrinterState.OFFLINE, PrinterState.UNKNOWN})
"""Not to be trusted with a job."""
CAN_PAUSE: Final = frozenset({PrinterState.PRINTING})
CAN_RESUME: Final = frozenset({PrinterState.PAUSED})
CAN_STOP: Final = frozenset({PrinterState.PREPARING, PrinterState.PRINTING, PrinterState.PAUSED})


class PrinterModel(StrEnum):
    """Bambu printer models in the farm."""

    X1C = "X1C"
    X1E = "X1E"
    P1S = "P1S"
    P1P = "P1P"
    A1 = "A1"
    A1MINI = "A1MINI"


FULL_REPORT_MODELS: Final = frozenset({PrinterModel.X1C, PrinterModel.X1E})
"""Models that push full reports; the others (P1, A1) push deltas to be merged by key."""
