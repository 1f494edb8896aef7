"""The slicing service: checks models, runs the job queue, prices quotes, hands results on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from pantheon_common.gcode_store import GcodeStore
from pantheon_contracts.beds import BedType
from slicer_api.adapters.engine import Engine
from slicer_api.adapters.limits import ProcessLimits
from slicer_api.adapters.mesh_probe import MeshProber, ProbeRequest
from slicer_api.adapters.mesh_readers import ZipLimits
from slicer_api.adapters.package import PackagedSlice, write_package
from slicer_api.adapters.pantheon import PantheonClient
from slicer_api.domain.gcode import FooterMissing, SliceFigures
from slicer_api.domain.jobs import (
    FINAL_STATES,
    PROGRESS,
    JobState,
    PantheonRequest,
    SliceOptions,
    slicing_progress,
)
from slicer_api.domain.mesh import MeshStats
from slicer_api.domain.pricing import Estimate, Quote, Rates, fast_estimate, price
from slicer_api.domain.profiles import Catalog, fit_problem
from slicer_api.errors import (
    BadRequest,
    Busy,
    DoesNotFit,
    EngineFailed,
    InvalidModel,
    NotFound,
    SlicerError,
    UnsupportedFormat,
    without_paths,
)

log = logging.getLogger(__name__)

FORMATS = {".stl": "stl", ".obj": "obj", ".3mf": "3mf", ".step": "step", ".stp": "step"}


def detect_format(filename: str) -> str:
    """stl/obj/3mf/step from the file name; UnsupportedFormat otherwise."""
    suffix = Path(filename).suffix.lower()
    if suffix not in FORMATS:
        raise UnsupportedFormat(
            f"{filename!r}: unsupported file type; send STL, OBJ, 3MF or STEP (.step/.stp)"
        )
    return FORMATS[suffix]


def safe_name(filename: str) -> str:
    """A store-friendly base name from the client's file name (no path, no odd characters)."""
    stem = Path(filename.replace("\\", "/")).name
    for suffix in (".stl", ".obj", ".3mf", ".step", ".stp"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")[:80]
    return cleaned or "part"


@dataclass
class PreparedModel:
    """A checked model: the normalised STL in its job folder and its measurements."""

    workdir: Path
    stl: Path
    stats: MeshStats
    fmt: str
    name: str
    check_s: float = 0.0


@dataclass
class Job:
    """One slicing job (kept in memory; the files live in its job folder)."""

    id: str
    name: str
    options: SliceOptions
    model: PreparedModel
    pantheon: PantheonRequest | None
    internal: bool = False
    state: JobState = JobState.QUEUED
    progress: int = PROGRESS[JobState.QUEUED]
    error: str | None = None
    error_code: str | None = None
    created: float = field(default_factory=time.time)
    finished: float | None = None
    result: PackagedSlice | None = None
    pantheon_result: dict[str, Any] = field(default_factory=dict)
    store_name: str | None = None
    """Name of the package in the farm's G-code store, once published there."""
    timings: dict[str, float] = field(default_factory=dict)
    engine_start: str | None = None
    """How the engine that sliced it started: "standby" (ahead of the job) or "cold"."""
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def set_state(self, state: JobState) -> None:
        """Move to ``state`` with its coarse progress."""
        self.state = state
        self.progress = max(self.progress, PROGRESS[state])
        if state in FINAL_STATES:
            self.finished = time.time()
            self.done.set()

    def to_json(self) -> dict[str, Any]:
        """Status as GET /slice/{id} shows it."""
        figures = self.result.figures if self.result else None
        return {
            "job_id": self.id,
            "name": self.name,
            "state": str(self.state),
            "progress": self.progress,
            "error": self.error,
            "error_code": self.error_code,
            "options": {
                "printer_model": self.options.printer_model,
                "quality": self.options.quality,
                "material": self.options.material,
                "infill": self.options.infill,
                "supports": self.options.supports,
                "bed_type": str(self.options.bed_type),
            },
            "mesh": self.model.stats.to_json(),
            "result": None
            if figures is None or self.result is None
            else {
                "print_time_s": figures.print_time_s,
                "grams": figures.grams,
                "filament_mm": figures.filament_mm,
                "layers": figures.layers,
                "md5": self.result.md5,
                "files": {
                    "gcode.3mf": f"/slice/{self.id}/result",
                    "gcode": f"/slice/{self.id}/result?format=gcode",
                },
                "gcode_store_name": self.store_name,
            },
            "pantheon": self.pantheon_result or None,
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
            "engine_start": self.engine_start,
        }


class SlicerService:
    """Owns the job folders, the queue and its workers."""

    def __init__(
        self,
        *,
        catalog: Catalog,
        engine: Engine,
        rates: Rates,
        pantheon: PantheonClient,
        registry: CollectorRegistry,
        work_dir: Path | None,
        workers: int,
        max_queued: int,
        slice_timeout_s: float,
        parse_timeout_s: float,
        parse_limits: ProcessLimits,
        zip_limits: ZipLimits,
        max_triangles: int,
        job_ttl_s: float,
        gcode_store: GcodeStore | None = None,
    ) -> None:
        self.catalog = catalog
        # the farm's G-code store (shared with pantheon-api and printer-service), if configured:
        # every finished package is published there under its job's name
        self.gcode_store = gcode_store
        self.engine = engine
        self.rates = rates
        self.pantheon = pantheon
        self._own_root = work_dir is None
        self.work_root = (
            Path(tempfile.mkdtemp(prefix="slicer-api-")) if work_dir is None else work_dir
        )
        self.work_root.mkdir(parents=True, exist_ok=True)
        self._workers = workers
        self._max_queued = max_queued
        self._slice_timeout = slice_timeout_s
        self._parse_timeout = parse_timeout_s
        self._parse_limits = parse_limits
        self._zip_limits = zip_limits
        self._max_triangles = max_triangles
        self._job_ttl = job_ttl_s
        self.jobs: dict[str, Job] = {}
        self.prober = MeshProber()
        self._queue: asyncio.Queue[Job] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._m_slices = Counter(
            "slicer_slices", "Slices finished, by outcome.", ["outcome"], registry=registry
        )
        self._m_slice_seconds = Histogram(
            "slicer_engine_seconds",
            "Wall time of the engine per slice.",
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
            registry=registry,
        )
        self._m_engine_starts = Counter(
            "slicer_engine_starts",
            "Engine processes that sliced, by start: standby (started ahead) or cold.",
            ["start"],
            registry=registry,
        )
        self._m_queue = Gauge("slicer_queue_depth", "Jobs waiting.", registry=registry)
        self._m_quotes = Counter(
            "slicer_quotes", "Quotes answered, by mode.", ["mode"], registry=registry
        )
        self._m_rejected = Counter(
            "slicer_rejected_models", "Models refused, by reason code.", ["code"], registry=registry
        )

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Start the model parser, the workers and the expiry loop."""
        await asyncio.to_thread(self.prober.start)
        await self.engine.open(self.work_root / "standby")
        for index in range(self._workers):
            self._tasks.append(asyncio.create_task(self._worker(), name=f"slicer-worker-{index}"))
        self._tasks.append(asyncio.create_task(self._expire_loop(), name="slicer-expiry"))

    async def stop(self) -> None:
        """Stop the workers; remove every job folder this process created."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for job in list(self.jobs.values()):
            self._remove_files(job)
        await asyncio.to_thread(self.prober.close)
        await self.engine.close()
        if self._own_root:
            shutil.rmtree(self.work_root, ignore_errors=True)

    # ------------------------------------------------------------------ checks
    def new_workdir(self) -> Path:
        """A fresh private job folder."""
        return Path(tempfile.mkdtemp(prefix="job-", dir=self.work_root))

    def options(
        self,
        *,
        printer_model: str,
        quality: str | None,
        material: str,
        infill_percent: float | None,
        supports: bool,
        bed_type: str,
    ) -> SliceOptions:
        """Validate the names against the catalog; BadRequest names the choices."""
        model = printer_model.upper()
        if model not in self.catalog.printers:
            raise BadRequest(
                f"unknown printer_model {printer_model!r}; one of {sorted(self.catalog.printers)}"
            )
        quality = quality or self.catalog.default_quality
        if quality not in self.catalog.qualities:
            raise BadRequest(
                f"unknown quality {quality!r}; one of {sorted(self.catalog.qualities)}"
            )
        mat = material.upper()
        if mat not in self.catalog.materials:
            raise BadRequest(
                f"unknown material {material!r}; one of {sorted(self.catalog.materials)}"
            )
        if infill_percent is not None and not 0 <= infill_percent <= 100:
            raise BadRequest("infill is a percentage from 0 to 100")
        try:
            bed = BedType(bed_type)
        except ValueError as err:
            raise BadRequest(
                f"unknown bed_type {bed_type!r}; one of {[b.value for b in BedType]}"
            ) from err
        return SliceOptions(
            printer_model=model,
            quality=quality,
            material=mat,
            infill=None if infill_percent is None else infill_percent / 100,
            supports=supports,
            bed_type=bed,
        )

    async def prepare(self, upload: Path, filename: str, options: SliceOptions) -> PreparedModel:
        """Read, measure and size-check the uploaded model in its job folder.

        On any failure the job folder is removed before the error propagates.
        """
        workdir = upload.parent
        try:
            fmt = detect_format(filename)
            source, source_fmt = upload, fmt
            started = time.perf_counter()
            if fmt == "step":
                source = workdir / "step.stl"
                source_fmt = "stl"
                try:
                    await self.engine.step_to_stl(upload, source, self._parse_timeout)
                except EngineFailed as err:
                    raise InvalidModel(err.reason) from err
            stl = workdir / "model.stl"
            stats = await self.prober.probe(
                ProbeRequest(
                    source=source,
                    fmt=source_fmt,
                    normalised_stl=stl,
                    zip_limits=self._zip_limits,
                    limits=self._parse_limits,
                    max_triangles=self._max_triangles,
                ),
                self._parse_timeout,
            )
            printer = self.catalog.printers[options.printer_model]
            problem = fit_problem(stats.size_mm, printer)
            if problem:
                raise DoesNotFit(
                    problem,
                    part_size_mm=[round(s, 2) for s in stats.size_mm],
                    build_volume_mm=[printer.bed_x, printer.bed_y, printer.max_z],
                )
            for name in ("input" + upload.suffix, "step.stl"):
                (workdir / name).unlink(missing_ok=True)
            return PreparedModel(
                workdir, stl, stats, fmt, safe_name(filename), time.perf_counter() - started
            )
        except SlicerError as err:
            self._m_rejected.labels(err.code).inc()
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise

    # ------------------------------------------------------------------ quotes
    def fast_quote(self, model: PreparedModel, options: SliceOptions, quantity: int) -> Quote:
        """Price from the mesh alone (milliseconds)."""
        quality = self.catalog.qualities[options.quality]
        material = self.catalog.materials[options.material]
        infill = quality.default_infill if options.infill is None else options.infill
        estimate = fast_estimate(model.stats, quality, material, infill)
        self._m_quotes.labels("fast").inc()
        return self._price(estimate, options.material, quantity)

    async def exact_quote(
        self, model: PreparedModel, options: SliceOptions, quantity: int
    ) -> Quote:
        """Price from a real slice through the same queue as every other slice."""
        job = self.submit(model, options, None, internal=True)
        try:
            await job.done.wait()
            if job.state is JobState.FAILED or job.result is None:
                raise EngineFailed(job.error or "the slice failed")
            figures = job.result.figures
            estimate = Estimate(
                "slicer", figures.grams, figures.print_time_s, figures.filament_mm, figures.layers
            )
        finally:
            self._forget(job)
        self._m_quotes.labels("exact").inc()
        return self._price(estimate, options.material, quantity)

    def _price(self, estimate: Estimate, material: str, quantity: int) -> Quote:
        try:
            return price(estimate, material, quantity, self.rates)
        except KeyError as err:
            raise BadRequest(f"no price configured for material {material}") from err

    # ------------------------------------------------------------------ jobs
    def submit(
        self,
        model: PreparedModel,
        options: SliceOptions,
        pantheon: PantheonRequest | None,
        *,
        internal: bool = False,
    ) -> Job:
        """Queue a slice; Busy when the queue is full (the model's folder is then removed)."""
        if self._queue.qsize() >= self._max_queued:
            shutil.rmtree(model.workdir, ignore_errors=True)
            raise Busy(f"{self._queue.qsize()} jobs are waiting; try again later")
        job = Job(uuid.uuid4().hex, model.name, options, model, pantheon, internal=internal)
        job.timings["check"] = model.check_s
        self.jobs[job.id] = job
        self._queue.put_nowait(job)
        self._m_queue.set(self._queue.qsize())
        return job

    def get(self, job_id: str) -> Job:
        """A public job by id; NotFound otherwise."""
        job = self.jobs.get(job_id)
        if job is None or job.internal:
            raise NotFound(f"no slicing job {job_id!r} (unknown or expired)")
        return job

    def delete(self, job_id: str) -> None:
        """Forget a finished job and remove its files."""
        job = self.get(job_id)
        if job.state not in FINAL_STATES:
            raise BadRequest("the job is still running")
        self._forget(job)

    def _forget(self, job: Job) -> None:
        self.jobs.pop(job.id, None)
        self._remove_files(job)

    @staticmethod
    def _remove_files(job: Job) -> None:
        shutil.rmtree(job.model.workdir, ignore_errors=True)

    async def _worker(self) -> None:
        while True:
            job = await self._queue.get()
            self._m_queue.set(self._queue.qsize())
            try:
                await self._run(job)
            except asyncio.CancelledError:
                job.error = "the service stopped"
                job.set_state(JobState.FAILED)
                raise
            except SlicerError as err:
                self._fail(job, err.reason, err.code)
            except Exception as err:  # one bad job never stops the worker
                log.exception("slicing job %s failed", job.id)
                self._fail(job, f"internal error: {type(err).__name__}", "internal")
            finally:
                self._queue.task_done()

    def _fail(self, job: Job, reason: str, code: str) -> None:
        public = without_paths(reason)
        if public != reason:  # the client sees relative names; the log keeps the paths
            log.info("slicing job %s failed (%s): %s", job.id, code, reason)
        job.error = public
        job.error_code = code
        self._m_slices.labels("failed").inc()
        if job.result is None:
            # Nothing worth keeping: the folder goes now, the status stays until it expires.
            self._remove_files(job)
        job.set_state(JobState.FAILED)

    def _publish(self, job: Job) -> str:
        """Put the finished package into the farm's G-code store; returns its name there."""
        assert self.gcode_store is not None
        assert job.result is not None
        name = f"{job.id[:12]}-{job.result.package_path.name}"
        with job.result.package_path.open("rb") as data:
            self.gcode_store.put(name, data)
        return name

    async def _run(self, job: Job) -> None:
        job.set_state(JobState.SLICING)
        engine_gcode = job.model.workdir / "engine.gcode"

        def progress(percent: int) -> None:
            job.progress = max(job.progress, slicing_progress(percent))

        run = await self.engine.slice(
            job.model.stl, engine_gcode, job.options, self._slice_timeout, progress
        )
        job.timings["engine"] = run.wall_s
        job.engine_start = "standby" if run.standby else "cold"
        self._m_engine_starts.labels(job.engine_start).inc()
        self._m_slice_seconds.observe(run.wall_s)
        job.set_state(JobState.PACKAGING)
        started = time.perf_counter()
        printer = self.catalog.printers[job.options.printer_model]
        material = self.catalog.materials[job.options.material]
        try:
            job.result = await asyncio.to_thread(
                write_package,
                engine_gcode,
                job.model.workdir,
                job.name,
                printer,
                material,
                job.options.bed_type,
                job.options.supports,
            )
        except FooterMissing as err:
            raise EngineFailed(str(err)) from err
        engine_gcode.unlink(missing_ok=True)
        job.model.stl.unlink(missing_ok=True)
        job.timings["packaging"] = time.perf_counter() - started
        if self.gcode_store is not None:
            job.store_name = await asyncio.to_thread(self._publish, job)
        if job.pantheon is not None:
            job.set_state(JobState.UPLOADING)
            await self._hand_over(job, job.pantheon, job.result.figures)
        self._m_slices.labels("done").inc()
        job.set_state(JobState.DONE)

    async def _hand_over(self, job: Job, request: PantheonRequest, _: SliceFigures) -> None:
        assert job.result is not None
        if not self.pantheon.configured:
            raise BadRequest("PANTHEON_API_URL is not configured")
        filename = job.result.package_path.name
        uploaded = await self.pantheon.upload_file(
            job.result.package_path,
            filename,
            job.result.md5,
            job.options.printer_model,
            str(job.options.bed_type),
        )
        job.pantheon_result["file"] = uploaded["name"]
        if request.queue_print:
            created = await self.pantheon.create_job(
                {
                    "file": uploaded["name"],
                    "copies": request.copies,
                    "priority": request.priority,
                    "target": {
                        "model": job.options.printer_model,
                        "printer_id": request.printer_id,
                    },
                    "bed_type": str(job.options.bed_type),
                }
            )
            job.pantheon_result["job_id"] = created["id"]

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(min(60.0, self._job_ttl / 4))
            self.expire()

    def expire(self, now: float | None = None) -> int:
        """Forget finished jobs older than the TTL; returns how many."""
        now = time.time() if now is None else now
        old = [
            job
            for job in self.jobs.values()
            if job.finished is not None and now - job.finished > self._job_ttl and not job.internal
        ]
        for job in old:
            self._forget(job)
        return len(old)

    def queue_depth(self) -> int:
        """Jobs waiting for a worker."""
        return self._queue.qsize()
