"""Helpers shared by the route modules."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import HTTPException, Path, Query, status
from starlette.concurrency import run_in_threadpool

from pantheon_api.adapters.upstream import UpstreamError, UpstreamReply
from pantheon_api.api.deps import Context

ID_MAX = 2**31 - 1
PrinterIdPath = Annotated[int, Path(ge=1, le=ID_MAX, description="printer id")]
BedIdPath = Annotated[int, Path(ge=1, le=ID_MAX, description="plate id")]
IdQuery = Annotated[int | None, Query(ge=1, le=ID_MAX)]

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Not authenticated"},
    403: {"description": "Role too low"},
}


def doc_out(doc: dict[str, Any]) -> dict[str, Any]:
    """A MongoDB document with ``_id`` renamed ``id``."""
    out = dict(doc)
    out["id"] = out.pop("_id")
    return out


def not_found(what: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"{what} not found")


def conflict(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_409_CONFLICT, detail)


async def relay(
    ctx: Context, upstream: str, method: str, path: str, **kwargs: Any
) -> UpstreamReply:
    """Call another service; `UpstreamError` is turned into the HTTP answer by the app."""
    target = getattr(ctx, upstream)
    reply: UpstreamReply = await target.call(method, path, **kwargs)
    return reply


async def threaded(fn: Any, *args: Any, **kwargs: Any) -> Any:
    return await run_in_threadpool(fn, *args, **kwargs)


__all__ = [
    "ERRORS",
    "ID_MAX",
    "BedIdPath",
    "IdQuery",
    "PrinterIdPath",
    "UpstreamError",
    "conflict",
    "doc_out",
    "not_found",
    "relay",
    "threaded",
]
