"""The service's own errors; each carries the HTTP status and a reason the client can read.

A reason may hold a server path (the engine names the file it could not read:
``/var/lib/slicer/job-x1/input.step: ...``); what a client gets never does (`without_paths`:
each absolute path becomes its last component, ``input.step``), the full reason goes to the log.
"""

from __future__ import annotations

import re
from typing import Any

# An absolute path: a "/" that does not continue a word, a number, a URL ("://") or another
# path, up to a character that ends a path in a message (space, quote, colon, bracket...).
_ABSOLUTE_PATH = re.compile(r"(?<![\w:/.~\\-])/[^\s'\"`,;:()<>\[\]{}|]+")


def _last_component(match: re.Match[str]) -> str:
    parts = [p for p in match.group(0).split("/") if p]
    return parts[-1] if parts else "/"


def without_paths(text: str) -> str:
    """``text`` with every absolute path replaced by its last component (a relative name)."""
    return _ABSOLUTE_PATH.sub(_last_component, text)


def _public(value: Any) -> Any:
    if isinstance(value, str):
        return without_paths(value)
    if isinstance(value, list | tuple):
        return [_public(v) for v in value]
    if isinstance(value, dict):
        return {k: _public(v) for k, v in value.items()}
    return value


class SlicerError(Exception):
    """Base class: ``status`` is the HTTP status the API answers with."""

    status = 500
    code = "error"

    def __init__(self, reason: str, **details: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details = details

    @property
    def public_reason(self) -> str:
        """The reason as a client may see it (no server paths)."""
        return without_paths(self.reason)

    def public_json(self) -> dict[str, Any]:
        """The JSON body answered to the client: ``error``, ``detail`` and the details."""
        return {"error": self.code, "detail": self.public_reason, **_public(self.details)}


class UploadTooLarge(SlicerError):
    """The request body is larger than the configured limit."""

    status = 413
    code = "upload_too_large"


class UnsupportedFormat(SlicerError):
    """The file is not STL, OBJ, 3MF or STEP."""

    status = 415
    code = "unsupported_format"


class BadRequest(SlicerError):
    """A form field is missing or invalid."""

    status = 400
    code = "bad_request"


class InvalidModel(SlicerError):
    """The model could not be read or is not printable (empty, degenerate, corrupt)."""

    status = 422
    code = "invalid_model"


class UnsafeArchive(InvalidModel):
    """A 3MF archive that tries path traversal or decompresses to too much."""

    code = "unsafe_archive"


class DoesNotFit(InvalidModel):
    """The part is larger than the printer's build volume."""

    code = "does_not_fit"


class EngineFailed(SlicerError):
    """The slicing engine exited with an error, timed out or hit its resource limits."""

    status = 422
    code = "engine_failed"


class EngineMissing(SlicerError):
    """The slicing engine is not installed."""

    status = 503
    code = "engine_missing"


class Busy(SlicerError):
    """Too many jobs are waiting."""

    status = 503
    code = "busy"


class NotFound(SlicerError):
    """No such job (or it expired)."""

    status = 404
    code = "not_found"


class NotReady(SlicerError):
    """The job has no result (yet, or it failed)."""

    status = 409
    code = "not_ready"


class PantheonApiError(SlicerError):
    """pantheon-api refused or could not be reached."""

    status = 502
    code = "pantheon_api_error"
