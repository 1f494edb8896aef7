"""HTTP routes: quotes (POST /price), slicing jobs (POST /slice ...), profiles."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response

from slicer_api.domain.jobs import JobState, PantheonRequest
from slicer_api.errors import BadRequest, NotReady
from slicer_api.service import FORMATS, PreparedModel, SlicerService, detect_format

router = APIRouter()
_CHUNK = 1024 * 1024

ModelFile = Annotated[UploadFile, File(description="STL (binary/ASCII), OBJ, 3MF or STEP")]
PrinterModel = Annotated[str, Form(description="P1S, X1C or A1")]
Quality = Annotated[str | None, Form(description="e.g. 0.20_standard (GET /profiles)")]
Material = Annotated[str, Form(description="PLA, PETG or ABS")]
Infill = Annotated[
    float | None, Form(ge=0, le=100, description="percent; profile default if unset")
]
Supports = Annotated[bool, Form(description="generate support material")]
BedTypeField = Annotated[str, Form(description="plate type (pantheon_contracts BedType)")]


def _service(request: Request) -> SlicerService:
    service: SlicerService = request.app.state.service
    return service


async def _receive_model(service: SlicerService, upload: UploadFile) -> tuple[Path, str]:
    """Store the upload in a fresh job folder; the folder is removed again on any failure."""
    filename = upload.filename or ""
    detect_format(filename)  # 415 before anything is written
    workdir = service.new_workdir()
    suffix = Path(filename).suffix.lower()
    target = workdir / f"input{suffix if suffix in FORMATS else ''}"
    try:
        with target.open("wb") as out:
            while chunk := await upload.read(_CHUNK):
                out.write(chunk)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    finally:
        await upload.close()
    return target, filename


async def _prepare(
    service: SlicerService,
    upload: UploadFile,
    printer_model: str,
    quality: str | None,
    material: str,
    infill: float | None,
    supports: bool,
    bed_type: str,
) -> tuple[PreparedModel, Any]:
    options = service.options(
        printer_model=printer_model,
        quality=quality,
        material=material,
        infill_percent=infill,
        supports=supports,
        bed_type=bed_type,
    )
    path, filename = await _receive_model(service, upload)
    model = await service.prepare(path, filename, options)
    return model, options


@router.get("/profiles", summary="Printer models, qualities and materials")
async def profiles(request: Request) -> dict[str, Any]:
    """What `printer_model`, `quality` and `material` accept, with build volumes and densities."""
    catalog = _service(request).catalog
    return {
        "printers": {
            name: {"build_volume_mm": [p.bed_x, p.bed_y, p.max_z], "nozzle_mm": p.nozzle_diameter}
            for name, p in catalog.printers.items()
        },
        "qualities": {
            name: {"layer_height_mm": q.layer_height, "default_infill": q.default_infill}
            for name, q in catalog.qualities.items()
        },
        "materials": {
            name: {"type": m.filament_type, "density_g_cm3": m.density_g_cm3}
            for name, m in catalog.materials.items()
        },
        "default_quality": catalog.default_quality,
    }


@router.post("/price", summary="Price quote (fast from the mesh, or exact from a slice)")
async def price(
    request: Request,
    file: ModelFile,
    printer_model: PrinterModel = "P1S",
    quality: Quality = None,
    material: Material = "PLA",
    infill: Infill = None,
    supports: Supports = False,
    quantity: Annotated[int, Form(ge=1, le=10_000)] = 1,
    mode: Annotated[Literal["fast", "exact"], Form(description="fast: mesh only")] = "fast",
) -> dict[str, Any]:
    """Check the model, then price it. `fast` estimates grams and time from volume, surface
    and size in milliseconds; `exact` slices it and uses the engine's time and grams. The
    response lists the formula, the rates and every line that adds up to the total."""
    service = _service(request)
    model, options = await _prepare(
        service, file, printer_model, quality, material, infill, supports, "textured_pei"
    )
    try:
        if mode == "fast":
            quote = service.fast_quote(model, options, quantity)
        else:
            quote = await service.exact_quote(model, options, quantity)
    finally:
        shutil.rmtree(model.workdir, ignore_errors=True)
    return {
        "mode": mode,
        "printer_model": options.printer_model,
        "quality": options.quality,
        "infill": options.infill,
        "mesh": model.stats.to_json(),
        "quote": quote.to_json(),
    }


@router.post("/slice", status_code=202, summary="Queue a slicing job")
async def create_slice(
    request: Request,
    file: ModelFile,
    printer_model: PrinterModel = "P1S",
    quality: Quality = None,
    material: Material = "PLA",
    infill: Infill = None,
    supports: Supports = False,
    bed_type: BedTypeField = "textured_pei",
    upload_to_pantheon: Annotated[bool, Form(description="upload the result")] = False,
    queue_print: Annotated[bool, Form(description="also queue a print job")] = False,
    copies: Annotated[int, Form(ge=1, le=1000)] = 1,
    priority: Annotated[int, Form()] = 0,
    printer_id: Annotated[int | None, Form(description="pin the print to one printer")] = None,
) -> JSONResponse:
    """The model is checked now (4xx with the reason if it cannot be printed); slicing runs
    in the background. Poll `GET /slice/{id}`, download `GET /slice/{id}/result`."""
    service = _service(request)
    if queue_print and not upload_to_pantheon:
        raise BadRequest("queue_print needs upload_to_pantheon")
    if upload_to_pantheon and not service.pantheon.configured:
        raise BadRequest("upload_to_pantheon: PANTHEON_API_URL is not configured")
    model, options = await _prepare(
        service, file, printer_model, quality, material, infill, supports, bed_type
    )
    pantheon = (
        PantheonRequest(queue_print, copies, priority, printer_id) if upload_to_pantheon else None
    )
    job = service.submit(model, options, pantheon)
    return JSONResponse(job.to_json(), status_code=202, headers={"Location": f"/slice/{job.id}"})


@router.get("/slice/{job_id}", summary="Status of a slicing job")
async def get_slice(
    request: Request,
    job_id: str,
    wait: Annotated[float, Query(ge=0, le=60, description="long-poll: seconds to wait")] = 0,
) -> dict[str, Any]:
    """State, progress (0-100), the engine's estimate once done, or the error. With `wait`,
    answers as soon as the job is done or failed, or after that many seconds."""
    job = _service(request).get(job_id)
    if wait > 0:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await job.done.wait()
    return job.to_json()


@router.get("/slice/{job_id}/result", summary="Download the result", response_model=None)
async def get_result(
    request: Request,
    job_id: str,
    format: Annotated[Literal["gcode.3mf", "gcode"], Query()] = "gcode.3mf",
) -> Response:
    """The Bambu `.gcode.3mf` (default) or the plain G-code (`?format=gcode`)."""
    job = _service(request).get(job_id)
    if job.result is None:
        raise NotReady(
            f"job {job_id} has no result ({job.state}{': ' + job.error if job.error else ''})"
        )
    if job.state not in (JobState.DONE, JobState.FAILED):
        raise NotReady(f"job {job_id} is still {job.state}")
    if format == "gcode":
        return FileResponse(
            job.result.gcode_path, media_type="text/x.gcode", filename=job.result.gcode_path.name
        )
    return FileResponse(
        job.result.package_path,
        media_type="application/vnd.bambulab.gcode+3mf",
        filename=job.result.package_path.name,
        headers={"X-Gcode-MD5": job.result.md5},
    )


@router.delete("/slice/{job_id}", status_code=204, summary="Forget a finished job")
async def delete_slice(request: Request, job_id: str) -> Response:
    """Remove the job's files now instead of at expiry."""
    _service(request).delete(job_id)
    return Response(status_code=204)
