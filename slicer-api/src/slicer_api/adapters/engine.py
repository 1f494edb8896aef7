"""PrusaSlicer's command line as a subprocess: install, STEP conversion, slicing.

Each run gets its own process group (killed whole on timeout), resource limits (limits.py),
a minimal environment (no DISPLAY: the CLI is headless) and its job folder as HOME and cwd.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from slicer_api.adapters.limits import ProcessLimits
from slicer_api.domain.jobs import SliceOptions
from slicer_api.domain.profiles import Catalog
from slicer_api.errors import EngineFailed, EngineMissing

log = logging.getLogger(__name__)

DEBIAN_PACKAGE = "prusa-slicer"
_PROGRESS = re.compile(r"^(\d{1,3}) => ")
_MAX_STDERR = 64 * 1024


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


@dataclass(frozen=True)
class EngineRun:
    """Outcome of one engine process."""

    returncode: int
    stderr: str
    wall_s: float


class Engine:
    """Runs PrusaSlicer with the repository's profiles."""

    def __init__(self, binary: str, catalog: Catalog, limits: ProcessLimits) -> None:
        self.binary = binary
        self.catalog = catalog
        self.limits = limits

    def slice_args(self, model: Path, gcode: Path, options: SliceOptions) -> list[str]:
        """The exact command line of a slice (also used by the benchmark)."""
        printer = self.catalog.printers[options.printer_model]
        quality = self.catalog.qualities[options.quality]
        material = self.catalog.materials[options.material]
        cx, cy = printer.centre
        return [
            self.binary,
            "--loglevel=1",
            "--load",
            printer.ini,
            "--load",
            quality.ini,
            "--load",
            material.ini,
            *options.overrides(),
            "--center",
            f"{cx:g},{cy:g}",
            "--export-gcode",
            "-o",
            str(gcode),
            str(model),
        ]

    async def slice(
        self,
        model: Path,
        gcode: Path,
        options: SliceOptions,
        timeout_s: float,
        on_progress: Callable[[int], None] | None = None,
    ) -> EngineRun:
        """Slice ``model`` into ``gcode``; EngineFailed with the engine's message on failure."""
        run = await self.run(
            self.slice_args(model, gcode, options), gcode.parent, timeout_s, on_progress
        )
        if run.returncode != 0 or not gcode.is_file():
            raise EngineFailed(f"the engine could not slice the model: {_reason(run)}")
        return run

    async def step_to_stl(self, step: Path, stl: Path, timeout_s: float) -> EngineRun:
        """Tessellate a STEP file with the engine's OpenCASCADE import."""
        args = [self.binary, "--loglevel=1", "--export-stl", "-o", str(stl), str(step)]
        run = await self.run(args, stl.parent, timeout_s)
        if run.returncode != 0 or not stl.is_file():
            raise EngineFailed(f"the STEP file cannot be read: {_reason(run)}")
        return run

    async def run(
        self,
        args: Sequence[str],
        cwd: Path,
        timeout_s: float,
        on_progress: Callable[[int], None] | None = None,
    ) -> EngineRun:
        """Run one engine process with the limits; kills its whole group on timeout."""
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(cwd),
            "LC_ALL": "C.UTF-8",
            "TMPDIR": str(cwd),
            # glibc reserves 64 MB of address space per malloc arena and thread; fewer arenas
            # keep the RLIMIT_AS cap about real memory, not reservations.
            "MALLOC_ARENA_MAX": "2",
        }
        loop = asyncio.get_running_loop()
        started = loop.time()
        prefix = self.limits.prlimit_prefix()
        try:
            process = await asyncio.create_subprocess_exec(
                *(prefix or []),
                *args,
                cwd=cwd,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                preexec_fn=None if prefix else self.limits.preexec(),
                start_new_session=True,
            )
        except OSError as err:
            raise EngineMissing(f"cannot start the engine {args[0]!r}: {err}") from err
        stderr_parts: list[bytes] = []

        async def read_stdout() -> None:
            assert process.stdout is not None
            async for raw in process.stdout:
                match = _PROGRESS.match(raw.decode(errors="replace"))
                if match and on_progress is not None:
                    on_progress(int(match.group(1)))

        async def read_stderr() -> None:
            assert process.stderr is not None
            size = 0
            while chunk := await process.stderr.read(65536):
                if size < _MAX_STDERR:
                    stderr_parts.append(chunk)
                size += len(chunk)

        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.gather(read_stdout(), read_stderr())
                returncode = await process.wait()
        except TimeoutError as err:
            _kill_group(process.pid)
            await process.wait()
            raise EngineFailed(
                f"the engine took longer than {timeout_s:g} s and was stopped"
            ) from err
        except asyncio.CancelledError:
            _kill_group(process.pid)
            with contextlib.suppress(Exception):
                await process.wait()
            raise
        stderr = b"".join(stderr_parts).decode(errors="replace")
        if returncode < 0:
            stderr += f"\nkilled by signal {signal.Signals(-returncode).name} (resource limit?)"
        return EngineRun(returncode, stderr, loop.time() - started)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _reason(run: EngineRun) -> str:
    """The engine's last meaningful stderr lines, without colour codes and trace noise."""
    lines = [
        _ANSI.sub("", line).strip(" *")
        for line in run.stderr.splitlines()
        if line.strip() and "[trace]" not in line
    ]
    text = "; ".join(lines[-3:]) or f"exit code {run.returncode}"
    return text[:500]
