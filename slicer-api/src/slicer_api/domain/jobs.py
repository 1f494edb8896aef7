"""Slicing job states and the options a job carries."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pantheon_contracts.beds import BedType


class JobState(StrEnum):
    """Where a slicing job is."""

    QUEUED = "queued"
    SLICING = "slicing"
    PACKAGING = "packaging"
    UPLOADING = "uploading"
    DONE = "done"
    FAILED = "failed"


FINAL_STATES = frozenset({JobState.DONE, JobState.FAILED})
PROGRESS = {
    JobState.QUEUED: 5,
    JobState.SLICING: 20,
    JobState.PACKAGING: 85,
    JobState.UPLOADING: 92,
    JobState.DONE: 100,
    JobState.FAILED: 100,
}
"""Coarse progress per state; during SLICING the engine's own percentages refine it."""


def slicing_progress(engine_percent: int) -> int:
    """Map the engine's 0..100 onto the SLICING..PACKAGING span."""
    span = PROGRESS[JobState.PACKAGING] - PROGRESS[JobState.SLICING]
    clamped = max(0, min(100, engine_percent))
    return PROGRESS[JobState.SLICING] + span * clamped // 100


@dataclass(frozen=True)
class SliceOptions:
    """Everything that selects and overrides the engine's profiles for one slice."""

    printer_model: str
    quality: str
    material: str
    infill: float | None = None
    supports: bool = False
    bed_type: BedType = BedType.TEXTURED_PEI

    def settings(self) -> dict[str, str]:
        """Engine settings this job sets over its profiles (PrusaSlicer ini keys)."""
        values: dict[str, str] = {}
        if self.infill is not None:
            values["fill_density"] = f"{round(self.infill * 100)}%"
        values["support_material"] = "1" if self.supports else "0"
        return values


@dataclass(frozen=True)
class PantheonRequest:
    """What to do with the result in pantheon-api (upload, and optionally queue a print)."""

    queue_print: bool = False
    copies: int = 1
    priority: int = 0
    printer_id: int | None = None
