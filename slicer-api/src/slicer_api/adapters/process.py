"""Engine processes: start one with the limits, collect its output, kill its group.

Each process gets its own process group (killed whole on timeout), resource limits (limits.py),
a minimal environment (no DISPLAY: the CLI is headless) and its folder as HOME, TMPDIR and cwd.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from slicer_api.adapters.limits import ProcessLimits
from slicer_api.errors import EngineFailed, EngineMissing

_PROGRESS = re.compile(r"^(\d{1,3}) => ")
_MAX_STDERR = 64 * 1024


@dataclass(frozen=True)
class EngineRun:
    """Outcome of one engine process; ``wall_s`` counts from the moment it got its work."""

    returncode: int
    stderr: str
    wall_s: float
    standby: bool = False
    """The process was started ahead of the slice (adapters/standby.py)."""


def _environment(cwd: Path) -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(cwd),
        "LC_ALL": "C.UTF-8",
        "TMPDIR": str(cwd),
        # glibc reserves 64 MB of address space per malloc arena and thread; fewer arenas
        # keep the RLIMIT_AS cap about real memory, not reservations.
        "MALLOC_ARENA_MAX": "2",
    }


def die_with_parent_prefix() -> list[str]:
    """``setpriv --pdeathsig KILL`` (util-linux): the process is killed when the service dies,
    even by SIGKILL; empty where there is no setpriv."""
    binary = shutil.which("setpriv")
    return [binary, "--pdeathsig", "KILL", "--"] if binary else []


async def spawn(
    args: Sequence[str], cwd: Path, limits: ProcessLimits, *, die_with_parent: bool = False
) -> asyncio.subprocess.Process:
    """Start ``args`` with the limits, in a new session, stdout and stderr piped."""
    prefix = limits.prlimit_prefix()
    command = [*(die_with_parent_prefix() if die_with_parent else []), *(prefix or []), *args]
    try:
        return await asyncio.create_subprocess_exec(
            *command,
            cwd=cwd,
            env=_environment(cwd),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=None if prefix else limits.preexec(),
            start_new_session=True,
        )
    except OSError as err:
        raise EngineMissing(f"cannot start the engine {args[0]!r}: {err}") from err


async def collect(
    process: asyncio.subprocess.Process,
    timeout_s: float,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[int, str]:
    """Read the process to its end: (return code, stderr). Its whole group is killed when it
    runs past ``timeout_s`` (EngineFailed) or when the caller is cancelled."""
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
        await stop(process)
        raise EngineFailed(f"the engine took longer than {timeout_s:g} s and was stopped") from err
    except asyncio.CancelledError:
        await stop(process)
        raise
    stderr = b"".join(stderr_parts).decode(errors="replace")
    if returncode < 0:
        stderr += f"\nkilled by signal {signal.Signals(-returncode).name} (resource limit?)"
    return returncode, stderr


async def stop(process: asyncio.subprocess.Process) -> None:
    """Kill the process's whole group and reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        await process.wait()


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def reason(run: EngineRun) -> str:
    """The engine's last meaningful stderr lines, without colour codes and trace noise."""
    lines = [
        _ANSI.sub("", line).strip(" *")
        for line in run.stderr.splitlines()
        if line.strip() and "[trace]" not in line
    ]
    text = "; ".join(lines[-3:]) or f"exit code {run.returncode}"
    return text[:500]
