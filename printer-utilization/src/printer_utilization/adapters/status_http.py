"""``GET /status`` of a printer-service over HTTP (httpx, bounded by a timeout)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from printer_utilization.domain.ports import StatusUnavailable
from printer_utilization.domain.targets import PrinterTarget


class HttpStatusSource:
    """Fetches ``/status`` with the service token; one shared connection pool."""

    def __init__(self, token: str, timeout_s: float, *, max_connections: int = 50) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=max_connections),
            follow_redirects=False,
        )

    async def fetch(self, target: PrinterTarget) -> Mapping[str, Any]:
        """The /status body; StatusUnavailable on any transport error, non-200 or bad JSON."""
        try:
            response = await self._client.get(f"{target.base_url}/status")
        except httpx.HTTPError as err:
            raise StatusUnavailable(f"unreachable: {type(err).__name__}: {err}") from err
        if response.status_code != httpx.codes.OK:
            raise StatusUnavailable(f"HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError as err:
            raise StatusUnavailable("not JSON") from err
        if not isinstance(body, dict):
            raise StatusUnavailable("not a JSON object")
        return body

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()
