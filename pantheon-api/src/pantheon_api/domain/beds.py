"""Rules of the plate inventory an operator changes by hand."""

from __future__ import annotations

from typing import Final

from pantheon_contracts.beds import BedState

__all__ = ["MARKABLE_CLEAN", "BedRuleError", "check_mark_clean", "check_retire"]

MARKABLE_CLEAN: Final = frozenset({BedState.WITH_PART, BedState.DIRTY, BedState.CLEAN})
"""A plate in its rack slot in one of these states may be marked clean (clean: no change)."""


class BedRuleError(Exception):
    """The change is not allowed for the plate as it is (HTTP 409)."""


def check_mark_clean(state: BedState, printer_id: int | None) -> None:
    """Raise unless the operator may mark this plate clean.

    Only a plate in the rack: a plate in a printer is the robot's (it takes it out first), and
    marking it clean there would let a printer print on top of a finished part.
    """
    if printer_id is not None:
        raise BedRuleError(
            f"plate is in printer {printer_id}: the robot takes it out before it is cleaned"
        )
    if state not in MARKABLE_CLEAN:
        raise BedRuleError(f"a {state.value} plate cannot be marked clean")


def check_retire(state: BedState, printer_id: int | None) -> None:
    """Raise unless the plate may be retired (never while it sits in a printer)."""
    if printer_id is not None or state == BedState.IN_PRINTER:
        raise BedRuleError("plate is in a printer: have the robot take it out first")
