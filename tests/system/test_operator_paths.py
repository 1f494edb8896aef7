"""Operator paths of the seed: what a person types into RabbitMQ and MQTT by hand.

1. ``14`` published to ``ready`` by hand (no message_id, as in the RabbitMQ UI): the
   orchestrator records one take and one replace for printer 14 and sends each once.
2. With the orchestrator paused, a take typed by hand on ``robot_arm/job`` (the seed JSON, no
   job_id) for the plate the robot says is in printer 15: the robot does it; the orchestrator
   records no task for it and holds nothing. ``{"status": "available"}`` typed by hand next
   changes nothing.
3. Resumed, the farm keeps printing. Printer 15 has no plate now, but MongoDB still says it has
   one (the hand job went around the orchestrator): a job for printer 15 is refused by the
   printer at every attempt and ends ``failed`` with the refusal as its reason, visible in
   pantheon-api; a job for any P1S prints on printer 14; nothing is done twice.
"""

from __future__ import annotations

import json

from pantheon_contracts.names import ROBOT_JOB_TOPIC, ROBOT_STATUS_TOPIC

from .conftest import Farm, FarmFactory, FarmPorts, gcode_package, seed_job

PORTS = FarmPorts.block(26300, printer_port_base=23000)
FOREIGN_OBJECTS = 0x0500806E  # bambu-sim: a print refused on a missing or used plate
# printer-service waits this long after a failed start before it claims again (default 15 s)
ENV = {"DISPATCH_RETRY_S": "1"}


def _tasks_of(farm: Farm, printer_id: int) -> list[dict[str, object]]:
    return farm.tasks(printer_id=printer_id)


def test_hand_typed_ready_hand_typed_robot_job_and_the_farm_goes_on(
    start_farm: FarmFactory,
) -> None:
    farm = start_farm([14, 15], PORTS, env=ENV)
    bus = farm.watch_bus()
    world = farm.world()["printers"]
    plate_14, plate_15 = world["14"], world["15"]
    assert None not in (plate_14, plate_15), world

    # -- 1. "14" typed into the ready queue -----------------------------------------
    farm.publish_ready(b"14")
    farm.wait(
        lambda: [t["status"] for t in _tasks_of(farm, 14)] == ["done", "done"],
        30,
        "a take and a replace for printer 14 done (orchestrator GET /tasks)",
        logs=("robot-arm-orchestrator", "robot-arm-sim"),
        context=lambda: json.dumps(_tasks_of(farm, 14), default=str),
    )
    tasks = {t["kind"]: t for t in _tasks_of(farm, 14)}
    assert set(tasks) == {"take", "replace"}
    # no message_id and no print on record: the orchestrator made up a print id
    assert tasks["take"]["print_id"] == tasks["replace"]["print_id"]
    assert tasks["take"]["print_id_synthetic"] is True
    assert tasks["take"]["bed_id"] == plate_14
    new_plate_14 = tasks["replace"]["bed_id"]
    assert new_plate_14 not in (None, plate_14)
    sent = [j for j in bus.jobs_seen() if j.get("printer_id") == 14]
    assert [(j["take_from_printer"], j["bed_id"]) for j in sent] == [
        (True, plate_14),
        (False, new_plate_14),
    ]
    assert [m["job_id"] for m in farm.motions()] == [
        tasks["take"]["job_id"],
        tasks["replace"]["job_id"],
    ]
    assert farm.sim_printer(14)["plate"] == "clean"
    assert farm.sim_printer(14)["bed_id"] == new_plate_14
    assert farm.printer(14)["bed"] == {"bed_id": new_plate_14, "state": "in_printer"}
    assert farm.bed(plate_14)["state"] == "with_part"

    # -- 2. orchestrator paused; a take typed by hand on robot_arm/job --------------
    paused = farm.api.post("/api/robot/dispatch/pause", json={"reason": "operator at work"})
    assert paused.status_code == 200, paused.text
    assert paused.json()["paused"] is True
    hand_take = seed_job(15, plate_15, take=True)
    bus.publish(ROBOT_JOB_TOPIC, hand_take)

    def hand_take_done() -> bool:
        seqs = {m["seq"] for m in farm.motions() if m["printer_id"] == 15}
        done = any(d.get("motion_seq") in seqs for d in farm.ledger(event="done"))
        # the arm tells the printer simulator right after the ledger line
        return done and farm.sim_printer(15)["plate"] == "none"

    farm.wait(
        hand_take_done,
        20,
        "the robot to take the plate out of printer 15 (robot ledger: motion done)",
        logs=("robot-arm-sim",),
    )
    hand_motions = [m for m in farm.motions() if m["printer_id"] == 15]
    assert len(hand_motions) == 1
    assert hand_motions[0]["kind"] == "take"
    assert hand_motions[0]["bed_id"] == plate_15
    assert hand_motions[0]["job_id"] is None
    assert hand_motions[0]["payload"] == hand_take.decode()
    assert farm.world()["printers"]["15"] is None
    # the orchestrator recorded nothing for it and holds nothing
    assert _tasks_of(farm, 15) == []
    assert farm.held() == []
    state = farm.dispatch_state()
    assert (state["paused"], state["current_task"], state["held"]) == (True, None, 0)

    # -- "available" typed by hand: nothing happens, nothing breaks -----------------
    bus.publish(ROBOT_STATUS_TOPIC, b'{"status":"available"}')
    farm.wait(
        lambda: {"status": "available"} in bus.statuses_seen(),
        10,
        "the hand-typed status on the bus",
    )
    resumed = farm.api.post("/api/robot/dispatch/resume")
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["paused"] is False
    assert farm.held() == []
    assert len(farm.tasks()) == 2

    # -- 3. the farm goes on -----------------------------------------------------------
    farm.upload("cube.gcode.3mf", gcode_package(minutes=20))
    # first in the queue: a job only printer 15 may take; printer 15 claims it
    for_15 = farm.queue_job("cube.gcode.3mf", "textured_pei", printer_id=15)
    anywhere = farm.queue_job("cube.gcode.3mf", "textured_pei", model="P1S")
    farm.wait_jobs([anywhere], "finished", 60)
    farm.wait_jobs([for_15], "failed", 60)
    farm.wait(
        lambda: [t["status"] for t in _tasks_of(farm, 14)] == ["done"] * 4,
        30,
        "the swap after the print on printer 14",
        logs=("robot-arm-orchestrator", "robot-arm-sim"),
    )
    prints = farm.prints()
    assert [(p["job_id"], p["printer_id"], p["result"]) for p in prints] == [
        (anywhere, 14, "finished")
    ]
    # the doubt is visible to a person: the job says why, and so does the printer
    job = farm.jobs()[for_15]
    assert job["attempts"] == job["max_attempts"]
    assert "refused" in (job["last_error"] or ""), job
    assert farm.printer(15)["last_error"], farm.printer(15)
    assert farm.sim_printer(15)["print_error"] == FOREIGN_OBJECTS
    # nothing was done twice, and the robot was never sent to printer 15 by the farm
    motions = farm.assert_no_motion_twice()
    assert len(motions) == 5
    assert [j for j in bus.jobs_seen() if j.get("printer_id") == 15] == [json.loads(hand_take)]
    assert _tasks_of(farm, 15) == []
    assert farm.held() == []
    assert farm.ledger(event="refused") == []
