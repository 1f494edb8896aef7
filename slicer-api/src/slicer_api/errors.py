"""The service's own errors; each carries the HTTP status and a reason the client can read."""

from __future__ import annotations

from typing import Any


class SlicerError(Exception):
    """Base class: ``status`` is the HTTP status the API answers with."""

    status = 500
    code = "error"

    def __init__(self, reason: str, **details: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details = details


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
