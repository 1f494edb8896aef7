"""Per-printer routes reach a printer-service only for printers of the farm layout; plate homes
must be free slots of the layout (real MongoDB-protocol server, recording fake upstream).

Regressions: ``GET /api/printers/999999/status`` answered 500 (the id became port 50999999 and
httpx refused the URL) and ``/api/printers/2/status`` 502 (a printer document added through the
API, not in the layout, has no printer-service); ``POST /api/beds`` took a plate in rack Z.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from pantheon_api.runtime import build
from pantheon_common.auth import Role
from pantheon_devtools.pytest_plugin import MongoTestDb

from .conftest import Api, ApiFactory, make_settings

NATIVE = "http://127.0.0.1:50{id:03d}"  # pantheon-run's template: printer 14 -> port 50014
ROUTES = [
    ("GET", "status", None),
    ("POST", "pause", None),
    ("POST", "resume", None),
    ("POST", "stop", None),
    ("POST", "print", {"file": "cube.gcode"}),
]


def _layout(tmp_path: Path) -> Path:
    """Printers 14 and 1000, rack A with 4 slots (plate 801 in slot 1), rack B with 2."""
    layout = {
        "printers": [
            {"id": 14, "model": "P1S", "host": "127.0.0.14", "serial": "01P00A000000014"},
            {"id": 1000, "model": "P1S", "host": "127.0.0.100", "serial": "01P00A000001000"},
        ],
        "racks": [{"id": "A", "row": 1.5, "slots": 4}, {"id": "B", "row": 3.5, "slots": 2}],
        "beds": [{"id": 801, "type": "textured_pei", "home": {"rack": "A", "slot": 1}}],
    }
    path = tmp_path / "farm-test.yaml"
    path.write_text(yaml.safe_dump(layout), encoding="utf-8")
    return path


@pytest.fixture
def farm(api_factory: ApiFactory, tmp_path: Path) -> Api:
    api = api_factory(farm_layout=_layout(tmp_path), printer_service_url_template=NATIVE)
    api.ctx.store.db.printers.insert_one({"_id": 14, "model": "P1S"})
    return api


def _call(api: Api, method: str, printer_id: int, command: str, body: Any) -> Any:
    return api.client.request(
        method,
        f"/api/printers/{printer_id}/{command}",
        json=body,
        headers=api.headers(Role.OPERATOR),
    )


def test_printers_added_through_the_api_outside_the_layout_are_404_without_a_call(
    farm: Api,
) -> None:
    """As the probe did: create printers 2 and 999999 (admin), then call their routes."""
    for printer_id in (2, 999_999):
        r = farm.client.post(
            "/api/printers",
            json={
                "id": printer_id,
                "model": "P1S",
                "host": "127.0.0.2",
                "serial": f"01P00A{printer_id:09d}",
            },
            headers=farm.headers(),
        )
        assert r.status_code == 201, r.text
        assert r.json()["in_layout"] is False  # it has no printer-service
    for printer_id in (2, 999_999, 1, 13, 2**31 - 1):
        for method, command, body in ROUTES:
            r = _call(farm, method, printer_id, command, body)
            assert r.status_code == 404, (printer_id, command, r.text)
            assert f"printer {printer_id} not found" in r.json()["detail"]
    assert farm.calls == []  # no id reached the HTTP client


def test_a_printer_of_the_layout_reaches_its_printer_service(farm: Api) -> None:
    for method, command, body in ROUTES:
        r = _call(farm, method, 14, command, body)
        assert r.status_code in (200, 201, 202), r.text
        assert farm.calls[-1][:2] == (method, f"127.0.0.1:50014/{command}")


def test_a_layout_printer_not_in_mongodb_is_404(farm: Api) -> None:
    r = _call(farm, "GET", 1000, "status", None)
    assert r.status_code == 404
    assert farm.calls == []


def test_a_layout_printer_whose_port_would_pass_65535_is_502_without_a_call(farm: Api) -> None:
    farm.ctx.store.db.printers.insert_one({"_id": 1000, "model": "P1S"})
    for method, command, body in ROUTES:
        r = _call(farm, method, 1000, command, body)
        assert r.status_code == 502, r.text
        assert "port 501000 is outside 1..65535" in r.json()["detail"]
    assert farm.calls == []


def test_a_printer_service_that_does_not_answer_is_still_502(
    farm: Api, mongo_db: MongoTestDb, tmp_path: Path
) -> None:
    """Real sockets: printer 14 is in the layout and in MongoDB, nothing listens on its port."""
    settings = make_settings(
        mongo_db, farm_layout=_layout(tmp_path), printer_service_url_template="http://127.0.0.1:9"
    )
    runtime = build(settings, gcode_store=farm.ctx.gcode)
    try:
        with TestClient(runtime.app) as client:
            r = client.get("/api/printers/14/status", headers=farm.headers(Role.VIEWER))
    finally:
        runtime.close()
    assert r.status_code == 502
    assert "printer-service unreachable" in r.json()["detail"]


# -- plates ------------------------------------------------------------------------------------


def _bed(api: Api, bed_id: int, rack: str, slot: int) -> Any:
    return api.client.post(
        "/api/beds",
        json={"id": bed_id, "type": "smooth_pei", "home": {"rack": rack, "slot": slot}},
        headers=api.headers(),
    )


@pytest.mark.parametrize(
    ("rack", "slot", "reason"),
    [
        ("Z", 1, "rack 'Z' is not in the farm layout (racks: A, B)"),
        ("A", 5, "rack A has slots 1..4; there is no slot 5"),
        ("B", 3, "rack B has slots 1..2; there is no slot 3"),
        ("A", 1, "slot A/1 is the home of plate 801"),  # the layout's plate, not yet seeded
    ],
)
def test_a_plate_outside_the_slots_of_the_layout_is_422(
    farm: Api, rack: str, slot: int, reason: str
) -> None:
    r = _bed(farm, 900, rack, slot)
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == reason
    assert farm.ctx.store.db.beds.find_one({"_id": 900}) is None


def test_a_slot_that_is_another_plates_home_is_422_on_create_and_patch(farm: Api) -> None:
    assert _bed(farm, 900, "A", 2).status_code == 201
    r = _bed(farm, 901, "A", 2)
    assert r.status_code == 422
    assert r.json()["detail"] == "slot A/2 is the home of plate 900"
    assert _bed(farm, 901, "B", 1).json()["home"] == {"rack": "B", "slot": 1}
    admin = farm.headers()
    for home, reason in [
        ({"rack": "A", "slot": 2}, "slot A/2 is the home of plate 900"),
        ({"rack": "Q", "slot": 1}, "rack 'Q' is not in the farm layout"),
        ({"rack": "B", "slot": 9}, "rack B has slots 1..2"),
    ]:
        r = farm.client.patch("/api/beds/901", json={"home": home}, headers=admin)
        assert r.status_code == 422, r.text
        assert reason in r.json()["detail"]
    r = farm.client.patch("/api/beds/901", json={"home": {"rack": "B", "slot": 2}}, headers=admin)
    assert r.status_code == 200, r.text
    r = farm.client.patch("/api/beds/901", json={"home": {"rack": "B", "slot": 2}}, headers=admin)
    assert r.status_code == 200  # its own home again
    assert farm.client.get("/api/beds/901", headers=admin).json()["location"]["slot"] == 2
