"""Any range over HTTP, against real MariaDB: never a server error, buckets tile the range.

Regression: ``GET /utilization?group=none&from=0897-03-17T22:01:49Z`` answered 500 about half
of the time: the bucket edges were float seconds, which over ~1100 years lose the microseconds
of "now", so the one bucket ended short of the range and a second bucket appeared.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from printer_utilization.adapters.store import MysqlStore
from printer_utilization.api.app import create_app
from printer_utilization.domain.intervals import IntervalClosed, IntervalOpened, IntervalSeen
from printer_utilization.domain.states import UtilState

from .conftest import TOKEN

NOW = datetime(2026, 12, 5, 12, 34, 56, 789_123, tzinfo=UTC)
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Clock:
    """The app's clock; each example moves it to a new microsecond."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def app(store: MysqlStore) -> tuple[TestClient, Clock]:
    """The API over a store holding closed days, an open interval and intervals near now."""
    day = datetime(2026, 11, 30, tzinfo=UTC)
    store.apply(
        [
            IntervalOpened(11, UtilState.PRINTING, day),
            IntervalClosed(11, day, day + timedelta(days=3, hours=5)),
            IntervalOpened(11, UtilState.IDLE, day + timedelta(days=3, hours=5)),
            IntervalSeen(11, day + timedelta(days=3, hours=5), NOW - timedelta(minutes=1)),
            IntervalOpened(12, UtilState.ERROR, NOW - timedelta(hours=30)),
            IntervalClosed(12, NOW - timedelta(hours=30), NOW - timedelta(hours=2)),
        ]
    )
    clock = Clock()
    return TestClient(create_app(store, token=TOKEN, clock=clock)), clock


def _check_tiles(body: dict[str, Any], start: str, end: str) -> None:
    """The farm's buckets (and each printer's) start at 'from', end at 'to', touch."""
    for rows in [body["farm"]["buckets"], *(p["buckets"] for p in body["printers"])]:
        assert rows, body
        assert rows[0]["start"] == start
        assert rows[-1]["end"] == end
        for before, after in itertools.pairwise(rows):
            assert before["end"] == after["start"]
        for row in rows:
            assert datetime.fromisoformat(row["start"]) < datetime.fromisoformat(row["end"])
            assert sum(row["percent"].values()) == pytest.approx(100)


def test_the_probe_request_is_a_4xx_with_a_reason_every_time(
    app: tuple[TestClient, Clock],
) -> None:
    client, clock = app
    for micro in (0, 1, 499_999, 500_000, 789_123, 999_999):
        clock.now = NOW.replace(microsecond=micro)
        r = client.get(
            "/utilization", params={"group": "none", "from": "0897-03-17T22:01:49Z"}, headers=AUTH
        )
        assert r.status_code == 422, r.text
        assert "1000-01-01" in r.json()["detail"]


def test_a_thousand_years_is_one_bucket_whatever_the_microsecond(
    app: tuple[TestClient, Clock],
) -> None:
    client, clock = app
    for micro in range(0, 1_000_000, 99_991):
        clock.now = NOW.replace(microsecond=micro)
        r = client.get(
            "/utilization", params={"group": "none", "from": "1027-03-17T22:01:49Z"}, headers=AUTH
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["farm"]["buckets"]) == 1
        _check_tiles(body, body["from"], clock.now.isoformat())


OFFSETS = st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(-timedelta(hours=12))])
# Years 1..9999 (before 1000 and after now are refused or capped), any microsecond, any offset;
# times near now and whole-day/week edges are drawn more often.
near_now = st.builds(
    lambda seconds, micro: NOW + timedelta(seconds=seconds, microseconds=micro),
    st.integers(-40 * 86_400, 86_400),
    st.integers(-999_999, 999_999),
)
instants = st.one_of(
    st.datetimes(timezones=OFFSETS),
    st.datetimes(min_value=datetime(990, 1, 1), timezones=OFFSETS),
    near_now,
    near_now.map(lambda at: at.replace(hour=0, minute=0, second=0, microsecond=0)),
)


pairs = st.tuples(instants, instants)
# mostly from <= to; sometimes reversed (a 422); sometimes one end or both left out
ranges = st.one_of(
    pairs.map(lambda p: (min(p), max(p))),
    pairs.map(lambda p: (min(p), max(p))),
    pairs.map(lambda p: (min(p), max(p))),
    pairs,
).flatmap(
    lambda p: st.sampled_from([p, p, p, (p[0], None), (None, p[1]), (None, None)]),
)


@given(
    bounds=ranges,
    group=st.sampled_from(["none", "day", "week"]),
    micro=st.integers(0, 999_999),
)
@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_no_range_makes_a_server_error_and_buckets_tile_it(
    app: tuple[TestClient, Clock],
    bounds: tuple[datetime | None, datetime | None],
    group: str,
    micro: int,
) -> None:
    start, end = bounds
    client, clock = app
    clock.now = NOW.replace(microsecond=micro)
    params = {"group": group}
    if start is not None:
        params["from"] = start.isoformat()
    if end is not None:
        params["to"] = end.isoformat()
    r = client.get("/utilization", params=params, headers=AUTH)
    assert r.status_code in (200, 422), (params, r.status_code, r.text)
    if r.status_code == 422:
        assert r.json()["detail"]  # the reason (a string, or the validation errors)
    else:
        body = r.json()
        _check_tiles(body, body["from"], body["to"])
        if end is not None and end.astimezone(UTC) < clock.now:
            assert datetime.fromisoformat(body["to"]) == end
        if start is not None:
            assert datetime.fromisoformat(body["from"]) == start
    for route in ("/intervals", "/prints"):
        other = client.get(
            route, params={k: v for k, v in params.items() if k != "group"}, headers=AUTH
        )
        assert other.status_code in (200, 422), (route, params, other.text)
