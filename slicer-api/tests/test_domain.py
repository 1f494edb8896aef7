"""Decisions without the engine: mesh checks, quotes, footer parsing, fit, keys, archives."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from slicer_api import testing as models
from slicer_api.adapters import package
from slicer_api.adapters.mesh_readers import ArchiveRefused, ZipLimits, check_archive, read_stl
from slicer_api.adapters.profiles import load_catalog
from slicer_api.api.deps import key_matches
from slicer_api.domain.gcode import FooterMissing, parse_duration, parse_footer
from slicer_api.domain.mesh import MeshProblem, measure, weld
from slicer_api.domain.pricing import Estimate, Rates, fast_estimate, parse_material_prices, price
from slicer_api.domain.profiles import fit_problem
from slicer_api.settings import DEFAULT_PROFILES_DIR

CATALOG = load_catalog(DEFAULT_PROFILES_DIR)


def test_cube_measurements() -> None:
    stats = measure(*weld(models.box((20, 20, 20))))
    assert stats.volume_mm3 == pytest.approx(8000)
    assert stats.area_mm2 == pytest.approx(2400)
    assert (stats.bodies, stats.watertight, stats.triangles) == (1, True, 12)


def test_two_separate_cubes_are_two_bodies() -> None:
    tris = np.concatenate([models.box((10, 10, 10)), models.box((10, 10, 10), (20, 0, 0))])
    assert measure(*weld(tris)).bodies == 2


def test_knot_is_one_closed_body() -> None:
    stats = measure(*weld(models.knot_tube(rings=200, segments=16)))
    assert (stats.bodies, stats.watertight) == (1, True)


@pytest.mark.parametrize(
    ("tris", "reason"),
    [
        (np.zeros((0, 3, 3)), "no triangles"),
        (models.box((20, 20, 0)), "flat"),
        (np.zeros((4, 3, 3)), "degenerate"),
        (models.box((20, 20, 20))[:2], "flat"),
    ],
)
def test_unprintable_meshes_are_refused(tris: np.ndarray, reason: str) -> None:
    with pytest.raises(MeshProblem, match=reason):
        measure(*weld(tris))


def test_stl_truncated_binary_is_refused() -> None:
    data = models.stl_binary(models.box((20, 20, 20)))
    with pytest.raises(ValueError, match="truncated"):
        read_stl(data[:-10])


def test_fit_problem_names_part_and_volume() -> None:
    p1s = CATALOG.printers["P1S"]
    assert fit_problem((256, 256, 256), p1s) is None
    problem = fit_problem((300, 20, 20), p1s)
    assert problem is not None
    assert "300.0 x 20.0 x 20.0" in problem
    assert "256 x 256 x 256" in problem


def test_catalog_has_the_farm_models_and_densities() -> None:
    assert set(CATALOG.printers) == {"P1S", "X1C", "A1"}
    assert CATALOG.materials["PETG"].density_g_cm3 > CATALOG.materials["PLA"].density_g_cm3
    for profile in CATALOG.printers.values():
        text = Path(profile.ini).read_text()
        assert "PANTHEON_START_GCODE" in text
        assert "layer_gcode = G92 E0" in text  # relative E needs it (slicing.md)


def _fast(infill: float, material: str = "PLA") -> Estimate:
    mesh = measure(*weld(models.box((20, 20, 20))))
    return fast_estimate(
        mesh, CATALOG.qualities["0.20_standard"], CATALOG.materials[material], infill
    )


def test_fast_estimate_grows_with_infill_and_density() -> None:
    assert _fast(0.1).grams < _fast(0.5).grams < _fast(1.0).grams
    assert _fast(1.0).grams == pytest.approx(8.0 * 1.24)
    assert _fast(0.2, "PETG").grams / _fast(0.2).grams == pytest.approx(1.27 / 1.24)


def test_price_lines_add_up_and_minimum_applies() -> None:
    rates = Rates(minimum=10.0)
    small = price(Estimate("mesh", 3.0, 600), "PLA", 1, rates)
    assert small.total == 10
    assert small.lines[-1].item == "minimum"
    big = price(Estimate("mesh", 300.0, 36000), "PLA", 3, rates)
    assert sum(line.amount for line in big.lines) == big.total
    assert big.total > 10
    petg = price(Estimate("mesh", 300.0, 36000), "PETG", 3, rates)
    assert petg.total > big.total


def test_rates_merge_and_parse() -> None:
    rates = Rates().merged({"currency": "CHF", "material_per_kg": {"pla": 19}, "markup": None})
    assert (rates.currency, rates.material_per_kg["PLA"], rates.markup) == ("CHF", 19.0, 1.3)
    assert parse_material_prices("PLA=25, petg=30") == {"PLA": 25.0, "PETG": 30.0}
    with pytest.raises(ValueError, match="unknown"):
        Rates().merged({"bogus": 1})


@pytest.mark.parametrize(
    ("text", "seconds"), [("8m 28s", 508), ("1h 2m 3s", 3723), ("1d 0h 0m 1s", 86401), ("45s", 45)]
)
def test_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


def test_footer() -> None:
    tail = (
        "; filament used [mm] = 1256.47\n; filament used [cm3] = 3.02\n"
        "; total filament used [g] = 3.75\n; estimated printing time (normal mode) = 8m 28s\n"
    )
    figures = parse_footer(tail, 100, 20.0)
    assert (figures.print_time_s, figures.grams, figures.layers) == (508, 3.75, 100)
    with pytest.raises(FooterMissing):
        parse_footer("G1 X0\n", 1, 0.2)


def test_api_keys_compare_digests() -> None:
    import hashlib

    digest = hashlib.sha256(b"right").hexdigest()
    assert key_matches("right", ("0" * 64, digest))
    assert not key_matches("wrong", (digest,))
    assert not key_matches("right", ())


def _zip(members: dict[str, bytes]) -> zipfile.ZipFile:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return zipfile.ZipFile(io.BytesIO(buf.getvalue()))


@pytest.mark.parametrize("name", ["../x", "a/../../x", "/etc/passwd", "C:/x", "..\\x"])
def test_archive_traversal_names_are_refused(name: str) -> None:
    with pytest.raises(ArchiveRefused, match="unsafe member name"):
        check_archive(_zip({name: b"x"}), ZipLimits(10**9, 100))


def test_archive_limits() -> None:
    bomb = _zip({"a.bin": b"\0" * 5_000_000})
    with pytest.raises(ArchiveRefused, match="compresses"):
        check_archive(bomb, ZipLimits(10**9, 100))
    with pytest.raises(ArchiveRefused, match="inflate"):
        check_archive(bomb, ZipLimits(1_000_000, 10_000))
    check_archive(_zip({"3D/3dmodel.model": b"<model/>"}), ZipLimits(10**6, 100))


def _engine_like_gcode(layers: int) -> bytes:
    lines = [";TYPE:Custom", "G28"]
    for n in range(1, layers + 1):
        lines += [";LAYER_CHANGE", f";Z:{n * 0.2:.1f}", ";HEIGHT:0.2", "G1 X10 Y10 E1"]
    lines += [
        "; filament used [mm] = 1256.47",
        "; filament used [cm3] = 3.02",
        "; filament used [g] = 3.75",
        "; total filament used [g] = 3.75",
        "; estimated printing time (normal mode) = 8m 28s",
        "; prusaslicer_config = begin",
        "; layer_height = 0.2",
    ]
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize("chunk", [7, 64, 1024 * 1024])
def test_gcode_scan_finds_layers_height_and_footer_across_block_edges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    path = tmp_path / "engine.gcode"
    path.write_bytes(_engine_like_gcode(100))
    monkeypatch.setattr(package, "_CHUNK", chunk)
    figures = package.scan_gcode(path)
    assert (figures.layers, figures.max_z_mm) == (100, 20.0)
    assert (figures.print_time_s, figures.grams, figures.filament_mm) == (508, 3.75, 1256.47)
    assert figures.filament_cm3 == 3.02


def test_weld_is_exact_even_when_every_corner_key_collides(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tris = models.box((20, 20, 20))
    vertices, faces = weld(tris)
    assert (len(vertices), len(faces)) == (8, 12)
    monkeypatch.setattr("slicer_api.domain.mesh._MIX", np.zeros(3, dtype=np.uint64))
    collided_vertices, collided_faces = weld(tris)  # one key for all: row-by-row fallback
    assert len(collided_vertices) == 8
    assert np.array_equal(collided_vertices[collided_faces], vertices[faces])
    # -0.0 and 0.0 are one corner
    flipped = np.array(tris, dtype=np.float64)
    flipped[flipped == 0.0] = -0.0
    assert len(weld(flipped)[0]) == 8
