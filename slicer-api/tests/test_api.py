"""slicer-api over HTTP with the real engine: slicing, packages, quotes, refusals, hand-over."""

from __future__ import annotations

import hashlib
import io
import time
import zipfile
from typing import Any
from xml.etree import ElementTree as ET

import httpx
import numpy as np
import pytest

from pantheon_common.gcode_store import LocalGcodeStore
from slicer_api import testing as models

FakePantheon = Any  # conftest.FakePantheon (test modules cannot import conftest)
Service = Any  # conftest.Service
UPLOAD_LIMIT = 1024 * 1024  # conftest.UPLOAD_LIMIT

CUBE = models.stl_binary(models.box((20, 20, 20)))


def _wait(client: httpx.Client, job_id: str, timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        status: dict[str, Any] = client.get(f"/slice/{job_id}").json()
        if status["state"] in ("done", "failed"):
            return status
        assert time.monotonic() < deadline, f"job {job_id} still {status['state']}"
        time.sleep(0.05)


def _slice(client: httpx.Client, name: str, data: bytes, **form: Any) -> dict[str, Any]:
    response = client.post("/slice", files={"file": (name, data)}, data=form)
    assert response.status_code == 202, response.text
    return response.json()


@pytest.fixture(scope="module")
def sliced(client: httpx.Client) -> dict[str, tuple[dict[str, Any], bytes]]:
    """Four models sliced once, shared by the assertions below: status and .gcode.3mf bytes."""
    two_cubes = np.concatenate([models.box((20, 20, 20)), models.box((20, 20, 20), (30, 0, 0))])
    jobs = {
        "cube": _slice(client, "cube.stl", CUBE),
        "cylinder": _slice(client, "cyl.stl", models.stl_binary(models.cylinder(15, 30))),
        "two_cubes": _slice(client, "two cubes.stl", models.stl_ascii(two_cubes)),
        "step": _slice(client, "box.step", models.step_box((30, 20, 10)), material="PETG"),
    }
    results = {}
    for key, job in jobs.items():
        status = _wait(client, job["job_id"])
        assert status["state"] == "done", status
        package = client.get(f"/slice/{job['job_id']}/result")
        assert package.status_code == 200
        results[key] = (status, package.content)
    return results


@pytest.mark.parametrize("key", ["cube", "cylinder", "two_cubes", "step"])
def test_sliced_package_is_a_bambu_gcode_3mf(
    sliced: dict[str, tuple[dict[str, Any], bytes]], key: str
) -> None:
    status, data = sliced[key]
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = set(zf.namelist())
        assert {
            "[Content_Types].xml",
            "_rels/.rels",
            "Metadata/plate_1.gcode",
            "Metadata/plate_1.gcode.md5",
            "Metadata/slice_info.config",
        } <= names
        gcode = zf.read("Metadata/plate_1.gcode")
        md5 = zf.read("Metadata/plate_1.gcode.md5")
        info = ET.fromstring(zf.read("Metadata/slice_info.config"))  # noqa: S314 - our own file
    assert md5 == hashlib.md5(gcode).hexdigest().upper().encode()  # noqa: S324
    assert status["result"]["md5"] == md5.decode()
    plate = {m.get("key"): m.get("value") for m in info.iter("metadata")}
    result = status["result"]
    assert int(plate["prediction"]) == result["print_time_s"] > 60
    assert float(plate["weight"]) == pytest.approx(result["grams"], abs=0.01)
    assert plate["printer_model_id"] == "C12"
    text = gcode.decode()
    assert text.startswith("; HEADER_BLOCK_START")
    assert f"; total layer number: {result['layers']}" in text
    assert "; PANTHEON_START_GCODE P1S" in text
    assert text.rstrip().endswith("; EXECUTABLE_BLOCK_END")


def test_standby_engines_slice_the_jobs(
    sliced: dict[str, tuple[dict[str, Any], bytes]], client: httpx.Client
) -> None:
    """The service keeps engines started ahead (SLICER_STANDBY_ENGINES, default 2): the first
    two of the four jobs queued at once get one; the others may find their replacement still
    loading, and use it then (or a cold one), never failing for it."""
    starts = [sliced[key][0]["engine_start"] for key in ("cube", "cylinder", "two_cubes", "step")]
    assert starts[:2] == ["standby", "standby"]
    assert set(starts) <= {"standby", "cold"}
    metrics = client.get("/metrics").text
    assert 'slicer_engine_starts_total{start="standby"}' in metrics


def test_packages_are_published_into_the_farm_gcode_store(
    sliced: dict[str, tuple[dict[str, Any], bytes]], service: Service
) -> None:
    """The farm's G-code store (shared with pantheon-api and printer-service) gets each result."""
    store = LocalGcodeStore(service.store_dir)
    for status, data in sliced.values():
        name = status["result"]["gcode_store_name"]
        assert name.endswith(".gcode.3mf")
        assert store.get(name) == data


def test_estimates_follow_the_geometry(sliced: dict[str, tuple[dict[str, Any], bytes]]) -> None:
    cube, cylinder = sliced["cube"][0], sliced["cylinder"][0]
    two, step = sliced["two_cubes"][0], sliced["step"][0]
    assert cube["mesh"]["size_mm"] == [20.0, 20.0, 20.0]
    assert cube["result"]["layers"] == 100  # 20 mm at 0.2 mm
    assert two["mesh"]["bodies"] == 2
    assert two["result"]["grams"] == pytest.approx(2 * cube["result"]["grams"], rel=0.15)
    assert cylinder["result"]["grams"] > cube["result"]["grams"]
    assert step["mesh"]["size_mm"] == [30.0, 20.0, 10.0]
    assert step["mesh"]["volume_mm3"] == pytest.approx(6000, rel=1e-3)
    assert step["options"]["material"] == "PETG"
    assert step["result"]["layers"] == 50


def test_plain_gcode_on_request(client: httpx.Client, sliced: dict[str, Any]) -> None:
    status, package = sliced["cube"]
    plain = client.get(f"/slice/{status['job_id']}/result", params={"format": "gcode"})
    assert plain.status_code == 200
    with zipfile.ZipFile(io.BytesIO(package)) as zf:
        assert plain.content == zf.read("Metadata/plate_1.gcode")


def _price(client: httpx.Client, **form: Any) -> dict[str, Any]:
    response = client.post("/price", files={"file": ("cube.stl", CUBE)}, data=form)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_exact_quote_rises_with_infill_and_with_petg(client: httpx.Client) -> None:
    sparse = _price(client, mode="exact", infill=10)["quote"]
    dense = _price(client, mode="exact", infill=60)["quote"]
    petg = _price(client, mode="exact", infill=10, material="PETG")["quote"]
    assert sparse["estimate"]["source"] == "slicer"
    assert dense["estimate"]["grams"] > sparse["estimate"]["grams"]
    material = {
        q: next(li for li in quote["lines"] if li["item"] == "material")
        for q, quote in (("sparse", sparse), ("dense", dense), ("petg", petg))
    }
    assert float(material["dense"]["amount"]) > float(material["sparse"]["amount"])
    # Same extrusion, denser plastic: grams scale with density (1.27 / 1.24), price per kg too.
    ratio = petg["estimate"]["grams"] / sparse["estimate"]["grams"]
    assert ratio == pytest.approx(1.27 / 1.24, rel=0.01)
    assert float(material["petg"]["amount"]) > float(material["sparse"]["amount"])
    assert "32.00 EUR/kg" in material["petg"]["detail"]


def test_fast_quote_shows_rates_and_lines_that_add_up(client: httpx.Client) -> None:
    body = _price(client, infill=15, quantity=20)
    quote = body["quote"]
    assert quote["estimate"]["source"] == "mesh"
    assert quote["rates"]["material_per_kg"]["PLA"] == 25
    assert sum(float(line["amount"]) for line in quote["lines"]) == pytest.approx(
        float(quote["total"])
    )
    assert [line["item"] for line in quote["lines"]][:4] == [
        "material",
        "machine",
        "markup",
        "setup",
    ]
    assert 3.0 < quote["estimate"]["grams"] < 4.5  # the engine says 3.75 g for this cube
    more = _price(client, infill=80, quantity=20)["quote"]
    assert more["estimate"]["grams"] > quote["estimate"]["grams"]
    assert float(more["total"]) > float(quote["total"])


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("cube_ascii.stl", models.stl_ascii(models.box((20, 20, 20)))),
        ("cube.obj", models.obj(models.box((20, 20, 20)))),
        ("cube.3mf", models.threemf(models.box((20, 20, 20)))),
    ],
)
def test_every_mesh_format_is_read(client: httpx.Client, name: str, data: bytes) -> None:
    response = client.post("/price", files={"file": (name, data)})
    assert response.status_code == 200, response.text
    mesh = response.json()["mesh"]
    assert mesh["size_mm"] == pytest.approx([20, 20, 20])
    assert mesh["volume_mm3"] == pytest.approx(8000, rel=1e-4)
    assert mesh["watertight"]


BAD_MODELS = [
    ("too_big.stl", models.stl_binary(models.box((300, 20, 20))), 422, "does_not_fit", "300.0 x"),
    ("empty.stl", models.stl_binary(np.zeros((0, 3, 3))), 422, "invalid_model", "no triangles"),
    ("flat.stl", models.stl_binary(models.box((20, 20, 0))), 422, "invalid_model", "flat"),
    ("cut.step", models.step_box((30, 20, 10))[:900], 422, "invalid_model", "STEP"),
    (
        "evil.3mf",
        models.threemf(models.box((20, 20, 20)), {"../../etc/evil.txt": b"x"}),
        422,
        "unsafe_archive",
        "..",
    ),
    ("notes.txt", b"hello", 415, "unsupported_format", "STL, OBJ, 3MF"),
]


@pytest.mark.parametrize(("name", "data", "status", "code", "reason"), BAD_MODELS)
@pytest.mark.parametrize("route", ["/price", "/slice"])
def test_bad_models_get_a_4xx_with_the_reason_and_leave_nothing(
    client: httpx.Client,
    service: Service,
    route: str,
    name: str,
    data: bytes,
    status: int,
    code: str,
    reason: str,
) -> None:
    before = service.job_dirs()
    response = client.post(route, files={"file": (name, data)})
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code
    assert reason in body["detail"]
    assert service.job_dirs() <= before


def test_too_large_reports_the_part_and_the_volume(client: httpx.Client) -> None:
    body = client.post(
        "/price", files={"file": ("big.stl", models.stl_binary(models.box((20, 20, 300))))}
    ).json()
    assert body["part_size_mm"] == [20.0, 20.0, 300.0]
    assert body["build_volume_mm"] == [256.0, 256.0, 256.0]


def test_zip_bomb_is_refused(client: httpx.Client, service: Service) -> None:
    bomb = models.threemf(models.box((20, 20, 20)), {"Metadata/padding.bin": b"\0" * 50_000_000})
    assert len(bomb) < UPLOAD_LIMIT
    before = service.job_dirs()
    response = client.post("/price", files={"file": ("bomb.3mf", bomb)})
    assert response.status_code == 422
    assert response.json()["error"] == "unsafe_archive"
    assert service.job_dirs() <= before


def test_upload_over_the_limit_is_413_by_content_length(client: httpx.Client) -> None:
    big = models.stl_binary(np.zeros((30_000, 3, 3)))  # 1.5 MB
    response = client.post("/price", files={"file": ("big.stl", big)})
    assert response.status_code == 413
    assert response.json()["limit_bytes"] == UPLOAD_LIMIT


def test_chunked_upload_over_the_limit_is_cut_off(service: Service) -> None:
    sent = 0

    def body() -> Any:
        nonlocal sent
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.stl"\r\n\r\n'
        for _ in range(40):  # 40 x 64 KiB = 2.5 MiB, never announced
            sent += 65536
            yield b"\0" * 65536
        yield b"\r\n--b--\r\n"

    headers = {"X-API-Key": service.api_key, "Content-Type": "multipart/form-data; boundary=b"}
    response = httpx.post(f"{service.url}/price", content=body(), headers=headers, timeout=30)
    assert response.status_code == 413
    assert response.json()["error"] == "upload_too_large"


def test_every_route_but_health_needs_a_key(service: Service) -> None:
    assert httpx.get(f"{service.url}/healthz").status_code == 200
    assert httpx.get(f"{service.url}/readyz").status_code == 200
    assert httpx.get(f"{service.url}/metrics").status_code == 200
    assert httpx.get(f"{service.url}/profiles").status_code == 401
    wrong = {"X-API-Key": "not-the-key"}
    assert httpx.get(f"{service.url}/profiles", headers=wrong).status_code == 401
    assert (
        httpx.post(
            f"{service.url}/price", headers=wrong, files={"file": ("c.stl", CUBE)}
        ).status_code
        == 401
    )
    assert httpx.get(f"{service.url}/slice/abc", headers=wrong).status_code == 401


def test_unknown_job_is_404(client: httpx.Client) -> None:
    assert client.get("/slice/nope").status_code == 404


def test_result_is_uploaded_to_pantheon_and_a_print_queued(
    client: httpx.Client, fake_pantheon: FakePantheon
) -> None:
    start = len(fake_pantheon.requests)
    job = _slice(
        client,
        "bracket.stl",
        CUBE,
        upload_to_pantheon="true",
        queue_print="true",
        copies="2",
        printer_model="X1C",
        bed_type="cool_plate",
    )
    status = _wait(client, job["job_id"])
    assert status["state"] == "done", status
    upload, queued = fake_pantheon.requests[start:]
    assert upload["path"] == "/api/files"
    assert upload["api_key"] == "pantheon-key-for-tests"
    assert upload["content_type"].startswith("multipart/form-data")
    assert b'filename="bracket.gcode.3mf"' in upload["body"]
    assert status["result"]["md5"].encode() in upload["body"]
    assert queued["path"] == "/api/jobs"
    import json

    payload = json.loads(queued["body"])
    assert payload == {
        "file": status["pantheon"]["file"],
        "copies": 2,
        "priority": 0,
        "target": {"model": "X1C", "printer_id": None},
        "bed_type": "cool_plate",
    }
    assert status["pantheon"]["job_id"] == "job-" + payload["file"]
