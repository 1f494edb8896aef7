"""Standby engines (started ahead, profile through a named pipe) and the merged profile, against
the real PrusaSlicer."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from slicer_api import testing as models
from slicer_api.adapters.engine import Engine
from slicer_api.adapters.limits import ProcessLimits
from slicer_api.adapters.process import EngineRun
from slicer_api.adapters.profiles import load_catalog
from slicer_api.domain.jobs import SliceOptions
from slicer_api.domain.profiles import Catalog
from slicer_api.errors import EngineFailed
from slicer_api.settings import DEFAULT_PROFILES_DIR

CUBE = models.stl_binary(models.box((20, 20, 20)))
# An overhang (a T) so that supports change the G-code.
T_PART = models.stl_binary(
    np.concatenate([models.box((6, 6, 15)), models.box((30, 6, 3), (-12, 0, 15))])
)
OPTIONS = SliceOptions(printer_model="P1S", quality="0.20_standard", material="PLA")


def _engine(
    binary: str, standby: int, catalog: Catalog | None = None, memory_mb: int = 4096
) -> Engine:
    return Engine(
        binary,
        catalog or load_catalog(DEFAULT_PROFILES_DIR),
        ProcessLimits(memory_mb, 60),
        standby=standby,
    )


def _stl(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


async def _ready(engine: Engine, count: int) -> None:
    """Until ``count`` standby engines are loaded and waiting on their profile pipe."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        waiting = [s for s in engine._ready if _waiting_on_pipe(s.process.pid)]
        if len(waiting) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{count} standby engines were not ready within 30 s")


def _waiting_on_pipe(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/wchan").read_text() == "wait_for_partner"
    except OSError:
        return False


@pytest.mark.parametrize("supports", [False, True])
def test_merged_profile_slices_like_the_three_profiles_and_the_overrides(
    engine_binary: str, tmp_path: Path, supports: bool
) -> None:
    """One ini (printer, quality, material, job settings) gives the engine the configuration,
    and so the G-code, that three --load files and command-line overrides give."""
    model = _stl(tmp_path, "t.stl", T_PART)
    options = SliceOptions(
        printer_model="X1C", quality="0.28_draft", material="PETG", infill=0.35, supports=supports
    )
    engine = _engine(engine_binary, standby=0)
    catalog = engine.catalog
    reference = [
        engine_binary,
        "--loglevel=1",
        "--load",
        catalog.printers["X1C"].ini,
        "--load",
        catalog.qualities["0.28_draft"].ini,
        "--load",
        catalog.materials["PETG"].ini,
        "--fill-density",
        "35%",
        "--support-material" if supports else "--no-support-material",
        "--center",
        "128,128",
        "--export-gcode",
        "-o",
        str(tmp_path / "reference.gcode"),
        str(model),
    ]
    subprocess.run(reference, check=True, capture_output=True, cwd=tmp_path)
    asyncio.run(engine.slice(model, tmp_path / "merged.gcode", options, timeout_s=60))
    merged = (tmp_path / "merged.gcode").read_text()
    _assert_same_slice(merged, (tmp_path / "reference.gcode").read_text())
    assert f"; support_material = {int(supports)}\n" in merged
    assert "; fill_density = 35%\n" in merged
    assert "; filament_type = PETG\n" in merged


def _assert_same_slice(gcode: str, reference: str) -> None:
    """The same configuration (the engine writes every setting it used at the end), objects,
    layers and extrusion. Not the same bytes: PrusaSlicer's threads make small differences from
    run to run (a straight move sometimes split in two, support paths in another order)."""

    def summary(text: str) -> tuple[list[str], list[str], int, float]:
        lines = text.splitlines()
        settings = [line for line in lines if line.startswith("; ") and " = " in line]
        objects = [line for line in lines if line.startswith("; printing object")]
        used = next(line for line in settings if line.startswith("; filament used [mm] = "))
        return settings, objects, lines.count(";LAYER_CHANGE"), float(used.rsplit(" ", 1)[1])

    settings, objects, layers, filament_mm = summary(gcode)
    ref_settings, ref_objects, ref_layers, ref_filament_mm = summary(reference)
    volatile = ("; filament used", "; total filament", "; estimated printing time")
    assert [s for s in settings if not s.startswith(volatile)] == [
        s for s in ref_settings if not s.startswith(volatile)
    ]
    assert objects == ref_objects
    assert objects
    assert layers == ref_layers
    assert layers > 10
    assert filament_mm == pytest.approx(ref_filament_mm, rel=0.01)


def test_standby_engine_slices_what_a_cold_engine_slices(
    engine_binary: str, tmp_path: Path
) -> None:
    # named as the service names every checked model (the G-code names the object after it)
    model = _stl(tmp_path, "model.stl", T_PART)
    options = dataclasses.replace(OPTIONS, infill=0.2, supports=True)
    cold = asyncio.run(_engine(engine_binary, 0).slice(model, tmp_path / "cold.gcode", options, 60))

    async def warm() -> list[EngineRun]:
        engine = _engine(engine_binary, standby=2)
        await engine.open(tmp_path / "standby")
        try:
            await _ready(engine, 2)
            runs = [
                await engine.slice(model, tmp_path / f"warm{i}.gcode", options, 60)
                for i in range(3)
            ]
            # every standby is used once (its folder goes with it); the pool is refilled
            await _ready(engine, 2)
            assert engine.standby_count == 2
            assert len(list((tmp_path / "standby").iterdir())) == 2
            return runs
        finally:
            await engine.close()

    runs = asyncio.run(warm())
    assert not cold.standby
    assert [run.standby for run in runs] == [True, True, True]
    for i in range(3):
        _assert_same_slice(
            (tmp_path / f"warm{i}.gcode").read_text(), (tmp_path / "cold.gcode").read_text()
        )
    assert not (tmp_path / "standby").exists(), "close() removes the standby folders"


def test_standby_waits_on_its_pipe_with_the_limits_and_dies_with_the_service(
    engine_binary: str, tmp_path: Path
) -> None:
    """A service killed with SIGKILL leaves no standby engine behind (setpriv --pdeathsig)."""
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from pathlib import Path
        from slicer_api.adapters.engine import Engine
        from slicer_api.adapters.limits import ProcessLimits
        from slicer_api.adapters.profiles import load_catalog
        from slicer_api.settings import DEFAULT_PROFILES_DIR

        async def main():
            engine = Engine({engine_binary!r}, load_catalog(DEFAULT_PROFILES_DIR),
                            ProcessLimits(3000, 77), standby=1)
            await engine.open(Path({str(tmp_path / "standby")!r}))
            while not engine._ready:
                await asyncio.sleep(0.01)
            print(engine._ready[0].process.pid, flush=True)
            await asyncio.sleep(600)

        asyncio.run(main())
        """
    )
    service = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert service.stdout is not None
        pid = int(service.stdout.readline())
        deadline = time.monotonic() + 30
        while not _waiting_on_pipe(pid):
            assert time.monotonic() < deadline, "the standby never blocked on its profile pipe"
            time.sleep(0.01)
        limits = Path(f"/proc/{pid}/limits").read_text()
        assert f"Max address space         {3000 * 1024 * 1024}" in limits
        assert "Max cpu time              77" in limits
        os.kill(service.pid, signal.SIGKILL)
        service.wait(10)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and _state(pid) != "Z":
            assert time.monotonic() < deadline, "the standby engine outlived the service"
            time.sleep(0.01)
    finally:
        service.kill()
        service.wait(10)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_a_standby_that_died_is_replaced_and_the_slice_runs_cold(
    engine_binary: str, tmp_path: Path
) -> None:
    model = _stl(tmp_path, "cube.stl", CUBE)

    async def scenario() -> tuple[EngineRun, EngineRun]:
        engine = _engine(engine_binary, standby=1)
        await engine.open(tmp_path / "standby")
        try:
            await _ready(engine, 1)
            os.kill(engine._ready[0].process.pid, signal.SIGKILL)
            await engine._ready[0].process.wait()
            after_death = await engine.slice(model, tmp_path / "a.gcode", OPTIONS, 60)
            await _ready(engine, 1)
            return after_death, await engine.slice(model, tmp_path / "b.gcode", OPTIONS, 60)
        finally:
            await engine.close()

    after_death, next_run = asyncio.run(scenario())
    assert not after_death.standby
    assert next_run.standby
    assert (tmp_path / "a.gcode").stat().st_size > 10_000


def test_standby_follows_the_bed_that_is_sliced_for(engine_binary: str, tmp_path: Path) -> None:
    """The pool starts for the most common bed; a slice for another bed runs cold and the pool
    then waits for that bed."""
    catalog = load_catalog(DEFAULT_PROFILES_DIR)
    small = dataclasses.replace(catalog.printers["A1"], bed_x=180.0, bed_y=180.0)
    catalog = dataclasses.replace(catalog, printers={**catalog.printers, "A1": small})
    model = _stl(tmp_path, "cube.stl", CUBE)
    a1 = dataclasses.replace(OPTIONS, printer_model="A1")

    async def scenario() -> list[EngineRun]:
        engine = _engine(engine_binary, standby=1, catalog=catalog)
        await engine.open(tmp_path / "standby")
        try:
            await _ready(engine, 1)
            runs = [await engine.slice(model, tmp_path / "a.gcode", a1, 60)]
            await _ready(engine, 1)
            runs.append(await engine.slice(model, tmp_path / "b.gcode", a1, 60))
            await _ready(engine, 1)
            runs.append(await engine.slice(model, tmp_path / "c.gcode", OPTIONS, 60))
            return runs
        finally:
            await engine.close()

    assert [run.standby for run in asyncio.run(scenario())] == [False, True, False]
    # centred for the A1's 180 mm bed, by the standby as by the cold engine
    for name in ("a.gcode", "b.gcode"):
        moves = [
            float(word[1:])
            for line in (tmp_path / name).read_text().splitlines()
            if line.startswith("G1 ") and " E" in line
            for word in line.split()
            if word.startswith("X")
        ]
        # (the median: our start G-code's purge line runs along the front edge)
        assert 80 < statistics.median(moves) < 100, (name, statistics.median(moves))


def test_standby_slice_timeout_counts_from_the_slice_and_kills_it(
    engine_binary: str, tmp_path: Path
) -> None:
    knot = _stl(tmp_path, "knot.stl", models.stl_binary(models.knot_tube()))
    cube = _stl(tmp_path, "cube.stl", CUBE)

    async def scenario() -> None:
        engine = _engine(engine_binary, standby=1)
        await engine.open(tmp_path / "standby")
        try:
            await _ready(engine, 1)
            await asyncio.sleep(1.5)  # waiting for work is not slicing time
            run = await engine.slice(cube, tmp_path / "cube.gcode", OPTIONS, 1.0)
            assert run.standby
            await _ready(engine, 1)
            pid = engine._ready[0].process.pid
            with pytest.raises(EngineFailed, match=r"longer than 0\.3 s"):
                await engine.slice(knot, tmp_path / "o.gcode", OPTIONS, 0.3)
            assert not Path(f"/proc/{pid}").exists() or _state(pid) == "Z"
            await _ready(engine, 1)  # replaced after the failure too
        finally:
            await engine.close()

    asyncio.run(scenario())
    assert not (tmp_path / "o.gcode").exists()
