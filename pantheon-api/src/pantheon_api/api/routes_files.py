"""G-code files: streaming upload with metadata, list, download, delete; OctoPrint upload."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Path, Request, Response, status
from fastapi.responses import StreamingResponse

from pantheon_api.adapters.store import utcnow
from pantheon_api.api.common import ERRORS, conflict, not_found, threaded
from pantheon_api.api.deps import Ctx, Operator, Viewer
from pantheon_api.api.routes_jobs import create_job_doc
from pantheon_api.api.schemas import GcodeFileOut, JobCreate, OctoUploadOut, OctoVersion
from pantheon_api.domain.metadata import GcodeMetadata, MetadataError, read_metadata
from pantheon_common.auth import Principal
from pantheon_common.gcode_store import GcodeNotFound, InvalidGcodeName, validate_gcode_name
from pantheon_common.upload import ReceivedUpload, UploadRefused, receive_upload
from pantheon_contracts.beds import BedType
from pantheon_contracts.names import Collections
from pantheon_contracts.printer import PrinterModel
from pantheon_contracts.store import OPEN_JOB_STATUSES

router = APIRouter(prefix="/api", responses=ERRORS)

FileName = Annotated[str, Path(min_length=1, max_length=255, description="store file name")]

_UPLOAD_DOC: dict[int | str, dict[str, Any]] = {
    413: {"description": "File over the size limit (refused before the body is read past it)"},
    415: {"description": "Not multipart/form-data"},
    409: {"description": "A queued or printing job uses a file of that name"},
    422: {"description": "Bad name, unreadable file, or an unsafe 3MF archive"},
}
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "printer_model": {"type": "string"},
                        "bed_type": {"type": "string"},
                        "md5": {"type": "string"},
                        "print": {"type": "string"},
                        "select": {"type": "string"},
                    },
                }
            }
        },
    }
}


def _file_out(doc: dict[str, Any]) -> GcodeFileOut:
    return GcodeFileOut.model_validate({**doc, "name": doc["_id"]})


def _valid(name: str) -> str:
    try:
        return validate_gcode_name(name)
    except InvalidGcodeName as err:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, err.reason) from err


def _open_jobs(ctx: Ctx, name: str) -> int:
    return ctx.store.count(
        Collections.JOBS,
        {"file": name, "status": {"$in": [s.value for s in OPEN_JOB_STATUSES]}},
    )


def _fallback(meta: GcodeMetadata, fields: dict[str, str]) -> GcodeMetadata:
    """Fill gaps with what the uploader declared (slicer-api sends printer_model, bed_type)."""
    model = meta.printer_model
    if model is None and fields.get("printer_model"):
        try:
            model = PrinterModel(fields["printer_model"])
        except ValueError:
            model = None
    bed = meta.bed_type
    if bed is None and fields.get("bed_type"):
        try:
            bed = BedType(fields["bed_type"])
        except ValueError:
            bed = None
    return GcodeMetadata(
        printer_model=model,
        printer_model_raw=meta.printer_model_raw,
        bed_type=bed,
        estimated_s=meta.estimated_s,
        filament_g=meta.filament_g,
        plate_count=meta.plate_count,
    )


def _store_upload(ctx: Ctx, upload: ReceivedUpload, who: Principal) -> dict[str, Any]:
    """Check the file, put it into the store, record its metadata (blocking: a worker thread)."""
    name = _valid(upload.filename)
    try:
        meta = read_metadata(name, upload.file, upload.size, ctx.archive_limits)
    except MetadataError as err:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(err)) from err
    meta = _fallback(meta, upload.fields)
    if _open_jobs(ctx, name):
        raise conflict(f"a queued or printing job uses {name}; upload under another name")
    upload.file.seek(0)
    info = ctx.gcode.put(name, upload.file, max_bytes=ctx.upload_limit)
    doc = {
        "_id": name,
        "size": info.size,
        "sha256": info.sha256,
        "printer_model": meta.printer_model.value if meta.printer_model else None,
        "printer_model_raw": meta.printer_model_raw,
        "bed_type": meta.bed_type.value if meta.bed_type else None,
        "estimated_s": meta.estimated_s,
        "filament_g": meta.filament_g,
        "plate_count": meta.plate_count,
        "uploaded_by": who.subject,
        "uploaded_at": utcnow(),
    }
    ctx.store.replace(Collections.GCODE_FILES, name, doc)
    return doc


async def _receive_and_store(
    request: Request, ctx: Ctx, who: Principal
) -> tuple[dict[str, Any], dict[str, str]]:
    try:
        upload = await receive_upload(request, ctx.upload_limit)
    except UploadRefused as err:
        raise HTTPException(err.status, err.detail) from err
    try:
        doc = await threaded(_store_upload, ctx, upload, who)
    finally:
        upload.close()
    return doc, upload.fields


@router.post(
    "/files",
    response_model=GcodeFileOut,
    status_code=201,
    tags=["files"],
    responses=_UPLOAD_DOC,
    openapi_extra=_UPLOAD_BODY,
)
async def upload_file(request: Request, ctx: Ctx, who: Operator) -> GcodeFileOut:
    """Upload a G-code file (multipart field ``file``; ``.gcode.3mf``, ``.gcode``, ``.bgcode``,
    ``.3mf``). Streamed: refused with 413 once it passes the limit. A file of the same name is
    replaced unless an open job uses it. Metadata is read from the file; optional fields
    ``printer_model`` and ``bed_type`` fill what the file does not say."""
    doc, _fields = await _receive_and_store(request, ctx, who)
    return _file_out(doc)


@router.get("/files", response_model=list[GcodeFileOut], tags=["files"])
def list_files(
    ctx: Ctx,
    _: Viewer,
    printer_model: PrinterModel | None = None,
    bed_type: BedType | None = None,
) -> list[GcodeFileOut]:
    """Every stored file with its metadata."""
    query: dict[str, Any] = {}
    if printer_model is not None:
        query["printer_model"] = printer_model.value
    if bed_type is not None:
        query["bed_type"] = bed_type.value
    docs = ctx.store.find(Collections.GCODE_FILES, query, sort=[("_id", 1)])
    return [_file_out(d) for d in docs]


@router.get("/files/{name}", response_model=GcodeFileOut, tags=["files"])
def get_file(name: FileName, ctx: Ctx, _: Viewer) -> GcodeFileOut:
    """A file's metadata."""
    doc = ctx.store.get(Collections.GCODE_FILES, _valid(name))
    if doc is None:
        raise not_found(f"file {name}")
    return _file_out(doc)


@router.get(
    "/files/{name}/download",
    response_class=StreamingResponse,
    tags=["files"],
    responses={200: {"content": {"application/octet-stream": {}}, "description": "The file"}},
)
def download_file(name: FileName, ctx: Ctx, _: Viewer) -> StreamingResponse:
    """The file's bytes, streamed from the store."""
    name = _valid(name)
    try:
        info = ctx.gcode.stat(name)
        chunks: Iterator[bytes] = ctx.gcode.open(name)
    except GcodeNotFound as err:
        raise not_found(f"file {name}") from err
    disposition = f"attachment; filename*=UTF-8''{quote(name)}"
    return StreamingResponse(
        chunks,
        media_type="application/octet-stream",
        headers={"Content-Disposition": disposition, "Content-Length": str(info.size)},
    )


@router.delete(
    "/files/{name}",
    status_code=204,
    tags=["files"],
    responses={409: {"description": "A queued or active job uses the file"}},
)
def delete_file(name: FileName, ctx: Ctx, _: Operator) -> Response:
    """Delete a file; refused while a queued or active job uses it."""
    name = _valid(name)
    if count := _open_jobs(ctx, name):
        raise conflict(f"{count} queued or active job(s) use {name}")
    known = ctx.store.get(Collections.GCODE_FILES, name) is not None
    try:
        ctx.gcode.delete(name)
    except GcodeNotFound as err:
        if not known:
            raise not_found(f"file {name}") from err
    ctx.store.delete(Collections.GCODE_FILES, {"_id": name})
    return Response(status_code=204)


# -- OctoPrint compatibility (PrusaSlicer / OrcaSlicer "physical printer" of type OctoPrint) ---

OCTOPRINT_API_VERSION = "0.1"
OCTOPRINT_SERVER_VERSION = "1.10.2"


@router.get("/version", response_model=OctoVersion, tags=["octoprint"])
def octoprint_version(_: Viewer) -> OctoVersion:
    """OctoPrint's version answer, so slicers accept this host (send ``X-Api-Key``)."""
    return OctoVersion(
        api=OCTOPRINT_API_VERSION,
        server=OCTOPRINT_SERVER_VERSION,
        text=f"OctoPrint {OCTOPRINT_SERVER_VERSION} (Pantheon farm)",
    )


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"true", "1", "yes", "on"}


@router.post(
    "/files/local",
    response_model=OctoUploadOut,
    status_code=201,
    tags=["octoprint"],
    responses=_UPLOAD_DOC,
    openapi_extra=_UPLOAD_BODY,
)
async def octoprint_upload(
    request: Request, response: Response, ctx: Ctx, who: Operator
) -> OctoUploadOut:
    """OctoPrint's upload: multipart ``file``; ``print=true`` queues one copy on the farm
    (any printer of the file's model, its plate type)."""
    doc, fields = await _receive_and_store(request, ctx, who)
    name = str(doc["_id"])
    queued = False
    if _truthy(fields.get("print")):
        body = JobCreate(file=name)
        await threaded(create_job_doc, ctx, body, who)
        queued = True
    base = str(request.base_url).rstrip("/")
    response.headers["Location"] = f"{base}/api/files/{quote(name)}"
    return OctoUploadOut(
        done=True,
        files={
            "local": {
                "name": name,
                "origin": "local",
                "refs": {
                    "resource": f"{base}/api/files/{quote(name)}",
                    "download": f"{base}/api/files/{quote(name)}/download",
                },
            }
        },
        effectivePrint=queued,
        effectiveSelect=_truthy(fields.get("select")),
    )


__all__ = ["router"]
