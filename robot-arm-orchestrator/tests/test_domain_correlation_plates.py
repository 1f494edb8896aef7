"""Correlating robot statuses with the job in flight; plate choice; daily homing slots."""

from datetime import UTC, datetime, time

import pytest

from pantheon_contracts.beds import BedState, BedType
from pantheon_contracts.robot import RobotStatus
from pantheon_contracts.store import JobDoc, JobStatus, JobTarget
from robot_arm_orchestrator.domain.correlation import Correlator, Outcome
from robot_arm_orchestrator.domain.homing import due_homing_slot
from robot_arm_orchestrator.domain.plates import (
    PlateView,
    PrinterPlace,
    bed_type_for_next_job,
    plate_candidates,
    plate_distance,
)


def st(status: str, job_id: str | None = None, reason: str | None = None) -> RobotStatus:
    return RobotStatus(status=status, job_id=job_id, reason=reason)


def feed(c: Correlator, statuses: list[RobotStatus], first_seq: int) -> list[Outcome]:
    return [c.status(s, first_seq + i).outcome for i, s in enumerate(statuses)]


# ---------------------------------------------------------------- transition mode


def test_busy_then_available_completes_the_job() -> None:
    c = Correlator(echo=False)
    c.sent("j1", last_seq_seen=3)
    assert feed(c, [st("busy"), st("available")], 4) == [Outcome.PENDING, Outcome.DONE]


def test_a_status_received_before_the_send_never_completes_it() -> None:
    """A retained or stale busy/available numbered before the send is ignored."""
    c = Correlator(echo=False)
    c.sent("j1", last_seq_seen=5)
    assert c.status(st("busy"), 4).outcome is Outcome.PENDING
    assert c.status(st("available"), 5).outcome is Outcome.PENDING
    assert c.status(st("available"), 6).outcome is Outcome.PENDING  # no departure seen after
    assert c.status(st("busy"), 7).outcome is Outcome.PENDING
    assert c.status(st("available"), 8).outcome is Outcome.DONE


def test_available_without_leaving_it_first_is_not_completion() -> None:
    c = Correlator(echo=False)
    c.sent("j1", last_seq_seen=0)
    assert feed(c, [st("available"), st("available")], 1) == [Outcome.PENDING] * 2


def test_error_fails_the_job_with_the_reason() -> None:
    c = Correlator(echo=False)
    c.sent("j1", last_seq_seen=0)
    c.status(st("busy"), 1)
    verdict = c.status(st("error", reason="gripper jam"), 2)
    assert verdict.outcome is Outcome.ERROR
    assert "gripper jam" in verdict.reason


def test_the_verdict_is_final() -> None:
    c = Correlator(echo=False)
    c.sent("j1", last_seq_seen=0)
    feed(c, [st("busy"), st("available")], 1)
    assert c.status(st("error"), 3).outcome is Outcome.DONE


def test_no_job_in_flight_means_nothing_completes() -> None:
    c = Correlator(echo=False)
    assert feed(c, [st("busy"), st("available")], 1) == [Outcome.PENDING] * 2


# ---------------------------------------------------------------- echo mode


def test_echo_available_with_our_job_id_completes() -> None:
    c = Correlator(echo=True)
    c.sent("j2", last_seq_seen=0)
    outcomes = feed(c, [st("busy", "j2"), st("available", "j2")], 1)
    assert outcomes == [Outcome.PENDING, Outcome.DONE]


def test_echo_ignores_statuses_of_another_job() -> None:
    c = Correlator(echo=True)
    c.sent("j2", last_seq_seen=0)
    assert (
        feed(c, [st("busy", "j1"), st("available", "j1"), st("available")], 1)
        == [Outcome.PENDING] * 3
    )


def test_echo_error_for_our_job_or_for_no_job_fails_it() -> None:
    c = Correlator(echo=True)
    c.sent("j2", last_seq_seen=0)
    assert c.status(st("error", "j2", "refused: printer 14 holds no plate"), 1).outcome is (
        Outcome.ERROR
    )
    c.sent("j3", last_seq_seen=1)
    assert c.status(st("error"), 2).outcome is Outcome.ERROR


def test_echo_stale_status_with_our_id_before_the_send_is_ignored() -> None:
    c = Correlator(echo=True)
    c.sent("j2", last_seq_seen=10)
    assert c.status(st("available", "j2"), 10).outcome is Outcome.PENDING


def test_echo_confirmation_window_completes_an_uncontradicted_available() -> None:
    c = Correlator(echo=True, confirm_s=2.0)
    c.sent("j2", last_seq_seen=0)
    assert c.status(st("busy", "j2"), 1, now=10.0).outcome is Outcome.PENDING
    assert c.status(st("available", "j2"), 2, now=11.0).outcome is Outcome.PENDING
    assert c.tick(12.9).outcome is Outcome.PENDING
    # the arm's own repeat of available does not restart the window
    assert c.status(st("available", "j2"), 3, now=12.0).outcome is Outcome.PENDING
    assert c.tick(13.0).outcome is Outcome.DONE
    assert c.contradicted == 0


def test_echo_a_forged_available_is_contradicted_by_the_arms_busy_repeat() -> None:
    """Someone copies the job_id off robot_arm/job and publishes available while the arm
    moves: the arm's next busy repeat naming the job cancels it; only the real one counts."""
    c = Correlator(echo=True, confirm_s=2.0)
    c.sent("j2", last_seq_seen=0)
    c.status(st("busy", "j2"), 1, now=0.0)
    assert c.status(st("available", "j2"), 2, now=1.0).outcome is Outcome.PENDING  # forged
    assert c.status(st("busy", "j2"), 3, now=1.5).outcome is Outcome.PENDING  # the arm repeats
    assert c.contradicted == 1
    assert c.tick(10.0).outcome is Outcome.PENDING  # the forged one never completes it
    assert c.status(st("available", "j2"), 4, now=20.0).outcome is Outcome.PENDING  # real
    assert c.tick(22.0).outcome is Outcome.DONE


def test_transition_mode_a_hand_published_available_after_busy_completes_the_job() -> None:
    """Documented limit without job ids: the orchestrator cannot tell a hand-published
    available from the arm's once the arm has left available (README, item 6)."""
    c = Correlator(echo=False, confirm_s=2.0)
    c.sent("j1", last_seq_seen=0)
    assert c.status(st("busy"), 1, now=0.0).outcome is Outcome.PENDING
    assert c.status(st("available"), 2, now=0.5).outcome is Outcome.DONE


def test_adopted_job_after_a_restart() -> None:
    c = Correlator(echo=True, confirm_s=1.0)
    c.adopt("j5")
    assert c.status(st("busy", "j5"), 1, now=0.0).outcome is Outcome.PENDING
    c.status(st("available", "j5"), 2, now=1.0)
    assert c.tick(2.0).outcome is Outcome.DONE
    # the arm idle with another job as its last one: ours is not proven
    c.adopt("j6")
    verdict = c.status(st("available", "j5"), 3, now=3.0)
    assert verdict.outcome is Outcome.ERROR
    assert "not proven" in verdict.reason
    # while not adopting, an available naming an older job is only ignored
    c.sent("j7", last_seq_seen=3)
    assert c.status(st("available", "j6"), 4, now=4.0).outcome is Outcome.PENDING


# ---------------------------------------------------------------- plates

P14 = PrinterPlace(printer_id=14, model="P1S", row=1, col=4, default_bed_type=BedType.TEXTURED_PEI)
RACK_ROWS = {"A": 1.5, "B": 3.5}


def plate(bed_id: int, rack: str, slot: int, **kw: object) -> PlateView:
    data: dict[str, object] = {
        "type": BedType.TEXTURED_PEI,
        "state": BedState.CLEAN,
        "reserved_for": None,
    }
    data.update(kw)
    return PlateView(bed_id=bed_id, rack=rack, slot=slot, **data)  # type: ignore[arg-type]


def test_nearest_rack_then_nearest_slot_then_lowest_id() -> None:
    plates = [
        plate(821, "B", 4),
        plate(810, "A", 10),
        plate(805, "A", 5),
        plate(803, "A", 3),
    ]
    ordered = [p.bed_id for p in plate_candidates(plates, P14, BedType.TEXTURED_PEI, RACK_ROWS)]
    assert ordered == [803, 805, 810, 821]
    assert plate_distance(plates[1], P14, RACK_ROWS) == (0.5, 6, 810)


def test_only_clean_unreserved_plates_of_the_type_are_candidates() -> None:
    plates = [
        plate(801, "A", 1, reserved_for="x:replace"),
        plate(802, "A", 2, state=BedState.WITH_PART),
        plate(815, "A", 15, type=BedType.SMOOTH_PEI),
        plate(806, "A", 6),
    ]
    assert [p.bed_id for p in plate_candidates(plates, P14, BedType.TEXTURED_PEI, RACK_ROWS)] == [
        806
    ]
    assert plate_candidates(plates, P14, BedType.COOL_PLATE, RACK_ROWS) == []


def test_plates_whose_home_is_not_in_the_layout_are_never_candidates() -> None:
    """A plate added with a home the farm does not have (rack Z, slot 21 of a 20-slot rack,
    slot 0) would send the arm to a slot that is not there: it is skipped, however near."""
    rack_slots = {"A": 20, "B": 20}
    plates = [
        plate(901, "Z", 4),  # no rack Z
        plate(902, "A", 21),  # rack A has slots 1..20
        plate(903, "A", 0),
        plate(821, "B", 4),  # the only plate the robot may fetch
    ]
    chosen = plate_candidates(plates, P14, BedType.TEXTURED_PEI, RACK_ROWS, rack_slots)
    assert [p.bed_id for p in chosen] == [821]
    # without slot counts, an unknown rack is still refused
    without_slots = plate_candidates(plates, P14, BedType.TEXTURED_PEI, RACK_ROWS)
    assert [p.bed_id for p in without_slots] == [903, 902, 821]


def job(job_id: str, bed_type: BedType, **kw: object) -> JobDoc:
    return JobDoc.model_validate({"_id": job_id, "file": "f.gcode.3mf", "bed_type": bed_type, **kw})


@pytest.mark.parametrize(
    ("jobs", "expected"),
    [
        ([], BedType.TEXTURED_PEI),
        ([job("a", BedType.SMOOTH_PEI)], BedType.SMOOTH_PEI),
        ([job("a", BedType.SMOOTH_PEI, target=JobTarget(printer_id=12))], BedType.TEXTURED_PEI),
        ([job("a", BedType.COOL_PLATE, target=JobTarget(model="P1S"))], BedType.COOL_PLATE),
        ([job("a", BedType.COOL_PLATE, target=JobTarget(model="X1C"))], BedType.TEXTURED_PEI),
        (
            [
                job("a", BedType.COOL_PLATE, priority=1, seq=1),
                job("b", BedType.ENGINEERING, priority=5, seq=2, target=JobTarget(printer_id=14)),
            ],
            BedType.ENGINEERING,
        ),
        (
            [job("a", BedType.COOL_PLATE, seq=2), job("b", BedType.SMOOTH_PEI, seq=1)],
            BedType.SMOOTH_PEI,
        ),
        ([job("a", BedType.SMOOTH_PEI, status=JobStatus.PRINTING)], BedType.TEXTURED_PEI),
    ],
)
def test_plate_type_of_the_next_job_the_printer_could_take(
    jobs: list[JobDoc], expected: BedType
) -> None:
    assert bed_type_for_next_job(jobs, P14) is expected


# ---------------------------------------------------------------- daily homing


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2026, 11, 23, 20, 59, tzinfo=UTC), None),
        (datetime(2026, 11, 23, 21, 0, tzinfo=UTC), "daily-2026-11-23"),
        (datetime(2026, 11, 24, 1, 0, tzinfo=UTC), "daily-2026-11-23"),
        (datetime(2026, 11, 24, 3, 0, tzinfo=UTC), None),
    ],
)
def test_daily_homing_slot(now: datetime, expected: str | None) -> None:
    assert due_homing_slot(now, time(21, 0)) == expected
