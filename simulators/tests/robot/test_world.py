"""The arm's physical world model: which jobs are possible, which are farm damage (violations),
where plates go (no broker, no HTTP)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pantheon_common.farm import FarmLayout
from pantheon_contracts.printer import PrinterState
from pantheon_contracts.robot import RobotJob
from pantheon_sim.robot.ledger import (
    Ledger,
    is_violation,
    motions,
    read_ledger,
    violation_record,
)
from pantheon_sim.robot.printer_sim import parse_printer_status
from pantheon_sim.robot.world import (
    InvalidPlacement,
    Motion,
    Place,
    PlaceKind,
    PrinterSeen,
    PrinterUnseen,
    PrinterView,
    Refusal,
    Violation,
    World,
    default_placement,
    parse_placement,
    printer_refusal,
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


def job_opening(printer_id: int, bed_id: int, *doors: str) -> RobotJob:
    """A replace that opens exactly ``doors``."""
    return RobotJob(
        printer_id=printer_id,
        bed_id=bed_id,
        take_from_printer=False,
        load_next_bed_without_homing=True,
        open_doors=doors,
    )


@pytest.mark.parametrize(
    ("job", "reason", "violation"),
    [
        (RobotJob.take(15, 801), "printer 15 holds no plate", Violation.TAKE_FROM_EMPTY),
        (RobotJob.take(14, 803), "printer 14 holds plate 801, not 803", Violation.WRONG_PLATE),
        (
            RobotJob.replace(14, 803),
            "printer 14 still holds plate 801",
            Violation.LOAD_INTO_OCCUPIED,
        ),
        (
            RobotJob.replace(15, 802),
            "plate 802 is not in its home slot rack A slot 2",
            Violation.PLATE_NOT_HOME,
        ),
        (
            RobotJob.replace(15, 801),
            "plate 801 is not in its home slot rack A slot 1",
            Violation.PLATE_NOT_HOME,
        ),
        (
            job_opening(15, 803, "printer14"),
            "job does not open door printer15",
            Violation.DOOR_NOT_OPENED,
        ),
        (RobotJob.take(99, 801), "unknown printer 99", None),
        (RobotJob.replace(15, 999), "unknown bed 999", None),
        (job_opening(15, 803, "printer15", "garage"), "unknown doors ['garage']", None),
    ],
)
def test_impossible_jobs_are_refused_and_change_nothing(
    layout: FarmLayout, job: RobotJob, reason: str, violation: Violation | None
) -> None:
    world = small_world(layout)
    before = world.snapshot()
    result = world.apply(job)
    assert isinstance(result, Refusal)
    assert result.reason.startswith(reason)
    assert result.violation is violation
    assert world.snapshot() == before


def test_a_job_while_the_arm_moves_is_refused_without_a_violation(layout: FarmLayout) -> None:
    world = small_world(layout)
    assert isinstance(world.apply(RobotJob.take(14, 801, job_id="a")), Motion)
    # even a damaging job: the arm refuses it for being busy before looking at plates
    assert world.check(RobotJob.take(15, 801)) == Refusal("arm is busy with job a")


# -- printer states (read by the caller from the printer simulator) ------------------------
BUSY = [
    (PrinterState.PREPARING, "PREPARE"),
    (PrinterState.PRINTING, "RUNNING"),
    (PrinterState.PAUSED, "PAUSE"),
]
OPEN_OK = [
    (PrinterState.IDLE, "IDLE"),
    (PrinterState.FINISHED, "FINISH"),
    (PrinterState.FAILED, "FAILED"),
    (PrinterState.OFFLINE, "OFFLINE"),
    (PrinterState.UNKNOWN, None),
]
POSSIBLE = [RobotJob.take(14, 801), RobotJob.replace(15, 803)]


@pytest.mark.parametrize(("state", "gcode_state"), BUSY)
@pytest.mark.parametrize("job", POSSIBLE, ids=["take", "replace"])
def test_a_door_on_a_running_print_is_a_violation(
    layout: FarmLayout, job: RobotJob, state: PrinterState, gcode_state: str
) -> None:
    world = small_world(layout)
    before = world.snapshot()
    assert job.printer_id is not None
    result = world.apply(job, {job.printer_id: PrinterSeen(state, gcode_state)})
    assert result == Refusal(
        f"printer {job.printer_id} is {state.value} ({gcode_state}): "
        "opening its door would wreck the print",
        Violation.PRINTER_BUSY,
    )
    assert world.snapshot() == before


@pytest.mark.parametrize(("state", "gcode_state"), OPEN_OK)
@pytest.mark.parametrize("job", POSSIBLE, ids=["take", "replace"])
def test_a_printer_without_a_print_in_progress_may_be_opened(
    layout: FarmLayout, job: RobotJob, state: PrinterState, gcode_state: str | None
) -> None:
    world = small_world(layout)
    assert job.printer_id is not None
    assert world.check(job, {job.printer_id: PrinterSeen(state, gcode_state)}) is None
    assert isinstance(world.apply(job, {job.printer_id: PrinterSeen(state)}), Motion)


def test_an_unseen_printer_is_refused_without_a_violation(layout: FarmLayout) -> None:
    world = small_world(layout)
    job = RobotJob.take(14, 801)
    result = world.check(job, {14: PrinterUnseen("connection refused")})
    assert result == Refusal(
        "cannot see the state of printer 14 (connection refused): "
        "the arm does not open a printer's door blind"
    )
    # a printer missing from the mapping reads as unseen; no mapping at all: no check
    assert world.check(job, {}) == Refusal(
        "cannot see the state of printer 14 (not read): "
        "the arm does not open a printer's door blind"
    )
    assert world.check(job, None) is None


def test_a_farm_mistake_is_a_violation_even_when_the_printer_is_unseen(
    layout: FarmLayout,
) -> None:
    world = small_world(layout)
    result = world.check(RobotJob.take(15, 801), {15: PrinterUnseen("down")})
    assert result is not None
    assert result.violation is Violation.TAKE_FROM_EMPTY


def test_a_running_print_outranks_the_plate_checks(layout: FarmLayout) -> None:
    """A replace into a printing printer that still holds a plate: the door is the damage."""
    world = small_world(layout)
    result = world.check(RobotJob.replace(14, 803), {14: PrinterSeen(PrinterState.PRINTING)})
    assert result is not None
    assert result.violation is Violation.PRINTER_BUSY
    assert result.reason == "printer 14 is printing: opening its door would wreck the print"


def test_every_opened_door_is_checked(layout: FarmLayout) -> None:
    world = small_world(layout)
    job = job_opening(15, 803, "printer11", "printer15")
    assert world.door_printers(job) == (15, 11)  # the job's own printer first
    idle = PrinterSeen(PrinterState.IDLE)
    paused = PrinterSeen(PrinterState.PAUSED, "PAUSE")
    result = world.check(job, {15: idle, 11: paused})
    assert result == Refusal(
        "printer 11 is paused (PAUSE): opening its door would wreck the print",
        Violation.PRINTER_BUSY,
    )
    assert world.check(job, {15: idle, 11: idle}) is None
    assert world.door_printers(RobotJob.homing()) == ()
    assert world.check(RobotJob.homing(), {}) is None


def test_printer_refusal_is_the_door_rule_alone() -> None:
    assert printer_refusal(14, PrinterSeen(PrinterState.FINISHED)) is None
    refusal = printer_refusal(14, PrinterSeen(PrinterState.PREPARING, "PREPARE"))
    assert refusal is not None
    assert refusal.violation is Violation.PRINTER_BUSY
    unseen = printer_refusal(14, PrinterUnseen("HTTP 404"))
    assert unseen is not None
    assert unseen.violation is None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"state": "printing", "gcode_state": "RUNNING"},
            PrinterSeen(PrinterState.PRINTING, "RUNNING"),
        ),
        (
            {"state": "idle", "gcode_state": "IDLE", "plate": "clean"},
            PrinterSeen(PrinterState.IDLE, "IDLE"),
        ),
        ({"state": "bogus", "gcode_state": "PAUSE"}, PrinterSeen(PrinterState.PAUSED, "PAUSE")),
        ({"gcode_state": "PREPARE"}, PrinterSeen(PrinterState.PREPARING, "PREPARE")),
        ({"state": "finished", "gcode_state": 7}, PrinterSeen(PrinterState.FINISHED, None)),
        ({"state": ["printing"]}, PrinterUnseen("the printer simulator's answer has no state")),
        ({}, PrinterUnseen("the printer simulator's answer has no state")),
        ([], PrinterUnseen("the printer simulator answered no JSON object")),
    ],
)
def test_parse_printer_status(body: object, expected: PrinterView) -> None:
    assert parse_printer_status(body) == expected


def test_violation_lines_of_the_ledger(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.jsonl")
    damaging = ledger.append(
        "refused",
        job_id="a",
        kind="take",
        printer_id=14,
        bed_id=801,
        reason="r",
        violation="wrong_plate",
    )
    harmless = ledger.append("refused", job_id="b", reason="unknown bed 9", violation=None)
    motion = ledger.append("motion", job_id="c")
    ledger.close()
    assert [is_violation(e) for e in (damaging, harmless, motion)] == [True, False, False]
    assert violation_record(damaging) == {
        "seq": 1,
        "time": damaging["time"],
        "job_id": "a",
        "kind": "take",
        "printer_id": 14,
        "bed_id": 801,
        "category": "wrong_plate",
        "reason": "r",
    }


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
