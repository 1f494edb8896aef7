"""Print-bed plates: their types and the states of their life cycle (architecture.md 3.3)."""

from enum import StrEnum
from typing import Final


class BedType(StrEnum):
    """Plate surface; a job names the type it needs."""

    TEXTURED_PEI = "textured_pei"
    SMOOTH_PEI = "smooth_pei"
    COOL_PLATE = "cool_plate"
    ENGINEERING = "engineering"


class BedState(StrEnum):
    """Where a plate is in its cycle."""

    CLEAN = "clean"
    """In its rack slot, ready to be loaded."""
    IN_PRINTER = "in_printer"
    """Loaded in a printer and clean (a job may print on it)."""
    WITH_PART = "with_part"
    """Holds a finished part (in the printer, or back in the rack after a take)."""
    DIRTY = "dirty"
    """Part removed but not yet cleaned."""
    RETIRED = "retired"
    """Out of service."""


LOADABLE_STATES: Final = frozenset({BedState.CLEAN})
"""States in which the robot may fetch a plate from the rack for a replace."""
PRINTABLE_STATES: Final = frozenset({BedState.IN_PRINTER})
"""A printer may start a job only on a plate in one of these states."""
NEEDS_OPERATOR_STATES: Final = frozenset({BedState.WITH_PART, BedState.DIRTY})
"""An operator must remove the part and/or clean the plate."""
