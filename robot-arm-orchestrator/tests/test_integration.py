"""The orchestrator end to end: real RabbitMQ, Mosquitto, MongoDB-protocol server, robot sim.

What each test proves is in its docstring. The orchestrator runs as a subprocess, so the
crash tests kill it exactly as ``kill -9`` would (its crash points SIGKILL the process).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pymongo.database import Database

from pantheon_common.amqp import AmqpPublisher, peek_dead_letters
from pantheon_contracts.names import HOMING_QUEUE, READY_QUEUE
from pantheon_sim.robot import RobotArmSim
from robot_arm_orchestrator.api.app import SERVICE
from robot_arm_orchestrator.testing import (
    JobWatcher,
    Orchestrator,
    assert_inventory_matches,
    wait_until,
)

PLACEMENT = (12, 14, 23, 35)
"""Printers holding a plate at the start (conftest.PLACEMENT)."""

SEED_KEYS = [
    "printer_id",
    "bed_id",
    "take_from_printer",
    "load_next_bed_without_homing",
    "open_doors",
]

Db = Database[dict[str, Any]]


def motions(sim: RobotArmSim) -> list[tuple[str, int | None, int | None]]:
    return [(m["kind"], m["printer_id"], m["bed_id"]) for m in sim.motions()]


def all_done(orch: Orchestrator, count: int) -> Callable[[], bool]:
    def check() -> bool:
        tasks = orch.tasks()
        return len(tasks) == count and all(t["status"] == "done" for t in tasks)

    return check


def strip_job_id(job: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in job.items() if k != "job_id"}


# ---------------------------------------------------------------- the swap


@pytest.mark.parametrize(
    ("echo", "next_job_bed_type", "expected_plate"),
    [
        # no queued job: the printer's default (textured); A3 and A5 are as near as the A4
        # slot the taken plate goes to; the lower id wins
        (False, None, 803),
        # the next queued job for printer 14 needs smooth PEI: nearest is rack A slot 15
        (True, "smooth_pei", 815),
    ],
    ids=["transitions", "job-id-echo"],
)
def test_hand_typed_ready_gives_one_take_then_one_replace(
    echo: bool,
    next_job_bed_type: str | None,
    expected_plate: int,
    farm_db: Db,
    robot_sim_factory: Callable[..., RobotArmSim],
    orchestrator_factory: Callable[..., Orchestrator],
    job_watcher: JobWatcher,
    publisher: AmqpPublisher,
) -> None:
    """`14` typed in the RabbitMQ UI (no message_id) serves printer 14's current print: a take
    of the plate in it, then a replace with the right plate; MongoDB ends as the sim's world."""
    if next_job_bed_type:
        farm_db.jobs.insert_many(
            [
                {"_id": "j-other", "file": "a.gcode.3mf", "bed_type": "cool_plate",
                 "status": "queued", "priority": 9, "seq": 1, "target": {"printer_id": 12}},
                {"_id": "j-14", "file": "b.gcode.3mf", "bed_type": next_job_bed_type,
                 "status": "queued", "priority": 1, "seq": 2, "target": {"model": "P1S"}},
            ]
        )  # fmt: skip
    sim = robot_sim_factory(echo=echo)
    orch = orchestrator_factory(echo=echo).start()

    publisher.publish(READY_QUEUE, b"14", message_id=None)

    wait_until("take and replace done", all_done(orch, 2))
    jobs = job_watcher.jobs
    assert [list(j)[:5] for j in jobs] == [SEED_KEYS, SEED_KEYS]
    assert all(("job_id" in j) is echo for j in jobs)
    assert [strip_job_id(j) for j in jobs] == [
        {"printer_id": 14, "bed_id": 804, "take_from_printer": True,
         "load_next_bed_without_homing": True, "open_doors": ["printer14"]},
        {"printer_id": 14, "bed_id": expected_plate, "take_from_printer": False,
         "load_next_bed_without_homing": True, "open_doors": ["printer14"]},
    ]  # fmt: skip
    assert motions(sim) == [("take", 14, 804), ("replace", 14, expected_plate)]

    tasks = {t["kind"]: t for t in orch.tasks()}
    assert tasks["take"]["print_id"] == "print-14-1"  # the printer's current print
    assert not tasks["take"]["print_id_synthetic"]
    printer = farm_db.printers.find_one({"_id": 14})
    assert printer is not None
    assert printer["bed"] == {"bed_id": expected_plate, "state": "in_printer"}
    taken = farm_db.beds.find_one({"_id": 804})
    assert taken is not None
    assert taken["state"] == "with_part"
    assert taken["location"] == {"rack": "A", "slot": 4, "printer_id": None}
    loaded = farm_db.beds.find_one({"_id": expected_plate})
    assert loaded is not None
    assert loaded["state"] == "in_printer"
    assert loaded["location"]["printer_id"] == 14
    assert not loaded.get("reserved_for")
    assert_inventory_matches(farm_db, sim.world)


def test_the_same_print_twice_and_a_redelivery_move_the_robot_once(
    farm_db: Db,
    robot_sim_factory: Callable[..., RobotArmSim],
    orchestrator_factory: Callable[..., Orchestrator],
    job_watcher: JobWatcher,
    publisher: AmqpPublisher,
    amqp_url: str,
) -> None:
    """The orchestrator dies after recording but before the ack (RabbitMQ redelivers the
    message), and the printer announces the same print again: one take, one replace."""
    sim = robot_sim_factory()
    orch = orchestrator_factory()
    orch.start(ORCHESTRATOR_CRASHPOINT="after_record")
    publisher.publish(READY_QUEUE, b"14", message_id="print-14-1")
    orch.wait_killed()
    assert farm_db.robot_tasks.count_documents({}) == 2  # recorded, never acked

    orch.start()  # the redelivery comes to the new process
    publisher.publish(READY_QUEUE, b"14", message_id="print-14-1")  # announced again
    wait_until("the swap", all_done(orch, 2))
    wait_until(
        "both deliveries acked",
        lambda: (
            farm_db.robot_tasks.count_documents({}) == 2
            and orch.api("GET", "/dispatch").json()["state"] == "idle"
        ),
    )
    # one more distinct print proves the queue was drained past both copies
    publisher.publish(READY_QUEUE, b"12", message_id="print-12-1")
    wait_until("printer 12's swap", all_done(orch, 4))
    assert motions(sim) == [
        ("take", 14, 804),
        ("replace", 14, 803),
        ("take", 12, 802),
        ("replace", 12, 801),
    ]
    assert len(job_watcher.jobs) == 4
    assert_inventory_matches(farm_db, sim.world)


# ---------------------------------------------------------------- kill -9


@pytest.mark.parametrize(
    ("crashpoint", "held_kind"),
    [
        ("after_record", None),
        ("after_sent:take", "take"),
        ("after_done:take", None),
        ("after_sent:replace", "replace"),
    ],
)
def test_kill_9_at_each_step_of_a_swap_never_moves_the_robot_twice(
    crashpoint: str,
    held_kind: str | None,
    farm_db: Db,
    robot_sim_factory: Callable[..., RobotArmSim],
    orchestrator_factory: Callable[..., Orchestrator],
    publisher: AmqpPublisher,
) -> None:
    """Without the job-id extension (the real robot), after a restart a task cut mid-flight is
    held (not re-sent) until a person resolves it; the ledger never shows a motion twice and
    the inventory ends as the sim's world. (With the extension it is reconciled:
    test_interlock_integration.py.)"""
    sim = robot_sim_factory(echo=False)
    orch = orchestrator_factory(echo=False)
    orch.start(ORCHESTRATOR_CRASHPOINT=crashpoint)
    publisher.publish(READY_QUEUE, b"14", message_id="print-14-1")
    orch.wait_killed()
    # let the motion in progress (if any) finish while nobody listens
    wait_until("the arm at rest", lambda: not sim.world["busy"])
    before = motions(sim)

    orch.start()
    if held_kind is not None:
        held = wait_until("the held task", lambda: orch.api("GET", "/tasks/held").json())
        assert [t["kind"] for t in held] == [held_kind]
        assert "restarted" in held[0]["error"]
        dispatch = orch.api("GET", "/dispatch").json()
        assert dispatch["state"] == "blocked"
        assert dispatch["held"] == 1
        assert motions(sim) == before  # nothing re-sent by itself
        # the person checks the arm: the motion happened
        resolved = orch.api("POST", f"/tasks/{held[0]['id']}/resolve", json={"action": "done"})
        assert resolved.status_code == 200, resolved.text
        assert resolved.json()["status"] == "done"
    wait_until("the swap", all_done(orch, 2))
    assert motions(sim) == [("take", 14, 804), ("replace", 14, 803)]
    assert_inventory_matches(farm_db, sim.world)


# ---------------------------------------------------------------- poison


def malformed_bodies(count: int) -> list[bytes]:
    fixed = [
        b"", b" ", b"abc", b"-14", b"+14", b"0", b"014", b"14.0", b"1e3", b"\xff\xfe",
        b"\xd9\xa1\xd9\xa4", b'{"printer_id": 14}', b"14 15", b"9999999", b"1" * 80,
        b"16", b"99", b"20", b"46", b"100",
    ]  # fmt: skip
    rng = random.Random(4)
    while len(fixed) < count:
        choice = rng.randrange(4)
        if choice == 0:
            fixed.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 12))) + b"x")
        elif choice == 1:
            fixed.append(str(rng.choice([0, 10, 16, 19, 26, 30, 36, 50, 77, 500])).encode())
        elif choice == 2:
            fixed.append(f"printer{rng.randrange(100)}".encode())
        else:
            fixed.append(f"{rng.randrange(11, 46)}.{rng.randrange(10)}".encode())
    return fixed[:count]


def test_malformed_ready_bodies_are_dead_lettered_and_valid_ones_served(
    farm_db: Db,
    robot_sim_factory: Callable[..., RobotArmSim],
    orchestrator_factory: Callable[..., Orchestrator],
    publisher: AmqpPublisher,
    amqp_url: str,
) -> None:
    """100 malformed bodies (not a printer id, or a printer the farm does not have) among 4
    valid ones: every bad one in ready.dlq with a reason, every valid one served."""
    sim = robot_sim_factory(take_s=0.1, replace_s=0.1)
    orch = orchestrator_factory().start()
    pid = orch.process.pid if orch.process else None
    bad = malformed_bodies(100)
    valid = iter(PLACEMENT)
    for index, body in enumerate(bad):
        publisher.publish(READY_QUEUE, body, message_id=f"bad-{index}")
        if index % 25 == 10:
            printer_id = next(valid)
            publisher.publish(
                READY_QUEUE, str(printer_id).encode(), message_id=f"print-{printer_id}-1"
            )

    wait_until("4 swaps", all_done(orch, 8), timeout_s=40)
    letters = wait_until(
        "100 dead letters",
        lambda: (
            (found := peek_dead_letters(amqp_url, READY_QUEUE, 200)) and len(found) == 100 and found
        ),
    )
    assert sorted(letter.message_id or "" for letter in letters) == sorted(
        f"bad-{i}" for i in range(100)
    )
    assert all(letter.reason for letter in letters)
    via_api = orch.api("GET", "/dead-letters", params={"queue": "ready", "limit": 200}).json()
    assert len(via_api) == 100
    assert any("unknown printer 16" in d["reason"] for d in via_api)
    assert orch.process is not None
    assert orch.process.pid == pid
    assert orch.process.poll() is None
    assert len(sim.motions()) == 8
    assert_inventory_matches(farm_db, sim.world)


# ---------------------------------------------------------------- homing


def test_homing_during_a_swap_goes_out_after_the_swap(
    farm_db: Db,
    robot_sim_factory: Callable[..., RobotArmSim],
    orchestrator_factory: Callable[..., Orchestrator],
    job_watcher: JobWatcher,
    publisher: AmqpPublisher,
) -> None:
    """A homing message arriving while the take runs waits until the replace is done."""
    sim = robot_sim_factory(take_s=1.0, replace_s=0.5)
    orch = orchestrator_factory().start()
    publisher.publish(READY_QUEUE, b"14", message_id="print-14-1")
    wait_until("the take in flight", lambda: sim.world["busy"])
    publisher.publish(HOMING_QUEUE, b"nightly", message_id="homing-1")
    wait_until("take, replace, homing done", all_done(orch, 3))
    assert [m[0] for m in motions(sim)] == ["take", "replace", "homing"]
    assert [j["printer_id"] for j in job_watcher.jobs] == [14, 14, None]
    homing = orch.api("GET", "/tasks/homing:homing-1").json()
    assert homing["status"] == "done"
    assert homing["source"] == "homing"


# ---------------------------------------------------------------- robot error and the API


def test_a_robot_error_holds_the_task_until_a_person_retries_it(
    farm_db: Db,
    robot_sim_factory: Callable[..., RobotArmSim],
    orchestrator_factory: Callable[..., Orchestrator],
    publisher: AmqpPublisher,
) -> None:
    """The arm fails the take half-way: held, nothing else sent; a person clears the arm and
    chooses retry; the take is sent once more (new job id) and the swap completes."""
    sim = robot_sim_factory()
    sim.update_faults(error_on_job=1, error_mode="fail")
    orch = orchestrator_factory().start()
    publisher.publish(READY_QUEUE, b"14", message_id="print-14-1")
    held = wait_until("the held take", lambda: orch.api("GET", "/tasks/held").json())
    assert held[0]["kind"] == "take"
    assert "half-way" in held[0]["error"]
    assert len(sim.motions()) == 1

    sim.operator_available()
    response = orch.api("POST", f"/tasks/{held[0]['id']}/resolve", json={"action": "retry"})
    assert response.status_code == 200, response.text
    wait_until("the swap", all_done(orch, 2))
    take = orch.api("GET", f"/tasks/{held[0]['id']}").json()
    assert take["attempts"] == 2
    assert [h["actor"] for h in take["history"]].count("person") == 1
    assert motions(sim) == [("take", 14, 804), ("take", 14, 804), ("replace", 14, 803)]
    assert_inventory_matches(farm_db, sim.world)


def test_api_needs_the_token_and_pauses_dispatching(
    farm_db: Db,
    robot_sim_factory: Callable[..., RobotArmSim],
    orchestrator_factory: Callable[..., Orchestrator],
    publisher: AmqpPublisher,
) -> None:
    """Health and metrics are open; everything else needs the service token. A pause keeps
    recorded tasks pending; resume sends them."""

    sim = robot_sim_factory()
    orch = orchestrator_factory().start()
    assert httpx.get(orch.url + "/healthz").json()["service"] == SERVICE
    assert httpx.get(orch.url + "/metrics").status_code == 200
    assert httpx.get(orch.url + "/tasks").status_code == 401
    assert orch.api("GET", "/tasks", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert orch.api("GET", "/readyz").status_code == 200

    paused = orch.api("POST", "/dispatch/pause", json={"reason": "maintenance"}).json()
    assert paused["paused"] is True
    publisher.publish(READY_QUEUE, b"14", message_id="print-14-1")
    wait_until("recorded", lambda: len(orch.tasks(status="pending")) == 2)
    assert orch.api("GET", "/dispatch").json()["state"] == "paused"
    assert sim.motions() == []
    assert orch.api("POST", "/tasks/nope/resolve", json={"action": "done"}).status_code == 404
    pending_replace = orch.tasks(kind="replace")[0]["id"]
    conflict = orch.api("POST", f"/tasks/{pending_replace}/resolve", json={"action": "done"})
    assert conflict.status_code == 409  # its plate is chosen when it is sent
    assert "done is for a held task" in conflict.json()["detail"]

    assert orch.api("POST", "/dispatch/resume").json()["paused"] is False
    wait_until("the swap", all_done(orch, 2))
    assert len(orch.tasks(printer_id=14, kind="replace")) == 1
    assert "robot_jobs_sent_total" in httpx.get(orch.url + "/metrics").text


def test_no_clean_plate_takes_then_waits_until_an_operator_cleans_one(
    farm_db: Db,
    robot_sim_factory: Callable[..., RobotArmSim],
    orchestrator_factory: Callable[..., Orchestrator],
    job_watcher: JobWatcher,
    publisher: AmqpPublisher,
) -> None:
    """Every textured plate is dirty: the take goes (its replace not reserved), the replace
    waits; an operator marks plate 830 clean and nudges: the replace loads it."""
    farm_db.beds.update_many(
        {"type": "textured_pei", "state": "clean"}, {"$set": {"state": "dirty"}}
    )
    sim = robot_sim_factory()
    orch = orchestrator_factory(PLATE_POLL_S="60").start()
    publisher.publish(READY_QUEUE, b"14", message_id="print-14-1")
    waiting = wait_until("the waiting replace", lambda: orch.tasks(status="waiting"))
    assert waiting[0]["kind"] == "replace"
    assert "no clean textured_pei plate" in waiting[0]["error"]
    wait_until("the take done", lambda: orch.tasks(kind="take", status="done"))
    # the seed's take as ever (the arm homes only through the homing job), but the task log
    # says no plate followed at once
    assert job_watcher.jobs[0]["load_next_bed_without_homing"] is True
    assert orch.tasks(kind="take")[0]["load_next"] is False
    assert len(job_watcher.jobs) == 1

    farm_db.beds.update_one({"_id": 830}, {"$set": {"state": "clean"}})
    assert orch.api("POST", "/dispatch/nudge").status_code == 202
    wait_until("the swap", all_done(orch, 2))
    assert motions(sim) == [("take", 14, 804), ("replace", 14, 830)]
    assert_inventory_matches(farm_db, sim.world)


def test_a_take_done_by_hand_moves_the_plate_home_and_the_robot_only_replaces(
    farm_db: Db,
    robot_sim_factory: Callable[..., RobotArmSim],
    orchestrator_factory: Callable[..., Orchestrator],
    job_watcher: JobWatcher,
    publisher: AmqpPublisher,
) -> None:
    """The robot is paused; an operator takes plate 804 out of printer 14 by hand and puts it
    in its slot, then says so: `done` on the pending take. The inventory records it at once;
    on resume no take is ever sent and the robot only loads a clean plate."""
    sim = robot_sim_factory()
    orch = orchestrator_factory().start()
    orch.api("POST", "/dispatch/pause", json={"reason": "robot being serviced"})
    publisher.publish(READY_QUEUE, b"14", message_id="print-14-1")
    wait_until("recorded", lambda: len(orch.tasks(status="pending")) == 2)
    take = orch.tasks(kind="take")[0]

    # the operator's hands: printer 14 is empty, plate 804 is in its home slot (with its part)
    plates = {int(p): b for p, b in sim.world["printers"].items() if int(p) != 14}
    sim.set_world(plates)
    done = orch.api("POST", f"/tasks/{take['id']}/resolve", json={"action": "done"})
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "done"
    bed = farm_db.beds.find_one({"_id": 804})
    assert bed is not None
    assert bed["location"]["printer_id"] is None
    assert bed["state"] == "with_part"
    again = orch.api("POST", f"/tasks/{take['id']}/resolve", json={"action": "done"})
    assert again.status_code == 409  # done is final: a second click changes nothing

    orch.api("POST", "/dispatch/resume")
    wait_until("the replace", all_done(orch, 2))
    assert [(m[0], m[1]) for m in motions(sim)] == [("replace", 14)]
    assert [job["take_from_printer"] for job in job_watcher.jobs] == [False]
    assert_inventory_matches(farm_db, sim.world)


def test_a_swap_done_by_hand_names_the_plate_loaded_and_the_robot_never_moves(
    farm_db: Db,
    robot_sim_factory: Callable[..., RobotArmSim],
    orchestrator_factory: Callable[..., Orchestrator],
    job_watcher: JobWatcher,
    publisher: AmqpPublisher,
) -> None:
    """The robot is down; an operator swaps printer 14's plate by hand: takes 804 out (done on
    the take), loads a clean plate of their choice and says which (done with bed_id on the
    replace). The inventory follows each step; what does not fit it is refused with a reason."""
    sim = robot_sim_factory()
    orch = orchestrator_factory().start()
    orch.api("POST", "/dispatch/pause", json={"reason": "robot down"})
    publisher.publish(READY_QUEUE, b"14", message_id="print-14-1")
    wait_until("recorded", lambda: len(orch.tasks(status="pending")) == 2)
    take = orch.tasks(kind="take")[0]["id"]
    replace = orch.tasks(kind="replace")[0]["id"]
    clean = sorted(d["_id"] for d in farm_db.beds.find({"type": "textured_pei", "state": "clean"}))
    loaded = clean[-1]  # any clean plate will do, not only the one the robot would fetch

    def resolve(task_id: str, **body: Any) -> httpx.Response:
        return orch.api("POST", f"/tasks/{task_id}/resolve", json={"action": "done", **body})

    # refused: the plate is not named; named on a take; the take not recorded yet
    assert "bed_id" in resolve(replace).json()["detail"]
    assert resolve(take, bed_id=loaded).status_code == 422
    early = resolve(replace, bed_id=loaded)
    assert early.status_code == 409
    assert "holds plate 804" in early.json()["detail"]

    assert resolve(take).json()["status"] == "done"
    dirty = resolve(replace, bed_id=804)  # the plate just taken out, part still on it
    assert dirty.status_code == 409
    assert "with_part, not clean" in dirty.json()["detail"]
    unknown = resolve(replace, bed_id=99_999)
    assert unknown.status_code == 409
    assert "no plate 99999" in unknown.json()["detail"]

    done = resolve(replace, bed_id=loaded)
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "done"
    assert done.json()["bed_id"] == loaded
    printer = farm_db.printers.find_one({"_id": 14})
    assert printer is not None
    assert printer["bed"] == {"bed_id": loaded, "state": "in_printer"}
    bed = farm_db.beds.find_one({"_id": loaded})
    assert bed is not None
    assert bed["state"] == "in_printer"
    assert bed["location"]["printer_id"] == 14
    assert not bed.get("reserved_for")
    assert farm_db.beds.count_documents({"reserved_for": replace}) == 0
    assert resolve(replace, bed_id=loaded).status_code == 409  # done is final

    # the operator's hands, as the robot simulator's world
    plates = {int(p): b for p, b in sim.world["printers"].items() if int(p) != 14}
    sim.set_world({**plates, 14: loaded})
    orch.api("POST", "/dispatch/resume")
    time.sleep(1.0)
    assert motions(sim) == []
    assert job_watcher.jobs == []
    assert_inventory_matches(farm_db, sim.world)
