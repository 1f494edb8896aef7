"""The arm's physical world model: which jobs are possible, where plates go (no broker)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pantheon_common.farm import FarmLayout
from pantheon_contracts.robot import RobotJob
from pantheon_sim.robot.ledger import Ledger, motions, read_ledger
from pantheon_sim.robot.world import (
    InvalidPlacement,
    Motion,
    Place,
    PlaceKind,
    Refusal,
    World,
    default_placement,
    parse_placement,
)


def small_world(layout: FarmLayout) -> World:
    """Printer 14 holds 801, printer 15 is empty, printer 11 holds 802; the rest home."""
    return World.from_layout(layout, {14: 801, 15: None, 11: 802})


def test_default_gives_each_printer_the_first_free_plate_of_its_type(layout: FarmLayout) -> None:
    placement = default_placement(layout)
    # 20 textured printers, 28 textured plates: 801..814 then 821..826, in layout order
    assert placement[11] == 801
    assert placement[15] == 805
    assert placement[45] == 826
    assert len({b for b in placement.values() if b is not None}) == 20
    world = World.default(layout)
    assert world.plate_in(14) == 804
    assert world.plates[827] == Place.home("B", 7)
    assert world.violations() == []


@pytest.mark.parametrize(
    ("job", "reason"),
    [
        (RobotJob.take(15, 801), "printer 15 holds no plate"),
        (RobotJob.take(14, 803), "printer 14 holds plate 801, not 803"),
        (RobotJob.replace(14, 803), "printer 14 still holds plate 801"),
        (RobotJob.replace(15, 802), "plate 802 is not in its home slot rack A slot 2"),
        (RobotJob.replace(15, 801), "plate 801 is not in its home slot rack A slot 1"),
        (RobotJob.take(99, 801), "unknown printer 99"),
        (RobotJob.replace(15, 999), "unknown bed 999"),
        (
            RobotJob(
                printer_id=15,
                bed_id=803,
                take_from_printer=False,
                load_next_bed_without_homing=True,
                open_doors=("printer14",),
            ),
            "job does not open door printer15",
        ),
        (
            RobotJob(
                printer_id=15,
                bed_id=803,
                take_from_printer=False,
                load_next_bed_without_homing=True,
                open_doors=("printer15", "garage"),
            ),
            "unknown doors ['garage']",
        ),
    ],
)
def test_impossible_jobs_are_refused_and_change_nothing(
    layout: FarmLayout, job: RobotJob, reason: str
) -> None:
    world = small_world(layout)
    before = world.snapshot()
    result = world.apply(job)
    assert isinstance(result, Refusal)
    assert result.reason.startswith(reason)
    assert world.snapshot() == before


@pytest.mark.parametrize(
    ("job", "bed", "source", "destination", "printer_after"),
    [
        (RobotJob.take(14, 801), 801, Place.printer(14), Place.home("A", 1), (14, None)),
        (RobotJob.replace(15, 803), 803, Place.home("A", 3), Place.printer(15), (15, 803)),
    ],
)
def test_possible_jobs_move_the_plate_through_the_gripper(
    layout: FarmLayout,
    job: RobotJob,
    bed: int,
    source: Place,
    destination: Place,
    printer_after: tuple[int, int | None],
) -> None:
    world = small_world(layout)
    motion = world.apply(job)
    assert isinstance(motion, Motion)
    assert (motion.source, motion.destination) == (source, destination)
    assert world.plates[bed].kind is PlaceKind.ARM
    assert world.busy
    assert world.doors_open == set(job.open_doors)
    assert world.violations() == []
    assert world.apply(RobotJob.homing()) == Refusal(f"arm is busy with job {job.kind.value}")
    world.complete(motion)
    assert world.plates[bed] == destination
    assert world.printer_plates()[printer_after[0]] == printer_after[1]
    assert not world.busy
    assert world.doors_open == set()


def test_abort_puts_the_plate_back(layout: FarmLayout) -> None:
    world = small_world(layout)
    motion = world.apply(RobotJob.take(14, 801))
    assert isinstance(motion, Motion)
    world.abort(motion)
    assert world.plate_in(14) == 801
    assert not world.busy


def test_homing_moves_no_plate(layout: FarmLayout) -> None:
    world = small_world(layout)
    before = dict(world.plates)
    motion = world.apply(RobotJob.homing())
    assert isinstance(motion, Motion)
    world.complete(motion)
    assert world.plates == before


@pytest.mark.parametrize(
    ("placement", "problem"),
    [
        ({99: 801}, "unknown printer 99"),
        ({14: 999}, "unknown bed 999"),
        ({14: 801, 15: 801}, "bed 801 cannot be in printers 14 and 15"),
    ],
)
def test_impossible_placements_are_rejected(
    layout: FarmLayout, placement: dict[int, int | None], problem: str
) -> None:
    world = small_world(layout)
    with pytest.raises(InvalidPlacement, match=problem):
        world.place(placement)
    assert world.plate_in(14) == 801


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"printers": {"14": 801, "15": None}}, {14: 801, 15: None}),
        ({"printers": {}}, {}),
    ],
)
def test_parse_placement(data: object, expected: dict[int, int | None]) -> None:
    assert parse_placement(data) == expected


@pytest.mark.parametrize(
    "data", [[], {"printers": []}, {"printers": {"x": 801}}, {"printers": {"14": "801"}}]
)
def test_parse_placement_refuses_bad_shapes(data: object) -> None:
    with pytest.raises(InvalidPlacement):
        parse_placement(data)


def test_ledger_fsyncs_lines_continues_seq_and_skips_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    ledger = Ledger(path)
    ledger.append("motion", job_id="a", kind="take")
    ledger.close()
    with path.open("a") as f:
        f.write('{"seq": 9, "event": "mot')  # a crash mid-write
    reopened = Ledger(path)
    entry = reopened.append("motion", job_id="b", kind="replace")
    reopened.close()
    assert entry["seq"] == 2
    assert [e["job_id"] for e in motions(read_ledger(path))] == ["a", "b"]
    assert Ledger(path, wipe=True).entries() == []


# -- property: random job sequences never break physics -----------------------------------
PRINTERS = [11, 12, 14, 15, 99]
BEDS = [801, 802, 803, 804, 815, 999]

jobs = st.one_of(
    st.builds(RobotJob.take, st.sampled_from(PRINTERS), st.sampled_from(BEDS)),
    st.builds(RobotJob.replace, st.sampled_from(PRINTERS), st.sampled_from(BEDS)),
    st.just(RobotJob.homing()),
)
steps = st.lists(st.tuples(jobs, st.sampled_from(["complete", "abort", "later"])), max_size=40)


@settings(max_examples=150, deadline=None)
@given(sequence=steps)
def test_random_job_sequences_conserve_plates(layout: FarmLayout, sequence: list) -> None:  # type: ignore[type-arg]
    world = small_world(layout)
    plate_count = len(world.plates)
    running: Motion | None = None
    for job, ending in sequence:
        result = world.apply(job)
        if running is not None:
            assert isinstance(result, Refusal), "a job was accepted while the arm moved"
        if isinstance(result, Motion):
            running = result
        if running is not None and ending != "later":
            (world.complete if ending == "complete" else world.abort)(running)
            running = None
        assert world.violations() == []
        assert len(world.plates) == plate_count
        holders = [p for p in world.plates.values() if p.kind is PlaceKind.PRINTER]
        assert len(holders) == len(set(holders)), "a printer holds two plates"
