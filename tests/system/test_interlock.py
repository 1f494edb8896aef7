"""The door interlock over the seed's own interfaces (architecture.md 3.2): the arm never reaches
into a printer that is printing, whatever arrives on ``ready``, and a real finish is never
swallowed.

One farm (printers 21, 22, 23, P1S; 4 s of PREPARE so a test can catch it) serves the module.
Every test also runs under the robot simulator's safety oracle (conftest): a job the arm would
refuse as damaging fails the test, except where a test provokes one on purpose.

- ``21`` typed into ``ready`` while printer 21 prints, prepares, is paused or is offline: no
  message on ``robot_arm/job``, the task held with the reason (for the print it names), the
  print ends normally, then exactly one take and one replace follow for it.
- 25 made-up ``message_id``s for printer 22 while it prints: all dead-lettered with the
  reason, and one swap only, for the print that really ended.
- A duplicate ``ready`` of a print whose swap is done, and the same again after a RabbitMQ
  restart while the next print runs: no motion.
- A start asked for while a take is in flight: refused by printer-service with the reason.
- The oracle: a take published by hand for a printing printer (dispatching paused) is refused
  by the robot simulator and counted as a violation.
- A hold on printer 21 (offline when its take was due) while 22 and 23 finish: both swapped.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pantheon_contracts.names import ROBOT_JOB_TOPIC
from pantheon_devtools.infra import Endpoints

from .conftest import Farm, FarmPorts, gcode_package, running_farm, seed_job
from .test_fault_rabbitmq import _amqp_answers, _rabbitmqctl

PRINTERS = [21, 22, 23]
PORTS = FarmPorts.block(26700, printer_port_base=25000)
ENV = {"TAKE_TIMEOUT_S": "20", "REPLACE_TIMEOUT_S": "20", "DISPATCH_RETRY_S": "1"}
PREPARE_S = 4.0
FILE = "interlock.gcode.3mf"
QUIET_S = 3.0
"""How long a test watches robot_arm/job to show that nothing is sent."""


@pytest.fixture(scope="module")
def farm(infra: Endpoints) -> Iterator[Farm]:
    with running_farm(
        infra, PRINTERS, PORTS, env=ENV, args=["--prepare-s", str(PREPARE_S)]
    ) as running:
        running.upload(FILE, gcode_package(minutes=100))  # 10 s at speed 600
        running.upload("short.gcode.3mf", gcode_package(minutes=20))  # 2 s
        yield running


@pytest.fixture
def quiet(farm: Farm) -> Farm:
    """Each test starts with nothing open or held and every printer idle or finished."""
    farm.wait(
        lambda: (
            not farm.held()
            and all(t["status"] in ("done", "aborted") for t in farm.tasks())
            and all(farm.printer(p)["state"] in ("idle", "finished") for p in PRINTERS)
            and farm.dispatch_state()["state"] == "idle"
        ),
        60,
        "a quiet farm (no task open or held, no printer busy)",
    )
    farm.watch_bus()
    return farm


def jobs_for(farm: Farm, printer_id: int, since: int = 0) -> list[dict[str, Any]]:
    assert farm.bus is not None
    return [j for j in farm.bus.jobs_seen()[since:] if j.get("printer_id") == printer_id]


def bus_mark(farm: Farm) -> int:
    assert farm.bus is not None
    return len(farm.bus.jobs_seen())


def assert_nothing_sent(farm: Farm, printer_id: int, since: int) -> None:
    """robot_arm/job carries nothing for the printer during QUIET_S."""
    deadline = time.monotonic() + QUIET_S
    while time.monotonic() < deadline:
        sent = jobs_for(farm, printer_id, since)
        assert not sent, f"a robot job for printer {printer_id} was sent: {sent}"
        time.sleep(0.1)


def current_print(farm: Farm, printer_id: int, job_id: str) -> str:
    """The print id of ``job_id`` once printer-service tracks it as the printer's print."""

    def tracked() -> str | None:
        current = farm.printer(printer_id).get("current_print") or {}
        return current.get("print_id") if current.get("job_id") == job_id else None

    return farm.wait(tracked, 30, f"job {job_id} tracked as printer {printer_id}'s print")


def swapped_once(farm: Farm, printer_id: int, print_id: str, since: int) -> None:
    """Exactly one take and one replace for ``print_id``, both done, one each on the bus."""
    farm.wait(
        lambda: [t["status"] for t in farm.tasks(print_id=print_id)] == ["done", "done"],
        60,
        f"the take and the replace of print {print_id} done",
        context=lambda: json.dumps(farm.tasks(printer_id=printer_id), default=str)[:3000],
    )
    sent = jobs_for(farm, printer_id, since)
    assert [j["take_from_printer"] for j in sent] == [True, False], sent
    assert all(j["load_next_bed_without_homing"] is True for j in sent), sent
    kinds = sorted(t["kind"] for t in farm.tasks(print_id=print_id))
    assert kinds == ["replace", "take"]
    farm.assert_no_motion_twice()


def held_for(farm: Farm, printer_id: int) -> list[dict[str, Any]]:
    return [t for t in farm.held() if t["printer_id"] == printer_id]


# ----------------------------------------------------------------------------- ready typed


def _bring_to(farm: Farm, state: str, job: str) -> None:
    printer = 21
    if state == "preparing":
        farm.wait(lambda: farm.printer(printer)["state"] == "preparing", 20, "21 preparing")
        return
    farm.wait(lambda: farm.printer(printer)["state"] == "printing", 30, "21 printing")
    if state == "paused":
        reply = farm.api.post(f"/api/printers/{printer}/pause")
        assert reply.status_code == 202, reply.text
        farm.wait(lambda: farm.printer(printer)["state"] == "paused", 20, "21 paused")
    elif state == "offline":
        fault = {"drop_mqtt_after_s": 0, "offline_s": 8}
        assert farm.sim.post(f"/printers/{printer}/faults", json=fault).status_code == 200
        farm.wait(lambda: farm.printer(printer)["state"] == "offline", 20, "21 offline")


def _let_it_end(farm: Farm, state: str) -> None:
    if state == "paused":
        reply = farm.api.post("/api/printers/21/resume")
        assert reply.status_code == 202, reply.text
    elif state == "offline":
        farm.wait(lambda: farm.printer(21)["online"], 40, "21 back online")
        farm.sim.post("/printers/21/faults", json={})


@pytest.mark.parametrize("state", ["printing", "preparing", "paused", "offline"])
def test_a_ready_typed_while_a_printer_is_busy_moves_nothing_until_its_print_ends(
    quiet: Farm, state: str
) -> None:
    farm = quiet
    mark = bus_mark(farm)
    job = farm.queue_job(FILE, "textured_pei", printer_id=21)
    print_id = current_print(farm, 21, job)
    _bring_to(farm, state, job)

    # what the README teaches to "simulate a print completion", typed three times
    farm.publish_ready(b"21", b"21\n", b"21")
    held = farm.wait(lambda: held_for(farm, 21), 15, "the swap of printer 21 held")
    assert [t["id"] for t in held] == [f"{print_id}:take"]
    reason = held[0]["error"]
    assert f"print {print_id} has not ended on printer 21" in reason, reason
    assert state in reason, reason
    assert held[0]["hold"] == {"scope": "printer", "until": "print_end"}
    assert_nothing_sent(farm, 21, mark)
    if state == "printing":
        # closing it now would leave the real end unserved: refused with the reason
        reply = farm.api.post(f"/api/robot/tasks/{held[0]['id']}/resolve", json={"action": "abort"})
        assert reply.status_code == 409, reply.text
        assert "has not ended" in reply.text

    _let_it_end(farm, state)
    farm.wait_jobs([job], "finished", 90)
    swapped_once(farm, 21, print_id, mark)
    take = next(t for t in farm.tasks(print_id=print_id) if t["kind"] == "take")
    assert [h["actor"] for h in take["history"]][:2] == ["system", "print_end"], take
    assert len(farm.tasks(printer_id=21, status="done")) == len(farm.tasks(printer_id=21))


# ----------------------------------------------------------------------------- forged ids


def test_made_up_message_ids_are_dead_lettered_and_only_the_real_end_swaps(
    quiet: Farm,
) -> None:
    farm = quiet
    mark = bus_mark(farm)
    job = farm.queue_job(FILE, "textured_pei", printer_id=22)
    print_id = current_print(farm, 22, job)
    made_up = [f"made-up-{i:02d}" for i in range(25)]
    farm.publish_ready(*[b"22"] * 25, message_ids=made_up)

    def dead() -> list[dict[str, Any]]:
        letters = farm.get("/api/robot/dead-letters", queue="ready", limit=1000)
        return [d for d in letters if d["message_id"] in made_up]

    letters = farm.wait(lambda: len(dead()) == 25 and dead(), 30, "25 dead letters")
    assert all("names no print of printer 22" in d["reason"] for d in letters), letters
    assert_nothing_sent(farm, 22, mark)
    assert not held_for(farm, 22)

    farm.wait_jobs([job], "finished", 60)
    swapped_once(farm, 22, print_id, mark)
    assert {t["print_id"] for t in farm.tasks(printer_id=22)} >= {print_id}
    assert not [t for t in farm.tasks(printer_id=22) if t["print_id"] in made_up]


@pytest.mark.broker_restart
def test_a_repeated_ready_of_a_swapped_print_moves_nothing_even_after_a_broker_restart(
    quiet: Farm, infra: Endpoints
) -> None:
    farm = quiet
    mark = bus_mark(farm)
    first = farm.queue_job("short.gcode.3mf", "textured_pei", printer_id=23)
    first_print = current_print(farm, 23, first)
    farm.wait_jobs([first], "finished", 60)
    swapped_once(farm, 23, first_print, mark)

    # printer-service's ready again (a confirm lost in a broker crash repeats it)
    mark = bus_mark(farm)
    farm.publish_ready(b"23", message_ids=[first_print])
    assert_nothing_sent(farm, 23, mark)

    second = farm.queue_job(FILE, "textured_pei", printer_id=23)
    second_print = current_print(farm, 23, second)
    _rabbitmqctl("stop_app")
    try:
        time.sleep(1)
    finally:
        _rabbitmqctl("start_app")
        _rabbitmqctl("await_startup")
    farm.wait(lambda: _amqp_answers(infra.amqp_url), 60, "RabbitMQ to answer again")
    assert farm.printer(23)["state"] in ("preparing", "printing"), farm.printer(23)
    farm.publish_ready(b"23", b"23", message_ids=[first_print, first_print])
    assert_nothing_sent(farm, 23, mark)
    assert len(farm.tasks(print_id=first_print)) == 2

    farm.wait_jobs([second], "finished", 90)
    swapped_once(farm, 23, second_print, mark)


# ----------------------------------------------------------------------------- the other way


def test_no_print_starts_while_a_take_is_in_flight(quiet: Farm) -> None:
    farm = quiet
    delay = farm.robot.post("/faults", json={"status_delay_s": 6})
    assert delay.status_code == 200, delay.text
    try:
        job = farm.queue_job("short.gcode.3mf", "textured_pei", printer_id=22)
        print_id = current_print(farm, 22, job)
        take = farm.wait(
            lambda: [t for t in farm.tasks(print_id=print_id, status="sent")],
            30,
            "the take of printer 22 in flight",
        )[0]
        assert take["kind"] == "take"
        # a person (or a job) asks printer 22 to print now
        reply = farm.api.post("/api/printers/22/print", json={"file": "short.gcode.3mf"})
        assert reply.status_code == 409, reply.text
        detail = reply.json()["detail"]
        assert "swapping this printer's plate" in detail, detail
        assert take["id"] in detail, detail
        queued = farm.queue_job("short.gcode.3mf", "textured_pei", printer_id=22)
        time.sleep(1.5)
        assert farm.jobs()[queued]["status"] == "queued"  # not claimed during the swap
        status = farm.get("/api/printers/22/status")
        assert "swapping" in status["dispatch"]["reason"], status["dispatch"]
    finally:
        farm.robot.post("/faults", json={"status_delay_s": 0})
    farm.wait_jobs([queued], "finished", 90)


# ----------------------------------------------------------------------------- the oracle


@pytest.mark.robot_violations(1)
def test_the_robot_simulator_refuses_a_take_from_a_printing_printer(quiet: Farm) -> None:
    farm = quiet
    bus = farm.watch_bus()
    paused = farm.api.post("/api/robot/dispatch/pause", json={"reason": "hand test"})
    assert paused.status_code == 200, paused.text
    try:
        job = farm.queue_job(FILE, "textured_pei", printer_id=21)
        current_print(farm, 21, job)
        farm.wait(lambda: farm.printer(21)["state"] == "printing", 30, "21 printing")
        plate = farm.world()["printers"]["21"]
        before = farm.robot_violations()[0]
        motions = len(farm.motions())
        bus.publish(ROBOT_JOB_TOPIC, seed_job(21, plate, take=True))

        def refusal() -> dict[str, Any] | None:
            errors = [s for s in bus.statuses_seen() if s.get("status") == "error"]
            return errors[-1] if errors else None

        error = farm.wait(refusal, 15, "the robot's error status")
        assert "printing" in (error.get("reason") or ""), error
        count, log = farm.robot_violations()
        assert count == before + 1
        assert log[-1]["printer_id"] == 21
        assert "printing" in log[-1]["reason"]
        assert len(farm.motions()) == motions  # the door stayed shut
        assert farm.world()["printers"]["21"] == plate
        refused = farm.ledger(event="refused")
        assert refused[-1]["violation"], refused[-1]
        # a person clears the arm's error status
        farm.robot.post("/operator/available")
    finally:
        farm.api.post("/api/robot/dispatch/resume")
    farm.wait_jobs([job], "finished", 60)
    farm.wait(
        lambda: [t["status"] for t in farm.tasks(printer_id=21)][:2] == ["done", "done"],
        60,
        "the swap after printer 21's print",
    )


# ----------------------------------------------------------------------------- scoped holds


def test_a_hold_on_one_printer_lets_the_others_be_swapped(quiet: Farm) -> None:
    farm = quiet
    mark = bus_mark(farm)
    paused = farm.api.post("/api/robot/dispatch/pause", json={"reason": "robot serviced"})
    assert paused.status_code == 200, paused.text
    try:
        a = farm.queue_job("short.gcode.3mf", "textured_pei", printer_id=21)
        a_print = current_print(farm, 21, a)
        farm.wait_jobs([a], "finished", 60)
        farm.wait(lambda: farm.tasks(print_id=a_print), 20, "21's swap recorded")
        fault = {"drop_mqtt_after_s": 0, "offline_s": 25}
        assert farm.sim.post("/printers/21/faults", json=fault).status_code == 200
        farm.wait(lambda: farm.printer(21)["state"] == "offline", 20, "21 offline")
    finally:
        farm.api.post("/api/robot/dispatch/resume")
    held = farm.wait(lambda: held_for(farm, 21), 20, "21's take held: printer offline")
    assert held[0]["id"] == f"{a_print}:take"
    assert held[0]["hold"] == {"scope": "printer", "until": None}
    assert "offline" in held[0]["error"], held[0]
    assert farm.dispatch_state()["blocked_printers"] == [21]

    others = [farm.queue_job("short.gcode.3mf", "textured_pei", printer_id=p) for p in (22, 23)]
    prints = [current_print(farm, p, j) for p, j in zip((22, 23), others, strict=True)]
    farm.wait_jobs(others, "finished", 60)
    for printer_id, print_id in zip((22, 23), prints, strict=True):
        swapped_once(farm, printer_id, print_id, mark)
    assert held_for(farm, 21), "21 is still held: only a person releases it"
    assert not jobs_for(farm, 21, mark)

    farm.wait(lambda: farm.printer(21)["online"], 60, "21 back online")
    with contextlib.suppress(Exception):
        farm.sim.post("/printers/21/faults", json={})
    retry = farm.api.post(f"/api/robot/tasks/{held[0]['id']}/resolve", json={"action": "retry"})
    assert retry.status_code == 200, retry.text
    swapped_once(farm, 21, a_print, mark)
