"""The door interlock, scoped holds, restart reconciliation and forged statuses, end to end:
the orchestrator as a subprocess, real RabbitMQ / Mosquitto / MongoDB-protocol server, the robot
simulator in-process. printer-service is not running: each test writes the printers' live
records into MongoDB the way printer-service would (conftest.farm_db, ``live_record``)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.database import Database

from pantheon_common.amqp import AmqpPublisher, peek_dead_letters
from pantheon_common.mqtt import MqttClient
from pantheon_common.settings import MqttSettings
from pantheon_contracts.names import READY_QUEUE, ROBOT_STATUS_TOPIC
from pantheon_sim.robot import RobotArmSim
from robot_arm_orchestrator.testing import (
    JobWatcher,
    Orchestrator,
    assert_inventory_matches,
    wait_until,
)

from .conftest import live_record

Db = Database[dict[str, Any]]


def motions(sim: RobotArmSim) -> list[tuple[str, int | None, int | None]]:
    return [(m["kind"], m["printer_id"], m["bed_id"]) for m in sim.motions()]


def held(orch: Orchestrator) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = orch.api("GET", "/tasks/held").json()
    return result


def statuses_of(orch: Orchestrator, print_id: str) -> list[str]:
    return [t["status"] for t in orch.tasks(print_id=print_id)]


def start_printing(db: Db, printer_id: int, bed_id: int, print_id: str) -> None:
    """Printer ``printer_id`` prints ``print_id`` on clean plate ``bed_id`` (as printer-service
    records a started print)."""
    started = datetime.now(UTC)
    db.prints.insert_one(
        {"_id": print_id, "printer_id": printer_id, "file": "cube.gcode.3mf", "bed_id": bed_id,
         "started_at": started, "ended_at": None, "result": None}
    )  # fmt: skip
    db.printers.update_one(
        {"_id": printer_id},
        {
            "$set": {
                **live_record("printing", started),
                "progress_pct": 42,
                "bed": {"bed_id": bed_id, "state": "in_printer"},
                "current_print": {"print_id": print_id, "file": "cube.gcode.3mf",
                                  "bed_id": bed_id, "started_at": started, "ended_at": None},
            }
        },
    )  # fmt: skip


def finish_print(db: Db, printer_id: int, bed_id: int, print_id: str) -> None:
    """The print ends: FINISH, plate with_part, end recorded (printer-service's order)."""
    ended = datetime.now(UTC)
    db.printers.update_one({"_id": printer_id}, {"$set": live_record("finished", ended)})
    db.prints.update_one({"_id": print_id}, {"$set": {"ended_at": ended, "result": "finished"}})
    db.printers.update_one(
        {"_id": printer_id},
        {"$set": {"bed": {"bed_id": bed_id, "state": "with_part"},
                  "current_print.ended_at": ended, "current_print.result": "finished"}},
    )  # fmt: skip


def test_a_ready_for_a_running_print_is_held_until_it_ends_then_swapped_once(
    farm_db: Db,
    robot_sim_factory: Callable[..., RobotArmSim],
    orchestrator_factory: Callable[..., Orchestrator],
    job_watcher: JobWatcher,
    publisher: AmqpPublisher,
) -> None:
    """Printer 14 prints print-14-2: `14` typed three times and the print's own id (a ready
    racing the print) move nothing; the take is held for printer 14 only, until the print
    ends; printer 12's swap goes on meanwhile. When the end is recorded the held take is
    re-armed by itself: one take and one replace, for that print."""
    farm_db.beds.update_one({"_id": 804}, {"$set": {"state": "in_printer"}})
    start_printing(farm_db, 14, 804, "print-14-2")
    sim = robot_sim_factory()
    orch = orchestrator_factory().start()
    for _ in range(3):
        publisher.publish(READY_QUEUE, b"14", message_id=None)
    publisher.publish(READY_QUEUE, b"14", message_id="print-14-2")
    publisher.publish(READY_QUEUE, b"12", message_id="print-12-1")

    take = wait_until("the held take", lambda: held(orch))[0]
    assert take["id"] == "print-14-2:take"
    assert take["hold"] == {"scope": "printer", "until": "print_end"}
    assert "print print-14-2 has not ended on printer 14 (printing, 42 %)" in take["error"]
    wait_until("printer 12 swapped", lambda: statuses_of(orch, "print-12-1") == ["done"] * 2)
    assert [j["printer_id"] for j in job_watcher.jobs] == [12, 12]
    assert statuses_of(orch, "print-14-2") == ["pending", "held"]  # newest first
    # abort/done would leave the real end unserved: refused while the print runs
    for action in ("abort", "done"):
        reply = orch.api("POST", f"/tasks/{take['id']}/resolve", json={"action": action})
        assert reply.status_code == 409, reply.text

    finish_print(farm_db, 14, 804, "print-14-2")
    wait_until("the swap of print-14-2", lambda: statuses_of(orch, "print-14-2") == ["done"] * 2)
    assert [j["printer_id"] for j in job_watcher.jobs] == [12, 12, 14, 14]
    assert motions(sim)[2:] == [("take", 14, 804), ("replace", 14, 803)]
    actors = [h["actor"] for h in orch.api("GET", "/tasks/print-14-2:take").json()["history"]]
    assert actors == ["system", "print_end", "system", "system"]
    printer = farm_db.printers.find_one({"_id": 14})
    assert printer is not None
    assert printer["swap"] is None  # the swap is over: printer-service may start again
    assert_inventory_matches(farm_db, sim.world)


def test_a_stale_record_holds_that_printer_only_until_a_person_retries(
    farm_db: Db,
    robot_sim_factory: Callable[..., RobotArmSim],
    orchestrator_factory: Callable[..., Orchestrator],
    job_watcher: JobWatcher,
    publisher: AmqpPublisher,
) -> None:
    """Printer 14's record is two minutes old (printer-service gone): its finished print's
    take is held for printer 14, printer 23 is swapped meanwhile; a person retries once the
    record is fresh and the swap goes."""
    farm_db.printers.update_one(
        {"_id": 14}, {"$set": {"last_seen": datetime.now(UTC) - timedelta(minutes=2)}}
    )
    sim = robot_sim_factory()
    orch = orchestrator_factory(PRINTER_REPORT_MAX_AGE_S="60").start()
    publisher.publish(READY_QUEUE, b"14", message_id="print-14-1")
    take = wait_until("the held take", lambda: held(orch))[0]
    assert take["hold"] == {"scope": "printer", "until": None}
    assert "printer 14's last report is 12" in take["error"]  # 120 s and the test's own time
    assert "s old (bound 60 s)" in take["error"]
    publisher.publish(READY_QUEUE, b"23", message_id="print-23-1")
    wait_until("printer 23 swapped", lambda: statuses_of(orch, "print-23-1") == ["done"] * 2)
    dispatch = orch.api("GET", "/dispatch").json()
    assert dispatch["blocked_printers"] == [14]
    assert [j["printer_id"] for j in job_watcher.jobs] == [23, 23]

    farm_db.printers.update_one({"_id": 14}, {"$set": {"last_seen": datetime.now(UTC)}})
    retry = orch.api("POST", f"/tasks/{take['id']}/resolve", json={"action": "retry"})
    assert retry.status_code == 200, retry.text
    wait_until("printer 14 swapped", lambda: statuses_of(orch, "print-14-1") == ["done"] * 2)
    assert [m[1] for m in motions(sim)] == [23, 23, 14, 14]
    assert_inventory_matches(farm_db, sim.world)


def test_readies_that_name_no_print_are_dead_lettered(
    farm_db: Db,
    robot_sim_factory: Callable[..., RobotArmSim],
    orchestrator_factory: Callable[..., Orchestrator],
    publisher: AmqpPublisher,
    amqp_url: str,
) -> None:
    """25 made-up message ids, another printer's print, and `15` typed for a printer with a
    clean plate and no print: each dead-lettered with the reason; the robot never moves."""
    farm_db.printers.update_one(
        {"_id": 15}, {"$set": {"bed": {"bed_id": 805, "state": "in_printer"}}}
    )
    sim = robot_sim_factory()
    orch = orchestrator_factory().start()
    for i in range(25):
        publisher.publish(READY_QUEUE, b"14", message_id=f"forged-{i}")
    publisher.publish(READY_QUEUE, b"14", message_id="print-12-1")
    publisher.publish(READY_QUEUE, b"15", message_id=None)
    letters = wait_until(
        "27 dead letters",
        lambda: (found := peek_dead_letters(amqp_url, READY_QUEUE, 100)) and len(found) == 27
        and found,
    )  # fmt: skip
    reasons = [letter.reason for letter in letters]
    assert sum("names no print of printer 14" in r for r in reasons) == 26
    assert any("printer 15 holds plate 805 (in_printer)" in r for r in reasons), reasons
    assert orch.tasks() == []
    assert sim.motions() == []


def test_a_restart_with_a_task_sent_is_reconciled_from_the_arms_statuses(
    farm_db: Db,
    robot_sim_factory: Callable[..., RobotArmSim],
    orchestrator_factory: Callable[..., Orchestrator],
    publisher: AmqpPublisher,
) -> None:
    """Job-id extension on: the orchestrator is killed right after publishing the take; the arm
    finishes it while the orchestrator is down. The restarted orchestrator reads the arm's
    statuses (kept by its persistent session, and the arm's repeats): the take is done, not
    held, and the replace follows; nothing is sent twice."""
    sim = robot_sim_factory(take_s=1.0)
    orch = orchestrator_factory()
    orch.start(ORCHESTRATOR_CRASHPOINT="after_sent:take")
    publisher.publish(READY_QUEUE, b"14", message_id="print-14-1")
    orch.wait_killed()
    wait_until("the take done by the arm", lambda: sim.ledger_entries()[-1]["event"] == "done")

    orch.start()
    wait_until("the swap", lambda: statuses_of(orch, "print-14-1") == ["done"] * 2)
    assert held(orch) == []
    take = orch.api("GET", "/tasks/print-14-1:take").json()
    assert "reconciled after a restart" in take["history"][-1]["note"]
    assert take["attempts"] == 1
    assert motions(sim) == [("take", 14, 804), ("replace", 14, 803)]
    assert_inventory_matches(farm_db, sim.world)


def test_a_restart_whose_job_the_arm_does_not_confirm_is_held_for_the_arm(
    farm_db: Db,
    robot_sim_factory: Callable[..., RobotArmSim],
    orchestrator_factory: Callable[..., Orchestrator],
    publisher: AmqpPublisher,
) -> None:
    """The orchestrator dies right after publishing the take, and no status of the arm names
    that job (this arm does not echo job ids): after ROBOT_RECONCILE_S the take is held for
    the arm, never re-sent."""
    sim = robot_sim_factory(echo=False, take_s=0.5)
    orch = orchestrator_factory()
    orch.start(ORCHESTRATOR_CRASHPOINT="after_sent:take")
    publisher.publish(READY_QUEUE, b"14", message_id="print-14-1")
    orch.wait_killed()
    wait_until("the take done by the arm", lambda: sim.ledger_entries()[-1]["event"] == "done")

    orch.start()
    task = wait_until("the take held", lambda: held(orch))[0]
    assert task["id"] == "print-14-1:take"
    assert task["hold"]["scope"] == "arm"
    assert "restarted" in task["error"]
    assert "said nothing about job" in task["error"]
    time.sleep(0.5)
    assert len(sim.motions()) == 1


def test_a_forged_available_never_ends_a_motion_that_is_still_going_on(
    farm_db: Db,
    robot_sim_factory: Callable[..., RobotArmSim],
    orchestrator_factory: Callable[..., Orchestrator],
    job_watcher: JobWatcher,
    publisher: AmqpPublisher,
    mqtt_endpoint: tuple[str, int],
    mqtt_prefix: str,
) -> None:
    """Job-id extension on: while the arm takes (3 s), someone copies the job_id off
    robot_arm/job and publishes `available` with it. The arm's next busy repeat contradicts
    it: the take stays in flight, the replace is sent only after the arm really finished,
    and the arm refuses nothing."""
    sim = robot_sim_factory(take_s=3.0, repeat_s=0.2)
    orch = orchestrator_factory(ROBOT_CONFIRM_S="0.6").start()
    publisher.publish(READY_QUEUE, b"14", message_id="print-14-1")
    job = wait_until("the take on the bus", lambda: job_watcher.jobs)[0]
    wait_until("the arm busy", lambda: sim.world["busy"])
    forger = MqttClient(
        MqttSettings(
            pantheon_env="dev",
            mqtt_host=mqtt_endpoint[0],
            mqtt_port=mqtt_endpoint[1],
            mqtt_topic_prefix=mqtt_prefix,
        ),
        "forger",
    )
    forger.start()
    forger.wait_connected(10)
    try:
        forged = json.dumps({"status": "available", "job_id": job["job_id"]}).encode()
        forger.publish(ROBOT_STATUS_TOPIC, forged)
        time.sleep(1.2)
        assert sim.world["busy"]
        assert statuses_of(orch, "print-14-1") == ["pending", "sent"]
        assert len(job_watcher.jobs) == 1
    finally:
        forger.stop()
    wait_until("the swap", lambda: statuses_of(orch, "print-14-1") == ["done"] * 2)
    entries = sim.ledger_entries()
    assert [e["event"] for e in entries] == ["motion", "done", "motion", "done"]
    assert "robot_status_contradicted_total 1.0" in orch.api("GET", "/metrics").text


def test_without_job_ids_a_hand_published_available_ends_the_job_in_flight(
    farm_db: Db,
    robot_sim_factory: Callable[..., RobotArmSim],
    orchestrator_factory: Callable[..., Orchestrator],
    job_watcher: JobWatcher,
    publisher: AmqpPublisher,
    mqtt_endpoint: tuple[str, int],
    mqtt_prefix: str,
) -> None:
    """The documented limit of the seed's protocol (README): without job ids, an `available`
    published by hand after the arm reported busy completes the take in flight, and the
    replace goes out while the arm still moves. The arm refuses it, and the replace is held
    for the arm: nothing else moves until a person decides."""
    sim = robot_sim_factory(echo=False, take_s=3.0)
    orch = orchestrator_factory(echo=False).start()
    publisher.publish(READY_QUEUE, b"14", message_id="print-14-1")
    wait_until(
        "the arm's busy seen by the orchestrator",
        lambda: orch.api("GET", "/dispatch").json()["robot_status"] == "busy",
    )
    sim.operator_available()  # the bare {"status": "available"} an operator publishes
    replace = wait_until("the replace held", lambda: held(orch))[0]
    assert replace["kind"] == "replace"
    assert replace["hold"]["scope"] == "arm"
    assert orch.api("GET", "/tasks/print-14-1:take").json()["status"] == "done"
    refused = [e for e in sim.ledger_entries() if e["event"] == "refused"]
    assert len(refused) == 1
    assert "busy" in refused[0]["reason"]
    assert not refused[0].get("violation")
    assert [j["take_from_printer"] for j in job_watcher.jobs] == [True, False]
