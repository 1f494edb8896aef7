"""The write buffer: durable across restarts, coalescing, bounded with a drop counter."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

from printer_utilization.adapters.spool import EventBuffer, event_from_json, event_to_json
from printer_utilization.domain.intervals import (
    IntervalClosed,
    IntervalOpened,
    IntervalSeen,
    PrintObserved,
)
from printer_utilization.domain.samples import PrintObservation
from printer_utilization.domain.states import UtilState as U

T0 = datetime(2026, 1, 5, tzinfo=UTC)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def test_every_event_kind_round_trips_through_json() -> None:
    events = [
        IntervalOpened(11, U.PRINTING, at(0)),
        IntervalSeen(11, at(0), at(5)),
        IntervalClosed(11, at(0), at(10)),
        PrintObserved(PrintObservation("p", 11, "f", at(0), at(9), "failed", "j", 12.5)),
        PrintObserved(PrintObservation("q", 12, "g", at(1))),
    ]
    assert [event_from_json(event_to_json(e)) for e in events] == events


def test_pending_events_survive_a_restart(tmp_path: Path) -> None:
    spool = tmp_path / "spool.jsonl"
    first = EventBuffer(spool)
    first.put([IntervalOpened(11, U.IDLE, at(0)), IntervalSeen(11, at(0), at(5))])
    second = EventBuffer(spool)
    assert second.recovered == 2
    assert [e for _, e in second.peek(10)] == [
        IntervalOpened(11, U.IDLE, at(0)),
        IntervalSeen(11, at(0), at(5)),
    ]


def test_acked_events_leave_the_spool(tmp_path: Path) -> None:
    spool = tmp_path / "spool.jsonl"
    buffer = EventBuffer(spool)
    buffer.put([IntervalOpened(11, U.IDLE, at(0))])
    buffer.ack(seq for seq, _ in buffer.peek(10))
    assert len(buffer) == 0
    assert spool.read_text() == ""
    assert EventBuffer(spool).recovered == 0


def test_seen_events_of_one_interval_coalesce(tmp_path: Path) -> None:
    buffer = EventBuffer(tmp_path / "s.jsonl")
    buffer.put([IntervalOpened(11, U.IDLE, at(0))])
    for i in range(1, 50):
        buffer.put([IntervalSeen(11, at(0), at(5 * i))])
    pending = [e for _, e in buffer.peek(100)]
    assert pending == [IntervalOpened(11, U.IDLE, at(0)), IntervalSeen(11, at(0), at(245))]
    # The file still holds the stale duplicates, but a restart coalesces them the same way.
    assert [e for _, e in EventBuffer(tmp_path / "s.jsonl").peek(100)] == pending


def test_ack_of_a_replaced_event_keeps_its_replacement(tmp_path: Path) -> None:
    buffer = EventBuffer(tmp_path / "s.jsonl")
    buffer.put([IntervalSeen(11, at(0), at(5))])
    in_flight = buffer.peek(10)
    buffer.put([IntervalSeen(11, at(0), at(10))])
    buffer.ack(seq for seq, _ in in_flight)
    assert [e for _, e in buffer.peek(10)] == [IntervalSeen(11, at(0), at(10))]


def test_buffer_is_bounded_and_counts_drops() -> None:
    buffer = EventBuffer(None, max_events=3)
    buffer.put([IntervalOpened(11, U.IDLE, at(i)) for i in range(5)])
    assert len(buffer) == 3
    assert buffer.dropped == 2
    assert [e.started_at for _, e in buffer.peek(10)] == [at(2), at(3), at(4)]  # type: ignore[union-attr]


def test_a_line_cut_by_a_crash_is_skipped_and_counted(tmp_path: Path) -> None:
    spool = tmp_path / "spool.jsonl"
    EventBuffer(spool).put([IntervalOpened(11, U.IDLE, at(0))])
    with spool.open("a") as handle:
        handle.write('{"kind": "open", "printer_id": 1')
    recovered = EventBuffer(spool)
    assert recovered.recovered == 1
    assert recovered.dropped == 1


def test_wait_returns_when_something_is_pending() -> None:
    buffer = EventBuffer(None)
    assert buffer.wait(0.01) is False
    buffer.put([IntervalOpened(11, U.IDLE, at(0))])
    assert buffer.wait(5) is True
