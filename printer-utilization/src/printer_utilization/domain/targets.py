"""How a printer-service is addressed."""

from __future__ import annotations

from dataclasses import dataclass

from pantheon_common.farm import printer_service_url


@dataclass(frozen=True)
class PrinterTarget:
    """One printer-service to poll."""

    printer_id: int
    base_url: str
    """``GET {base_url}/status``."""


def service_url(template: str, printer_id: int) -> str:
    """``PRINTER_SERVICE_URL_TEMPLATE`` filled in (shared rule: pantheon_common.farm)."""
    return printer_service_url(template, printer_id)
