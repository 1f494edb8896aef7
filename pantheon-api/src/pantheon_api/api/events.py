"""``GET /api/events``: Server-Sent Events of printer, plate, job and robot-task changes.

MongoDB is polled (every ``EVENTS_POLL_S``, default 1 s) rather than watched: change streams
need a replica set, and nx-27017 (the test server) supports ``collection.watch()`` but not
``db.watch()``; polling works on every deployment. Printers and plates are few (tens), so
each poll diffs their documents; jobs and robot tasks are read by an ``updated_at`` watermark
(their writers set it on every change).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from pantheon_api.adapters.store import utcnow
from pantheon_api.api.common import ERRORS
from pantheon_api.api.deps import Context, Ctx, EventsViewer
from pantheon_common.errors import StoreUnavailable
from pantheon_contracts.names import Collections

router = APIRouter(prefix="/api", responses=ERRORS)

HEARTBEAT_S = 15.0
_VOLATILE = frozenset({"last_seen", "updated_at"})


def _fingerprint(doc: dict[str, Any]) -> str:
    return json.dumps(
        {k: v for k, v in doc.items() if k not in _VOLATILE}, default=str, sort_keys=True
    )


def _event(kind: str, data: Any) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, default=str, separators=(',', ':'))}\n\n"


class ChangeFeed:
    """One subscriber's view: what it has seen, what changed since (blocking reads)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.snapshots: dict[str, dict[Any, str]] = {Collections.PRINTERS: {}, Collections.BEDS: {}}
        start = utcnow()
        self.watermarks: dict[str, datetime] = {
            Collections.JOBS: start,
            Collections.ROBOT_TASKS: start,
        }
        self.seen_at_mark: dict[str, set[Any]] = {
            Collections.JOBS: set(),
            Collections.ROBOT_TASKS: set(),
        }
        self.primed = False

    def poll(self) -> list[str]:
        events: list[str] = []
        for collection, kind in ((Collections.PRINTERS, "printer"), (Collections.BEDS, "bed")):
            seen = self.snapshots[collection]
            current: dict[Any, str] = {}
            for doc in self.ctx.store.find(collection, {}):
                fp = _fingerprint(doc)
                current[doc["_id"]] = fp
                if self.primed and seen.get(doc["_id"]) != fp:
                    events.append(_event(kind, _public(doc)))
            if self.primed:
                for gone in set(seen) - set(current):
                    events.append(_event(f"{kind}_removed", {"id": gone}))
            self.snapshots[collection] = current
        for collection, kind in (
            (Collections.JOBS, "job"),
            (Collections.ROBOT_TASKS, "robot_task"),
        ):
            mark = self.watermarks[collection]
            docs = self.ctx.store.find(
                collection, {"updated_at": {"$gte": mark}}, sort=[("updated_at", 1)], limit=500
            )
            for doc in docs:
                stamp = doc.get("updated_at")
                if not isinstance(stamp, datetime):
                    continue
                if stamp == mark and doc["_id"] in self.seen_at_mark[collection]:
                    continue
                if stamp > mark:
                    mark = stamp
                    self.seen_at_mark[collection] = set()
                self.seen_at_mark[collection].add(doc["_id"])
                events.append(_event(kind, _public(doc)))
            self.watermarks[collection] = mark
        self.primed = True
        return events


def _public(doc: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in doc.items() if k not in {"_id", "password_hash", "hash"}}
    out["id"] = doc["_id"]
    return out


async def _stream(request: Request, ctx: Context, duration_s: float) -> AsyncIterator[str]:
    feed = ChangeFeed(ctx)
    deadline = time.monotonic() + duration_s
    yield f"retry: 3000\n: pantheon-api events, polling every {ctx.events_poll_s:g} s\n\n"
    await run_in_threadpool(feed.poll)  # baseline: only later changes are sent
    yield _event("ready", {"at": utcnow().isoformat()})
    last_write = time.monotonic()
    store_down = False
    while time.monotonic() < deadline:
        await asyncio.sleep(ctx.events_poll_s)
        if await request.is_disconnected():
            return
        try:
            events = await run_in_threadpool(feed.poll)
        except StoreUnavailable as err:
            if not store_down:
                yield _event("error", {"detail": str(err)})
            store_down = True
            continue
        store_down = False
        for event in events:
            yield event
        if events:
            last_write = time.monotonic()
        elif time.monotonic() - last_write > HEARTBEAT_S:
            yield ": keepalive\n\n"
            last_write = time.monotonic()
    yield _event("end", {"reason": "duration reached; reconnect"})


@router.get(
    "/events",
    response_class=StreamingResponse,
    tags=["events"],
    responses={200: {"content": {"text/event-stream": {}}, "description": "Server-sent events"}},
)
async def events(
    request: Request,
    ctx: Ctx,
    _: EventsViewer,
    duration_s: Annotated[float, Query(gt=0, le=86_400, description="end the stream after")] = 3600,
) -> StreamingResponse:
    """Live changes: ``printer``, ``bed``, ``job``, ``robot_task`` events (JSON documents),
    from the moment of connection. Auth: header, or ``?access_token=`` for EventSource."""
    return StreamingResponse(
        _stream(request, ctx, duration_s),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


__all__ = ["ChangeFeed", "router"]
