"""robot-arm-sim over the harness Mosquitto: statuses, refusals, ledger, faults, sessions."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

from pantheon_contracts.robot import RobotJob
from pantheon_sim.robot import Faults, RobotArmSim, RobotSimSettings
from pantheon_sim.robot.testing import FakePrinterSim
from pantheon_sim.robot.testing import RobotBus as Bus

Settings = Callable[..., RobotSimSettings]
AVAILABLE = {"status": "available"}


def ok(job_id: str) -> list[dict[str, Any]]:
    """The statuses of one job that went well."""
    return [{"status": "busy", "job_id": job_id}, {"status": "available", "job_id": job_id}]


def test_take_then_replace_moves_plates_and_ledgers_two_motions(
    bus: Bus, sim_settings: Settings
) -> None:
    with RobotArmSim(sim_settings()) as sim:
        bus.wait_for(AVAILABLE)  # published once on start
        assert sim.world["printers"]["14"] == 804  # default: first free textured plate

        bus.send(RobotJob.take(14, 804, job_id="t-1"))
        bus.wait_for({"status": "available", "job_id": "t-1"})
        bus.send(RobotJob.replace(14, 827, job_id="r-1"))
        seen = bus.wait_for({"status": "available", "job_id": "r-1"})

        assert seen == [AVAILABLE, *ok("t-1"), *ok("r-1")]
        world = sim.world
        assert world["printers"]["14"] == 827
        assert world["plates"]["804"] == {
            "kind": "rack",
            "rack": "A",
            "slot": 4,
            "printer_id": None,
        }
        assert world["busy"] is False
        motions = sim.motions()
        assert [(m["job_id"], m["kind"], m["printer_id"], m["bed_id"]) for m in motions] == [
            ("t-1", "take", 14, 804),
            ("r-1", "replace", 14, 827),
        ]
        assert json.loads(motions[0]["payload"]) == RobotJob.take(14, 804, job_id="t-1").to_dict()


def test_with_echo_off_only_the_status_is_sent(bus: Bus, sim_settings: Settings) -> None:
    with RobotArmSim(sim_settings(robot_sim_echo_job_id=False)):
        bus.wait_for(AVAILABLE)
        bus.send(RobotJob.take(14, 804, job_id="t-1"))
        bus.wait_statuses(lambda s: len(s) == 3)
        bus.send(RobotJob.replace(14, 999, job_id="bad"))
        seen = bus.wait_statuses(lambda s: len(s) == 4)
        assert seen == [AVAILABLE, {"status": "busy"}, {"status": "available"}, {"status": "error"}]


def raw_job(printer_id: int, bed_id: int, doors: list[str], take: bool = False) -> bytes:
    """A job with the doors given (the builders always open the right one)."""
    return json.dumps(
        {
            "printer_id": printer_id,
            "bed_id": bed_id,
            "take_from_printer": take,
            "load_next_bed_without_homing": True,
            "open_doors": doors,
            "job_id": "x",
        }
    ).encode()


# job, start of the reason, violation category (None: a refusal that is no farm damage)
IMPOSSIBLE: list[tuple[bytes | RobotJob, str, str | None]] = [
    (b"not json", "robot job is not JSON", None),
    (b'{"printer_id": 14}', "robot job is invalid", None),
    (
        RobotJob.take(15, 805, job_id="x").model_copy(update={"printer_id": 16}),
        "unknown printer",
        None,
    ),
    (RobotJob.take(14, 999, job_id="x"), "unknown bed 999", None),
    (raw_job(15, 805, ["printer15", "garage"]), "unknown doors ['garage']", None),
    (RobotJob.take(14, 801, job_id="x"), "printer 14 holds plate 804, not 801", "wrong_plate"),
    (
        RobotJob.replace(14, 827, job_id="x"),
        "printer 14 still holds plate 804",
        "load_into_occupied",
    ),
    (RobotJob.replace(15, 801, job_id="x"), "plate 801 is not in its home slot", "plate_not_home"),
    (RobotJob.take(15, 805, job_id="x"), "printer 15 holds no plate", "take_from_empty"),
    (raw_job(15, 805, ["printer14"]), "job does not open door printer15", "door_not_opened"),
]


def test_impossible_jobs_get_an_error_with_a_reason_and_no_motion(
    bus: Bus, sim_settings: Settings
) -> None:
    with RobotArmSim(sim_settings(robot_sim_control_port=0)) as sim:
        sim.set_world({11: 801, 14: 804})  # 15 empty; 805 home
        bus.wait_for(AVAILABLE)
        before = sim.world
        for number, (job, reason, _) in enumerate(IMPOSSIBLE, start=1):
            bus.send(job)
            seen = bus.wait_statuses(lambda s, n=number: len(s) >= 1 + n)
            status = seen[number]
            assert status["status"] == "error", job
            assert status["reason"].startswith(reason), status
        assert sim.motions() == []
        refused = [e for e in sim.ledger_entries() if e.get("refused") is True]
        assert len(refused) == len(IMPOSSIBLE)
        assert refused[0]["payload"] == "not json"
        assert [e["violation"] for e in refused] == [v for _, _, v in IMPOSSIBLE]

        # the damaging ones, and only they, are counted as violations
        damaging = [(reason, v) for _, reason, v in IMPOSSIBLE if v is not None]
        assert sim.violations == len(damaging) == 5
        log = sim.violation_log
        assert [(e["category"], e["printer_id"], e["job_id"]) for e in log] == [
            (v, 14 if "14" in reason else 15, "x") for reason, v in damaging
        ]
        assert all(e["reason"].startswith(r) for e, (r, _) in zip(log, damaging, strict=True))
        assert sim.world == {
            **before,
            "jobs_received": len(IMPOSSIBLE),
            "violations": 5,
            "violation_log": log,
        }
        assert sim.control_url is not None
        with httpx.Client(base_url=sim.control_url, timeout=5) as http:
            world = http.get("/world").json()
            assert world["violations"] == 5
            assert world["violation_log"] == log
            listed = http.get("/ledger", params={"violation": "true"}).json()
            assert [e["seq"] for e in listed] == [e["seq"] for e in log]
            others = http.get("/ledger", params={"violation": "false"}).json()
            assert len(others) == len(IMPOSSIBLE) - 5
            assert all(e["violation"] is None for e in others)


def test_a_job_while_busy_is_refused(bus: Bus, sim_settings: Settings) -> None:
    with RobotArmSim(sim_settings(robot_sim_homing_s=1.0)) as sim:
        bus.wait_for(AVAILABLE)
        bus.send(RobotJob.homing(job_id="h-1"))
        bus.wait_for({"status": "busy", "job_id": "h-1"})
        bus.send(RobotJob.take(14, 804, job_id="t-1"))
        seen = bus.wait_for({"status": "available", "job_id": "h-1"})
        assert seen[2] == {"status": "error", "job_id": "t-1", "reason": "arm is busy with job h-1"}
        assert [m["job_id"] for m in sim.motions()] == ["h-1"]
        assert sim.world["printers"]["14"] == 804


def test_error_on_job_n_fails_half_way_and_latches_until_an_operator(
    bus: Bus, sim_settings: Settings
) -> None:
    with RobotArmSim(sim_settings(), faults=Faults(error_on_job=2)) as sim:
        bus.wait_for(AVAILABLE)
        bus.send(RobotJob.take(14, 804, job_id="j1"))
        bus.wait_for({"status": "available", "job_id": "j1"})
        bus.send(RobotJob.replace(14, 827, job_id="j2"))
        seen = bus.wait_statuses(lambda s: s[-1]["status"] == "error")
        assert seen[-2:] == [
            {"status": "busy", "job_id": "j2"},
            {
                "status": "error",
                "job_id": "j2",
                "reason": "scripted fault: motion of job 2 failed half-way",
            },
        ]
        assert sim.world["printers"]["14"] is None  # the plate went back to its slot
        assert sim.world["plates"]["827"]["kind"] == "rack"
        assert [m["job_id"] for m in sim.motions()] == ["j1", "j2"]  # j2 did start moving

        bus.send(RobotJob.replace(14, 827, job_id="j3"))
        seen = bus.wait_statuses(lambda s: len(s) == 6)
        assert seen[-1]["reason"].startswith("arm is in error")
        sim.operator_available()
        bus.wait_statuses(lambda s: s[-1] == AVAILABLE)

        sim.update_faults(error_on_job=5, error_mode="refuse")
        bus.send(RobotJob.replace(14, 827, job_id="j4"))
        bus.wait_for({"status": "available", "job_id": "j4"})
        bus.send(RobotJob.take(14, 827, job_id="j5"))
        seen = bus.wait_statuses(lambda s: s[-1].get("job_id") == "j5")
        assert seen[-1] == {
            "status": "error",
            "job_id": "j5",
            "reason": "scripted fault: error on job 5",
        }
        assert [m["job_id"] for m in sim.motions()] == ["j1", "j2", "j4"]


def test_never_available_keeps_the_arm_busy_until_an_operator(
    bus: Bus, sim_settings: Settings
) -> None:
    with RobotArmSim(sim_settings(), faults=Faults(never_available=True)) as sim:
        bus.wait_for(AVAILABLE)
        bus.send(RobotJob.take(14, 804, job_id="t-1"))
        assert sim.wait_for(lambda: any(e["event"] == "done" for e in sim.ledger_entries()))
        assert sim.world["printers"]["14"] is None  # the plate moved physically
        bus.send(RobotJob.replace(14, 827, job_id="r-1"))
        seen = bus.wait_statuses(lambda s: len(s) == 3)
        assert seen[1:] == [
            {"status": "busy", "job_id": "t-1"},
            {"status": "error", "job_id": "r-1", "reason": "arm is busy with job t-1"},
        ]
        assert sim.world["busy"] is True
        sim.update_faults(never_available=False)
        sim.operator_available()
        bus.wait_statuses(lambda s: s[-1] == AVAILABLE)
        bus.send(RobotJob.replace(14, 827, job_id="r-2"))
        bus.wait_for({"status": "available", "job_id": "r-2"})


def test_restart_keeps_the_ledger_dedupes_job_ids_and_wipe_clears_it(
    bus: Bus, sim_settings: Settings
) -> None:
    settings = sim_settings()
    with RobotArmSim(settings) as sim:
        bus.send(RobotJob.take(14, 804, job_id="t-1"))
        bus.wait_for({"status": "available", "job_id": "t-1"})
    with RobotArmSim(settings) as sim:
        assert len(sim.motions("t-1")) == 1
        start = bus.mark()
        bus.send(RobotJob.take(14, 804, job_id="t-1"))  # a re-send after the restart
        seen = bus.wait_statuses(lambda s: {"status": "available", "job_id": "t-1"} in s[start:])
        assert len(sim.motions("t-1")) == 1  # no second motion
        assert [e["event"] for e in sim.ledger_entries()][-1] == "duplicate"
        assert {"status": "busy", "job_id": "t-1"} not in seen[start:]
    with RobotArmSim(sim_settings(robot_sim_wipe_ledger=True)) as sim:
        assert sim.ledger_entries() == []


def test_a_motion_cut_by_a_restart_is_ledgered_as_failed(bus: Bus, sim_settings: Settings) -> None:
    settings = sim_settings(robot_sim_take_s=30.0)
    with RobotArmSim(settings) as sim:
        bus.send(RobotJob.take(14, 804, job_id="t-1"))
        bus.wait_for({"status": "busy", "job_id": "t-1"})
    with RobotArmSim(settings) as sim:
        events = [(e["event"], e.get("job_id")) for e in sim.ledger_entries()]
        assert events == [("motion", "t-1"), ("failed", "t-1")]
        start = bus.mark()
        bus.send(RobotJob.take(14, 804, job_id="t-1"))  # the orchestrator must not re-send
        bus.wait_for(
            {
                "status": "error",
                "job_id": "t-1",
                "reason": "motion interrupted by a restart of the arm",
            }
        )
        assert {"status": "busy", "job_id": "t-1"} not in bus.statuses()[start:]
        assert len(sim.motions()) == 1


def test_a_job_sent_while_the_sim_is_down_arrives_after_restart(
    bus: Bus, sim_settings: Settings
) -> None:
    settings = sim_settings()
    with RobotArmSim(settings):
        bus.wait_for(AVAILABLE)
    bus.send(RobotJob.take(14, 804, job_id="queued"))  # the broker keeps it for the session
    with RobotArmSim(settings) as sim:
        bus.wait_for({"status": "available", "job_id": "queued"})
        assert [m["job_id"] for m in sim.motions()] == ["queued"]


def test_disconnect_mid_job_reconnects_and_reports(bus: Bus, sim_settings: Settings) -> None:
    faults = Faults(disconnect_on_job=1, reconnect_after_s=0.6)
    with RobotArmSim(sim_settings(), faults=faults) as sim:
        bus.wait_for(AVAILABLE)
        bus.send(RobotJob.take(14, 804, job_id="t-1"))
        bus.wait_for({"status": "busy", "job_id": "t-1"})
        assert sim.wait_for(lambda: not sim.mqtt_connected, 2)
        bus.send(RobotJob.replace(14, 827, job_id="r-1"))  # queued by the broker meanwhile
        bus.wait_for({"status": "available", "job_id": "t-1"})
        bus.wait_for({"status": "available", "job_id": "r-1"})
        assert [m["job_id"] for m in sim.motions()] == ["t-1", "r-1"]


def test_printer_sim_is_told_about_plates(
    bus: Bus, sim_settings: Settings, printer_sim: FakePrinterSim
) -> None:
    with RobotArmSim(sim_settings(robot_sim_printer_sim_url=printer_sim.url)):
        bus.send(RobotJob.take(14, 804, job_id="t-1"))
        bus.wait_for({"status": "available", "job_id": "t-1"})
        assert printer_sim.calls == [("/printers/14/plate", {"plate": "none", "bed_id": None})]
        bus.send(RobotJob.replace(14, 827, job_id="r-1"))
        bus.wait_for({"status": "available", "job_id": "r-1"})
        assert printer_sim.calls[1] == ("/printers/14/plate", {"plate": "clean", "bed_id": 827})
        assert printer_sim.reads == [14, 14]  # the state was read before each job


def test_a_failed_plate_update_is_not_fatal(
    bus: Bus, sim_settings: Settings, printer_sim: FakePrinterSim
) -> None:
    """The state read works, the PUT fails (500): the motion still ends with available."""
    printer_sim.fail_puts = True
    with RobotArmSim(sim_settings(robot_sim_printer_sim_url=printer_sim.url)) as sim:
        bus.send(RobotJob.take(14, 804, job_id="t-1"))
        bus.wait_for({"status": "available", "job_id": "t-1"})
        assert sim.world["printers"]["14"] is None
        assert printer_sim.calls == [("/printers/14/plate", {"plate": "none", "bed_id": None})]


def test_control_api(bus: Bus, sim_settings: Settings) -> None:
    with RobotArmSim(sim_settings(robot_sim_control_port=0)) as sim:
        assert sim.control_url is not None
        with httpx.Client(base_url=sim.control_url, timeout=5) as http:
            assert http.get("/healthz").json() == {
                "status": "ok",
                "mqtt_connected": True,
                "ready": True,
            }
            assert http.put("/world", json={"printers": {"14": 801}}).status_code == 200
            world = http.get("/world").json()
            assert world["printers"]["14"] == 801
            assert world["printers"]["15"] is None
            assert http.put("/world", json={"printers": {"14": 999}}).status_code == 422
            faults = http.post("/faults", json={"never_available": True}).json()
            assert faults["never_available"] is True
            assert sim.faults.never_available is True
            assert http.post("/faults", json={"error_on_job": 0}).status_code == 422

            bus.send(RobotJob.take(14, 801, job_id="t-1"))
            assert sim.wait_for(lambda: len(sim.ledger_entries()) == 2)  # motion + done
            assert http.put("/world", json={"printers": {}}).status_code == 409
            ledger = http.get("/ledger", params={"event": "motion"}).json()
            assert [e["job_id"] for e in ledger] == ["t-1"]
            start = bus.mark()
            assert http.post("/operator/available").json()["busy"] is False
            bus.wait_statuses(lambda s: s[start:] == [AVAILABLE])
