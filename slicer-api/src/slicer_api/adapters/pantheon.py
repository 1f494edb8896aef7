"""Client of pantheon-api: upload a sliced file, queue a print job.

Contract (pantheon-api's POST /api/files and POST /api/jobs, with a machine API key):
- ``POST {PANTHEON_API_URL}/api/files``, header ``X-API-Key``, multipart: ``file`` (the
  ``.gcode.3mf``), ``md5`` (uppercase hex of plate_1.gcode), ``printer_model``, ``bed_type``.
  Answer 200/201 JSON ``{"name": "<store name>", ...}``.
- ``POST {PANTHEON_API_URL}/api/jobs``, header ``X-API-Key``, JSON
  ``{"file": name, "copies": n, "priority": p, "target": {"model": m, "printer_id": id|null},
  "bed_type": "<BedType>"}`` (the fields of pantheon_contracts.store.JobDoc).
  Answer 200/201 JSON ``{"id": "<job id>", ...}``.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import httpx

from slicer_api.errors import PantheonApiError

log = logging.getLogger(__name__)
_ATTEMPTS = 3


class PantheonClient:
    """Thin async client; retries connection errors and 5xx, never 4xx."""

    def __init__(self, base_url: str, api_key: str, timeout_s: float) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"X-API-Key": api_key}
        self._timeout = timeout_s

    @property
    def configured(self) -> bool:
        """True when a URL is set."""
        return bool(self.base_url)

    async def upload_file(
        self, path: Path, filename: str, md5: str, printer_model: str, bed_type: str
    ) -> dict[str, Any]:
        """Upload the package; returns pantheon-api's JSON (with ``name``)."""
        data = {"md5": md5, "printer_model": printer_model, "bed_type": bed_type}

        async def send(client: httpx.AsyncClient) -> httpx.Response:
            with path.open("rb") as handle:
                files = {"file": (filename, handle, "application/vnd.bambulab.gcode+3mf")}
                return await client.post("/api/files", data=data, files=files)

        body = await self._call("upload", send)
        if not isinstance(body.get("name"), str):
            raise PantheonApiError("pantheon-api upload answer has no 'name'")
        return body

    async def create_job(self, job: dict[str, Any]) -> dict[str, Any]:
        """Queue a print job; returns pantheon-api's JSON (with ``id``)."""

        async def send(client: httpx.AsyncClient) -> httpx.Response:
            return await client.post("/api/jobs", json=job)

        body = await self._call("job", send)
        if "id" not in body:
            raise PantheonApiError("pantheon-api job answer has no 'id'")
        return body

    async def _call(self, what: str, send: Any) -> dict[str, Any]:
        last: str = ""
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                async with httpx.AsyncClient(
                    base_url=self.base_url, headers=self._headers, timeout=self._timeout
                ) as client:
                    response = await send(client)
            except httpx.HTTPError as err:
                last = f"{type(err).__name__}: {err}"
            else:
                if response.status_code < 400:
                    try:
                        body = response.json()
                    except ValueError as err:
                        raise PantheonApiError(f"pantheon-api {what}: answer is not JSON") from err
                    if not isinstance(body, dict):
                        raise PantheonApiError(f"pantheon-api {what}: answer is not an object")
                    return body
                last = f"HTTP {response.status_code}: {response.text[:200]}"
                if response.status_code < 500:
                    break
            if attempt < _ATTEMPTS:
                log.warning("pantheon-api %s failed (%s); retrying", what, last)
                await asyncio.sleep(0.5 * attempt)
        raise PantheonApiError(f"pantheon-api {what} failed: {last}")
