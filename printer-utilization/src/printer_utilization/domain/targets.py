"""How a printer-service is addressed."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PrinterTarget:
    """One printer-service to poll."""

    printer_id: int
    base_url: str
    """``GET {base_url}/status``."""


def published_port(printer_id: int) -> int:
    """Host port of a printer-service as compose publishes it (printer 14 -> 50014)."""
    return int(f"500{printer_id:02d}")


def service_url(template: str, printer_id: int) -> str:
    """``PRINTER_SERVICE_URL_TEMPLATE`` with ``{id}``/``{printer_id}`` and ``{port}`` filled in."""
    return template.format(
        id=printer_id, printer_id=printer_id, port=published_port(printer_id)
    ).rstrip("/")
