"""MySQL adapter: applies interval/print events idempotently and runs the report queries."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, func, select, text, update
from sqlalchemy.dialects.mysql import insert
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from pantheon_common.errors import PantheonError, StoreUnavailable
from printer_utilization.adapters.db import (
    daily_state_seconds,
    from_db,
    print_jobs,
    state_intervals,
    to_db,
)
from printer_utilization.domain.intervals import (
    Event,
    IntervalClosed,
    IntervalOpened,
    IntervalSeen,
    OpenInterval,
    PrintObserved,
)
from printer_utilization.domain.report import Buckets, Usage, day_spans, whole_days
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


_KNOWN_STATES = frozenset(state.value for state in UtilState)
# Seconds per state as columns v0.., in UtilState order (constant SQL: the enum's own values).
_STATE_COLUMNS = ", ".join(
    f"SUM(IF(state = '{state.value}', seconds, 0)) AS v{i}" for i, state in enumerate(UtilState)
)
_PACKED_MAX_LEN = 256 * 1024 * 1024


def _packed(grouped: str, values: int) -> str:
    """Wrap a query of rows ``(p, k, v0 .. v<values-1>)`` (printer, bucket, numbers) so that
    the server answers one row per printer, its buckets packed as ``k,v0,v1..;k,v0..``.

    A per-day year of 20 printers is 7 300 (printer, day) rows: decoding that many rows in
    PyMySQL (pure Python) costs several times what the query costs; 20 strings split in Python
    cost a fraction of it.
    """
    fields = ", ".join(["k", *(f"COALESCE(v{i}, 0)" for i in range(values))])
    return (
        f"SELECT p, GROUP_CONCAT(CONCAT_WS(',', {fields}) SEPARATOR ';') "  # noqa: S608
        f"FROM ({grouped}) AS grouped GROUP BY p"
    )


def _unpack(rows: Iterable[Any], values: int) -> Iterator[tuple[int, int, list[float]]]:
    """``(printer_id, bucket, numbers)`` from the rows of a `_packed` query."""
    for printer_id, packed in rows:
        for item in str(packed).split(";"):
            k, *numbers = item.split(",")
            if len(numbers) != values:  # never silently short: GROUP_CONCAT truncates
                raise StoreRejected(f"packed report row of printer {printer_id} is cut short")
            yield int(printer_id), int(k), [float(n) for n in numbers]


# Day and week buckets start at UTC midnight: integer day numbers are the cheapest bucket key.
_DAY_BUCKET = "((TO_DAYS({col}) - TO_DAYS(:origin)) DIV :step_days)"


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
        """Seconds per state, prints and filament per ``(printer_id, bucket index)``.

        Whole days come from ``daily_state_seconds``; open intervals and the partial days at
        the edges of the range from ``state_intervals``. One connection, one snapshot.
        """
        if len(buckets.items) > 1 and not buckets.whole_day_steps:
            raise ValueError("multi-bucket reports need whole-day buckets")
        first, last = whole_days(buckets.start, buckets.end)
        params: dict[str, Any] = {
            "origin": to_db(buckets.origin),
            "step_days": buckets.step_days,
            "lo": to_db(buckets.start),
            "hi": to_db(buckets.end),
            "first": to_db(first),
            "last": to_db(last),
            "first_day": to_db(first).date(),
            "last_day": to_db(last).date(),
        }
        where_printer = ""
        if printer_ids is not None:
            params["ids"] = list(printer_ids) or [-1]
            where_printer = " AND printer_id IN :ids"
        single = len(buckets.items) == 1
        day_key = "0" if single else _DAY_BUCKET.format(col="day")
        print_key = "0" if single else _DAY_BUCKET.format(col="ended_at")
        # Constant SQL fragments only; every value is a bound parameter.
        daily_sql = (
            f"SELECT printer_id AS p, {day_key} AS k, {_STATE_COLUMNS} "  # noqa: S608
            "FROM daily_state_seconds WHERE day >= :first_day AND day < :last_day"
            f"{where_printer} GROUP BY p, k"
        )
        daily = text(_packed(daily_sql, len(UtilState)))
        columns = "SELECT printer_id, state, started_at, COALESCE(ended_at, last_seen_at) "
        pieces = [
            # Open intervals, anywhere in the range (the daily totals hold closed ones only).
            (
                text(
                    f"{columns}FROM state_intervals WHERE ended_at IS NULL "
                    f"AND started_at < :hi AND last_seen_at > :lo{where_printer}"
                ),
                buckets.start,
                buckets.end,
            ),
            # Closed intervals on the partial days before and after the whole days.
            (
                text(
                    f"{columns}FROM state_intervals "
                    f"WHERE ended_at > :lo AND started_at < :first{where_printer}"
                ),
                buckets.start,
                first,
            ),
            (
                text(
                    f"{columns}FROM state_intervals "
                    f"WHERE ended_at > :last AND started_at < :hi{where_printer}"
                ),
                last,
                buckets.end,
            ),
        ]
        # Filament of failed prints is unknown (partial): only finished ones count.
        prints_sql = (
            f"SELECT printer_id AS p, {print_key} AS k, "  # noqa: S608
            "SUM(result = 'finished') AS v0, SUM(result = 'failed') AS v1, "
            "SUM(IF(result = 'finished', COALESCE(filament_g, 0), 0)) AS v2 FROM print_jobs "
            f"WHERE ended_at >= :lo AND ended_at < :hi{where_printer} GROUP BY p, k"
        )
        prints = text(_packed(prints_sql, 3))
        if printer_ids is not None:
            daily = daily.bindparams(bindparam("ids", expanding=True))
            prints = prints.bindparams(bindparam("ids", expanding=True))
            pieces = [(q.bindparams(bindparam("ids", expanding=True)), a, b) for q, a, b in pieces]
        out: dict[tuple[int, int], Usage] = {}

        def at(printer_id: int, k: int) -> Usage:
            return out.setdefault((printer_id, k), Usage())

        def add(printer_id: int, k: int, state: str, seconds: float) -> None:
            if seconds and state in _KNOWN_STATES:
                at(printer_id, k).add_seconds(UtilState(state), seconds)

        try:
            with self._engine.connect() as conn:
                conn.execute(text(f"SET SESSION group_concat_max_len = {_PACKED_MAX_LEN}"))
                if first < last:
                    for printer_id, k, per_state in _unpack(
                        conn.execute(daily, params), len(UtilState)
                    ):
                        usage = at(printer_id, k)
                        for state, seconds in zip(UtilState, per_state, strict=True):
                            if seconds:
                                usage.add_seconds(state, seconds)
                for query, clip_lo, clip_hi in pieces:
                    if clip_hi <= clip_lo:
                        continue
                    for printer_id, state, started_at, ended_at in conn.execute(query, params):
                        started = max(from_db(started_at), clip_lo)
                        ended = min(from_db(ended_at), clip_hi)
                        for k, seconds in buckets.split(started, ended):
                            add(int(printer_id), k, state, seconds)
                for printer_id, k, (finished, failed, grams) in _unpack(
                    conn.execute(prints, params), 3
                ):
                    usage = at(printer_id, k)
                    usage.prints_finished += int(finished)
                    usage.prints_failed += int(failed)
                    usage.filament_g += grams
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
        stale = conn.execute(
            select(c.state, c.started_at, c.last_seen_at)
            .where(c.printer_id == event.printer_id, c.ended_at.is_(None), c.started_at < start)
            .with_for_update()
        ).all()
        for state, started_at, last_seen_at in stale:
            _close(conn, event.printer_id, state, started_at, min(last_seen_at, start))
        stmt = insert(state_intervals).values(
            printer_id=event.printer_id,
            state=event.state.value,
            started_at=start,
            ended_at=None,
            last_seen_at=start,
        )
        conn.execute(stmt.on_duplicate_key_update(printer_id=stmt.inserted.printer_id))
    elif isinstance(event, IntervalClosed):
        started_at = to_db(event.started_at)
        state = conn.execute(
            select(c.state)
            .where(
                c.printer_id == event.printer_id,
                c.started_at == started_at,
                c.ended_at.is_(None),
            )
            .with_for_update()
        ).scalar_one_or_none()
        if state is not None:  # else already closed: applying the event again changes nothing
            _close(conn, event.printer_id, state, started_at, to_db(event.ended_at))
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


def _close(
    conn: Connection, printer_id: int, state: str, started_at: datetime, end: datetime
) -> None:
    """Close the open interval ``(printer_id, started_at)`` at ``end`` and add it to the days.

    The caller holds the row locked and saw it open, so the daily totals get it exactly once.
    """
    c = state_intervals.c
    conn.execute(
        update(state_intervals)
        .where(c.printer_id == printer_id, c.started_at == started_at, c.ended_at.is_(None))
        .values(ended_at=end, last_seen_at=func.greatest(c.last_seen_at, end))
    )
    rows = [
        {"day": day, "printer_id": printer_id, "state": state, "seconds": seconds}
        for day, seconds in day_spans(started_at, end)
    ]
    if rows:
        stmt = insert(daily_state_seconds)
        conn.execute(
            stmt.on_duplicate_key_update(
                seconds=daily_state_seconds.c.seconds + stmt.inserted.seconds
            ),
            rows,
        )


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
