"""Building intervals from samples: changes, repeats, gaps, restarts, prints."""

from datetime import UTC, datetime, timedelta

import pytest

from printer_utilization.domain.intervals import (
    IntervalClosed,
    IntervalOpened,
    IntervalSeen,
    IntervalTracker,
    OpenInterval,
    PrintObserved,
)
from printer_utilization.domain.samples import PrintObservation, StatusSample
from printer_utilization.domain.states import UtilState as U

T0 = datetime(2026, 1, 5, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def sample(minutes: float, state: U, printer: int = 11, **kw: object) -> StatusSample:
    return StatusSample(printer, at(minutes), state, **kw)  # type: ignore[arg-type]


def test_first_sample_opens_an_interval() -> None:
    tracker = IntervalTracker(gap_s=900)
    assert tracker.observe(sample(0, U.IDLE)) == [IntervalOpened(11, U.IDLE, at(0))]


def test_same_state_extends_and_change_closes_at_the_sample() -> None:
    tracker = IntervalTracker(gap_s=900)
    tracker.observe(sample(0, U.IDLE))
    assert tracker.observe(sample(5, U.IDLE)) == [IntervalSeen(11, at(0), at(5))]
    assert tracker.observe(sample(10, U.PRINTING)) == [
        IntervalClosed(11, at(0), at(10)),
        IntervalOpened(11, U.PRINTING, at(10)),
    ]


def test_a_gap_closes_at_the_last_sample_and_leaves_the_hole_uncovered() -> None:
    tracker = IntervalTracker(gap_s=900)
    tracker.observe(sample(0, U.PRINTING))
    tracker.observe(sample(5, U.PRINTING))
    # 60 min without samples (poller down): same state, but a new interval after the hole.
    assert tracker.observe(sample(65, U.PRINTING)) == [
        IntervalClosed(11, at(0), at(5)),
        IntervalOpened(11, U.PRINTING, at(65)),
    ]


def test_offline_is_an_interval_like_any_other() -> None:
    tracker = IntervalTracker(gap_s=900)
    tracker.observe(sample(0, U.IDLE))
    events = tracker.observe(sample(5, U.OFFLINE))
    assert events[-1] == IntervalOpened(11, U.OFFLINE, at(5))
    assert tracker.observe(sample(10, U.IDLE))[0] == IntervalClosed(11, at(5), at(10))


@pytest.mark.parametrize("minutes", [5, 3])
def test_repeated_or_older_samples_change_nothing(minutes: float) -> None:
    tracker = IntervalTracker(gap_s=900)
    tracker.observe(sample(0, U.IDLE))
    tracker.observe(sample(5, U.IDLE))
    assert tracker.observe(sample(minutes, U.PRINTING)) == []


def test_printers_are_independent() -> None:
    tracker = IntervalTracker(gap_s=900)
    tracker.observe(sample(0, U.IDLE, printer=11))
    assert tracker.observe(sample(0, U.PRINTING, printer=12)) == [
        IntervalOpened(12, U.PRINTING, at(0))
    ]


def test_resumed_interval_continues_after_restart() -> None:
    tracker = IntervalTracker(gap_s=900)
    tracker.resume(11, OpenInterval(U.PRINTING, at(0), at(30)))
    assert tracker.observe(sample(35, U.PRINTING)) == [IntervalSeen(11, at(0), at(35))]


def test_resumed_stale_interval_is_closed_where_it_was_last_seen() -> None:
    tracker = IntervalTracker(gap_s=900)
    tracker.resume(11, OpenInterval(U.PRINTING, at(0), at(30)))
    assert tracker.observe(sample(120, U.PRINTING)) == [
        IntervalClosed(11, at(0), at(30)),
        IntervalOpened(11, U.PRINTING, at(120)),
    ]


def test_prints_are_reported_when_new_or_changed() -> None:
    tracker = IntervalTracker(gap_s=900)
    running = PrintObservation("p1", 11, "a.gcode.3mf", at(0))
    ended = PrintObservation("p1", 11, "a.gcode.3mf", at(0), at(60), "finished")
    assert PrintObserved(running) in tracker.observe(sample(0, U.PRINTING, current_print=running))
    assert tracker.observe(sample(5, U.PRINTING, current_print=running)) == [
        IntervalSeen(11, at(0), at(5))
    ]
    events = tracker.observe(sample(60, U.WAITING_FOR_ROBOT, current_print=ended))
    assert events[-1] == PrintObserved(ended)
    assert ended.duration_s == 3600


def test_gap_must_be_positive() -> None:
    with pytest.raises(ValueError, match="gap_s"):
        IntervalTracker(gap_s=0)
