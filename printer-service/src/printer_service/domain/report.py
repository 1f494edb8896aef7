"""Merging Bambu ``push_status`` reports into one state (bambu-lan-protocol.md 4.1, 4.9).

P1/A1 printers send one full report (``msg: 0``) after connect or ``pushall``, then deltas
(``msg: 1``) carrying only the keys that changed; X1 printers send full reports. A delta is
merged key by key at every depth; AMS units (``ams.ams[]``) and their trays (``tray[]``) come
as partial arrays and are merged by ``id``; every other list (``hms``, ``stg``,
``lights_report``...) replaces the old one. Until a full report has been merged the state is
not to be trusted (a delta read as a snapshot looks like IDLE at 0 %).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

FULL_REPORT = 0
DELTA_REPORT = 1

# Lists merged element-wise by their "id": (parent key, key). tray[] lives inside ams.ams[].
_MERGE_BY_ID = frozenset({("ams", "ams"), ("*", "tray")})


class MergeOutcome(StrEnum):
    """What one report did to the state."""

    FULL = "full"
    """A full snapshot replaced the state."""
    DELTA = "delta"
    """A delta was merged into a full state."""
    NEEDS_FULL = "needs_full"
    """A delta arrived before any full report: ignored, ask for ``pushall``."""
    IGNORED = "ignored"
    """Not a status report (a command reply, log line...)."""


def _merge_by_id(key: str, parent: str | None) -> bool:
    return (parent or "", key) in _MERGE_BY_ID or ("*", key) in _MERGE_BY_ID


def deep_merge(base: dict[str, Any], delta: dict[str, Any], parent: str | None = None) -> None:
    """Merge ``delta`` into ``base`` in place (bambu-lan-protocol.md 4.9 step 2).

    A missing key leaves the value unchanged; a present key overwrites it, even with 0 or "".
    """
    for key, value in delta.items():
        old = base.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            deep_merge(old, value, key)
        elif isinstance(value, list) and isinstance(old, list) and _merge_by_id(key, parent):
            _merge_list_by_id(old, value, key)
        else:
            base[key] = copy.deepcopy(value)


def _merge_list_by_id(base: list[Any], delta: list[Any], key: str) -> None:
    index = {str(item["id"]): item for item in base if isinstance(item, dict) and "id" in item}
    for item in delta:
        if not isinstance(item, dict) or "id" not in item:
            base.append(copy.deepcopy(item))
            continue
        existing = index.get(str(item["id"]))
        if existing is None:
            fresh = copy.deepcopy(item)
            base.append(fresh)
            index[str(item["id"])] = fresh
        else:
            deep_merge(existing, item, key)


def report_kind(report: dict[str, Any]) -> int:
    """``msg`` of a push_status: 0 full, 1 delta; a missing or odd value counts as a delta."""
    msg = report.get("msg", DELTA_REPORT)
    try:
        return FULL_REPORT if int(msg) == FULL_REPORT else DELTA_REPORT
    except (TypeError, ValueError):
        return DELTA_REPORT


def is_status_report(report: dict[str, Any]) -> bool:
    """True for ``print.command == "push_status"`` (other commands are replies, 5.11)."""
    return report.get("command") == "push_status"


@dataclass
class ReportState:
    """The merged ``print`` object of one printer and whether it can be trusted."""

    data: dict[str, Any]
    complete: bool = False
    """A full report has been merged since the last reset."""
    reports: int = 0

    @classmethod
    def empty(cls) -> ReportState:
        """No report yet: UNKNOWN until a full one arrives."""
        return cls(data={})

    def reset(self) -> None:
        """Forget everything (a new connection: the next full report is the base)."""
        self.data = {}
        self.complete = False

    def apply(self, report: dict[str, Any]) -> MergeOutcome:
        """Merge one ``print`` object (the value under the top-level ``print`` key)."""
        if not is_status_report(report):
            return MergeOutcome.IGNORED
        self.reports += 1
        if report_kind(report) == FULL_REPORT:
            self.data = copy.deepcopy(report)
            self.complete = True
            return MergeOutcome.FULL
        if not self.complete:
            return MergeOutcome.NEEDS_FULL
        deep_merge(self.data, report)
        return MergeOutcome.DELTA
