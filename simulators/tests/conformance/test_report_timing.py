"""Finding 4: when the printer reports a change (bambu-lan-protocol.md 2.5, 4.2, 5.7, 5.9).

A real printer pushes a report as soon as a command changes what it reports: the chamber
light after ``system.ledctrl`` (``lights_report``, 5.9) and the bed target after
``print.gcode_line`` ``M140 S60`` (``bed_target_temper``, 5.7) show within about a second,
whatever the idle report pace (clients show what the report says, not the echo). This farm
reports every 30 s when idle, so a report carrying the change within 1.5 s was pushed
because of the change.

During PREPARE, ``gcode_file_prepare_percent`` (a string, 4.2) climbs to 99/100 while
``gcode_state`` still says PREPARE: it is the file's download/preparation progress, done
before the heating and levelling that end PREPARE (HA models.py: "P1 can stall at 99").
This farm prepares for 2 s and reports once a second.

Clients: ``stranger.StrangerMqtt`` and ``bambulabs_api`` (``Printer.gcode``, its FTP upload
and ``start_print``), observed through their own message callbacks.
"""

import io
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest

from pantheon_sim.bambu.printer import SimTiming

from .bla import BlaSession
from .simfarm import MODELS
from .stranger import Received, StrangerMqtt, build_3mf, gcode_text

pytestmark = pytest.mark.integration

TIMING = SimTiming(
    speed=600.0,
    prepare_s=2.0,
    report_interval_s=1.0,
    idle_report_interval_s=30.0,
    cancel_error_s=0.5,
)
WITHIN_S = 1.5
"""A report with the change arrives this soon after the command (idle pace: 30 s)."""


def _chamber_light(m: Received) -> str | None:
    """The chamber light's mode in a push_status, None when it says nothing of it."""
    lights = m.print.get("lights_report")
    if not m.is_report or not isinstance(lights, list):
        return None
    mode = next((x.get("mode") for x in lights if x.get("node") == "chamber_light"), None)
    return None if mode is None else str(mode)


def _light_is(mode: str, m: Received) -> bool:
    return _chamber_light(m) == mode


@pytest.mark.parametrize("model", MODELS)
def test_ledctrl_is_reported_at_once(
    model: str, printer: int, mqtt: Callable[[int], StrangerMqtt]
) -> None:
    """``system.ledctrl`` chamber_light off, then on: each shows in ``lights_report`` of a
    push_status within 1.5 s."""
    client = mqtt(printer)
    assert _chamber_light(Received(0, "", b"", {"print": client.pushall()})) == "on"
    for mode in ("off", "on"):
        mark = client.mark()
        sent = time.monotonic()
        client.send(
            "system",
            "ledctrl",
            led_node="chamber_light",
            led_mode=mode,
            led_on_time=500,
            led_off_time=500,
            loop_times=0,
            interval_time=0,
        )
        try:
            seen = client.wait_for(partial(_light_is, mode), WITHIN_S, mark)
        except AssertionError:
            pytest.fail(f"chamber_light {mode!r} not in any report within {WITHIN_S} s")
        assert seen.t - sent < WITHIN_S


@pytest.mark.parametrize("model", MODELS)
def test_gcode_line_bed_target_is_reported_at_once(
    model: str, printer: int, mqtt: Callable[[int], StrangerMqtt]
) -> None:
    """``print.gcode_line`` ``M140 S60``: ``bed_target_temper`` 60 in a push_status within
    1.5 s."""
    client = mqtt(printer)
    client.pushall()
    mark = client.mark()
    client.send("print", "gcode_line", param="M140 S60\n")
    try:
        client.wait_for(
            lambda m: m.is_report and m.print.get("bed_target_temper") == 60, WITHIN_S, mark
        )
    except AssertionError:
        pytest.fail(f"bed_target_temper 60 not in any report within {WITHIN_S} s")


@pytest.mark.parametrize("model", MODELS)
def test_bambulabs_api_gcode_bed_target_is_reported_at_once(
    model: str, printer: int, bla: Callable[[int], BlaSession]
) -> None:
    """``bambulabs_api.Printer.gcode("M140 S60")``: ``bed_target_temper`` 60 in a push_status
    within 1.5 s (seen by the library's message callback; its getters, which send a pushall
    of their own, are read only afterwards)."""
    session = bla(printer)
    mark = session.mark()
    assert session.printer.gcode("M140 S60")
    try:
        session.wait_for(
            lambda p: (
                p.get("print", {}).get("command") == "push_status"
                and p["print"].get("bed_target_temper") == 60
            ),
            WITHIN_S,
            mark,
        )
    except AssertionError:
        pytest.fail(f"bed_target_temper 60 not in any report within {WITHIN_S} s")
    assert session.printer.mqtt_client.get_bed_temperature_target() == 60


@pytest.mark.parametrize("model", MODELS)
def test_prepare_percent_reaches_99_while_preparing(
    model: str, printer: int, bla: Callable[[int], BlaSession]
) -> None:
    """A job uploaded and started with ``bambulabs_api``: some push_status has
    ``gcode_state`` PREPARE (merged, for P1/A1 deltas) and ``gcode_file_prepare_percent``
    >= 99, a string; then RUNNING and FINISH."""
    session = bla(printer)
    name = f"prep-{model.lower()}.gcode.3mf"
    reply = session.printer.upload_file(io.BytesIO(build_3mf(gcode_text(minutes=10))), name)
    assert str(reply).startswith("226"), reply
    mark = session.mark()
    assert session.printer.start_print(name, 1, use_ams=False, ams_mapping=[-1])
    session.wait_for(
        lambda p: p.get("print", {}).get("gcode_state") == "FINISH", 20, mark
    )  # X1: every report; P1/A1: the FINISH delta carries gcode_state

    merged: dict[str, Any] = {}
    preparing: list[str] = []
    for _, payload in session.reports():  # from the full report of the connect on
        body = payload["print"]
        merged = dict(body) if body.get("msg") == 0 else {**merged, **body}
        if merged.get("gcode_state") == "PREPARE":
            percent = merged.get("gcode_file_prepare_percent")
            assert isinstance(percent, str), f"gcode_file_prepare_percent {percent!r}"
            preparing.append(percent)
    assert preparing, "no report during PREPARE"
    assert max(int(p) for p in preparing) >= 99, (
        f"gcode_file_prepare_percent in PREPARE reports: {preparing}"
    )
