"""The motion ledger: one JSON line per event, flushed and fsynced, surviving restarts.

Every line has ``seq`` (increasing across restarts), ``time`` (UTC ISO 8601) and ``event``:

- ``motion``: the arm STARTED a physical motion. These are the only lines that count as
  physical executions. Fields: job_id, kind, printer_id, bed_id, payload (the raw job text).
- ``refused``: a job the arm did not execute (also ``"refused": true``, ``reason`` and
  ``violation``: the :class:`~pantheon_sim.robot.world.Violation` category when the job was
  physically damaging, else null).
- ``duplicate``: a job whose ``job_id`` was already executed (no motion; ``"duplicate": true``).
- ``done`` / ``failed``: the end of the motion whose seq is ``motion_seq`` (``failed`` has a
  ``reason``).
"""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MOTION = "motion"
REFUSED = "refused"
DUPLICATE = "duplicate"
DONE = "done"
FAILED = "failed"


class Ledger:
    """Append-only JSON-lines file; every append is on disk (fsync) before it returns."""

    def __init__(self, path: Path, *, wipe: bool = False) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        if wipe:
            path.write_text("", encoding="utf-8")
        self._entries = read_ledger(path)
        self._seq = max((int(e.get("seq", 0)) for e in self._entries), default=0)
        self._file = path.open("a", encoding="utf-8")
        if path.stat().st_size and not path.read_bytes().endswith(b"\n"):
            self._file.write("\n")  # end a torn last line so the next entry stays readable

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        """Write one event line durably and return it (with its seq)."""
        with self._lock:
            self._seq += 1
            entry: dict[str, Any] = {
                "seq": self._seq,
                "time": datetime.now(UTC).isoformat(timespec="microseconds"),
                "event": event,
                **fields,
            }
            self._file.write(json.dumps(entry, separators=(",", ":")) + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())
            self._entries.append(entry)
            return entry

    def entries(self) -> list[dict[str, Any]]:
        """Every event so far (including those written before a restart)."""
        with self._lock:
            return list(self._entries)

    def close(self) -> None:
        """Close the file (idempotent)."""
        with self._lock:
            if not self._file.closed:
                self._file.close()


def read_ledger(path: Path) -> list[dict[str, Any]]:
    """Parse a ledger file; a torn last line (crash mid-write) is skipped."""
    if not path.exists():
        return []
    entries: list[dict[str, Any]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def is_violation(entry: dict[str, Any]) -> bool:
    """True for a ``refused`` line whose job would have damaged something."""
    return entry.get("event") == REFUSED and bool(entry.get("violation"))


def violation_record(entry: dict[str, Any]) -> dict[str, Any]:
    """The short form of a violation line kept in the simulator's violation log."""
    return {
        "seq": entry.get("seq"),
        "time": entry.get("time"),
        "job_id": entry.get("job_id"),
        "kind": entry.get("kind"),
        "printer_id": entry.get("printer_id"),
        "bed_id": entry.get("bed_id"),
        "category": entry.get("violation"),
        "reason": entry.get("reason"),
    }


def motions(entries: list[dict[str, Any]], job_id: str | None = None) -> list[dict[str, Any]]:
    """The physical motions among ``entries`` (optionally only those of ``job_id``)."""
    return [
        e
        for e in entries
        if e.get("event") == MOTION and (job_id is None or e.get("job_id") == job_id)
    ]
