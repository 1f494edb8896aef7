"""The arm's link to bambu-sim's control API: reads printer states, tells it about plates."""

from __future__ import annotations

import logging
from typing import Any

import httpx

from pantheon_contracts.printer import PrinterState, from_bambu
from pantheon_sim.robot.world import PrinterSeen, PrinterUnseen, PrinterView

log = logging.getLogger(__name__)

_STATES = frozenset(s.value for s in PrinterState)


class PrinterSimClient:
    """``GET {url}/printers/{id}`` before a job; ``PUT {url}/printers/{id}/plate`` after one.

    Reads answer a :data:`PrinterView` (never raise): the arm refuses a job whose printer it
    cannot see. Plate updates are best effort: failures are only logged.
    """

    def __init__(self, base_url: str, *, timeout_s: float = 2.0) -> None:
        self._base = base_url.rstrip("/")
        self._timeout_s = timeout_s
        self._unseen = False
        """True after a failed read, so the log shows the outage and the recovery once."""

    def printer_view(self, printer_id: int) -> PrinterView:
        """The printer's live state, or why it could not be read (within ``timeout_s``)."""
        url = f"{self._base}/printers/{printer_id}"
        try:
            response = httpx.get(url, timeout=self._timeout_s)
            response.raise_for_status()
            view = parse_printer_status(response.json())
        except httpx.HTTPStatusError as err:
            view = PrinterUnseen(f"{url} answered HTTP {err.response.status_code}")
        except httpx.HTTPError as err:
            view = PrinterUnseen(f"printer simulator {self._base} does not answer: {err!r}")
        except ValueError:  # the body is not JSON
            view = PrinterUnseen(f"{url} answered something that is not JSON")
        if isinstance(view, PrinterUnseen) and not self._unseen:
            log.warning("printer states unreadable: %s", view.reason)
        elif isinstance(view, PrinterSeen) and self._unseen:
            log.info("printer states readable again from %s", self._base)
        self._unseen = isinstance(view, PrinterUnseen)
        return view

    def plate_removed(self, printer_id: int) -> bool:
        """The printer no longer holds a plate."""
        return self._put(printer_id, {"plate": "none", "bed_id": None})

    def plate_loaded(self, printer_id: int, bed_id: int) -> bool:
        """The printer now holds clean plate ``bed_id``."""
        return self._put(printer_id, {"plate": "clean", "bed_id": bed_id})

    def _put(self, printer_id: int, body: dict[str, object]) -> bool:
        url = f"{self._base}/printers/{printer_id}/plate"
        try:
            response = httpx.put(url, json=body, timeout=self._timeout_s)
            response.raise_for_status()
        except httpx.HTTPError as err:
            log.warning(
                "printer simulator not told about printer %d (%s): %s", printer_id, url, err
            )
            return False
        return True


def parse_printer_status(data: Any) -> PrinterView:
    """Read bambu-sim's ``GET /printers/{id}`` body: ``state`` (PrinterState), ``gcode_state``.

    A ``state`` that is not a PrinterState value falls back to normalising ``gcode_state``;
    a body with neither is unseen.
    """
    if not isinstance(data, dict):
        return PrinterUnseen("the printer simulator answered no JSON object")
    raw, state = data.get("gcode_state"), data.get("state")
    gcode_state = raw if isinstance(raw, str) else None
    if isinstance(state, str) and state in _STATES:
        return PrinterSeen(PrinterState(state), gcode_state)
    if gcode_state is None:
        return PrinterUnseen("the printer simulator's answer has no state")
    return PrinterSeen(from_bambu(gcode_state), gcode_state)
