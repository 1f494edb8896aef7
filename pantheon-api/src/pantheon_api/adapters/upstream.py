"""HTTP calls to the other services (printer-service, orchestrator, utilization, control panel).

Every call carries a bearer token and a timeout. Failures become `UpstreamError` with the
status pantheon-api answers: 504 on a timeout, 502 when the service is unreachable or answers
5xx or garbage. A 4xx of the service is passed on with its reason (it is the caller's fault).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx

__all__ = ["Upstream", "UpstreamError", "UpstreamReply"]

log = logging.getLogger(__name__)


class UpstreamError(Exception):
    """A call to another service failed; ``status`` is what pantheon-api answers."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True, slots=True)
class UpstreamReply:
    """A 2xx answer of a service."""

    status: int
    body: Any


class Upstream:
    """One service reached over HTTP."""

    def __init__(self, name: str, base_url: str, token: str, client: httpx.AsyncClient) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._client = client

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Any = None,
        token: str | None = None,
        base_url: str | None = None,
    ) -> UpstreamReply:
        """``method path`` on the service; raises `UpstreamError` unless it answers 2xx."""
        url = f"{(base_url or self.base_url).rstrip('/')}{path}"
        headers = {"Authorization": f"Bearer {token or self._token}"}
        try:
            response = await self._client.request(
                method, url, json=json, params=params, headers=headers
            )
        except httpx.TimeoutException as err:
            raise UpstreamError(504, f"{self.name} did not answer in time") from err
        except httpx.HTTPError as err:
            raise UpstreamError(502, f"{self.name} unreachable: {type(err).__name__}") from err
        try:
            body = response.json() if response.content else None
        except ValueError:
            body = None
        if response.is_success:
            if (
                response.content
                and body is None
                and "json" in response.headers.get("content-type", "")
            ):
                raise UpstreamError(502, f"{self.name} answered invalid JSON")
            return UpstreamReply(response.status_code, body)
        reason = _reason(body) or response.reason_phrase or "error"
        if response.status_code in (401, 403):
            log.error("%s refused our token (%s): check SERVICE_TOKEN", self.name, reason)
            raise UpstreamError(502, f"{self.name} refused pantheon-api's credentials")
        if 400 <= response.status_code < 500:
            raise UpstreamError(response.status_code, f"{self.name}: {reason}")
        if response.status_code == 503:
            raise UpstreamError(503, f"{self.name} unavailable: {reason}")
        raise UpstreamError(502, f"{self.name} failed ({response.status_code}): {reason}")


def _reason(body: Any) -> str | None:
    if isinstance(body, dict):
        detail = body.get("detail")
        if isinstance(detail, str):
            return detail[:300]
        if detail is not None:
            return str(detail)[:300]
    return None
