"""An engine process started ahead of its slice.

PrusaSlicer spends most of a small slice starting up (~75 of ~115 ms for a 20 mm cube here:
loading and linking its libraries, static set-up). A standby engine does that while the service
waits for work: it is started with its whole command line, and its ``--load`` file is a named
pipe (FIFO), so the engine blocks on opening its profile once it is ready. A slice then puts
the checked model where the command line expects it and writes the profile into the pipe;
the engine reads it to its end and slices as a cold engine would (same command line, same
profile, same limits; the wall-clock limit counts from that moment).

Every standby is used once. It runs with ``--pdeathsig KILL``, so it does not outlive the
service even when the service is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from slicer_api.adapters.limits import ProcessLimits
from slicer_api.adapters.process import EngineRun, collect, spawn, stop

log = logging.getLogger(__name__)

MODEL = "model.stl"
OUTPUT = "out.gcode"
PROFILE = "profile.ini"
_READY_POLL_S = 0.001


class StandbyEngine:
    """One engine process waiting, in its own folder, for a model and a profile."""

    def __init__(
        self, process: asyncio.subprocess.Process, folder: Path, centre: tuple[float, float]
    ) -> None:
        self.process = process
        self.folder = folder
        self.centre = centre

    @classmethod
    async def start(
        cls,
        command: Callable[[Path, Path, Path], Sequence[str]],
        folder: Path,
        centre: tuple[float, float],
        limits: ProcessLimits,
    ) -> StandbyEngine:
        """Create ``folder`` with the profile pipe and start ``command(model, gcode, profile)``
        there."""
        folder.mkdir(mode=0o700)
        profile = folder / PROFILE
        os.mkfifo(profile, 0o600)
        try:
            process = await spawn(
                command(folder / MODEL, folder / OUTPUT, profile),
                folder,
                limits,
                die_with_parent=True,
            )
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return cls(process, folder, centre)

    @property
    def alive(self) -> bool:
        """The process has not ended (a standby never ends before it gets its profile)."""
        return self.process.returncode is None

    async def slice(
        self,
        model: Path,
        gcode: Path,
        profile: str,
        timeout_s: float,
        ready_timeout_s: float,
        on_progress: Callable[[int], None] | None = None,
    ) -> EngineRun | None:
        """Slice ``model`` with ``profile`` into ``gcode``; None when the engine ended or was
        not ready within ``ready_timeout_s`` before it got the work (the caller then starts a
        cold engine). The folder is removed either way."""
        try:
            _link_or_copy(model, self.folder / MODEL)
            pipe = await self._open_profile(ready_timeout_s)
            if pipe is None:
                return None
            loop = asyncio.get_running_loop()
            started = loop.time()
            try:
                _write_all(pipe, profile.encode())
            except BrokenPipeError:
                log.warning("the standby engine closed its profile before reading it")
            finally:
                os.close(pipe)
            returncode, stderr = await collect(self.process, timeout_s, on_progress)
            if returncode == 0 and (self.folder / OUTPUT).is_file():
                os.replace(self.folder / OUTPUT, gcode)
            return EngineRun(returncode, stderr, loop.time() - started, standby=True)
        finally:
            await self.discard()

    async def _open_profile(self, ready_timeout_s: float) -> int | None:
        """The write end of the profile pipe once the engine has opened the read end.

        Opening a FIFO for writing without blocking fails with ENXIO while nobody has it open
        for reading: the engine is still starting. Polled (1 ms) so that an engine that dies
        meanwhile is noticed.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ready_timeout_s
        while self.alive:
            try:
                fd = os.open(self.folder / PROFILE, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as err:
                if err.errno != errno.ENXIO:
                    log.warning("cannot open a standby engine's profile pipe: %s", err)
                    return None
            else:
                os.set_blocking(fd, True)
                return fd
            if loop.time() > deadline:
                log.warning("a standby engine was not ready after %.0f s", ready_timeout_s)
                return None
            await asyncio.sleep(_READY_POLL_S)
        log.warning("a standby engine ended before its slice (exit %s)", self.process.returncode)
        return None

    async def discard(self) -> None:
        """Stop the process (if still there) and remove the folder."""
        if self.alive:
            await stop(self.process)
        else:
            with contextlib.suppress(Exception):
                await self.process.wait()
        await asyncio.to_thread(shutil.rmtree, self.folder, True)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _write_all(fd: int, data: bytes) -> None:
    """Our profiles are a few kB, well under a pipe's 64 kB buffer: this does not wait."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
