"""Reads and measures an uploaded model in a separate, resource-limited process.

A small helper process (the "zygote", ``python -m slicer_api.adapters.mesh_probe``) imports
numpy and the readers once and runs them on a built-in cube; for each model it forks a child
that sets its own limits (limits.py) and then reads the untrusted bytes. The child for the next
model is forked as soon as the last one is answered and waits for its request, so a probe costs
neither an interpreter start nor a fork, while a hostile file only ever hurts a child with its
own address-space and CPU limits and a wall-clock timeout. The child also writes the normalised
binary STL the engine slices. (multiprocessing's forkserver was tried: on Python 3.11 it
re-imports the main module in every child, 0.3-0.5 s per probe.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from slicer_api.adapters.limits import ProcessLimits
from slicer_api.adapters.mesh_readers import ZipLimits
from slicer_api.domain.mesh import MeshStats
from slicer_api.errors import InvalidModel, UnsafeArchive


@dataclass(frozen=True)
class ProbeRequest:
    """One model to read."""

    source: Path
    fmt: str
    normalised_stl: Path
    zip_limits: ZipLimits
    limits: ProcessLimits
    max_triangles: int

    def to_json(self, timeout_s: float) -> str:
        """One request line for the zygote."""
        return json.dumps(
            {
                "source": str(self.source),
                "fmt": self.fmt,
                "normalised_stl": str(self.normalised_stl),
                "zip": [self.zip_limits.max_total_bytes, self.zip_limits.max_ratio],
                "limits": [self.limits.memory_mb, self.limits.cpu_s],
                "max_triangles": self.max_triangles,
                "timeout_s": timeout_s,
            }
        )


class MeshProber:
    """Parent side: owns the zygote, sends one request at a time, restarts it if it dies."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def _zygote(self) -> subprocess.Popen[bytes]:
        if self._process is None or self._process.poll() is not None:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "slicer_api.adapters.mesh_probe"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                start_new_session=True,
            )
        return self._process

    def start(self) -> None:
        """Start the zygote now, so the first model does not wait for its imports."""
        with self._lock:
            self._zygote()

    def probe_blocking(self, request: ProbeRequest, timeout_s: float) -> MeshStats:
        """Read ``request.source`` in a limited child; InvalidModel/UnsafeArchive on failure."""
        with self._lock:
            zygote = self._zygote()
            assert zygote.stdin is not None
            assert zygote.stdout is not None
            try:
                zygote.stdin.write((request.to_json(timeout_s) + "\n").encode())
                zygote.stdin.flush()
                line = _read_line(zygote.stdout, timeout_s + 10)
            except (OSError, TimeoutError) as err:
                self._kill()
                raise InvalidModel(f"the model parser failed ({type(err).__name__})") from err
            if not line:
                self._kill()
                raise InvalidModel("the model parser stopped unexpectedly")
        kind, payload = json.loads(line)
        if kind == "ok":
            return MeshStats.from_json(payload)
        if kind == "unsafe":
            raise UnsafeArchive(payload)
        raise InvalidModel(payload)

    async def probe(self, request: ProbeRequest, timeout_s: float) -> MeshStats:
        """:meth:`probe_blocking` in a worker thread."""
        return await asyncio.to_thread(self.probe_blocking, request, timeout_s)

    def _kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(5)
            self._process = None

    def close(self) -> None:
        """Stop the zygote."""
        with self._lock:
            if self._process is not None and self._process.stdin is not None:
                self._process.stdin.close()
                try:
                    self._process.wait(5)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait(5)
                self._process = None


def _read_line(stream: IO[bytes], timeout_s: float) -> bytes:
    ready, _, _ = select.select([stream], [], [], timeout_s)
    if not ready:
        raise TimeoutError
    return stream.readline()


# ---------------------------------------------------------------- zygote side


def _run_child(request: dict[str, Any]) -> tuple[str, Any]:
    from slicer_api.adapters.mesh_readers import (
        ArchiveRefused,
        ReadError,
        read_mesh,
        write_binary_stl,
    )
    from slicer_api.domain.mesh import MeshProblem, measure

    try:
        vertices, faces = read_mesh(
            Path(request["source"]), request["fmt"], ZipLimits(*request["zip"])
        )
        if len(faces) > request["max_triangles"]:
            return "invalid", f"{len(faces)} triangles (limit {request['max_triangles']})"
        stats = measure(vertices, faces)
        write_binary_stl(Path(request["normalised_stl"]), vertices, faces)
        return "ok", stats.to_json()
    except ArchiveRefused as err:
        return "unsafe", str(err)
    except (ReadError, MeshProblem) as err:
        return "invalid", str(err)
    except MemoryError:
        return "invalid", "the model needs more memory than the parser may use"


@dataclass
class _Spare:
    """A child forked ahead of time, waiting for its one request (the fork is off the clock)."""

    pid: int
    request_fd: int
    result_fd: int


def _fork_spare() -> _Spare:
    request_r, request_w = os.pipe()
    result_r, result_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: wait for the request, limits first, then the untrusted bytes
        os.close(request_w)
        os.close(result_r)
        code = 0
        try:
            with os.fdopen(request_r, "rb") as incoming:
                request = json.loads(incoming.read())  # EOF: the zygote wrote it, or died
            ProcessLimits(*request["limits"]).apply()
            outcome = _run_child(request)
            # One line: the zygote answers as soon as it has it, not when this process is gone.
            os.write(result_w, json.dumps(outcome).encode() + b"\n")
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(request_r)
    os.close(result_w)
    return _Spare(pid, request_w, result_r)


def _serve_one(request: dict[str, Any], spare: _Spare) -> tuple[str, Any]:
    """Hand ``request`` to ``spare`` and collect its answer within the request's timeout.

    A complete answer is returned at once (the child is reaped later by `_reap`); without
    one, the child is killed (timeout) or has died (limits), and the reason says which.
    """
    with os.fdopen(spare.request_fd, "wb") as outgoing:
        outgoing.write(json.dumps(request).encode())
    deadline = time.monotonic() + float(request["timeout_s"])
    received = b""
    timed_out = False
    with os.fdopen(spare.result_fd, "rb", buffering=0) as pipe:
        while not received.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([pipe], [], [], remaining)
            if not ready:
                continue
            chunk = pipe.read(65536)
            if not chunk:
                break
            received += chunk
    if received.endswith(b"\n"):
        result: tuple[str, Any] = tuple(json.loads(received))
        return result
    if timed_out:
        os.kill(spare.pid, signal.SIGKILL)
    _, status = os.waitpid(spare.pid, 0)
    if timed_out:
        return "invalid", f"reading the model took longer than {request['timeout_s']:g} s"
    how = (
        f"signal {signal.Signals(os.WTERMSIG(status)).name}"
        if os.WIFSIGNALED(status)
        else f"exit code {os.WEXITSTATUS(status)}"
    )
    return "invalid", f"reading the model exceeded the parser's resource limits ({how})"


def _reap(pid: int, grace_s: float = 5.0) -> None:
    """Collect a child that has answered (it exits right after); kill it if it lingers."""
    deadline = time.monotonic() + grace_s
    try:
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return
            time.sleep(0.001)
    except ChildProcessError:
        return  # already collected by _serve_one


def _warm_up() -> None:
    """Run the read-measure-write path once on a built-in cube, in the zygote itself.

    numpy loads parts of itself on first use (``numpy.unique`` imports ``numpy.ma``: ~80 ms);
    done here once, every forked child inherits them instead of paying it per probe.
    """
    import numpy as np

    from slicer_api.adapters.mesh_readers import read_mesh, write_binary_stl
    from slicer_api.domain.mesh import measure

    corners = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], np.float64)
    faces = np.array(
        [[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
         [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]],
        np.int64,
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="mesh-probe-warm-") as folder:
        path = Path(folder) / "cube.stl"
        write_binary_stl(path, corners, faces)
        measure(*read_mesh(path, "stl", ZipLimits(1 << 20, 100)))


def zygote_main() -> None:
    """Serve requests, one JSON line each on stdin, answers on stdout, until stdin closes."""
    _warm_up()
    out = sys.stdout.buffer
    spare = _fork_spare()
    for line in sys.stdin.buffer:
        if not line.strip():
            continue
        try:
            answer = _serve_one(json.loads(line), spare)
        except Exception as err:  # a broken request never stops the zygote
            answer = ("invalid", f"the model parser failed: {type(err).__name__}")
            with contextlib.suppress(OSError):
                os.kill(spare.pid, signal.SIGKILL)
        out.write(json.dumps(answer).encode() + b"\n")
        out.flush()
        # After the answer, off the clock: collect that child, fork the next one.
        _reap(spare.pid)
        spare = _fork_spare()


if __name__ == "__main__":
    zygote_main()
