"""state_intervals and print_jobs with the indexes of the report queries.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.mysql import DATETIME

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create both tables."""
    op.create_table(
        "state_intervals",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("printer_id", sa.Integer, nullable=False),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("started_at", DATETIME(fsp=6), nullable=False),
        sa.Column("ended_at", DATETIME(fsp=6), nullable=True),
        sa.Column("last_seen_at", DATETIME(fsp=6), nullable=False),
        sa.UniqueConstraint("printer_id", "started_at", name="uq_intervals_printer_start"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    op.create_index(
        "ix_intervals_started",
        "state_intervals",
        ["started_at", "ended_at", "printer_id", "state", "last_seen_at"],
    )
    op.create_index("ix_intervals_ended", "state_intervals", ["ended_at"])
    op.create_table(
        "print_jobs",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("print_id", sa.String(64), nullable=False, unique=True),
        sa.Column("printer_id", sa.Integer, nullable=False),
        sa.Column("job_id", sa.String(64), nullable=True),
        sa.Column("file", sa.String(255), nullable=False),
        sa.Column("started_at", DATETIME(fsp=6), nullable=False),
        sa.Column("ended_at", DATETIME(fsp=6), nullable=True),
        sa.Column("result", sa.String(16), nullable=True),
        sa.Column("duration_s", sa.Float, nullable=True),
        sa.Column("filament_g", sa.Float, nullable=True),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    op.create_index("ix_print_jobs_printer_started", "print_jobs", ["printer_id", "started_at"])
    op.create_index(
        "ix_print_jobs_ended", "print_jobs", ["ended_at", "printer_id", "result", "filament_g"]
    )


def downgrade() -> None:
    """Drop both tables."""
    op.drop_table("print_jobs")
    op.drop_table("state_intervals")
