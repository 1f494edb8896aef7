"""The audit trail: one JSON object per line in a file, and the same record to the logger."""

from __future__ import annotations

import json
import logging
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["AuditLog"]

log = logging.getLogger("control_panel_api.audit")


class AuditLog:
    """Appends audit records (``AuditSink``); the file is opened per record, so rotation works."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            # fail at start-up, not at the first action, if the file cannot be written
            with path.open("a", encoding="utf-8"):
                pass

    def record(
        self, *, user: str, role: str, action: str, target: str, outcome: str, **details: Any
    ) -> None:
        """Write one record: when, who, what, on what, and how it ended."""
        entry = {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "user": user,
            "role": role,
            "action": action,
            "target": target,
            "outcome": outcome,
            **details,
        }
        line = json.dumps(entry, ensure_ascii=True, default=str, sort_keys=False)
        log.info("audit %s", line, extra={"audit": entry})
        if self.path is None:
            return
        with self._lock, self.path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def read(self) -> list[dict[str, Any]]:
        """Every record in the file (tests and tools)."""
        if self.path is None or not self.path.exists():
            return []
        with self.path.open(encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]
