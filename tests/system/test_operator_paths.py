"""Operator paths of the seed: what a person types into RabbitMQ and MQTT by hand.

1. ``34`` published to ``ready`` by hand (no message_id, as in the RabbitMQ UI) while printer 34
   holds a clean plate and has printed nothing: no print to swap, so it is dead-lettered with
   the reason, visible through pantheon-api, and the robot does not move.
2. With the orchestrator paused, a take typed by hand on ``robot_arm/job`` (the seed JSON, no
   job_id) for the plate the robot says is in printer 35: the robot does it; the orchestrator
   records no task for it and holds nothing. ``{"status": "available"}`` typed by hand next
   changes nothing.
3. Resumed, the farm keeps printing. Printer 35 has no plate now, but MongoDB still says it has
   one (the hand job went around the orchestrator): an X1C sees its empty bed, so a job for
   printer 35 is refused by the
   printer at every attempt and ends ``failed`` with the refusal as its reason, visible in
   pantheon-api; a job for any X1C prints on printer 34; nothing is done twice.

And the path for a robot out of service: a plate taken out of a printer by hand, said so
through pantheon-api (``done`` on the pending take).
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
    farm = start_farm([34, 35], PORTS, env=ENV)
    bus = farm.watch_bus()
    world = farm.world()["printers"]
    plate_a, plate_b = world["34"], world["35"]
    assert None not in (plate_a, plate_b), world

    # -- 1. "34" typed into the ready queue -----------------------------------------
    farm.publish_ready(b"34")
    letters = farm.wait(
        lambda: farm.get("/api/robot/dead-letters", queue="ready"),
        30,
        "the hand-typed ready dead-lettered (pantheon-api GET /api/robot/dead-letters)",
        logs=("robot-arm-orchestrator",),
    )
    assert [letter["body"] for letter in letters] == ["34"]
    assert f"printer 34 holds plate {plate_a} (in_printer)" in letters[0]["reason"]
    assert "nothing to swap" in letters[0]["reason"]
    assert _tasks_of(farm, 34) == []
    assert farm.motions() == []
    assert farm.printer(34)["bed"] == {"bed_id": plate_a, "state": "in_printer"}

    # -- 2. orchestrator paused; a take typed by hand on robot_arm/job --------------
    paused = farm.api.post("/api/robot/dispatch/pause", json={"reason": "operator at work"})
    assert paused.status_code == 200, paused.text
    assert paused.json()["paused"] is True
    hand_take = seed_job(35, plate_b, take=True)
    bus.publish(ROBOT_JOB_TOPIC, hand_take)

    def hand_take_done() -> bool:
        seqs = {m["seq"] for m in farm.motions() if m["printer_id"] == 35}
        done = any(d.get("motion_seq") in seqs for d in farm.ledger(event="done"))
        # the arm tells the printer simulator right after the ledger line
        return done and farm.sim_printer(35)["plate"] == "none"

    farm.wait(
        hand_take_done,
        20,
        "the robot to take the plate out of printer 35 (robot ledger: motion done)",
        logs=("robot-arm-sim",),
    )
    hand_motions = [m for m in farm.motions() if m["printer_id"] == 35]
    assert len(hand_motions) == 1
    assert hand_motions[0]["kind"] == "take"
    assert hand_motions[0]["bed_id"] == plate_b
    assert hand_motions[0]["job_id"] is None
    assert hand_motions[0]["payload"] == hand_take.decode()
    assert farm.world()["printers"]["35"] is None
    # the orchestrator recorded nothing for it and holds nothing
    assert _tasks_of(farm, 35) == []
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
    assert farm.tasks() == []

    # -- 3. the farm goes on -----------------------------------------------------------
    farm.upload("cube.gcode.3mf", gcode_package(minutes=20))
    # first in the queue: a job only printer 35 may take; printer 35 claims it
    for_b = farm.queue_job("cube.gcode.3mf", "textured_pei", printer_id=35)
    anywhere = farm.queue_job("cube.gcode.3mf", "textured_pei", model="X1C")
    farm.wait_jobs([anywhere], "finished", 60)
    farm.wait_jobs([for_b], "failed", 60)
    farm.wait(
        lambda: [t["status"] for t in _tasks_of(farm, 34)] == ["done"] * 2,
        30,
        "the swap after the print on printer 34",
        logs=("robot-arm-orchestrator", "robot-arm-sim"),
    )
    prints = farm.prints()
    assert [(p["job_id"], p["printer_id"], p["result"]) for p in prints] == [
        (anywhere, 34, "finished")
    ]
    # the doubt is visible to a person: the job says why, and so does the printer
    job = farm.jobs()[for_b]
    assert job["attempts"] == job["max_attempts"]
    assert "refused" in (job["last_error"] or ""), job
    assert farm.printer(35)["last_error"], farm.printer(35)
    assert farm.sim_printer(35)["print_error"] == FOREIGN_OBJECTS
    # nothing was done twice, and the robot was never sent to printer 35 by the farm
    motions = farm.assert_no_motion_twice()
    assert [(m["kind"], m["printer_id"]) for m in motions] == [
        ("take", 35),
        ("take", 34),
        ("replace", 34),
    ]
    assert [j for j in bus.jobs_seen() if j.get("printer_id") == 35] == [json.loads(hand_take)]
    assert _tasks_of(farm, 35) == []
    assert farm.held() == []
    assert farm.ledger(event="refused") == []


def test_a_plate_taken_out_by_hand_while_the_robot_is_down(start_farm: FarmFactory) -> None:
    """The robot is out of service (dispatching paused) when printer 14 finishes: its take
    waits. An operator takes the plate out by hand, puts it in its rack slot and says so
    through pantheon-api (``done`` on the pending take). On resume the robot only loads a
    clean plate, and printer 14 prints the next job; no take of that plate is ever sent."""
    farm = start_farm([14], PORTS, env=ENV)
    bus = farm.watch_bus()
    plate = farm.world()["printers"]["14"]
    paused = farm.api.post("/api/robot/dispatch/pause", json={"reason": "robot serviced"})
    assert paused.status_code == 200, paused.text

    farm.upload("cube.gcode.3mf", gcode_package(minutes=20))
    first = farm.queue_job("cube.gcode.3mf", "textured_pei", printer_id=14)
    farm.wait_jobs([first], "finished", 60)
    take = farm.wait(
        lambda: [t for t in _tasks_of(farm, 14) if t["kind"] == "take"],
        30,
        "the take for printer 14 recorded (and held back: dispatching paused)",
        logs=("robot-arm-orchestrator",),
    )[0]
    assert take["status"] == "pending"
    assert take["bed_id"] == plate

    # the operator's hands: the plate out of printer 14, into its rack slot
    assert farm.sim.put("/printers/14/plate", json={"plate": "none"}).status_code == 200
    placement = {**farm.world()["printers"], "14": None}  # every other plate stays put
    assert farm.robot.put("/world", json={"printers": placement}).status_code == 200
    done = farm.api.post(
        f"/api/robot/tasks/{take['id']}/resolve",
        json={"action": "done", "note": "taken out by hand"},
    )
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "done"
    bed = farm.bed(plate)
    assert bed["state"] == "with_part"
    assert bed["location"]["printer_id"] is None

    resumed = farm.api.post("/api/robot/dispatch/resume")
    assert resumed.status_code == 200, resumed.text
    second = farm.queue_job("cube.gcode.3mf", "textured_pei", printer_id=14)
    farm.wait_jobs([second], "finished", 60)
    farm.wait(
        lambda: [t["status"] for t in _tasks_of(farm, 14)] == ["done"] * 4,
        30,
        "the replace, then the swap after the second print",
        logs=("robot-arm-orchestrator", "robot-arm-sim"),
    )
    motions = farm.assert_no_motion_twice()
    assert [(m["kind"], m["printer_id"]) for m in motions] == [
        ("replace", 14),
        ("take", 14),
        ("replace", 14),
    ]
    assert plate not in [m["bed_id"] for m in motions]  # the robot never touched that plate
    assert [j["bed_id"] for j in bus.jobs_seen() if j.get("take_from_printer")] == [
        motions[1]["bed_id"]
    ]
    assert farm.held() == []
