"""Tells bambu-sim that the arm took a plate out of a printer or loaded one (best effort)."""

import logging

import httpx

log = logging.getLogger(__name__)


class PrinterSimNotifier:
    """``PUT {url}/printers/{id}/plate`` after takes and replaces; failures are only logged."""

    def __init__(self, base_url: str, *, timeout_s: float = 2.0) -> None:
        self._base = base_url.rstrip("/")
        self._timeout_s = timeout_s

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
