"""Report arithmetic: buckets of a time range, and hours/percentages per state.

Every printer's time in a bucket is split over the states; time that no interval covers
(the poller was not running, the printer was not yet known, the database lost it) counts as
**offline**, so the percentages of a printer always sum to 100 over its buckets. Days and weeks
are UTC (weeks start on Monday); buckets are clipped to the requested range.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum

from printer_utilization.domain.states import REPORT_STATES, UtilState

DAY_S = 86_400.0
DAY = timedelta(days=1)
WEEK = timedelta(days=7)
EARLIEST = datetime(1000, 1, 1, tzinfo=UTC)
"""First instant a report may cover (the start of MySQL's DATETIME range)."""


class Grouping(StrEnum):
    """How a report range is cut into buckets."""

    NONE = "none"
    DAY = "day"
    WEEK = "week"


class RangeRefused(ValueError):
    """A report range that cannot be cut into buckets (the reason says why; HTTP 422)."""


@dataclass(frozen=True)
class Bucket:
    """A half-open time span ``[start, end)`` of a report."""

    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        """Length of the bucket."""
        return (self.end - self.start).total_seconds()


@dataclass(frozen=True)
class Buckets:
    """The buckets of a range: bucket ``k`` starts at ``origin + k * step`` (clipped).

    Edges are computed with `timedelta` (whole microseconds), never with float seconds: over
    centuries a float loses microseconds, and a bucket edge a microsecond short of the range's
    end would make a second, empty-looking bucket.
    """

    start: datetime
    end: datetime
    origin: datetime
    step: timedelta
    items: tuple[Bucket, ...]

    @property
    def step_s(self) -> float:
        """Length of a (whole) bucket in seconds."""
        return self.step.total_seconds()

    @property
    def step_days(self) -> int:
        """Whole days per bucket (day: 1, week: 7; one bucket: at least 1)."""
        return max(1, self.step // DAY)

    @property
    def whole_day_steps(self) -> bool:
        """True when the buckets are whole UTC days or weeks."""
        return self.step % DAY == timedelta(0)

    def index(self, at: datetime) -> int:
        """Number of the bucket holding instant ``at`` (may be outside ``items``)."""
        return (at - self.origin) // self.step

    def split(self, started: datetime, ended: datetime) -> Iterator[tuple[int, float]]:
        """Seconds of ``[started, ended)`` that fall into each bucket of the range."""
        lo, hi = max(started, self.start), min(ended, self.end)
        if hi <= lo:
            return
        first, last = self.index(lo), min(self.index(hi), len(self.items) - 1)
        for k in range(max(first, 0), last + 1):
            bucket = self.items[k]
            overlap = min(hi, bucket.end) - max(lo, bucket.start)
            if overlap > timedelta(0):
                yield k, overlap.total_seconds()


def _next_midnight(at: datetime) -> datetime:
    return datetime.combine(at.date() + timedelta(days=1), time(), tzinfo=at.tzinfo)


def day_spans(start: datetime, end: datetime) -> Iterator[tuple[date, float]]:
    """Seconds of ``[start, end)`` on each UTC day it touches (naive UTC or aware UTC)."""
    at = start
    while at < end:
        stop = min(end, _next_midnight(at)) if at.date() < end.date() else end
        yield at.date(), (stop - at).total_seconds()
        at = stop


def whole_days(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The widest ``[first, last)`` of whole UTC days inside ``[start, end)``.

    ``(start, start)`` when the range holds no whole day: then nothing comes from daily totals.
    """
    midnight = datetime.combine(start.date(), time(), tzinfo=start.tzinfo)
    if midnight == start:
        first = midnight
    elif start.date() < end.date():
        first = _next_midnight(start)
    else:
        return start, start
    last = datetime.combine(end.date(), time(), tzinfo=end.tzinfo)
    return (first, last) if first < last else (start, start)


def _origin_and_step(
    start: datetime, end: datetime, grouping: Grouping
) -> tuple[datetime, timedelta]:
    if grouping is Grouping.NONE:
        return start, end - start
    origin = start.replace(hour=0, minute=0, second=0, microsecond=0)
    if grouping is Grouping.WEEK:
        # Monday 0001-01-01 is the first day there is: no week starts before it.
        return origin - timedelta(days=origin.weekday()), WEEK
    return origin, DAY


def check_range(start: datetime, end: datetime) -> None:
    """Raise `RangeRefused` unless ``[start, end)`` is a non-empty range of aware instants
    inside what the store can hold (from `EARLIEST`)."""
    if start.tzinfo is None or end.tzinfo is None:
        raise RangeRefused("times must be aware (UTC)")
    if end <= start:
        raise RangeRefused("the range must end after it starts")
    if start < EARLIEST:
        raise RangeRefused(f"the range cannot start before {EARLIEST.isoformat()}")


def bucket_count(start: datetime, end: datetime, grouping: Grouping) -> int:
    """How many buckets `make_buckets` would cut (computed without building them)."""
    check_range(start, end)
    origin, step = _origin_and_step(start, end, grouping)
    return -((origin - end) // step)  # ceil((end - origin) / step), exact


def make_buckets(start: datetime, end: datetime, grouping: Grouping) -> Buckets:
    """Cut ``[start, end)`` into buckets that tile it exactly (one for ``Grouping.NONE``).

    Raises `RangeRefused` for an empty range or one `check_range` refuses.
    """
    check_range(start, end)
    origin, step = _origin_and_step(start, end, grouping)
    count = bucket_count(start, end, grouping)
    items: list[Bucket] = []
    for k in range(count):
        lo = origin + k * step
        # the last bucket ends at the range's end (also where origin + count*step would
        # pass 9999-12-31, the end of what datetime can hold)
        hi = end if k == count - 1 else origin + (k + 1) * step
        items.append(Bucket(max(lo, start), min(hi, end)))
    return Buckets(start, end, origin, step, tuple(items))


@dataclass
class Usage:
    """What a bucket accumulated: seconds per state covered by data, and prints."""

    seconds: dict[UtilState, float] = field(default_factory=dict)
    prints_finished: int = 0
    prints_failed: int = 0
    filament_g: float = 0.0

    def add_seconds(self, state: UtilState, seconds: float) -> None:
        """Count ``seconds`` more in ``state``."""
        self.seconds[state] = self.seconds.get(state, 0.0) + seconds

    def merge(self, other: Usage) -> None:
        """Add everything ``other`` counted."""
        mine = self.seconds
        for state, seconds in other.seconds.items():
            mine[state] = mine.get(state, 0.0) + seconds
        self.prints_finished += other.prints_finished
        self.prints_failed += other.prints_failed
        self.filament_g += other.filament_g


@dataclass(frozen=True)
class UsageRow:
    """One line of a report: a printer (or the farm) over one bucket."""

    printer_id: int | None
    """None for the farm."""
    start: datetime
    end: datetime
    span_s: float
    """Printer-seconds the row covers (bucket length, times the printer count for the farm)."""
    hours: dict[UtilState, float]
    percent: dict[UtilState, float]
    prints_finished: int
    prints_failed: int
    filament_g: float


def finalize(
    usage: Usage, span_s: float, printer_id: int | None, start: datetime, end: datetime
) -> UsageRow:
    """Hours and percentages of ``usage`` over ``span_s``; uncovered time is offline."""
    seconds = {state: max(0.0, usage.seconds.get(state, 0.0)) for state in REPORT_STATES}
    covered = sum(seconds.values())
    seconds[UtilState.OFFLINE] += max(0.0, span_s - covered)
    # Overlapping intervals would make covered > span: share out what was recorded instead.
    denominator = max(span_s, covered)
    return UsageRow(
        printer_id=printer_id,
        start=start,
        end=end,
        span_s=span_s,
        hours={state: seconds[state] / 3600.0 for state in REPORT_STATES},
        percent={
            state: (100.0 * seconds[state] / denominator if denominator > 0 else 0.0)
            for state in REPORT_STATES
        },
        prints_finished=usage.prints_finished,
        prints_failed=usage.prints_failed,
        filament_g=usage.filament_g,
    )


@dataclass(frozen=True)
class PrinterReport:
    """A printer's rows, one per bucket, and its total over the range."""

    printer_id: int
    buckets: tuple[UsageRow, ...]
    total: UsageRow


@dataclass(frozen=True)
class Report:
    """Utilization of some printers and of the farm (their sum) over a range."""

    start: datetime
    end: datetime
    grouping: Grouping
    printers: tuple[PrinterReport, ...]
    farm: tuple[UsageRow, ...]
    farm_total: UsageRow


def build_report(
    buckets: Buckets,
    grouping: Grouping,
    printer_ids: Iterable[int],
    usage: Mapping[tuple[int, int], Usage],
) -> Report:
    """Assemble the report from per ``(printer_id, bucket index)`` usage."""
    ids = sorted(set(printer_ids))
    span_total = (buckets.end - buckets.start).total_seconds()
    printers: list[PrinterReport] = []
    farm_usage = [Usage() for _ in buckets.items]
    farm_all = Usage()
    for printer_id in ids:
        rows: list[UsageRow] = []
        total = Usage()
        for k, bucket in enumerate(buckets.items):
            counted = usage.get((printer_id, k), Usage())
            total.merge(counted)
            farm_usage[k].merge(counted)
            rows.append(finalize(counted, bucket.seconds, printer_id, bucket.start, bucket.end))
        farm_all.merge(total)
        printers.append(
            PrinterReport(
                printer_id,
                tuple(rows),
                finalize(total, span_total, printer_id, buckets.start, buckets.end),
            )
        )
    n = len(ids)
    farm = tuple(
        finalize(farm_usage[k], n * bucket.seconds, None, bucket.start, bucket.end)
        for k, bucket in enumerate(buckets.items)
    )
    farm_total = finalize(farm_all, n * span_total, None, buckets.start, buckets.end)
    return Report(buckets.start, buckets.end, grouping, tuple(printers), farm, farm_total)
