"""Faults during a run (reliability.md F3, F4, F7): nothing lost, nothing done twice, every
doubt held for a person, visible through pantheon-api, and the farm goes on once it is decided.

One farm (printers 31 and 32, X1C) serves the module; each test queues its own jobs, injects one
fault while they run, heals it and then drives the run to its end the way a person would:
held robot tasks (``GET /api/robot/tasks/held``) are resolved after a look at the arm's ledger.

- Mosquitto (the robot bus) killed with SIGKILL while a robot task is in flight, and started
  again by the harness (`ensure_infra`).
- The orchestrator killed with SIGKILL while a robot task is in flight: the supervisor starts
  it again; the task it finds ``sent`` is reconciled from the arm's statuses (job-id
  extension), never re-sent by itself.
- One printer goes silent (bambu-sim fault ``silent``) while it prints, then speaks again: its
  print is finished once and its plate swapped once.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterator

import pytest

from pantheon_devtools.infra import Endpoints, default_run_dir, ensure_infra, mosquitto_paths

from .conftest import Farm, FarmPorts, package_and_jobs, pid_listening, running_farm

PRINTERS = [31, 32]
PORTS = FarmPorts.block(26500, printer_port_base=63000)
# A robot job lost with the broker is held after this long instead of the default 300 s.
ENV = {
    "TAKE_TIMEOUT_S": "15",
    "REPLACE_TIMEOUT_S": "15",
    "HOMING_TIMEOUT_S": "15",
    "DISPATCH_RETRY_S": "2",
}
ROBOT_SPEED = 10  # a take or replace lasts 2 s: long enough to strike while one is in flight


@pytest.fixture(scope="module")
def farm(infra: Endpoints) -> Iterator[Farm]:
    with running_farm(infra, PRINTERS, PORTS, robot_speed=ROBOT_SPEED, env=ENV) as running:
        yield running


@pytest.fixture
def quiet(farm: Farm) -> Farm:
    """Each test starts from a farm with nothing in flight and nothing held."""
    farm.wait(
        lambda: (
            not farm.held()
            and all(t["status"] in ("done", "aborted") for t in farm.tasks())
            and all(farm.printer(p)["state"] in ("idle", "finished") for p in PRINTERS)
        ),
        30,
        "a quiet farm (no task open or held, no printer busy)",
    )
    return farm


def _in_flight(farm: Farm) -> dict[str, object] | None:
    sent = farm.tasks(status="sent")
    return sent[0] if sent else None


def test_mosquitto_killed_while_a_robot_task_is_in_flight(quiet: Farm) -> None:
    farm = quiet
    jobs = package_and_jobs(farm, 2, ["textured_pei"], minutes=20, model="X1C")
    task = farm.wait(lambda: _in_flight(farm), 40, "a robot task in flight")

    pid_file = mosquitto_paths(default_run_dir())["pid"]
    pid = int(pid_file.read_text().split()[0])
    try:
        os.kill(pid, signal.SIGKILL)
        farm.wait(
            lambda: not farm.dispatch_state()["mqtt_connected"],
            20,
            "the orchestrator to notice the robot bus is gone",
        )
    finally:
        ensure_infra()  # starts the harness's Mosquitto again and waits until it answers
    farm.wait(
        lambda: farm.dispatch_state()["mqtt_connected"],
        30,
        "the orchestrator back on the robot bus",
        logs=("robot-arm-orchestrator",),
    )

    decisions = farm.drive_to_completion(jobs, 90)
    farm.assert_each_job_served_once(jobs)
    # the task in flight ended one way or the other, never with a second motion
    final = [t for t in farm.tasks() if t["id"] == task["id"]]
    assert final[0]["status"] in ("done", "aborted"), (final, decisions)


def test_orchestrator_killed_while_a_robot_task_is_in_flight(quiet: Farm) -> None:
    farm = quiet
    jobs = package_and_jobs(farm, 2, ["textured_pei"], minutes=20, model="X1C")
    task = farm.wait(lambda: _in_flight(farm), 40, "a robot task in flight")
    pid = pid_listening(PORTS.orchestrator)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)

    # the supervisor starts it again; the task it finds "sent" is reconciled from the arm's
    # statuses (the native farm's arm echoes job ids): done once the arm confirms that job,
    # never sent a second time, no person needed
    farm.wait(
        lambda: pid_listening(PORTS.orchestrator) not in (None, pid),
        45,
        "the orchestrator started again by the supervisor",
        logs=("pantheon-run",),
    )
    farm.wait(
        lambda: next(t for t in farm.tasks() if t["id"] == task["id"])["status"] == "done",
        45,
        "the task in flight reconciled as done",
        logs=("robot-arm-orchestrator",),
    )
    final = next(t for t in farm.tasks() if t["id"] == task["id"])
    assert "reconciled after a restart" in final["history"][-1]["note"], final
    assert final["attempts"] == 1

    decisions = farm.drive_to_completion(jobs, 90)
    assert decisions == []  # nothing was held
    farm.assert_each_job_served_once(jobs)


def test_a_printer_goes_silent_while_printing(quiet: Farm) -> None:
    farm = quiet
    (job,) = package_and_jobs(farm, 1, ["textured_pei"], minutes=60, printer_id=31)
    farm.wait(lambda: farm.jobs()[job]["status"] == "printing", 30, "the job printing on 31")

    silenced = farm.sim.post("/printers/31/faults", json={"silent": True})
    assert silenced.status_code == 200, silenced.text
    try:
        # the printer finishes the print while it says nothing
        farm.wait(
            lambda: farm.sim_printer(31)["gcode_state"] == "FINISH",
            30,
            "the silent printer to finish its print (bambu-sim control API)",
        )
    finally:
        with contextlib.suppress(Exception):
            farm.sim.post("/printers/31/faults", json={})
    farm.drive_to_completion([job], 60)
    farm.assert_each_job_served_once([job])
    assert farm.printer(31)["online"], json.dumps(farm.printer(31), default=str)
