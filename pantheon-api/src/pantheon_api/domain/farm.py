"""The farm layout's rules: which printers have a printer-service and where, where a plate lives.

The layout (``FARM_LAYOUT``) is what the printer-services are started from (compose file,
``pantheon-run``) and what the robot knows: a printer only reaches a printer-service if it is in
it, and a plate's home must be a slot of one of its racks, or the arm would be sent to a place
that is not there. A printer or plate document in MongoDB alone (added through the API, or left
from an older layout) is not enough.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from pantheon_common.farm import FarmLayout, printer_service_url

__all__ = [
    "HomeSlotRefused",
    "NoServiceAddress",
    "UnknownPrinter",
    "check_home_slot",
    "printer_service_address",
    "url_problem",
]

PORTS = range(1, 65536)
"""TCP ports a printer-service can listen on."""


class UnknownPrinter(Exception):
    """The id is not a printer of the farm layout: it has no printer-service (HTTP 404)."""


class NoServiceAddress(Exception):
    """A printer of the layout whose printer-service address cannot be built (a configuration
    fault of ``PRINTER_SERVICE_URL_TEMPLATE``; HTTP 502, never a call)."""


class HomeSlotRefused(Exception):
    """A plate's home slot is not a slot of the layout, or is another plate's (HTTP 422)."""


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be called over HTTP (scheme, host, port 1..65535), or None."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return f"scheme {parts.scheme!r} is not http(s)"
    if not parts.hostname:
        return "no host"
    try:
        port = parts.port
    except ValueError:
        raw = parts.netloc.rpartition("]")[2].rpartition(":")[2]
        return f"port {raw} is outside 1..65535"
    if port is not None and port not in PORTS:
        return f"port {port} is outside 1..65535"
    return None


def printer_service_address(layout: FarmLayout, template: str, printer_id: int) -> str:
    """The URL of printer ``printer_id``'s printer-service.

    Raises `UnknownPrinter` when the printer is not in the layout (whatever MongoDB holds) and
    `NoServiceAddress` when the template gives no callable URL for it (e.g. a port past 65535).
    """
    if printer_id not in layout.printer_ids:
        raise UnknownPrinter(
            f"printer {printer_id} not found in the farm layout (it has no printer-service)"
        )
    url = printer_service_url(template, printer_id)
    if problem := url_problem(url):
        raise NoServiceAddress(
            f"printer {printer_id} has no usable printer-service address: {problem} "
            "(check PRINTER_SERVICE_URL_TEMPLATE)"
        )
    return url


def check_home_slot(
    layout: FarmLayout,
    bed_id: int,
    rack: str,
    slot: int,
    taken_by: Iterable[int] = (),
) -> None:
    """Raise `HomeSlotRefused` unless ``rack``/``slot`` may be plate ``bed_id``'s home.

    The rack must be in the layout, the slot one of its slots (1..slots), and the slot nobody
    else's home: neither a plate of the layout nor one in ``taken_by`` (other plates whose home
    it is in MongoDB).
    """
    racks = {r.id: r for r in layout.racks}
    spec = racks.get(rack)
    if spec is None:
        known = ", ".join(sorted(racks)) or "none"
        raise HomeSlotRefused(f"rack {rack!r} is not in the farm layout (racks: {known})")
    if not 1 <= slot <= spec.slots:
        raise HomeSlotRefused(f"rack {rack} has slots 1..{spec.slots}; there is no slot {slot}")
    owners = sorted(
        {b.id for b in layout.beds if (b.home.rack, b.home.slot) == (rack, slot)} | set(taken_by)
    )
    others = [owner for owner in owners if owner != bed_id]
    if others:
        raise HomeSlotRefused(f"slot {rack}/{slot} is the home of plate {others[0]}")
