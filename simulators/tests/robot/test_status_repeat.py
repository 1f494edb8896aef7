"""``--status-repeat-s``: the arm re-publishes its current status, never one older than sent."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pantheon_contracts.robot import RobotJob
from pantheon_sim.robot import Faults, RobotArmSim, RobotSimSettings
from pantheon_sim.robot.testing import RobotBus as Bus

Settings = Callable[..., RobotSimSettings]
AVAILABLE = {"status": "available"}


def count(statuses: list[dict[str, Any]], status: dict[str, Any]) -> int:
    """How many times exactly ``status`` was received."""
    return sum(1 for s in statuses if s == status)


def after(statuses: list[dict[str, Any]], job_id: str) -> list[dict[str, Any]]:
    """The statuses after the first one naming ``job_id`` (none if it never came)."""
    for index, status in enumerate(statuses):
        if status.get("job_id") == job_id:
            return statuses[index + 1 :]
    return []


def test_repeats_say_busy_then_available_then_error_with_the_job_id(
    bus: Bus, sim_settings: Settings
) -> None:
    settings = sim_settings(robot_sim_take_s=0.8, robot_sim_status_repeat_s=0.1)
    with RobotArmSim(settings, faults=Faults(error_on_job=3)) as sim:
        bus.wait_statuses(lambda s: count(s, AVAILABLE) >= 3)  # idle, no job yet: bare

        busy = {"status": "busy", "job_id": "t-1"}
        done = {"status": "available", "job_id": "t-1"}
        start = bus.mark()
        bus.send(RobotJob.take(14, 804, job_id="t-1"))
        seen = bus.wait_for(done)[start:]
        assert count(seen[: seen.index(done)], busy) >= 3  # busy, then repeats while it runs
        assert all(s == busy for s in seen[: seen.index(done)])
        bus.wait_statuses(lambda s: count(s[start:], done) >= 3)  # repeats once idle

        # a refusal does not change the arm's state: the repeats go on naming t-1
        start = bus.mark()
        bus.send(RobotJob.take(14, 804, job_id="bad"))
        seen = bus.wait_statuses(lambda s: count(after(s[start:], "bad"), done) >= 2)[start:]
        assert {x["status"] for x in seen if x.get("job_id") == "t-1"} == {"available"}

        # a failed motion latches the error: the repeats say so, reason included
        error = {
            "status": "error",
            "job_id": "j3",
            "reason": "scripted fault: motion of job 3 failed half-way",
        }
        start = bus.mark()
        bus.send(RobotJob.replace(14, 827, job_id="j3"))
        bus.wait_statuses(lambda s: count(s[start:], error) >= 3)

        start = bus.mark()
        sim.operator_available()  # clears the error: back to available after t-1
        seen = bus.wait_statuses(lambda s: count(s[start:], done) >= 2)[start:]
        cleared = seen.index(AVAILABLE)
        assert error not in seen[cleared:]


def test_a_busy_repeat_unmasks_an_available_that_was_not_the_arms(
    bus: Bus, sim_settings: Settings
) -> None:
    settings = sim_settings(robot_sim_take_s=1.0, robot_sim_status_repeat_s=0.1)
    with RobotArmSim(settings) as sim:
        bus.send(RobotJob.take(14, 804, job_id="t-1"))
        bus.wait_for({"status": "busy", "job_id": "t-1"})
        start = bus.mark()
        sim.operator_available()  # published by hand while the motion really runs
        seen = bus.wait_for({"status": "available", "job_id": "t-1"})[start:]
        forged = seen.index(AVAILABLE)
        assert {"status": "busy", "job_id": "t-1"} in seen[forged + 1 :]


def test_without_echo_the_repeats_are_bare(bus: Bus, sim_settings: Settings) -> None:
    settings = sim_settings(
        robot_sim_echo_job_id=False, robot_sim_take_s=0.6, robot_sim_status_repeat_s=0.1
    )
    with RobotArmSim(settings):
        bus.wait_statuses(lambda s: len(s) >= 2)
        bus.send(RobotJob.take(14, 804, job_id="t-1"))
        seen = bus.wait_statuses(lambda s: count(s, {"status": "busy"}) >= 3)
        bus.wait_statuses(lambda s: s[-1] == AVAILABLE and len(s) > len(seen))
        assert all(set(s) == {"status"} for s in bus.statuses())


def test_the_repeat_is_off_by_default(bus: Bus, sim_settings: Settings) -> None:
    with RobotArmSim(sim_settings()):
        bus.wait_for(AVAILABLE)
        time.sleep(0.5)  # what the test proves is an absence: give a repeat time to show up
        assert bus.statuses() == [AVAILABLE]


def test_a_repeat_never_publishes_a_stale_busy_after_available(
    bus: Bus, sim_settings: Settings
) -> None:
    """Many short motions under a very fast repeat: the race between a repeat reading `busy`
    and the motion's end publishing `available` must never let the stale `busy` out last."""
    settings = sim_settings(robot_sim_homing_s=0.01, robot_sim_status_repeat_s=0.002)
    jobs = [f"h-{n}" for n in range(60)]
    with RobotArmSim(settings):
        bus.wait_for(AVAILABLE)
        for job_id in jobs:
            bus.send(RobotJob.homing(job_id=job_id))
            bus.wait_for({"status": "available", "job_id": job_id})
        # let the last job's repeats come in
        last = {"status": "available", "job_id": jobs[-1]}
        bus.wait_statuses(lambda s: count(s, last) >= 5)
    seen = bus.statuses()
    for job_id in jobs:
        naming = [s["status"] for s in seen if s.get("job_id") == job_id]
        assert naming[-1] == "available", (job_id, naming)
        first_available = naming.index("available")
        assert "busy" not in naming[first_available:], (job_id, naming)
        assert "busy" in naming
    assert {s["status"] for s in seen} == {"available", "busy"}
