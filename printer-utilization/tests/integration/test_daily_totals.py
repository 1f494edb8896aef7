"""Daily totals: reports read whole days from ``daily_state_seconds`` and must give exactly what
the raw intervals give, for any range, grouping, replay, restart and migration (real MariaDB)."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import select

from printer_utilization.adapters.db import daily_state_seconds
from printer_utilization.adapters.migrate import alembic_config, upgrade
from printer_utilization.adapters.store import MysqlStore
from printer_utilization.domain.intervals import Event, IntervalTracker
from printer_utilization.domain.report import Buckets, Grouping, make_buckets
from printer_utilization.domain.samples import StatusSample
from printer_utilization.domain.states import UtilState

D = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
DAYS = 6
GAP_S = 900.0
PRINTERS = (11, 12, 13)

pytestmark = pytest.mark.integration


def scripted_events(seed: int) -> list[Event]:
    """Random state changes of three printers over six days, with polling gaps (closed at the
    last sample), a restart that forgets the open intervals (closed by the next opening), and
    the intervals still open at the end."""
    rng = random.Random(seed)
    tracker = IntervalTracker(GAP_S)
    events: list[Event] = []
    at = {pid: D + timedelta(minutes=rng.uniform(0, 30)) for pid in PRINTERS}
    state = dict.fromkeys(PRINTERS, UtilState.IDLE)
    end = D + timedelta(days=DAYS)
    restarted = False
    while min(at.values()) < end:
        pid = min(at, key=lambda p: at[p])
        if rng.random() < 0.3:
            state[pid] = rng.choice(list(UtilState))
        events += tracker.observe(StatusSample(pid, at[pid], state[pid]))
        # Mostly polled every few minutes; sometimes a gap of hours.
        step = rng.uniform(60, 600) if rng.random() < 0.97 else rng.uniform(1200, 20_000)
        at[pid] += timedelta(seconds=step)
        if not restarted and at[pid] > D + timedelta(days=3, hours=5):
            tracker, restarted = IntervalTracker(GAP_S), True
    return events


def reference(store: MysqlStore, buckets: Buckets) -> dict[tuple[int, int], dict[str, float]]:
    """Seconds per state per (printer, bucket) straight from the raw intervals."""
    out: defaultdict[tuple[int, int], defaultdict[str, float]] = defaultdict(
        lambda: defaultdict(float)
    )
    everything = store.intervals(D - timedelta(days=30), D + timedelta(days=30), limit=1_000_000)
    for row in everything:
        ended = row.ended_at if row.ended_at is not None else row.last_seen_at
        for k, seconds in buckets.split(row.started_at, ended):
            out[(row.printer_id, k)][row.state] += seconds
    return {key: dict(states) for key, states in out.items()}


def seconds_of(store: MysqlStore, buckets: Buckets) -> dict[tuple[int, int], dict[str, float]]:
    return {
        key: {state.value: s for state, s in usage.seconds.items() if s}
        for key, usage in store.usage(buckets, None).items()
        if usage.seconds
    }


def assert_same(
    got: dict[tuple[int, int], dict[str, float]], want: dict[tuple[int, int], dict[str, float]]
) -> None:
    assert got.keys() == want.keys()
    for key, states in want.items():
        assert got[key].keys() == states.keys(), key
        for state, seconds in states.items():
            assert got[key][state] == pytest.approx(seconds, abs=1e-3), (key, state)


def random_ranges(seed: int, n: int) -> list[tuple[datetime, datetime, Grouping]]:
    rng = random.Random(seed)
    ranges = [
        (D, D + timedelta(days=DAYS), Grouping.DAY),  # whole days only
        (D - timedelta(days=1), D + timedelta(days=DAYS + 1), Grouping.NONE),
        (D + timedelta(hours=5), D + timedelta(hours=9), Grouping.NONE),  # inside one day
        (D + timedelta(hours=20), D + timedelta(days=1, hours=2), Grouping.DAY),  # no whole day
    ]
    for _ in range(n):
        lo = D + timedelta(hours=rng.uniform(-12, 24 * DAYS))
        if rng.random() < 0.3:
            lo = lo.replace(hour=0, minute=0, second=0, microsecond=0)
        hi = lo + timedelta(hours=rng.uniform(0.5, 24 * 4))
        ranges.append((lo, hi, rng.choice(list(Grouping))))
    return ranges


def daily_rows(store: MysqlStore) -> dict[tuple[object, int, str], float]:
    c = daily_state_seconds.c
    with store.engine.connect() as conn:
        rows = conn.execute(select(c.day, c.printer_id, c.state, c.seconds)).all()
    return {(day, int(pid), str(state)): float(s) for day, pid, state, s in rows}


def test_reports_from_daily_totals_equal_the_raw_intervals(store: MysqlStore) -> None:
    events = scripted_events(seed=8)
    for i in range(0, len(events), 50):
        store.apply(events[i : i + 50])
    assert daily_rows(store), "closing intervals filled no daily totals"
    everything = store.intervals(D - timedelta(days=1), D + timedelta(days=DAYS + 1))
    open_ones = sorted(r.printer_id for r in everything if r.ended_at is None)
    assert open_ones == list(PRINTERS)  # the restart's stale intervals were closed

    for lo, hi, grouping in random_ranges(seed=9, n=40):
        buckets = make_buckets(lo, hi, grouping)
        assert_same(seconds_of(store, buckets), reference(store, buckets))


def test_replayed_events_add_nothing_to_the_daily_totals(store: MysqlStore) -> None:
    events = scripted_events(seed=10)
    store.apply(events)
    before = daily_rows(store)
    store.apply(events)  # the spool replays after a crash
    assert daily_rows(store) == before


def test_the_migration_fills_daily_totals_from_existing_intervals(store: MysqlStore) -> None:
    store.apply(scripted_events(seed=11))
    written = daily_rows(store)
    config = alembic_config()
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0001")
    upgrade(store.engine)

    backfilled = daily_rows(store)
    assert backfilled.keys() == written.keys()
    for key, seconds in written.items():
        assert backfilled[key] == pytest.approx(seconds, abs=1e-3), key
    buckets = make_buckets(D, D + timedelta(days=DAYS), Grouping.WEEK)
    assert_same(seconds_of(store, buckets), reference(store, buckets))
