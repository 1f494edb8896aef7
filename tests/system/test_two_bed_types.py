"""Four printers, eight jobs on two plate types: every job printed once on a plate of its type.

The farm (printers 21-24, P1S, each starting with a textured PEI plate from the robot
simulator's world) gets two uploaded files, one sliced for textured PEI and one for smooth PEI
(the seed layout keeps smooth PEI plates in slots 15-18 of each rack), and eight jobs queued
alternately for the two types through pantheon-api. The run is done once for the module; each
test states one fact about it, read through the public interfaces.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pantheon_devtools.infra import Endpoints

from .conftest import Farm, FarmPorts, package_and_jobs, running_farm

PRINTERS = [21, 22, 23, 24]
PORTS = FarmPorts.block(26200, printer_port_base=22000)
BED_TYPES = ["textured_pei", "smooth_pei"]
FOREIGN_OBJECTS = 0x0500806E  # bambu-sim's refusal of a print on a missing or used plate
BUSY = 0x05004004  # bambu-sim's refusal of a print while printing


@dataclass
class Run:
    farm: Farm
    jobs: list[str]
    started: datetime
    prints: list[dict[str, Any]]
    tasks: list[dict[str, Any]]


@pytest.fixture(scope="module")
def run(infra: Endpoints) -> Iterator[Run]:
    started = datetime.now(UTC) - timedelta(seconds=5)
    with running_farm(infra, PRINTERS, PORTS) as farm:
        jobs = package_and_jobs(farm, 8, BED_TYPES, model="P1S")
        farm.wait_jobs(jobs, "finished", 90)
        farm.wait(
            lambda: len(farm.tasks(status="done")) == 16,
            45,
            "sixteen robot tasks done: a take and a replace per print (orchestrator GET /tasks)",
            context=lambda: json.dumps([(t["id"], t["status"]) for t in farm.tasks()]),
        )
        yield Run(farm, jobs, started, farm.prints(), farm.tasks())


def test_every_job_is_printed_once(run: Run) -> None:
    by_job = Counter(p["job_id"] for p in run.prints)
    assert by_job == Counter(dict.fromkeys(run.jobs, 1)), run.prints
    assert all(p["result"] == "finished" for p in run.prints)
    jobs = run.farm.jobs()
    # attempts stay 0: no start was refused or failed on the way
    assert [(jobs[j]["status"], jobs[j]["attempts"]) for j in run.jobs] == [("finished", 0)] * 8
    assert {p["printer_id"] for p in run.prints} <= set(PRINTERS)


def test_every_print_was_on_a_plate_of_its_jobs_type(run: Run) -> None:
    jobs = run.farm.jobs()
    seen = []
    for p in run.prints:
        assert p["bed_id"] is not None, p
        bed = run.farm.bed(p["bed_id"])
        seen.append((jobs[p["job_id"]]["bed_type"], bed["type"]))
    assert all(wanted == loaded for wanted, loaded in seen), seen
    assert Counter(wanted for wanted, _ in seen) == {"textured_pei": 4, "smooth_pei": 4}


def test_every_plate_swap_is_done_once(run: Run) -> None:
    tasks = run.tasks
    # one take and one replace per print, recorded under the print id (the ready message id)
    kinds = Counter((t["print_id"], t["kind"]) for t in tasks)
    expected = {(p["id"], k): 1 for p in run.prints for k in ("take", "replace")}
    assert dict(kinds) == expected
    assert all(t["status"] == "done" for t in tasks)
    # the robot's ledger: sixteen motions, one per task, none twice
    motions = run.farm.assert_no_motion_twice()
    assert sorted(m["job_id"] for m in motions) == sorted(t["job_id"] for t in tasks)
    for t in tasks:
        (motion,) = [m for m in motions if m["job_id"] == t["job_id"]]
        assert (motion["kind"], motion["printer_id"], motion["bed_id"]) == (
            t["kind"],
            t["printer_id"],
            t["bed_id"],
        )
    # each take carried out the plate that was printed on
    printed_on = {p["id"]: p["bed_id"] for p in run.prints}
    takes = {t["print_id"]: t["bed_id"] for t in tasks if t["kind"] == "take"}
    assert takes == printed_on


def test_no_simulator_refused_anything(run: Run) -> None:
    assert run.farm.ledger(event="refused") == []
    assert run.farm.ledger(event="failed") == []
    # nothing printed onto a part or a bare bed (P1S printers cannot see their bed)
    assert run.farm.printer_violations() == (0, [])
    assert run.farm.robot_violations() == (0, [])
    for printer_id in PRINTERS:
        sim = run.farm.sim_printer(printer_id)
        assert sim["print_error"] not in (FOREIGN_OBJECTS, BUSY), sim
        assert run.farm.printer(printer_id)["last_error"] is None


def test_utilization_counts_the_eight_prints(run: Run) -> None:
    farm = run.farm

    def report() -> dict[str, Any] | None:
        reply = farm.api.get(
            "/api/utilization",
            params={
                "from": run.started.isoformat(),
                "to": datetime.now(UTC).isoformat(),
                "group": "none",
                "printer_id": PRINTERS,
            },
        )
        if reply.status_code != 200:
            return None
        body: dict[str, Any] = reply.json()
        return body if body["farm"]["total"]["prints_finished"] >= 8 else None

    body = farm.wait(
        report,
        20,
        "printer-utilization to count 8 finished prints (pantheon-api GET /api/utilization)",
        logs=("printer-utilization", "pantheon-api"),
    )
    assert body["farm"]["total"]["prints_finished"] == 8
    per_printer = {p["printer_id"]: p["total"]["prints_finished"] for p in body["printers"]}
    assert per_printer == dict(Counter(p["printer_id"] for p in run.prints))
