"""MySQL goes away while printers change state; the service even restarts during the outage.
Nothing is lost. Two kinds of outage: a TCP proxy of our own in front of the shared MariaDB is
stopped (refused and dropped connections, the server untouched), and the real MariaDB server is
stopped and started again (disruptive: skipped with ``PANTHEON_SKIP_DISRUPTIVE=1``)."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from pantheon_devtools.infra import ensure_infra, stop_mariadb
from printer_utilization.adapters.db import make_engine
from printer_utilization.adapters.spool import EventBuffer
from printer_utilization.adapters.status_http import HttpStatusSource
from printer_utilization.adapters.store import MysqlStore
from printer_utilization.domain.intervals import IntervalTracker
from printer_utilization.domain.targets import PrinterTarget
from printer_utilization.poller import Poller
from printer_utilization.writer import Writer

from .conftest import TOKEN, StatusServer, TcpProxy

T0 = datetime(2026, 3, 2, tzinfo=UTC)
STEP = timedelta(seconds=30)
# (cycle from which it holds, printer 11 state, printer 12 state); cycles 10-29 are the outage.
SCRIPT = [
    (0, "idle", "printing"),
    (5, "printing", "printing"),
    (12, "paused", "finished"),
    (16, "printing", "idle"),
    (22, "finished", "printing"),
    (27, "idle", "paused"),
    (34, "printing", "paused"),
]
EXPECTED = {
    11: ["idle", "printing", "paused", "printing", "waiting_for_robot", "idle", "printing"],
    12: ["printing", "waiting_for_robot", "idle", "printing", "paused"],
}


def states_at(cycle: int) -> dict[int, str]:
    current = SCRIPT[0]
    for row in SCRIPT:
        if row[0] <= cycle:
            current = row
    return {11: current[1], 12: current[2]}


class Targets:
    def __init__(self, server: StatusServer) -> None:
        self._list = [PrinterTarget(p, server.url(p)) for p in (11, 12)]

    def targets(self) -> list[PrinterTarget]:
        return list(self._list)


def wait_for(condition: Any, what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@dataclass
class Outage:
    """How the test takes MySQL away and brings it back, and the URL the service uses."""

    kind: str
    url: str
    stop: Callable[[], object]
    start: Callable[[], object]


@pytest.fixture(params=["proxy", "mariadb"])
def outage(request: pytest.FixtureRequest, mysql_url: str) -> Iterator[Outage]:
    if request.param == "proxy":
        parts = urlsplit(mysql_url)
        proxy = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 3306))
        proxy.start()
        netloc = parts.netloc.rsplit(":", 1)[0] + f":{proxy.port}"
        try:
            yield Outage("proxy", parts._replace(netloc=netloc).geturl(), proxy.stop, proxy.start)
        finally:
            proxy.stop()
        return
    if os.environ.get("PANTHEON_SKIP_DISRUPTIVE", "") == "1":
        pytest.skip("PANTHEON_SKIP_DISRUPTIVE=1: not stopping the shared MariaDB")
    if os.geteuid() != 0:
        pytest.skip("needs root to stop and start the system MariaDB")
    try:
        yield Outage("mariadb", mysql_url, stop_mariadb, ensure_infra)
    finally:
        ensure_infra()  # whatever happened, the server runs again for the tests after this one


def test_samples_taken_while_mysql_is_down_are_written_when_it_returns(
    status_server: StatusServer, store: MysqlStore, outage: Outage, tmp_path: Path
) -> None:
    engine = make_engine(outage.url, connect_timeout_s=2)
    proxied = MysqlStore(engine)
    cycle_no = [0]
    status_server.script = lambda pid: {
        "printer_id": pid,
        "state": states_at(cycle_no[0])[pid],
        "bed": {"bed_id": 801, "state": "with_part"},
        "current_print": None,
    }
    spool = tmp_path / "spool.jsonl"
    tracker = IntervalTracker(gap_s=120)
    buffer = EventBuffer(spool)
    writer = Writer(proxied, buffer, max_backoff_s=0.5)
    writer.start()

    async def cycles(first: int, last: int, buffer: EventBuffer) -> None:
        source = HttpStatusSource(TOKEN, timeout_s=2.0)
        poller = Poller(Targets(status_server), source, tracker, buffer)
        for k in range(first, last):
            cycle_no[0] = k
            await poller.poll_once(T0 + k * STEP)
        await source.aclose()

    try:
        asyncio.run(cycles(0, 10, buffer))
        wait_for(lambda: len(buffer) == 0, "the first writes")
        assert len(store.intervals(T0, T0 + timedelta(hours=1))) == 3

        outage.stop()
        asyncio.run(cycles(10, 20, buffer))
        wait_for(lambda: writer.mysql_down, "the writer to notice the outage")
        assert len(buffer) > 0
        # The process restarts during the outage: the new buffer reads the spool back.
        writer.stop()
        pending = [event for _, event in buffer.peek(10_000)]
        buffer = EventBuffer(spool)
        assert [event for _, event in buffer.peek(10_000)] == pending
        writer = Writer(proxied, buffer, max_backoff_s=0.5)
        writer.start()
        asyncio.run(cycles(20, 30, buffer))
        wait_for(lambda: writer.mysql_down, "the new writer to notice the outage")
        if outage.kind == "proxy":  # the server itself is up: nothing got through to it
            assert len(store.intervals(T0, T0 + timedelta(hours=1))) == 3

        outage.start()
        wait_for(lambda: len(buffer) == 0, "the buffer to drain after the outage", 60)
        asyncio.run(cycles(30, 40, buffer))
        wait_for(lambda: len(buffer) == 0, "the last writes")
    finally:
        writer.stop()
        engine.dispose()

    rows = store.intervals(T0, T0 + timedelta(hours=1))
    for pid, expected in EXPECTED.items():
        mine = [r for r in rows if r.printer_id == pid]
        assert [r.state for r in mine] == expected
        for before, after in itertools.pairwise(mine):
            assert before.ended_at == after.started_at  # contiguous, no hole, no overlap
        assert mine[-1].ended_at is None
        assert mine[-1].last_seen_at == T0 + 39 * STEP
    assert writer.mysql_down is False
    assert spool.read_text() == ""
