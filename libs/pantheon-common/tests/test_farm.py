"""Farm layout validation, and idempotent seeding into a real MongoDB-protocol server."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from pantheon_common.errors import ConfigurationError
from pantheon_common.farm import (
    FarmLayout,
    load_layout,
    parse_printer_ids,
    printer_service_url,
    seed_farm,
)
from pantheon_contracts.beds import BedState
from pantheon_contracts.names import Collections

REPO = Path(__file__).resolve().parents[3]
SEED_LAYOUT = REPO / "farm.yaml"


def test_seed_farm_file_is_the_documented_farm() -> None:
    layout = load_layout(SEED_LAYOUT)
    assert sorted(layout.printer_ids) == parse_printer_ids("11-15,21-25,31-35,41-45")
    assert all(p.driver == "bambu" for p in layout.printers)
    p14 = layout.printer(14)
    assert (p14.where.row, p14.where.col) == (1, 4)
    assert len({p.serial for p in layout.printers}) == 20
    assert layout.beds
    assert all(b.home.rack in {r.id for r in layout.racks} for b in layout.beds)


def test_access_code_comes_from_environment() -> None:
    p14 = load_layout(SEED_LAYOUT).printer(14)
    assert p14.access_code({"PRINTER_14_ACCESS_CODE": "12345678"}) == "12345678"
    with pytest.raises(ConfigurationError, match="PRINTER_14_ACCESS_CODE"):
        p14.access_code({})


def _layout(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "printers": [
            {"id": 11, "model": "P1S", "host": "127.0.0.11", "serial": "01P00A000000011"},
            {"id": 12, "model": "X1C", "host": "127.0.0.12", "serial": "00M00A000000012"},
        ],
        "racks": [{"id": "A", "row": 1, "slots": 4}],
        "beds": [
            {"id": 801, "type": "textured_pei", "home": {"rack": "A", "slot": 1}},
            {"id": 802, "type": "smooth_pei", "home": {"rack": "A", "slot": 2}},
        ],
    }
    base.update(changes)
    return base


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"printers": [_layout()["printers"][0]] * 2}, "duplicate printer id"),
        (
            {"beds": [{"id": 801, "type": "textured_pei", "home": {"rack": "Z", "slot": 1}}]},
            "unknown rack",
        ),
        (
            {"beds": [{"id": 801, "type": "textured_pei", "home": {"rack": "A", "slot": 9}}]},
            "only 4 slots",
        ),
        (
            {
                "beds": [
                    {"id": 801, "type": "textured_pei", "home": {"rack": "A", "slot": 1}},
                    {"id": 802, "type": "cool_plate", "home": {"rack": "A", "slot": 1}},
                ]
            },
            "duplicate bed home slot",
        ),
        (
            {"printers": [{"id": 11, "model": "Ender3", "host": "h", "serial": "01P00A000000011"}]},
            "printers.0.model",
        ),
        ({"printers": [{"id": 11, "model": "P1S", "host": "h"}]}, "serial"),
        ({"robots": []}, "robots"),
    ],
)
def test_invalid_layouts_are_explained(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    import yaml

    path = tmp_path / "farm.yaml"
    path.write_text(yaml.safe_dump(_layout(**change)))
    with pytest.raises(ConfigurationError, match=message):
        load_layout(path)


def test_unreadable_layout(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_layout(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("printers: [unclosed")
    with pytest.raises(ConfigurationError, match="not valid YAML"):
        load_layout(bad)


@pytest.mark.parametrize(
    ("spec", "ids"),
    [("11-13,21", [11, 12, 13, 21]), ("14", [14]), ("12, 11,11", [11, 12])],
)
def test_parse_printer_ids(spec: str, ids: list[int]) -> None:
    assert parse_printer_ids(spec) == ids


@pytest.mark.parametrize("spec", ["", "a-b", "15-11", "11-", "-3"])
def test_parse_printer_ids_rejects(spec: str) -> None:
    with pytest.raises(ValueError, match="printer"):
        parse_printer_ids(spec)


def test_seed_is_idempotent_and_keeps_live_state(mongo_db: Any) -> None:
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_db.url, tz_aware=True)
    db = client[mongo_db.name]
    layout = FarmLayout.model_validate(_layout())
    try:
        assert seed_farm(db, layout) == {"printers": 2, "racks": 1, "beds": 2}
        # the farm runs: plate 801 goes into printer 11 and printer 11 prints
        db[Collections.BEDS].update_one(
            {"_id": 801},
            {"$set": {"state": BedState.IN_PRINTER.value, "location.printer_id": 11}},
        )
        db[Collections.PRINTERS].update_one({"_id": 11}, {"$set": {"state": "printing"}})
        # re-seed from an edited layout: printer 11's host changed, bed 802 left the layout
        edited = _layout(beds=[_layout()["beds"][0]])
        edited["printers"][0]["host"] = "127.0.1.11"
        assert seed_farm(db, FarmLayout.model_validate(edited)) == {
            "printers": 0,
            "racks": 0,
            "beds": 0,
        }
        p11 = db[Collections.PRINTERS].find_one({"_id": 11})
        assert p11 is not None
        assert (p11["host"], p11["state"], p11["model"]) == ("127.0.1.11", "printing", "P1S")
        assert p11["location"] == {"row": 1, "col": 1}
        bed = db[Collections.BEDS].find_one({"_id": 801})
        assert bed is not None
        assert (bed["state"], bed["location"]["printer_id"]) == ("in_printer", 11)
        gone = db[Collections.BEDS].find_one({"_id": 802})
        assert gone is not None
        assert not gone["in_layout"]
        assert db[Collections.PRINTERS].count_documents({}) == 2
        assert db[Collections.BEDS].count_documents({"state": "clean"}) == 1
    finally:
        client.close()


def test_seed_command(mongo_db: Any) -> None:
    env = {**os.environ, "MONGO_URL": mongo_db.url, "MONGO_DB": mongo_db.name}
    cmd = [sys.executable, "-m", "pantheon_common.farm_cli", "--layout", str(SEED_LAYOUT), "seed"]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert first.returncode == 0, first.stderr
    assert "20 new printers" in first.stdout
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert "0 new printers" in second.stdout
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_db.url)
    try:
        assert client[mongo_db.name][Collections.PRINTERS].count_documents({}) == 20
        assert client[mongo_db.name][Collections.BEDS].count_documents({}) == 40
    finally:
        client.close()


def test_seed_command_without_mongo_explains(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MONGO_URL"}
    result = subprocess.run(
        [sys.executable, "-m", "pantheon_common.farm_cli", "--layout", str(SEED_LAYOUT), "seed"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "MONGO_URL" in result.stderr


@pytest.mark.parametrize(
    ("template", "url"),
    [
        ("http://printer-service-{id}:8080", "http://printer-service-14:8080"),
        ("http://printer-service-{printer_id}:8080/", "http://printer-service-14:8080"),
        ("http://127.0.0.1:{port}", "http://127.0.0.1:50014"),
        ("http://127.0.0.1:52{id:03d}", "http://127.0.0.1:52014"),
    ],
)
def test_printer_service_url(template: str, url: str) -> None:
    assert printer_service_url(template, 14) == url


def test_printer_service_url_rejects_unknown_fields() -> None:
    with pytest.raises(ConfigurationError, match="PRINTER_SERVICE_URL_TEMPLATE"):
        printer_service_url("http://{host}:8080", 14)
