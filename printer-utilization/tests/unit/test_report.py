"""Report arithmetic: buckets, splitting, uncovered time as offline, farm sums."""

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from printer_utilization.domain.report import (
    EARLIEST,
    Grouping,
    RangeRefused,
    Usage,
    bucket_count,
    build_report,
    day_spans,
    finalize,
    make_buckets,
    whole_days,
)
from printer_utilization.domain.states import REPORT_STATES
from printer_utilization.domain.states import UtilState as U

D = datetime(2026, 1, 7, tzinfo=UTC)  # a Wednesday
H = 3600.0


def test_none_is_one_bucket() -> None:
    b = make_buckets(D, D + timedelta(hours=5), Grouping.NONE)
    assert [(x.start, x.end) for x in b.items] == [(D, D + timedelta(hours=5))]


def test_days_are_utc_midnights_clipped_to_the_range() -> None:
    b = make_buckets(D + timedelta(hours=18), D + timedelta(days=2, hours=6), Grouping.DAY)
    assert [x.seconds / H for x in b.items] == [6, 24, 6]
    assert b.items[1].start == D + timedelta(days=1)


def test_weeks_start_on_monday() -> None:
    b = make_buckets(D, D + timedelta(days=10), Grouping.WEEK)
    assert [x.start for x in b.items] == [D, D + timedelta(days=5)]
    assert b.items[1].start.weekday() == 0
    assert b.origin == D - timedelta(days=2)


def test_empty_range_is_refused() -> None:
    with pytest.raises(ValueError, match="range"):
        make_buckets(D, D, Grouping.DAY)


def test_split_over_days_and_clipping() -> None:
    b = make_buckets(D, D + timedelta(days=3), Grouping.DAY)
    parts = dict(b.split(D - timedelta(hours=5), D + timedelta(days=1, hours=3)))
    assert parts == {0: 24 * H, 1: 3 * H}
    assert list(b.split(D + timedelta(days=4), D + timedelta(days=5))) == []


def test_uncovered_time_is_offline_and_percent_sums_to_100() -> None:
    usage = Usage({U.PRINTING: 8 * H, U.WAITING_FOR_ROBOT: 2 * H, U.IDLE: 12 * H})
    row = finalize(usage, 24 * H, 11, D, D + timedelta(days=1))
    assert row.hours[U.OFFLINE] == pytest.approx(2)
    assert row.percent[U.PRINTING] == pytest.approx(100 * 8 / 24)
    assert sum(row.percent.values()) == pytest.approx(100)
    assert set(row.hours) == set(REPORT_STATES)


def test_overlap_never_makes_more_than_100_percent() -> None:
    usage = Usage({U.PRINTING: 20 * H, U.IDLE: 8 * H})
    row = finalize(usage, 24 * H, 11, D, D + timedelta(days=1))
    assert sum(row.percent.values()) == pytest.approx(100)
    assert row.hours[U.OFFLINE] == 0


def test_farm_is_the_sum_of_printers_and_missing_printers_are_offline() -> None:
    b = make_buckets(D, D + timedelta(days=2), Grouping.DAY)
    usage = {
        (11, 0): Usage({U.PRINTING: 24 * H}, prints_finished=3, filament_g=30.0),
        (11, 1): Usage({U.IDLE: 12 * H}, prints_failed=1),
    }
    report = build_report(b, Grouping.DAY, [11, 12], usage)
    p11, p12 = report.printers
    assert p11.buckets[1].hours[U.OFFLINE] == pytest.approx(12)
    assert p11.total.prints_finished == 3
    assert p11.total.prints_failed == 1
    assert p11.total.percent[U.PRINTING] == pytest.approx(50)
    assert p12.total.percent[U.OFFLINE] == pytest.approx(100)
    assert report.farm[0].percent[U.PRINTING] == pytest.approx(50)
    assert report.farm_total.hours[U.PRINTING] == pytest.approx(24)
    assert report.farm_total.span_s == 4 * 24 * H
    assert report.farm_total.filament_g == 30.0
    for row in (*report.farm, report.farm_total, *p11.buckets, *p12.buckets):
        assert sum(row.percent.values()) == pytest.approx(100)


def test_day_spans_split_at_utc_midnights() -> None:
    start = D + timedelta(hours=22)
    spans = list(day_spans(start, start + timedelta(hours=27)))
    assert spans == [
        (D.date(), 2 * H),
        ((D + timedelta(days=1)).date(), 24 * H),
        ((D + timedelta(days=2)).date(), 1 * H),
    ]
    assert list(day_spans(start, start)) == []
    naive = D.replace(tzinfo=None)
    assert list(day_spans(naive, naive + timedelta(hours=24))) == [(D.date(), 24 * H)]


def test_whole_days_inside_a_range() -> None:
    day = timedelta(days=1)
    assert whole_days(D, D + 3 * day) == (D, D + 3 * day)
    assert whole_days(D + timedelta(hours=6), D + 3 * day + timedelta(hours=1)) == (
        D + day,
        D + 3 * day,
    )
    # No whole day inside: nothing from the daily totals.
    lo = D + timedelta(hours=6)
    assert whole_days(lo, D + day + timedelta(hours=5)) == (lo, lo)
    assert whole_days(D, D + timedelta(hours=5)) == (D, D)


# -- exact bucket edges (no float seconds) ---------------------------------------------------

# Any instant the API accepts: EARLIEST (year 1000) to the end of year 9999, to the microsecond.
instants = st.datetimes(
    min_value=EARLIEST.replace(tzinfo=None),
    max_value=datetime(9999, 12, 31, 23, 59, 59, 999_999),
    timezones=st.just(UTC),
)
MAX_BUCKETS = 20_000  # api.app.MAX_BUCKETS: larger reports are refused before buckets are cut


LONGEST = {  # longest span per grouping within MAX_BUCKETS (none: the whole calendar)
    Grouping.NONE: datetime.max - datetime.min,
    Grouping.DAY: timedelta(days=MAX_BUCKETS - 1),
    Grouping.WEEK: timedelta(weeks=MAX_BUCKETS - 1),
}
spans = {
    grouping: st.one_of(
        st.timedeltas(min_value=timedelta(microseconds=1), max_value=timedelta(days=3)),
        st.timedeltas(min_value=timedelta(microseconds=1), max_value=longest),
    )
    for grouping, longest in LONGEST.items()
}


@given(start=instants, grouping=st.sampled_from(Grouping), data=st.data())
@settings(max_examples=500, deadline=None, derandomize=True)
def test_buckets_tile_any_range_exactly(
    start: datetime, grouping: Grouping, data: st.DataObject
) -> None:
    latest = datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
    end = start + min(data.draw(spans[grouping], label="span"), latest - start)
    assume(start < end)
    count = bucket_count(start, end, grouping)
    assert count <= MAX_BUCKETS
    buckets = make_buckets(start, end, grouping)
    items = buckets.items
    assert len(items) == count
    assert items[0].start == start
    assert items[-1].end == end
    for before, after in itertools.pairwise(items):
        assert before.end == after.start  # contiguous: no gap, no overlap
    for k, bucket in enumerate(items):
        assert bucket.start < bucket.end
        assert buckets.index(bucket.start) == k
        assert buckets.index(bucket.end - timedelta(microseconds=1)) == k
        if grouping is not Grouping.NONE and bucket.start != start:
            assert bucket.start.time() == datetime.min.time()  # a UTC midnight
            if grouping is Grouping.WEEK:
                assert bucket.start.weekday() == 0
    assert sum((x.end - x.start for x in items), timedelta(0)) == end - start
    if grouping is Grouping.NONE:
        assert count == 1
    else:
        assert buckets.whole_day_steps


def test_a_range_of_centuries_is_one_bucket_whatever_its_microseconds() -> None:
    """Regression: over ~1000 years, float seconds lost the microseconds of 'now', so the one
    bucket of group=none ended short of the range and a second one appeared (HTTP 500)."""
    start = datetime(1027, 3, 17, 22, 1, 49, tzinfo=UTC)
    for micro in range(0, 1_000_000, 7_919):
        end = datetime(2026, 12, 5, 12, 34, 56, micro, tzinfo=UTC)
        buckets = make_buckets(start, end, Grouping.NONE)
        assert [(b.start, b.end) for b in buckets.items] == [(start, end)]


@pytest.mark.parametrize(
    ("start", "end", "reason"),
    [
        (D, D, "end after it starts"),
        (D, D - timedelta(microseconds=1), "end after it starts"),
        (datetime(897, 3, 17, 22, 1, 49, tzinfo=UTC), D, "cannot start before 1000-01-01"),
        (D.replace(tzinfo=None), D + timedelta(days=1), "aware"),
    ],
)
def test_ranges_that_cannot_be_cut_are_refused_with_a_reason(
    start: datetime, end: datetime, reason: str
) -> None:
    with pytest.raises(RangeRefused, match=reason):
        make_buckets(start, end, Grouping.DAY)
