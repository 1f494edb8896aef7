"""The MySQL schema (SQLAlchemy Core) and engine; Alembic migrations create it.

Times are stored as naive UTC ``DATETIME(6)``; the adapters convert at the edge.

- ``state_intervals``: one row per stretch of one utilization state of one printer.
  ``ended_at`` is NULL while the interval is open; ``last_seen_at`` is the last sample that saw
  it (reports count an open interval up to there, a restart closes a stale one there).
  Unique ``(printer_id, started_at)`` makes opening idempotent.
- ``print_jobs``: one row per physical print, keyed by ``print_id`` (printer-service's id).
- ``daily_state_seconds``: seconds of **closed** intervals per UTC day, printer and state,
  added in the transaction that closes an interval. Reports read whole days from it and only
  the open intervals and the partial days at the edges of a range from ``state_intervals``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    UniqueConstraint,
    create_engine,
)
from sqlalchemy.dialects.mysql import DATETIME

metadata = MetaData()

state_intervals = Table(
    "state_intervals",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("printer_id", Integer, nullable=False),
    Column("state", String(24), nullable=False),
    Column("started_at", DATETIME(fsp=6), nullable=False),
    Column("ended_at", DATETIME(fsp=6), nullable=True),
    Column("last_seen_at", DATETIME(fsp=6), nullable=False),
    UniqueConstraint("printer_id", "started_at", name="uq_intervals_printer_start"),
    # Range scans of the reports: by start, and by end (recent ranges and open intervals).
    Index("ix_intervals_started", "started_at", "ended_at", "printer_id", "state", "last_seen_at"),
    Index("ix_intervals_ended", "ended_at"),
)

print_jobs = Table(
    "print_jobs",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("print_id", String(64), nullable=False, unique=True),
    Column("printer_id", Integer, nullable=False),
    Column("job_id", String(64), nullable=True),
    Column("file", String(255), nullable=False),
    Column("started_at", DATETIME(fsp=6), nullable=False),
    Column("ended_at", DATETIME(fsp=6), nullable=True),
    Column("result", String(16), nullable=True),
    Column("duration_s", Float, nullable=True),
    Column("filament_g", Float, nullable=True),
    Index("ix_print_jobs_printer_started", "printer_id", "started_at"),
    Index("ix_print_jobs_ended", "ended_at", "printer_id", "result", "filament_g"),
)

daily_state_seconds = Table(
    "daily_state_seconds",
    metadata,
    Column("day", Date, nullable=False),
    Column("printer_id", Integer, nullable=False),
    Column("state", String(24), nullable=False),
    Column("seconds", Float(precision=53), nullable=False),
    PrimaryKeyConstraint("day", "printer_id", "state", name="pk_daily_state_seconds"),
)


def make_engine(url: str, *, connect_timeout_s: int = 5) -> Engine:
    """An engine that survives server restarts (pre-ping) and fails fast when it is away."""
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_recycle=3600,
        connect_args={
            "connect_timeout": connect_timeout_s,
            "read_timeout": 30,
            "write_timeout": 30,
        },
    )


def to_db(at: datetime) -> datetime:
    """Aware datetime -> naive UTC for a DATETIME column."""
    if at.tzinfo is None:
        return at
    return at.astimezone(UTC).replace(tzinfo=None)


def from_db(at: datetime) -> datetime:
    """Naive UTC from a DATETIME column -> aware UTC."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
