"""MySQL adapter: applies interval/print events idempotently and runs the report queries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, func, select, text, update
from sqlalchemy.dialects.mysql import insert
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from pantheon_common.errors import PantheonError, StoreUnavailable
from printer_utilization.adapters.db import from_db, print_jobs, state_intervals, to_db
from printer_utilization.domain.intervals import (
    Event,
    IntervalClosed,
    IntervalOpened,
    IntervalSeen,
    OpenInterval,
    PrintObserved,
)
from printer_utilization.domain.report import DAY_S, Buckets, Usage
from printer_utilization.domain.states import UtilState


class StoreRejected(PantheonError):
    """MySQL refused the data itself (not the connection): retrying will not help."""


@dataclass(frozen=True)
class IntervalRow:
    """A stored interval (``ended_at`` None while open)."""

    printer_id: int
    state: str
    started_at: datetime
    ended_at: datetime | None
    last_seen_at: datetime


@dataclass(frozen=True)
class PrintRow:
    """A stored print job."""

    print_id: str
    printer_id: int
    job_id: str | None
    file: str
    started_at: datetime
    ended_at: datetime | None
    result: str | None
    duration_s: float | None
    filament_g: float | None


def _map_error(err: SQLAlchemyError) -> PantheonError:
    if isinstance(err, OperationalError | InterfaceError | PoolTimeout):
        return StoreUnavailable(f"MySQL unavailable: {err}")
    if isinstance(err, DBAPIError) and err.connection_invalidated:
        return StoreUnavailable(f"MySQL connection lost: {err}")
    return StoreRejected(f"MySQL rejected the write: {err}")


_END = "COALESCE(ended_at, last_seen_at)"
_DURATION_US = f"TIMESTAMPDIFF(MICROSECOND, started_at, {_END})"
# The first two conditions let MySQL range-scan ix_intervals_started (index only).
_OVERLAPS = f"started_at < :hi AND (ended_at IS NULL OR ended_at > :lo) AND {_END} > :lo"
# Day and week buckets start at UTC midnight: integer day numbers are the cheapest bucket key.
_DAY_BUCKET = "((TO_DAYS({col}) - TO_DAYS(:origin)) DIV :step_days)"
# Seconds as DOUBLE: DECIMAL sums cost more to decode than the query costs to run.
_STATE_SUMS = ", ".join(
    f"CAST(SUM(IF(state = '{state.value}', {_DURATION_US}, 0)) AS DOUBLE) / 1e6"
    for state in UtilState
)


@dataclass(frozen=True)
class _BucketSql:
    """SQL fragments that put a row in a bucket for one kind of grouping."""

    start_key: str
    """Bucket of ``started_at``."""
    contained: str
    """The interval lies inside the range and inside one bucket."""
    print_key: str
    """Bucket of a print's ``ended_at``."""


def _bucket_sql(buckets: Buckets) -> _BucketSql:
    inside = f"started_at >= :lo AND {_END} <= :hi"
    if len(buckets.items) == 1:
        return _BucketSql("0", inside, "0")
    start_key = _DAY_BUCKET.format(col="started_at")
    end_key = _DAY_BUCKET.format(col=f"({_END} - INTERVAL 1 MICROSECOND)")
    return _BucketSql(
        start_key, f"{inside} AND {start_key} = {end_key}", _DAY_BUCKET.format(col="ended_at")
    )


class MysqlStore:
    """Reads and writes the utilization tables through one engine."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @property
    def engine(self) -> Engine:
        """The underlying engine (tests, migrations)."""
        return self._engine

    def ping(self) -> None:
        """Raise StoreUnavailable unless MySQL answers."""
        try:
            with self._engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as err:
            raise _map_error(err) from err

    # ------------------------------------------------------------------ writes

    def apply(self, events: Sequence[Event]) -> None:
        """Apply ``events`` in order, in one transaction (each is idempotent)."""
        try:
            with self._engine.begin() as conn:
                for event in events:
                    _apply(conn, event)
        except SQLAlchemyError as err:
            raise _map_error(err) from err

    def load_open_intervals(self) -> dict[int, OpenInterval]:
        """The open interval of each printer (the latest, if several were left open)."""
        query = (
            select(
                state_intervals.c.printer_id,
                state_intervals.c.state,
                state_intervals.c.started_at,
                state_intervals.c.last_seen_at,
            )
            .where(state_intervals.c.ended_at.is_(None))
            .order_by(state_intervals.c.started_at)
        )
        try:
            with self._engine.connect() as conn:
                rows = conn.execute(query).all()
        except SQLAlchemyError as err:
            raise _map_error(err) from err
        found: dict[int, OpenInterval] = {}
        for printer_id, state, started_at, last_seen_at in rows:
            try:
                util = UtilState(state)
            except ValueError:
                continue
            found[int(printer_id)] = OpenInterval(util, from_db(started_at), from_db(last_seen_at))
        return found

    # ------------------------------------------------------------------ reads

    def printer_ids(self) -> set[int]:
        """Every printer that has intervals."""
        rows = self._read(text("SELECT DISTINCT printer_id FROM state_intervals"))
        return {int(r[0]) for r in rows}

    def usage(
        self, buckets: Buckets, printer_ids: Sequence[int] | None
    ) -> dict[tuple[int, int], Usage]:
        """Seconds per state, prints and filament per ``(printer_id, bucket index)``."""
        if len(buckets.items) > 1 and buckets.step_s % DAY_S:
            raise ValueError("multi-bucket reports need whole-day buckets")
        params: dict[str, Any] = {
            "origin": to_db(buckets.origin),
            "step_days": max(1, int(buckets.step_s // DAY_S)),
            "lo": to_db(buckets.start),
            "hi": to_db(buckets.end),
        }
        where_printer = ""
        if printer_ids is not None:
            params["ids"] = list(printer_ids) or [-1]
            where_printer = " AND printer_id IN :ids"
        sql = _bucket_sql(buckets)
        # Constant SQL fragments only; every value is a bound parameter.
        contained = text(
            f"SELECT printer_id, {sql.start_key} AS k, {_STATE_SUMS} "  # noqa: S608
            f"FROM state_intervals WHERE {_OVERLAPS} AND {sql.contained}{where_printer} "
            "GROUP BY printer_id, k"
        )
        spanning = text(
            "SELECT printer_id, state, "  # noqa: S608
            "TIMESTAMPDIFF(MICROSECOND, :origin, started_at), "
            f"TIMESTAMPDIFF(MICROSECOND, :origin, {_END}) "
            f"FROM state_intervals WHERE {_OVERLAPS} AND NOT ({sql.contained}){where_printer}"
        )
        prints = text(
            f"SELECT printer_id, {sql.print_key} AS k, result, COUNT(*), "  # noqa: S608
            "SUM(COALESCE(filament_g, 0)) FROM print_jobs "
            f"WHERE ended_at >= :lo AND ended_at < :hi{where_printer} "
            "GROUP BY printer_id, k, result"
        )
        if printer_ids is not None:
            contained = contained.bindparams(bindparam("ids", expanding=True))
            spanning = spanning.bindparams(bindparam("ids", expanding=True))
            prints = prints.bindparams(bindparam("ids", expanding=True))
        out: dict[tuple[int, int], Usage] = {}

        def at(printer_id: int, k: int) -> Usage:
            return out.setdefault((printer_id, k), Usage())

        try:
            with self._engine.connect() as conn:
                for printer_id, k, *per_state in conn.execute(contained, params):
                    usage = at(int(printer_id), int(k))
                    for state, seconds in zip(UtilState, per_state, strict=True):
                        if seconds:
                            usage.add_seconds(state, float(seconds))
                origin = buckets.origin
                for printer_id, state, start_us, end_us in conn.execute(spanning, params):
                    if state not in UtilState.__members__.values():
                        continue
                    started = origin + timedelta(microseconds=int(start_us))
                    ended = origin + timedelta(microseconds=int(end_us))
                    for k, seconds in buckets.split(started, ended):
                        at(int(printer_id), k).add_seconds(UtilState(state), seconds)
                for printer_id, k, result, count, grams in conn.execute(prints, params):
                    usage = at(int(printer_id), int(k))
                    if result == "finished":
                        usage.prints_finished += int(count)
                        # Filament of failed prints is unknown (partial): only finished count.
                        usage.filament_g += float(grams or 0)
                    elif result == "failed":
                        usage.prints_failed += int(count)
        except SQLAlchemyError as err:
            raise _map_error(err) from err
        return out

    def intervals(
        self,
        start: datetime,
        end: datetime,
        printer_ids: Sequence[int] | None = None,
        limit: int = 10_000,
    ) -> list[IntervalRow]:
        """Intervals overlapping ``[start, end)``, by printer then start (not clipped)."""
        c = state_intervals.c
        query = (
            select(c.printer_id, c.state, c.started_at, c.ended_at, c.last_seen_at)
            .where(
                c.started_at < to_db(end),
                func.coalesce(c.ended_at, c.last_seen_at) > to_db(start),
            )
            .order_by(c.printer_id, c.started_at)
            .limit(limit)
        )
        if printer_ids is not None:
            query = query.where(c.printer_id.in_(list(printer_ids)))
        return [
            IntervalRow(
                int(r[0]),
                str(r[1]),
                from_db(r[2]),
                from_db(r[3]) if r[3] is not None else None,
                from_db(r[4]),
            )
            for r in self._read(query)
        ]

    def prints(
        self,
        start: datetime,
        end: datetime,
        printer_ids: Sequence[int] | None = None,
        limit: int = 10_000,
    ) -> list[PrintRow]:
        """Prints started in ``[start, end)``, by start."""
        c = print_jobs.c
        query = (
            select(
                c.print_id,
                c.printer_id,
                c.job_id,
                c.file,
                c.started_at,
                c.ended_at,
                c.result,
                c.duration_s,
                c.filament_g,
            )
            .where(c.started_at >= to_db(start), c.started_at < to_db(end))
            .order_by(c.started_at, c.printer_id)
            .limit(limit)
        )
        if printer_ids is not None:
            query = query.where(c.printer_id.in_(list(printer_ids)))
        return [
            PrintRow(
                str(r[0]),
                int(r[1]),
                r[2],
                str(r[3]),
                from_db(r[4]),
                from_db(r[5]) if r[5] is not None else None,
                r[6],
                r[7],
                r[8],
            )
            for r in self._read(query)
        ]

    def _read(self, query: Any) -> list[Any]:
        try:
            with self._engine.connect() as conn:
                return list(conn.execute(query).all())
        except SQLAlchemyError as err:
            raise _map_error(err) from err


def _apply(conn: Connection, event: Event) -> None:
    c = state_intervals.c
    if isinstance(event, IntervalOpened):
        start = to_db(event.started_at)
        # At most one open interval per printer: one left open by a run that could not read
        # the database at start is closed where it was last seen (never after the new start).
        conn.execute(
            update(state_intervals)
            .where(c.printer_id == event.printer_id, c.ended_at.is_(None), c.started_at < start)
            .values(ended_at=func.least(c.last_seen_at, start))
        )
        stmt = insert(state_intervals).values(
            printer_id=event.printer_id,
            state=event.state.value,
            started_at=start,
            ended_at=None,
            last_seen_at=start,
        )
        conn.execute(stmt.on_duplicate_key_update(printer_id=stmt.inserted.printer_id))
    elif isinstance(event, IntervalClosed):
        end = to_db(event.ended_at)
        conn.execute(
            update(state_intervals)
            .where(
                c.printer_id == event.printer_id,
                c.started_at == to_db(event.started_at),
                c.ended_at.is_(None),
            )
            .values(ended_at=end, last_seen_at=func.greatest(c.last_seen_at, end))
        )
    elif isinstance(event, IntervalSeen):
        conn.execute(
            update(state_intervals)
            .where(
                c.printer_id == event.printer_id,
                c.started_at == to_db(event.started_at),
                c.ended_at.is_(None),
            )
            .values(last_seen_at=func.greatest(c.last_seen_at, to_db(event.seen_at)))
        )
    else:
        _upsert_print(conn, event)


def _upsert_print(conn: Connection, event: PrintObserved) -> None:
    p = event.print
    c = print_jobs.c
    stmt = insert(print_jobs).values(
        print_id=p.print_id,
        printer_id=p.printer_id,
        job_id=p.job_id,
        file=p.file[:255],
        started_at=to_db(p.started_at),
        ended_at=to_db(p.ended_at) if p.ended_at else None,
        result=p.result,
        duration_s=p.duration_s,
        filament_g=p.filament_g,
    )
    ins = stmt.inserted
    conn.execute(
        stmt.on_duplicate_key_update(
            ended_at=func.coalesce(ins.ended_at, c.ended_at),
            result=func.coalesce(ins.result, c.result),
            duration_s=func.coalesce(ins.duration_s, c.duration_s),
            filament_g=func.coalesce(ins.filament_g, c.filament_g),
            job_id=func.coalesce(ins.job_id, c.job_id),
        )
    )
