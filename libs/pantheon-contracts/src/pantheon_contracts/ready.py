"""The ``ready`` and ``homing`` queue messages (architecture.md 3.1)."""

import re
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from pantheon_contracts.errors import ContractError

MAX_PRINTER_ID = 999_999
"""Largest printer id a ``ready`` body may name (ids are small; this bounds garbage)."""
MAX_BODY_BYTES = 64
"""A ``ready`` body longer than this is not a printer id, whatever it holds."""

_DECIMAL = re.compile(r"[0-9]+", re.ASCII)


def parse_ready_body(body: bytes) -> int:
    """Return the printer id in a ``ready`` body or raise :class:`ContractError`.

    The body is what an operator types in the RabbitMQ UI: ASCII decimal digits. Surrounding
    white space (a trailing newline from a shell) is forgiven; signs, decimals, leading zeros,
    non-ASCII digits and invalid UTF-8 are not.
    """
    if len(body) > MAX_BODY_BYTES:
        raise ContractError(f"ready body is {len(body)} bytes; a printer id is at most a few")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ContractError(f"ready body is not UTF-8: {err.reason} at byte {err.start}") from err
    text = text.strip()
    if not text:
        raise ContractError("ready body is empty; expected a printer id such as 14")
    if not _DECIMAL.fullmatch(text):
        raise ContractError(f"ready body {text!r} is not a printer id (ASCII decimal digits)")
    if len(text) > 1 and text.startswith("0"):
        raise ContractError(f"ready body {text!r} has a leading zero; expected e.g. 14")
    printer_id = int(text)
    if not 1 <= printer_id <= MAX_PRINTER_ID:
        raise ContractError(f"printer id {printer_id} is out of range 1..{MAX_PRINTER_ID}")
    return printer_id


def format_ready_body(printer_id: int) -> bytes:
    """The ``ready`` body for ``printer_id`` (``14`` -> ``b"14"``)."""
    if isinstance(printer_id, bool) or not 1 <= printer_id <= MAX_PRINTER_ID:
        raise ContractError(f"printer id {printer_id!r} is out of range 1..{MAX_PRINTER_ID}")
    return str(printer_id).encode("ascii")


class ReadyNotification(BaseModel):
    """One ``ready`` delivery: printer ``printer_id`` finished a print.

    ``print_id`` is the AMQP ``message_id`` set by printer-service (unique per print); it is
    None when an operator typed the body by hand, and the consumer then takes the print
    context from MongoDB.
    """

    model_config = ConfigDict(frozen=True)

    printer_id: int = Field(ge=1, le=MAX_PRINTER_ID, description="finished printer's id")
    print_id: str | None = Field(default=None, description="AMQP message_id: the print's id")
    published_at: datetime | None = Field(default=None, description="AMQP timestamp, UTC")

    @classmethod
    def from_delivery(
        cls, body: bytes, message_id: str | None = None, published_at: datetime | None = None
    ) -> "ReadyNotification":
        """Parse a delivery's body and properties; raises :class:`ContractError`."""
        return cls(
            printer_id=parse_ready_body(body),
            print_id=message_id or None,
            published_at=published_at,
        )


class HomingRequest(BaseModel):
    """One ``homing`` delivery: any body asks for one homing task."""

    model_config = ConfigDict(frozen=True)

    message_id: str | None = Field(default=None, description="AMQP message_id, if any")
    note: str = Field(default="", description="the body as text, kept for the task log")

    @classmethod
    def from_delivery(cls, body: bytes, message_id: str | None = None) -> "HomingRequest":
        """Any body is valid; undecodable bytes are kept with replacement characters."""
        return cls(message_id=message_id or None, note=body[:200].decode("utf-8", "replace"))
