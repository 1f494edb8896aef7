"""Resource limits and the pantheon-api client, against real processes and a real socket."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest

from slicer_api import testing as models
from slicer_api.adapters.engine import Engine
from slicer_api.adapters.limits import ProcessLimits
from slicer_api.adapters.mesh_probe import MeshProber, ProbeRequest
from slicer_api.adapters.mesh_readers import ZipLimits
from slicer_api.adapters.pantheon import PantheonClient
from slicer_api.adapters.profiles import load_catalog
from slicer_api.domain.jobs import SliceOptions
from slicer_api.errors import EngineFailed, InvalidModel, PantheonApiError
from slicer_api.settings import DEFAULT_PROFILES_DIR

OPTIONS = SliceOptions(printer_model="P1S", quality="0.20_standard", material="PLA")


def _engine(binary: str, memory_mb: int = 4096, cpu_s: int = 60) -> Engine:
    return Engine(binary, load_catalog(DEFAULT_PROFILES_DIR), ProcessLimits(memory_mb, cpu_s))


def test_engine_address_space_limit_stops_it(engine_binary: str, tmp_path: Path) -> None:
    stl = tmp_path / "cube.stl"
    stl.write_bytes(models.stl_binary(models.box((20, 20, 20))))
    engine = _engine(engine_binary, memory_mb=32)
    with pytest.raises(EngineFailed):
        asyncio.run(engine.slice(stl, tmp_path / "out.gcode", OPTIONS, timeout_s=30))


def test_engine_wall_clock_timeout_kills_it(engine_binary: str, tmp_path: Path) -> None:
    stl = tmp_path / "knot.stl"
    stl.write_bytes(models.stl_binary(models.knot_tube()))
    with pytest.raises(EngineFailed, match="longer than"):
        asyncio.run(_engine(engine_binary).slice(stl, tmp_path / "o.gcode", OPTIONS, 0.3))


def test_parser_memory_limit_is_a_clean_refusal(tmp_path: Path) -> None:
    source = tmp_path / "knot.stl"
    source.write_bytes(models.stl_binary(models.knot_tube()))
    request = ProbeRequest(
        source=source,
        fmt="stl",
        normalised_stl=tmp_path / "model.stl",
        zip_limits=ZipLimits(10**8, 100),
        limits=ProcessLimits(memory_mb=128, cpu_s=10),
        max_triangles=10**7,
    )
    prober = MeshProber()
    try:
        with pytest.raises(InvalidModel, match=r"memory|resource"):
            prober.probe_blocking(request, timeout_s=30)
        # The zygote survives a child that hit its limit and serves the next model.
        roomy = dataclasses.replace(request, limits=ProcessLimits(memory_mb=2048, cpu_s=10))
        assert prober.probe_blocking(roomy, timeout_s=30).triangles == 100_032
    finally:
        prober.close()


def test_parser_reads_within_limits(tmp_path: Path) -> None:
    source = tmp_path / "cube.stl"
    source.write_bytes(models.stl_binary(models.box((20, 20, 20))))
    request = ProbeRequest(
        source, "stl", tmp_path / "model.stl", ZipLimits(10**8, 100), ProcessLimits(2048, 10), 100
    )
    prober = MeshProber()
    try:
        assert prober.probe_blocking(request, 30).volume_mm3 == pytest.approx(8000)
    finally:
        prober.close()
    assert (tmp_path / "model.stl").stat().st_size == 84 + 12 * 50


def test_pantheon_client_refused_key_is_an_error_without_retries(
    fake_pantheon: Any, tmp_path: Path
) -> None:
    package = tmp_path / "p.gcode.3mf"
    package.write_bytes(b"zip")
    client = PantheonClient(fake_pantheon.url, "wrong-key", 5)
    start = len(fake_pantheon.requests)
    with pytest.raises(PantheonApiError, match="401"):
        asyncio.run(client.upload_file(package, "p.gcode.3mf", "AB", "P1S", "textured_pei"))
    assert len(fake_pantheon.requests) == start + 1


def test_pantheon_client_unreachable_is_an_error(tmp_path: Path) -> None:
    client = PantheonClient("http://127.0.0.1:9", "key", 2)
    with pytest.raises(PantheonApiError, match="job failed"):
        asyncio.run(client.create_job({"file": "x"}))


def test_parser_timeout_kills_the_child_and_the_next_model_is_served(tmp_path: Path) -> None:
    knot = tmp_path / "knot.stl"
    knot.write_bytes(models.stl_binary(models.knot_tube()))
    cube = tmp_path / "cube.stl"
    cube.write_bytes(models.stl_binary(models.box((20, 20, 20))))

    def request(source: Path) -> ProbeRequest:
        return ProbeRequest(
            source,
            "stl",
            tmp_path / "model.stl",
            ZipLimits(10**8, 100),
            ProcessLimits(2048, 10),
            10**6,
        )

    prober = MeshProber()
    try:
        with pytest.raises(InvalidModel, match="longer than"):
            prober.probe_blocking(request(knot), timeout_s=0.005)
        for _ in range(5):  # each model gets a fresh child, forked ahead of time
            assert prober.probe_blocking(request(cube), 30).triangles == 12
        zygote = prober._process
        assert zygote is not None
        children_file = Path(f"/proc/{zygote.pid}/task/{zygote.pid}/children")
        deadline = time.monotonic() + 5  # the zygote reaps and forks right after answering
        while len(children_file.read_text().split()) != 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        # Only the spare waiting for the next model: every used child was collected.
        assert len(children_file.read_text().split()) == 1
    finally:
        prober.close()


@pytest.mark.parametrize("with_prlimit", [True, False])
def test_the_engine_process_runs_with_the_limits(
    engine_binary: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_prlimit: bool
) -> None:
    """prlimit (vfork, cheap) where it exists, else a preexec_fn: the same limits either way."""
    if not with_prlimit:
        monkeypatch.setattr("slicer_api.adapters.limits.shutil.which", lambda _: None)
    engine = _engine(engine_binary, memory_mb=512, cpu_s=42)
    run = asyncio.run(
        engine.run(["/bin/sh", "-c", "cat /proc/self/limits >&2"], tmp_path, timeout_s=30)
    )
    assert run.returncode == 0, run.stderr
    limits = {line[:26].strip(): line[26:].split()[:2] for line in run.stderr.splitlines()[1:]}
    assert limits["Max address space"] == [str(512 * 1024 * 1024)] * 2
    assert limits["Max cpu time"] == ["42", "47"]
    assert limits["Max core file size"] == ["0", "0"]
