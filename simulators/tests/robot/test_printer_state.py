"""The arm reads each printer's state before opening its door; damaging jobs are violations.

Over the harness Mosquitto, with a real loopback HTTP server standing in for bambu-sim's
control API (test_bambu_printer_state.py runs the same check against the real bambu-sim).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from pantheon_contracts.robot import RobotJob
from pantheon_sim.robot import RobotArmSim, RobotSimSettings
from pantheon_sim.robot.testing import FakePrinterSim
from pantheon_sim.robot.testing import RobotBus as Bus

Settings = Callable[..., RobotSimSettings]
AVAILABLE = {"status": "available"}
IN_PROGRESS = [("preparing", "PREPARE"), ("printing", "RUNNING"), ("paused", "PAUSE")]


def closed_port() -> int:
    """A loopback port nobody listens on (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status_of(bus: Bus, job_id: str) -> dict[str, Any]:
    """Wait for the first status naming ``job_id`` after the sim's start, and return it."""
    seen = bus.wait_statuses(lambda s: any(x.get("job_id") == job_id for x in s))
    return next(x for x in seen if x.get("job_id") == job_id)


@pytest.mark.parametrize(("state", "gcode_state"), IN_PROGRESS)
@pytest.mark.parametrize("kind", ["take", "replace"])
def test_a_job_on_a_printer_with_a_print_in_progress_is_a_refused_violation(
    bus: Bus,
    sim_settings: Settings,
    printer_sim: FakePrinterSim,
    kind: str,
    state: str,
    gcode_state: str,
) -> None:
    settings = sim_settings(robot_sim_printer_sim_url=printer_sim.url, robot_sim_control_port=0)
    with RobotArmSim(settings) as sim:
        # a job that would be fine on an idle printer: take the plate in it, or load a free one
        sim.set_world({14: 804} if kind == "take" else {})
        job = (
            RobotJob.take(14, 804, job_id="j")
            if kind == "take"
            else RobotJob.replace(14, 804, job_id="j")
        )
        printer_sim.set_state(14, state, gcode_state)
        before = sim.world

        bus.send(job)
        reason = f"printer 14 is {state} ({gcode_state}): opening its door would wreck the print"
        assert status_of(bus, "j") == {"status": "error", "job_id": "j", "reason": reason}

        assert sim.motions() == []  # no motion line: the door never opened
        assert printer_sim.calls == []  # nothing happened to the printer
        assert sim.violations == 1
        world = sim.world
        assert world == {
            **before,
            "jobs_received": 1,
            "violations": 1,
            "violation_log": world["violation_log"],
        }
        (entry,) = world["violation_log"]
        assert (entry["category"], entry["job_id"], entry["printer_id"], entry["kind"]) == (
            "printer_busy",
            "j",
            14,
            kind,
        )
        assert entry["reason"] == reason
        (refused,) = [e for e in sim.ledger_entries() if e["event"] == "refused"]
        assert refused["violation"] == "printer_busy"
        assert sim.control_url is not None
        listed = httpx.get(f"{sim.control_url}/ledger", params={"violation": True}).json()
        assert [e["seq"] for e in listed] == [refused["seq"]]


def test_idle_finished_and_failed_printers_are_opened(
    bus: Bus, sim_settings: Settings, printer_sim: FakePrinterSim
) -> None:
    with RobotArmSim(sim_settings(robot_sim_printer_sim_url=printer_sim.url)) as sim:
        bus.wait_for(AVAILABLE)
        for job, (state, gcode_state) in [
            (RobotJob.take(14, 804, job_id="idle"), ("idle", "IDLE")),
            (RobotJob.replace(14, 827, job_id="finished"), ("finished", "FINISH")),
            (RobotJob.take(14, 827, job_id="failed"), ("failed", "FAILED")),
        ]:
            printer_sim.set_state(14, state, gcode_state)
            bus.send(job)
            bus.wait_for({"status": "available", "job_id": job.job_id})
        assert [m["job_id"] for m in sim.motions()] == ["idle", "finished", "failed"]
        assert sim.violations == 0
        assert printer_sim.reads == [14, 14, 14]


def test_a_second_opened_door_on_a_running_print_is_a_violation(
    bus: Bus, sim_settings: Settings, printer_sim: FakePrinterSim
) -> None:
    printer_sim.set_state(15, "printing", "RUNNING")
    with RobotArmSim(sim_settings(robot_sim_printer_sim_url=printer_sim.url)) as sim:
        job = RobotJob.take(14, 804, job_id="j").model_copy(
            update={"open_doors": ("printer14", "printer15")}
        )
        bus.send(job)
        assert status_of(bus, "j")["reason"] == (
            "printer 15 is printing (RUNNING): opening its door would wreck the print"
        )
        assert sorted(printer_sim.reads) == [14, 15]
        assert sim.violations == 1
        assert sim.world["printers"]["14"] == 804


def test_an_unreachable_printer_sim_refuses_the_job_without_a_violation(
    bus: Bus, sim_settings: Settings
) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    with RobotArmSim(sim_settings(robot_sim_printer_sim_url=url)) as sim:
        bus.send(RobotJob.take(14, 804, job_id="t-1"))
        status = status_of(bus, "t-1")
        assert status["status"] == "error"
        assert status["reason"].startswith(
            f"cannot see the state of printer 14 (printer simulator {url} does not answer"
        )
        assert status["reason"].endswith("the arm does not open a printer's door blind")
        assert sim.motions() == []
        assert sim.world["printers"]["14"] == 804
        assert sim.violations == 0
        (refused,) = [e for e in sim.ledger_entries() if e["event"] == "refused"]
        assert refused["violation"] is None

        bus.send(RobotJob.homing(job_id="h-1"))  # opens no door: needs no printer state
        bus.wait_for({"status": "available", "job_id": "h-1"})


def test_a_printer_the_printer_sim_does_not_know_is_refused_without_a_violation(
    bus: Bus, sim_settings: Settings, printer_sim: FakePrinterSim
) -> None:
    printer_sim.missing.add(14)
    with RobotArmSim(sim_settings(robot_sim_printer_sim_url=printer_sim.url)) as sim:
        bus.send(RobotJob.take(14, 804, job_id="t-1"))
        assert status_of(bus, "t-1")["reason"] == (
            f"cannot see the state of printer 14 ({printer_sim.url}/printers/14 answered "
            "HTTP 404): the arm does not open a printer's door blind"
        )
        assert sim.violations == 0
        assert sim.motions() == []


def test_without_a_printer_sim_url_doors_open_without_a_check(
    bus: Bus, sim_settings: Settings, printer_sim: FakePrinterSim
) -> None:
    printer_sim.set_state(14, "printing", "RUNNING")  # nobody asks it
    with RobotArmSim(sim_settings()) as sim:
        bus.send(RobotJob.take(14, 804, job_id="t-1"))
        bus.wait_for({"status": "available", "job_id": "t-1"})
        assert sim.violations == 0
    assert printer_sim.reads == []


def test_violations_survive_a_restart_and_a_wipe_clears_them(
    bus: Bus, sim_settings: Settings, printer_sim: FakePrinterSim
) -> None:
    settings = sim_settings(robot_sim_printer_sim_url=printer_sim.url)
    printer_sim.set_state(14, "printing", "RUNNING")
    with RobotArmSim(settings) as sim:
        bus.send(RobotJob.take(14, 804, job_id="busy"))  # printer_busy
        bus.send(RobotJob.take(15, 801, job_id="wrong"))  # wrong_plate (15 holds 805)
        bus.send(RobotJob.take(14, 999, job_id="unknown"))  # unknown bed: not a violation
        bus.wait_statuses(lambda s: s[-1].get("job_id") == "unknown")
        assert sim.violations == 2
        log = sim.violation_log
        assert [e["category"] for e in log] == ["printer_busy", "wrong_plate"]
    with RobotArmSim(settings) as sim:
        assert sim.violations == 2
        assert sim.violation_log == log
        assert sim.world["violation_log"] == log
        bus.send(RobotJob.replace(15, 801, job_id="occupied"))  # 15 still holds 805
        bus.wait_statuses(lambda s: s[-1].get("job_id") == "occupied")
        assert sim.violations == 3
        assert sim.violation_log[-1]["category"] == "load_into_occupied"
    with RobotArmSim(
        sim_settings(robot_sim_printer_sim_url=printer_sim.url, robot_sim_wipe_ledger=True)
    ) as sim:
        assert sim.violations == 0
        assert sim.violation_log == []
