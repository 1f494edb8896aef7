"""Finding 5: a print sent onto a plate that still holds a part (bambu-lan-protocol.md 11.17).

"The printer itself has no 'bed cleared' concept": P1S, P1P, A1 and A1 mini have no sensor
that sees the bed, so a ``project_file`` on a used plate STARTS (PREPARE, RUNNING) and prints
onto the old part. Only X1C/X1E have the foreign-object check that refuses it with
print_error 0x0500806E "foreign objects on heatbed". A simulator that refused on every model
would hide the farm's mistake; bambu-sim lets the print run on P1/A1 and records a violation
in its control API (``GET /printers/{id}``: ``violations`` and ``violation_log``; farm-wide
``GET /violations``: ``{"violations": n, "violation_log": [...]}``), as robot-arm-sim counts
its own.

The plate is put there through the control API (``PUT /printers/{id}/plate``), as the robot
simulator does; the job goes through a stranger's FTPS and MQTT clients.
"""

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from pantheon_sim.bambu.farm import BambuSimFarm

from .simfarm import MODELS, X1_MODELS
from .stranger import StrangerFtps, StrangerMqtt, build_3mf, gcode_text, project_file

pytestmark = pytest.mark.integration

FOREIGN_OBJECTS = 0x0500806E


def _get(farm: BambuSimFarm, path: str, *, missing_ok: bool = False) -> dict[str, Any]:
    assert farm.control_url is not None
    reply = httpx.get(f"{farm.control_url}{path}", timeout=5)
    if missing_ok and reply.status_code == 404:
        return {}
    reply.raise_for_status()
    body = reply.json()
    assert isinstance(body, dict)
    return body


@pytest.mark.parametrize("model", MODELS)
def test_print_on_a_used_plate(
    model: str,
    printer: int,
    farm: BambuSimFarm,
    ftps: Callable[[int], StrangerFtps],
    mqtt: Callable[[int], StrangerMqtt],
) -> None:
    """P1/A1: ``project_file`` on a plate ``with_part`` starts the print (echo success,
    PREPARE/RUNNING) and the control API counts one violation for the printer and the farm.
    X1: refused, echo failed, print_error 0x0500806E, still IDLE."""
    name = f"on-part-{model.lower()}.gcode.3mf"
    ftps(printer).upload(name, build_3mf(gcode_text(minutes=10)), type_i=True)
    assert farm.control_url is not None
    put = httpx.put(
        f"{farm.control_url}/printers/{printer}/plate", json={"plate": "with_part"}, timeout=5
    )
    put.raise_for_status()
    assert put.json()["plate"] == "with_part"
    farm_before = _get(farm, "/violations", missing_ok=True).get("violations", 0)
    printer_before = _get(farm, f"/printers/{printer}").get("violations", 0)

    client = mqtt(printer)
    client.pushall()
    mark = client.mark()
    seq = client.send("print", "project_file", **project_file(name))
    echo = client.reply(seq, "project_file", start=mark)

    if model in X1_MODELS:
        assert echo.get("result") == "failed", echo
        client.wait_for(lambda m: client.state.get("print_error") == FOREIGN_OBJECTS, 5, mark)
        assert client.state["gcode_state"] == "IDLE"
        assert _get(farm, f"/printers/{printer}")["gcode_state"] == "IDLE"
        return

    verdict = f"result {echo.get('result')!r}, reason {echo.get('reason')!r}"
    assert str(echo.get("result", "")).lower() == "success", (
        f"{model} has no bed sensor: the print starts on the part ({verdict})"
    )
    client.wait_for(lambda m: client.state.get("gcode_state") in ("PREPARE", "RUNNING"), 5, mark)
    assert client.state.get("print_error") != FOREIGN_OBJECTS

    status = _get(farm, f"/printers/{printer}")
    assert isinstance(status.get("violations"), int), sorted(status)
    assert status["violations"] == printer_before + 1
    log = status["violation_log"]
    assert isinstance(log, list)
    assert log
    assert log[-1].get("printer_id") == printer, log[-1]

    everywhere = _get(farm, "/violations")
    assert set(everywhere) >= {"violations", "violation_log"}
    assert everywhere["violations"] == farm_before + 1
    assert any(e.get("printer_id") == printer for e in everywhere["violation_log"])
