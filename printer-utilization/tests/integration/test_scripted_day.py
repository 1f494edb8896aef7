"""A scripted day of three printers, polled over real HTTP, recorded in real MariaDB.

Printer-services are addressed through MongoDB ``printers.service_url`` (real nx-27017); the
poller runs with an injected clock stepping 5 minutes at a time through the day.
"""

from __future__ import annotations

import asyncio
import socket
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pantheon_common.mongo import mongo_client
from pantheon_devtools.pytest_plugin import MongoTestDb
from printer_utilization.adapters.printers import FilamentLookup, PrinterDirectory
from printer_utilization.adapters.spool import EventBuffer
from printer_utilization.adapters.status_http import HttpStatusSource
from printer_utilization.adapters.store import MysqlStore
from printer_utilization.api.app import create_app
from printer_utilization.domain.intervals import IntervalTracker
from printer_utilization.domain.targets import PrinterTarget
from printer_utilization.poller import Poller
from printer_utilization.writer import Writer

from .conftest import TOKEN, StatusServer

D = datetime(2026, 1, 5, tzinfo=UTC)
STEP = timedelta(minutes=5)
GAP_S = 900.0


def h(hours: float) -> datetime:
    return D + timedelta(hours=hours)


def cp(
    print_id: str, file: str, start: float, end: float | None = None, result: str | None = None
) -> dict[str, Any]:
    return {
        "print_id": print_id,
        "job_id": None,
        "file": file,
        "bed_id": 801,
        "started_at": h(start).isoformat(),
        "ended_at": h(end).isoformat() if end is not None else None,
        "result": result,
    }


def status(
    printer_id: int, state: str, bed: str | None, current: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "printer_id": printer_id,
        "state": state,
        "online": True,
        "link": "connected",
        "bed": {"bed_id": 800 + printer_id, "state": bed} if bed else None,
        "current_print": current,
    }


def script(printer_id: int, t: float) -> dict[str, Any]:
    """The day of each printer (t in hours since midnight)."""
    if printer_id == 11:
        if t < 8:
            return status(11, "printing", "in_printer", cp("p11", "bracket.gcode.3mf", 0))
        done = cp("p11", "bracket.gcode.3mf", 0, 8, "finished")
        return status(11, "finished", "with_part" if t < 10 else "in_printer", done)
    if printer_id == 12:
        if t < 2:
            return status(12, "idle", "in_printer", None)
        if t < 9:
            state = "paused" if 6 <= t < 7 else "printing"
            return status(12, state, "in_printer", cp("p12", "gear.gcode.3mf", 2))
        failed = cp("p12", "gear.gcode.3mf", 2, 9, "failed")
        if t < 12:
            return status(12, "failed", "with_part", failed)
        return status(12, "idle", "in_printer", failed)
    if t < 16:  # printer 13 (unreachable 12-16 h through its service_url)
        return status(13, "idle", "in_printer", None)
    return status(13, "printing", "in_printer", cp("p13", "cover.gcode.3mf", 16))


EXPECTED_HOURS = {
    11: {"printing": 8, "waiting_for_robot": 2, "idle": 14},
    12: {"idle": 14, "printing": 6, "paused": 1, "error": 3},
    13: {"idle": 12, "offline": 4, "printing": 8},
}
EXPECTED_INTERVALS = {
    11: [("printing", 0, 8), ("waiting_for_robot", 8, 10), ("idle", 10, None)],
    12: [
        ("idle", 0, 2),
        ("printing", 2, 6),
        ("paused", 6, 7),
        ("printing", 7, 9),
        ("error", 9, 12),
        ("idle", 12, None),
    ],
    13: [("idle", 0, 12), ("offline", 12, 16), ("printing", 16, None)],
}


class StaticTargets:
    """A fixed list of printer-services."""

    def __init__(self, targets: list[PrinterTarget]) -> None:
        self._targets = targets

    def targets(self) -> list[PrinterTarget]:
        return list(self._targets)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_empty(buffer: EventBuffer, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(buffer):
        assert time.monotonic() < deadline, f"{len(buffer)} events still pending"
        buffer.wait(0.05)
        time.sleep(0.02)


def test_a_scripted_day_gives_intervals_prints_and_a_report_summing_to_100(
    status_server: StatusServer, mongo_db: MongoTestDb, store: MysqlStore, tmp_path: Any
) -> None:
    mongo = mongo_client(mongo_db.url, app_name="test")
    db = mongo[mongo_db.name]
    for pid in (11, 12, 13):
        db.printers.insert_one({"_id": pid, "model": "P1S", "service_url": status_server.url(pid)})
    db.gcode_files.insert_one({"_id": "bracket", "name": "bracket.gcode.3mf", "filament_g": 42.5})
    dead = f"http://127.0.0.1:{free_port()}"
    clock_h = [0.0]
    status_server.script = lambda pid: script(pid, clock_h[0])

    buffer = EventBuffer(tmp_path / "spool.jsonl")
    tracker = IntervalTracker(GAP_S)
    source = HttpStatusSource(TOKEN, timeout_s=2.0)
    directory = PrinterDirectory("http://unused/{id}", mongo=mongo, mongo_db=mongo_db.name)
    poller = Poller(
        directory, source, tracker, buffer, filament=FilamentLookup(mongo, mongo_db.name)
    )
    writer = Writer(store, buffer)
    writer.start()

    async def run_day() -> None:
        for k in range(24 * 12 + 1):
            at = D + k * STEP
            clock_h[0] = k * 5 / 60
            if k == 12 * 12:
                db.printers.update_one({"_id": 13}, {"$set": {"service_url": dead}})
            if k == 16 * 12:
                db.printers.update_one(
                    {"_id": 13}, {"$set": {"service_url": status_server.url(13)}}
                )
            samples = await poller.poll_once(at)
            assert {s.printer_id for s in samples} == {11, 12, 13}
        await source.aclose()

    try:
        asyncio.run(run_day())
        wait_until_empty(buffer)
    finally:
        writer.stop()

    # Intervals exactly as scripted; open ones last seen at the end of the day.
    rows = store.intervals(D, h(25))
    for pid, expected in EXPECTED_INTERVALS.items():
        got = [(r.state, r.started_at, r.ended_at) for r in rows if r.printer_id == pid]
        assert got == [(s, h(a), h(b) if b is not None else None) for s, a, b in expected]
        assert [r.last_seen_at for r in rows if r.printer_id == pid][-1] == h(24)

    prints = {p.print_id: p for p in store.prints(D, h(24))}
    assert prints["p11"].result == "finished"
    assert prints["p11"].duration_s == 8 * 3600
    assert prints["p11"].filament_g == 42.5
    assert prints["p12"].result == "failed"
    assert prints["p12"].ended_at == h(9)
    assert prints["p13"].ended_at is None

    client = TestClient(create_app(store, token=TOKEN, clock=lambda: h(24)))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    body = client.get(
        "/utilization", params={"from": D.isoformat(), "to": h(24).isoformat()}, headers=auth
    ).json()
    by_printer = {p["printer_id"]: p["total"] for p in body["printers"]}
    assert set(by_printer) == {11, 12, 13}
    for pid, hours in EXPECTED_HOURS.items():
        total = by_printer[pid]
        assert sum(total["percent"].values()) == pytest.approx(100)
        for state in body["states"]:
            want = hours.get(state, 0)
            assert total["hours"][state] == pytest.approx(want), (pid, state)
            assert total["percent"][state] == pytest.approx(100 * want / 24), (pid, state)
    assert by_printer[11]["percent"]["printing"] == pytest.approx(33.333, abs=1e-3)
    assert by_printer[11]["percent"]["waiting_for_robot"] == pytest.approx(8.333, abs=1e-3)
    assert by_printer[11]["percent"]["idle"] == pytest.approx(58.333, abs=1e-3)
    assert by_printer[11]["prints_finished"] == 1
    assert by_printer[11]["filament_g"] == 42.5
    assert by_printer[12]["prints_failed"] == 1
    farm = body["farm"]["total"]
    assert farm["hours"]["printing"] == pytest.approx(22)
    assert sum(farm["percent"].values()) == pytest.approx(100)

    # Per day over 36 h: the 12 h before the data are offline; each bucket sums to 100.
    daily = client.get(
        "/utilization/printers/11",
        params={"from": h(-12).isoformat(), "to": h(48).isoformat(), "group": "day"},
        headers=auth,
    ).json()
    assert [b["hours"]["offline"] for b in daily["buckets"]] == pytest.approx([12, 0])
    assert daily["buckets"][1]["hours"]["printing"] == pytest.approx(8)
    for bucket in daily["buckets"]:
        assert sum(bucket["percent"].values()) == pytest.approx(100)

    csv_text = client.get(
        "/utilization",
        params={"from": D.isoformat(), "to": h(24).isoformat(), "format": "csv"},
        headers=auth,
    ).text
    lines = csv_text.strip().splitlines()
    assert lines[0].startswith("scope,printer_id,start,end,hours_printing")
    assert lines[1].startswith("printer,11,")
    assert lines[-1].startswith("farm,,")
    intervals_csv = client.get(
        "/intervals",
        params={"from": D.isoformat(), "to": h(24).isoformat(), "printer_id": 13, "format": "csv"},
        headers=auth,
    ).text.splitlines()
    assert len(intervals_csv) == 1 + 3
    assert client.get("/prints", params={"from": D.isoformat()}, headers=auth).json()["prints"]


def test_a_restart_continues_open_intervals_and_never_duplicates(
    status_server: StatusServer, store: MysqlStore, tmp_path: Any
) -> None:
    status_server.script = lambda pid: status(pid, "printing", "in_printer", None)

    targets = StaticTargets([PrinterTarget(11, status_server.url(11))])

    async def cycle(tracker: IntervalTracker, buffer: EventBuffer, at: datetime) -> None:
        source = HttpStatusSource(TOKEN, timeout_s=2.0)
        await Poller(targets, source, tracker, buffer).poll_once(at)
        await source.aclose()
        Writer(store, buffer).drain_once()

    buffer = EventBuffer(tmp_path / "spool.jsonl")
    asyncio.run(cycle(IntervalTracker(GAP_S), buffer, h(0)))
    # Restart 1: the open interval is loaded and continued.
    resumed = IntervalTracker(GAP_S, store.load_open_intervals())
    asyncio.run(cycle(resumed, buffer, h(0) + STEP))
    rows = store.intervals(h(-1), h(1))
    assert [(r.state, r.started_at, r.ended_at, r.last_seen_at) for r in rows] == [
        ("printing", h(0), None, h(0) + STEP)
    ]
    # Restart 2 without the database at start (empty tracker): a new interval opens and the
    # old one is closed where it was last seen, never two open ones, never an overlap.
    asyncio.run(cycle(IntervalTracker(GAP_S), buffer, h(0) + 2 * STEP))
    rows = store.intervals(h(-1), h(1))
    assert [(r.started_at, r.ended_at) for r in rows] == [
        (h(0), h(0) + STEP),
        (h(0) + 2 * STEP, None),
    ]
    # Replaying the same events (a spool read back after a crash) changes nothing.
    replay = EventBuffer(None)
    tracker = IntervalTracker(GAP_S)
    asyncio.run(cycle(tracker, replay, h(0) + 2 * STEP))
    assert [(r.started_at, r.ended_at) for r in store.intervals(h(-1), h(1))] == [
        (h(0), h(0) + STEP),
        (h(0) + 2 * STEP, None),
    ]
