"""The write buffer between the poller and MySQL: bounded, in memory, mirrored to a spool file.

Choice (issue 6, reliability F10): events wait in memory in arrival order and every event is
also appended (one JSON line, flushed and fsync'ed per batch) to a spool file before ``put``
returns. A MySQL outage therefore loses nothing, and neither does a crash or restart of the
service during the outage: the next start reads the spool back. When the writer has applied
events they leave memory; the file is truncated once memory is empty, and rewritten from memory
when it has grown to more than twice what is pending (``IntervalSeen``/``PrintObserved`` events
for the same interval/print replace each other in memory, so the file holds stale duplicates).
Replaying a spool line that had already reached MySQL is harmless: every event is idempotent.

Bounded: at most ``max_events`` pending. Beyond that the oldest event is dropped and counted
(``dropped``), so memory stays flat in a very long outage (20 printers at one sample each per
5 s coalesce to ~20 pending events plus state changes, so the default bound is days).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from printer_utilization.domain.intervals import (
    Event,
    IntervalClosed,
    IntervalOpened,
    IntervalSeen,
    PrintObserved,
)
from printer_utilization.domain.samples import PrintObservation, parse_time
from printer_utilization.domain.states import UtilState

log = logging.getLogger(__name__)


def event_to_json(event: Event) -> dict[str, Any]:
    """A JSON-able dict of ``event`` (times ISO 8601)."""
    body: dict[str, Any]
    if isinstance(event, PrintObserved):
        body = {"kind": "print", **asdict(event.print)}
    else:
        kind = {IntervalOpened: "open", IntervalClosed: "close", IntervalSeen: "seen"}[type(event)]
        body = {"kind": kind, **asdict(event)}
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in body.items()}


def _time(value: Any) -> datetime:
    parsed = parse_time(value)
    if parsed is None:
        raise ValueError(f"bad time {value!r}")
    return parsed


def event_from_json(body: dict[str, Any]) -> Event:
    """The event ``event_to_json`` wrote; ValueError/KeyError when it is not one."""
    kind = body["kind"]
    if kind == "open":
        return IntervalOpened(
            int(body["printer_id"]), UtilState(body["state"]), _time(body["started_at"])
        )
    if kind == "close":
        return IntervalClosed(
            int(body["printer_id"]), _time(body["started_at"]), _time(body["ended_at"])
        )
    if kind == "seen":
        return IntervalSeen(
            int(body["printer_id"]), _time(body["started_at"]), _time(body["seen_at"])
        )
    if kind == "print":
        return PrintObserved(
            PrintObservation(
                print_id=str(body["print_id"]),
                printer_id=int(body["printer_id"]),
                file=str(body["file"]),
                started_at=_time(body["started_at"]),
                ended_at=parse_time(body.get("ended_at")),
                result=body.get("result"),
                job_id=body.get("job_id"),
                filament_g=body.get("filament_g"),
            )
        )
    raise ValueError(f"unknown event kind {kind!r}")


def coalesce_key(event: Event) -> tuple[Any, ...] | None:
    """Events with the same key replace each other while pending (the newer one wins)."""
    if isinstance(event, IntervalSeen):
        return ("seen", event.printer_id, event.started_at)
    if isinstance(event, PrintObserved):
        return ("print", event.print.print_id)
    return None


class EventBuffer:
    """Thread-safe FIFO of pending events with a spool file (None: memory only)."""

    def __init__(self, spool_path: Path | None, max_events: int = 100_000) -> None:
        if max_events < 1:
            raise ValueError("max_events must be at least 1")
        self._path = spool_path
        self._max = max_events
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._pending: OrderedDict[int, Event] = OrderedDict()
        self._by_key: dict[tuple[Any, ...], int] = {}
        self._seq = 0
        self._spool_lines = 0
        self.dropped = 0
        """Events dropped because the buffer was full (or unreadable in the spool)."""
        self.recovered = 0
        """Events read back from the spool at start."""
        if self._path is not None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._recover()

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)

    def put(self, events: Iterable[Event]) -> None:
        """Queue ``events`` (durable in the spool when this returns)."""
        batch = list(events)
        if not batch:
            return
        with self._lock:
            for event in batch:
                self._add(event)
            self._append(batch)
            self._ready.notify_all()

    def wait(self, timeout_s: float) -> bool:
        """Block until something is pending or ``timeout_s`` passed; True if something is."""
        with self._lock:
            if not self._pending:
                self._ready.wait(timeout_s)
            return bool(self._pending)

    def peek(self, limit: int) -> list[tuple[int, Event]]:
        """The oldest ``limit`` pending events with their sequence numbers."""
        with self._lock:
            out: list[tuple[int, Event]] = []
            for seq, event in self._pending.items():
                if len(out) >= limit:
                    break
                out.append((seq, event))
            return out

    def ack(self, seqs: Iterable[int]) -> None:
        """Forget applied events (those replaced meanwhile by a newer one are already gone)."""
        with self._lock:
            for seq in seqs:
                event = self._pending.pop(seq, None)
                if event is not None:
                    key = coalesce_key(event)
                    if key is not None and self._by_key.get(key) == seq:
                        del self._by_key[key]
            self._compact()

    # ------------------------------------------------------------------ internals

    def _add(self, event: Event) -> None:
        key = coalesce_key(event)
        if key is not None and key in self._by_key:
            self._pending.pop(self._by_key[key], None)
        self._seq += 1
        self._pending[self._seq] = event
        if key is not None:
            self._by_key[key] = self._seq
        while len(self._pending) > self._max:
            seq, old = self._pending.popitem(last=False)
            old_key = coalesce_key(old)
            if old_key is not None and self._by_key.get(old_key) == seq:
                del self._by_key[old_key]
            self.dropped += 1

    def _append(self, batch: list[Event]) -> None:
        if self._path is None:
            return
        data = "".join(json.dumps(event_to_json(e)) + "\n" for e in batch)
        try:
            with self._path.open("a", encoding="utf-8") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            self._spool_lines += len(batch)
        except OSError as err:
            # Memory still holds the events; only crash-safety during an outage is lost.
            log.warning("cannot append to the spool %s: %s", self._path, err)

    def _compact(self) -> None:
        if self._path is None:
            return
        if self._pending and self._spool_lines <= 2 * len(self._pending) + 100:
            return
        tmp = self._path.with_suffix(self._path.suffix + ".tmp")
        try:
            with tmp.open("w", encoding="utf-8") as handle:
                for event in self._pending.values():
                    handle.write(json.dumps(event_to_json(event)) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            tmp.replace(self._path)
            self._spool_lines = len(self._pending)
        except OSError as err:
            log.warning("cannot rewrite the spool %s: %s", self._path, err)

    def _recover(self) -> None:
        assert self._path is not None
        if not self._path.exists():
            return
        bad = 0
        with self._path.open(encoding="utf-8") as handle:
            for line in handle:
                if not line.strip():
                    continue
                try:
                    self._add(event_from_json(json.loads(line)))
                except (ValueError, KeyError, TypeError):
                    bad += 1  # a line cut short by a crash mid-write
        self.recovered = len(self._pending)
        self.dropped += bad
        self._spool_lines = self.recovered + bad
        if self.recovered or bad:
            log.info(
                "spool %s: %d pending events recovered, %d unreadable lines skipped",
                self._path,
                self.recovered,
                bad,
            )
