"""The MQTT link: silence, reconnects, a wrong access code, TLS identity."""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as paho
import pymongo
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion

from pantheon_contracts.printer import PrinterModel
from pantheon_sim.bambu.ftps_client import printer_tls_context
from pantheon_sim.bambu.printer import FaultSettings
from printer_service.adapters.bambu_driver import BambuDriver
from printer_service.domain.ports import LinkState

from .conftest import TOKEN, RuntimeFactory, SimFactory, seed_printer, wait_for


def _driver(runtime: Any) -> BambuDriver:
    driver = runtime.service.driver
    assert isinstance(driver, BambuDriver)
    return driver


def test_a_silent_printer_is_reconnected(
    sim_farm: SimFactory,
    service_factory: RuntimeFactory,
    db: pymongo.database.Database[dict[str, Any]],
) -> None:
    farm = sim_farm([14])
    seed_printer(db, 14, PrinterModel.P1S, 801)
    runtime = service_factory(farm, 14, bambu_silence_timeout_s=1.5, bambu_push_start_after_s=60.0)
    driver = _driver(runtime)
    wait_for(lambda: driver.snapshot().live.state.value == "idle", 10, "first full report")
    assert driver.snapshot().connections == 1
    farm.set_faults(14, FaultSettings(silent=True))
    wait_for(lambda: driver.snapshot().connections >= 2, 10, "a reconnect after silence")
    wait_for(lambda: driver.snapshot().live.state.value == "idle", 10, "state back after reconnect")
    assert driver.snapshot().link == LinkState.CONNECTED


def test_a_wrong_access_code_is_reported_and_not_retried_in_a_loop(
    sim_farm: SimFactory,
    service_factory: RuntimeFactory,
    db: pymongo.database.Database[dict[str, Any]],
) -> None:
    farm = sim_farm([14])
    seed_printer(db, 14, PrinterModel.P1S, 801)
    runtime = service_factory(farm, 14, access_code="wrong999")
    driver = _driver(runtime)
    wait_for(lambda: driver.snapshot().link == LinkState.AUTH_REFUSED, 10, "auth refusal")
    wait_for(
        lambda: (db.printers.find_one({"_id": 14}) or {}).get("link") == "access code refused",
        5,
        "the refusal mirrored",
    )
    doc = db.printers.find_one({"_id": 14}) or {}
    assert "access code refused" in doc["last_error"]
    assert doc["state"] == "offline"
    with TestClient(runtime.app) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "access code refused" in ready.json()["checks"]["printer"]
        status = client.get("/status", headers={"Authorization": f"Bearer {TOKEN}"}).json()
        assert status["link"] == "access code refused"
    assert driver.attempts == 1, "no retry before BAMBU_AUTH_RETRY_S"


def test_a_certificate_for_another_serial_is_refused(
    sim_farm: SimFactory,
    service_factory: RuntimeFactory,
    db: pymongo.database.Database[dict[str, Any]],
    tmp_path: Any,
) -> None:
    farm = sim_farm([14, 15])
    seed_printer(db, 14, PrinterModel.P1S, 801)
    # Point printer 14's service at printer 15's endpoint: same CA, other CN.
    endpoints = (farm.data_dir / "endpoints.json").read_text()
    import json

    data = json.loads(endpoints)
    data["14"] = {**data["15"], "serial": data["14"]["serial"]}
    swapped = tmp_path / "swapped.json"
    swapped.write_text(json.dumps(data))
    runtime = service_factory(farm, 14, bambu_endpoints_file=swapped)
    driver = _driver(runtime)
    wait_for(lambda: driver.snapshot().link == LinkState.TLS_ERROR, 10, "TLS refusal")
    assert "is not the serial" in (driver.snapshot().last_error or "")


def test_a_printer_that_never_answers_tls13_is_reached(
    sim_farm: SimFactory,
    service_factory: RuntimeFactory,
    db: pymongo.database.Database[dict[str, Any]],
) -> None:
    """The P2S firmware never answers a TLS 1.3 ClientHello (protocol doc 2.2): the driver
    caps TLS at 1.2, so it connects and gets reports; a client offering 1.3 would hang."""
    farm = sim_farm([14], tls13_hangs=frozenset({14}))
    seed_printer(db, 14, PrinterModel.P1S, 801)
    driver = _driver(service_factory(farm, 14))
    wait_for(lambda: driver.snapshot().live.state.value == "idle", 15, "a full report")
    assert driver.snapshot().link == LinkState.CONNECTED
    assert farm.printer(14)["tls13_hellos_held"] == 0


def test_dropped_as_the_oldest_client_it_reconnects(
    sim_farm: SimFactory,
    service_factory: RuntimeFactory,
    db: pymongo.database.Database[dict[str, Any]],
) -> None:
    """Past a P1S's 4 MQTT clients the printer may drop the oldest (protocol doc 2.4): other
    tools connecting push printer-service out; it reconnects and keeps the printer's state."""
    farm = sim_farm([14], client_limit="drop_oldest")
    seed_printer(db, 14, PrinterModel.P1S, 801)
    driver = _driver(service_factory(farm, 14))
    wait_for(lambda: driver.snapshot().live.state.value == "idle", 15, "a full report")
    assert driver.snapshot().connections == 1
    ep = farm.endpoint(14)
    others = []
    try:
        for n in range(4):
            tool = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"tool-{n}")
            tool.tls_set_context(printer_tls_context(ep.ca_file))
            tool.username_pw_set("bblp", ep.access_code)
            tool.reconnect_delay_set(60, 60)  # dropped tools stay away
            tool.connect(ep.host, ep.mqtt_port)
            tool.loop_start()
            others.append(tool)
        wait_for(lambda: driver.snapshot().connections >= 2, 20, "a reconnect after the drop")
        wait_for(lambda: driver.snapshot().link == LinkState.CONNECTED, 20, "connected again")
        wait_for(
            lambda: any(c.startswith("pantheon-ps-14-") for c in farm.printer(14)["mqtt_clients"]),
            10,
            "printer-service among the printer's clients again",
        )
        seen = driver.snapshot().last_seen
        wait_for(lambda: driver.snapshot().last_seen != seen, 10, "reports after the reconnect")
    finally:
        for tool in others:
            tool.disconnect()
            tool.loop_stop()
