"""daily_state_seconds: per-day totals of closed intervals, filled from the existing ones.

Revision ID: 0002
Revises: 0001
"""

from collections import defaultdict
from datetime import date

import sqlalchemy as sa
from alembic import op

from printer_utilization.domain.report import day_spans

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_BATCH = 5000


def upgrade() -> None:
    """Create the table and add every closed interval to it, split at UTC midnights."""
    daily = op.create_table(
        "daily_state_seconds",
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("printer_id", sa.Integer, nullable=False),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("seconds", sa.Float(precision=53), nullable=False),
        sa.PrimaryKeyConstraint("day", "printer_id", "state", name="pk_daily_state_seconds"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    assert daily is not None
    totals: defaultdict[tuple[date, int, str], float] = defaultdict(float)
    closed = op.get_bind().execute(
        sa.text(
            "SELECT printer_id, state, started_at, ended_at FROM state_intervals "
            "WHERE ended_at IS NOT NULL AND ended_at > started_at"
        )
    )
    for printer_id, state, started_at, ended_at in closed:
        for day, seconds in day_spans(started_at, ended_at):
            totals[(day, int(printer_id), str(state))] += seconds
    rows = [
        {"day": day, "printer_id": printer_id, "state": state, "seconds": seconds}
        for (day, printer_id, state), seconds in sorted(totals.items())
    ]
    for i in range(0, len(rows), _BATCH):
        op.bulk_insert(daily, rows[i : i + _BATCH])


def downgrade() -> None:
    """Drop the table (state_intervals still holds everything)."""
    op.drop_table("daily_state_seconds")
