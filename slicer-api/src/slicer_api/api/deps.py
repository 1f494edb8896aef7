"""Request plumbing: API-key check and the upload body limit."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Annotated

from fastapi import Depends, Header, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from slicer_api.errors import SlicerError


class Unauthorized(SlicerError):
    """No or wrong X-API-Key."""

    status = 401
    code = "unauthorized"


def key_matches(presented: str, digests: tuple[str, ...]) -> bool:
    """sha256 of the presented key against every configured digest, in constant time."""
    candidate = hashlib.sha256(presented.encode()).hexdigest()
    matched = False
    for digest in digests:
        # No early exit: the time taken does not depend on which digest matched.
        matched |= hmac.compare_digest(candidate, digest)
    return matched


async def require_api_key(
    request: Request,
    x_api_key: Annotated[str | None, Header(description="shop API key")] = None,
) -> None:
    """Every route except health, readiness and metrics needs a configured key."""
    digests: tuple[str, ...] = request.app.state.api_key_digests
    if not x_api_key or not key_matches(x_api_key, digests):
        raise Unauthorized("missing or unknown X-API-Key")


ApiKey = Annotated[None, Depends(require_api_key)]


class BodyLimitMiddleware:
    """413 for request bodies over ``limit`` bytes, before they are read past it.

    A declared Content-Length over the limit is answered at once without reading the body;
    otherwise (chunked uploads, lying headers) the bytes are counted as they stream in and
    the request is cut off at the limit, whatever the route would have answered.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in {"POST", "PUT", "PATCH"}:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._reject(send, int(declared))
            return
        received = 0
        exceeded = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    exceeded = True
                    raise SlicerError("request body over the limit")
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                if not started:
                    started = True
                    await self._reject(send, received)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except SlicerError:
            if not exceeded:
                raise
            if not started:
                await self._reject(send, received)

    async def _reject(self, send: Send, size: int) -> None:
        body = json.dumps(
            {
                "error": "upload_too_large",
                "detail": f"the upload is larger than {self.limit} bytes (at least {size})",
                "limit_bytes": self.limit,
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
