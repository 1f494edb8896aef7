"""PrusaSlicer's command line as a subprocess: install, STEP conversion, slicing.

A slice runs in a standby engine when one is ready (standby.py), else in an engine started
for it (a cold one); both get the same command line and one profile file merged from the
printer, quality and material profiles and the job's overrides.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import os
import shutil
import subprocess
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from slicer_api.adapters.limits import ProcessLimits
from slicer_api.adapters.process import EngineRun, collect, reason, spawn
from slicer_api.adapters.standby import StandbyEngine
from slicer_api.domain.jobs import SliceOptions
from slicer_api.domain.profiles import Catalog, parse_ini, render_ini
from slicer_api.errors import EngineFailed, EngineMissing

log = logging.getLogger(__name__)

DEBIAN_PACKAGE = "prusa-slicer"
STANDBY_READY_TIMEOUT_S = 30.0
"""How long a slice waits for a standby engine that is still starting (then: a cold one)."""


def find_engine(binary: str) -> str | None:
    """Full path of the engine binary, or None."""
    return shutil.which(binary)


def install_engine(timeout_s: float = 900.0) -> None:
    """``apt-get update`` + ``apt-get install --no-install-recommends prusa-slicer`` (root).

    Retries while another apt holds the lock. Raises EngineMissing with the reason otherwise.
    """
    if os.geteuid() != 0:
        raise EngineMissing(
            "prusa-slicer is not installed and this process is not root; run as root: "
            "apt-get install -y --no-install-recommends prusa-slicer"
        )
    apt = shutil.which("apt-get")
    if apt is None:
        raise EngineMissing("prusa-slicer is missing and apt-get is not available")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    commands = [
        [apt, "update", "-q"],
        [apt, "install", "-y", "-q", "--no-install-recommends", DEBIAN_PACKAGE],
    ]
    for command in commands:
        for attempt in range(30):
            result = subprocess.run(
                command, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
            )
            if result.returncode == 0:
                break
            output = result.stderr + result.stdout
            if "lock" in output.lower() and attempt < 29:
                log.info("apt is busy (another install holds the lock); retrying in 5 s")
                _sleep(5)
                continue
            raise EngineMissing(f"{' '.join(command)} failed: {output.strip()[-500:]}")


def _sleep(seconds: float) -> None:
    # A blocking wait: install_engine runs before the event loop (CLI, fixtures).
    import time

    time.sleep(seconds)


def ensure_engine(binary: str, *, install: bool) -> str:
    """Path of the engine, installing the Debian package first when allowed and missing."""
    found = find_engine(binary)
    if found is None and install:
        log.warning("%s not found: installing the Debian package %s", binary, DEBIAN_PACKAGE)
        install_engine()
        found = find_engine(binary)
    if found is None:
        raise EngineMissing(
            f"the slicing engine {binary!r} is not installed "
            "(apt-get install -y --no-install-recommends prusa-slicer, "
            "or `slicer-api install-engine`)"
        )
    return found


class Engine:
    """Runs PrusaSlicer with the repository's profiles; keeps ``standby`` engines ready."""

    def __init__(
        self, binary: str, catalog: Catalog, limits: ProcessLimits, *, standby: int = 0
    ) -> None:
        self.binary = binary
        self.catalog = catalog
        self.limits = limits
        self.standby = standby
        self._profiles: dict[tuple[str, str, str], list[dict[str, str]]] = {}
        self._standby_root: Path | None = None
        self._ready: list[StandbyEngine] = []
        self._starting = 0
        self._background: set[asyncio.Task[None]] = set()  # standbys starting or being stopped
        self._names = itertools.count()

    # ------------------------------------------------------------------ command line
    def profile(self, options: SliceOptions) -> str:
        """The one ini a slice loads: printer, quality, material, then the job's settings."""
        key = (options.printer_model, options.quality, options.material)
        if key not in self._profiles:
            files = (
                self.catalog.printers[options.printer_model].ini,
                self.catalog.qualities[options.quality].ini,
                self.catalog.materials[options.material].ini,
            )
            self._profiles[key] = [parse_ini(Path(f).read_text()) for f in files]
        return render_ini([*self._profiles[key], options.settings()])

    def slice_args(
        self, model: Path, gcode: Path, profile: Path, centre: tuple[float, float]
    ) -> list[str]:
        """The exact command line of a slice (also used by the benchmark)."""
        cx, cy = centre
        return [
            self.binary,
            "--loglevel=1",
            "--load",
            str(profile),
            "--center",
            f"{cx:g},{cy:g}",
            "--export-gcode",
            "-o",
            str(gcode),
            str(model),
        ]

    # ------------------------------------------------------------------ slicing
    async def slice(
        self,
        model: Path,
        gcode: Path,
        options: SliceOptions,
        timeout_s: float,
        on_progress: Callable[[int], None] | None = None,
    ) -> EngineRun:
        """Slice ``model`` into ``gcode``; EngineFailed with the engine's message on failure."""
        profile = self.profile(options)
        centre = self.catalog.printers[options.printer_model].centre
        run: EngineRun | None = None
        standby = self._take_standby(centre)
        try:
            if standby is not None:
                run = await standby.slice(
                    model, gcode, profile, timeout_s, STANDBY_READY_TIMEOUT_S, on_progress
                )
            if run is None:
                profile_file = gcode.parent / "profile.ini"
                profile_file.write_text(profile)
                run = await self.run(
                    self.slice_args(model, gcode, profile_file, centre),
                    gcode.parent,
                    timeout_s,
                    on_progress,
                )
                profile_file.unlink(missing_ok=True)
        finally:
            self._start_standbys(centre)  # after a failure or a timeout too
        if run.returncode != 0 or not gcode.is_file():
            raise EngineFailed(f"the engine could not slice the model: {reason(run)}")
        return run

    async def step_to_stl(self, step: Path, stl: Path, timeout_s: float) -> EngineRun:
        """Tessellate a STEP file with the engine's OpenCASCADE import."""
        args = [self.binary, "--loglevel=1", "--export-stl", "-o", str(stl), str(step)]
        run = await self.run(args, stl.parent, timeout_s)
        if run.returncode != 0 or not stl.is_file():
            raise EngineFailed(f"the STEP file cannot be read: {reason(run)}")
        return run

    async def run(
        self,
        args: Sequence[str],
        cwd: Path,
        timeout_s: float,
        on_progress: Callable[[int], None] | None = None,
    ) -> EngineRun:
        """Start one engine process with the limits and wait for it (group killed on timeout)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        process = await spawn(args, cwd, self.limits)
        returncode, stderr = await collect(process, timeout_s, on_progress)
        return EngineRun(returncode, stderr, loop.time() - started)

    # ------------------------------------------------------------------ standby engines
    async def open(self, standby_root: Path) -> None:
        """Start the standby engines in ``standby_root`` (emptied first: leftovers of an
        earlier process), centred for the most common printer bed."""
        if self.standby == 0:
            return
        await asyncio.to_thread(shutil.rmtree, standby_root, True)
        standby_root.mkdir(parents=True, mode=0o700)
        self._standby_root = standby_root
        centres = collections.Counter(p.centre for p in self.catalog.printers.values())
        if centres:
            self._start_standbys(centres.most_common(1)[0][0])

    async def close(self) -> None:
        """Stop every standby engine and remove their folders."""
        root, self._standby_root = self._standby_root, None
        # start-ups end in milliseconds (they only spawn) and then see the pool closed
        await asyncio.gather(*self._background, return_exceptions=True)
        ready, self._ready = self._ready, []
        for standby in ready:
            await standby.discard()
        if root is not None:
            await asyncio.to_thread(shutil.rmtree, root, True)

    @property
    def standby_count(self) -> int:
        """Standby engines started and not yet used (some may still be loading)."""
        return len(self._ready)

    def _take_standby(self, centre: tuple[float, float]) -> StandbyEngine | None:
        for standby in self._ready:
            if standby.centre == centre and standby.alive:
                self._ready.remove(standby)
                return standby
        if self._ready:  # none fits this bed: the oldest makes room for one that does
            self._in_background(self._ready.pop(0).discard())
        return None

    def _start_standbys(self, centre: tuple[float, float]) -> None:
        if self._standby_root is None:
            return
        for standby in [s for s in self._ready if not s.alive]:
            self._ready.remove(standby)
            self._in_background(standby.discard())
        for _ in range(self.standby - len(self._ready) - self._starting):
            self._starting += 1
            self._in_background(self._add_standby(centre))

    async def _add_standby(self, centre: tuple[float, float]) -> None:
        try:
            root = self._standby_root
            if root is None:
                return
            try:
                standby = await StandbyEngine.start(
                    lambda model, gcode, profile: self.slice_args(model, gcode, profile, centre),
                    root / f"{os.getpid()}-{next(self._names)}",
                    centre,
                    self.limits,
                )
            except (OSError, EngineMissing) as err:
                log.warning("cannot start a standby engine: %s", err)
                return
            if self._standby_root is None:  # closed meanwhile
                await standby.discard()
            else:
                self._ready.append(standby)
        finally:
            self._starting -= 1

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work, name="engine-standby")
        self._background.add(task)
        task.add_done_callback(self._background.discard)
