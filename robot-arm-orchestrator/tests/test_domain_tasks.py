"""Task planning, the task state machine (incl. a property-based test) and what runs next."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pantheon_contracts.beds import BedState, BedType
from pantheon_contracts.store import PrinterBed, RobotTaskStatus
from robot_arm_orchestrator.domain.plates import PlateView, hand_load_problem
from robot_arm_orchestrator.domain.tasks import (
    ALLOWED,
    FINAL_STATUSES,
    Actor,
    Blocked,
    HoldScope,
    Idle,
    InvalidTransition,
    TaskKind,
    TaskView,
    blocked_printers,
    can_transition,
    next_task,
    person_may_mark_done,
    plan_homing,
    plan_tasks,
    transition,
)

S = RobotTaskStatus


# ---------------------------------------------------------------- planning


def test_a_finished_print_with_a_plate_plans_a_take_then_a_replace() -> None:
    plans = plan_tasks(14, PrinterBed(bed_id=804, state=BedState.WITH_PART), "p1")
    assert [(p.task_id, p.kind, p.bed_id, p.step) for p in plans] == [
        ("p1:take", TaskKind.TAKE, 804, 0),
        ("p1:replace", TaskKind.REPLACE, None, 1),
    ]
    assert all(p.printer_id == 14 and p.print_id == "p1" for p in plans)


def test_a_printer_without_a_plate_only_needs_a_replace() -> None:
    plans = plan_tasks(14, None, "p1")
    assert [p.kind for p in plans] == [TaskKind.REPLACE]


def test_the_same_print_plans_the_same_task_ids() -> None:
    bed = PrinterBed(bed_id=804, state=BedState.WITH_PART)
    assert plan_tasks(14, bed, "p1") == plan_tasks(14, bed, "p1")
    assert plan_tasks(14, bed, "p1") != plan_tasks(14, bed, "p2")


def test_homing_has_no_printer_and_no_bed() -> None:
    plan = plan_homing("m-1")
    assert (plan.task_id, plan.kind, plan.printer_id, plan.bed_id) == (
        "homing:m-1",
        TaskKind.HOMING,
        None,
        None,
    )


# ---------------------------------------------------------------- state machine table


@pytest.mark.parametrize(
    ("current", "target", "actor", "allowed"),
    [
        (S.PENDING, S.SENT, Actor.SYSTEM, True),
        (S.SENT, S.DONE, Actor.SYSTEM, True),
        (S.SENT, S.HELD, Actor.SYSTEM, True),
        (S.SENT, S.PENDING, Actor.SYSTEM, False),
        (S.SENT, S.PENDING, Actor.PERSON, False),
        (S.SENT, S.SENT, Actor.SYSTEM, False),
        (S.HELD, S.PENDING, Actor.SYSTEM, False),
        (S.HELD, S.DONE, Actor.SYSTEM, False),
        (S.HELD, S.PENDING, Actor.PRINT_END, True),  # re-armed: its print ended, never sent
        (S.HELD, S.DONE, Actor.PRINT_END, False),
        (S.PENDING, S.SENT, Actor.PRINT_END, False),
        (S.HELD, S.PENDING, Actor.PERSON, True),
        (S.HELD, S.DONE, Actor.PERSON, True),
        (S.HELD, S.ABORTED, Actor.PERSON, True),
        (S.DONE, S.PENDING, Actor.PERSON, False),
        (S.ABORTED, S.PENDING, Actor.PERSON, False),
        (S.WAITING, S.PENDING, Actor.SYSTEM, True),
        (S.PENDING, S.WAITING, Actor.SYSTEM, True),
        (S.PENDING, S.ABORTED, Actor.PERSON, True),
        (S.PENDING, S.ABORTED, Actor.SYSTEM, False),
        (S.PENDING, S.DONE, Actor.PERSON, True),  # done by hand (a take; a replace, plate named)
        (S.PENDING, S.DONE, Actor.SYSTEM, False),
        (S.WAITING, S.DONE, Actor.PERSON, True),  # a replace done by hand, plate named
    ],
)
def test_transition_table(current: S, target: S, actor: Actor, allowed: bool) -> None:
    assert can_transition(current, target, actor) is allowed
    if allowed:
        assert transition(current, target, actor) is target
    else:
        with pytest.raises(InvalidTransition):
            transition(current, target, actor)


def test_the_error_says_a_held_task_waits_for_a_person() -> None:
    with pytest.raises(InvalidTransition, match="only resolved by a person"):
        transition(S.HELD, S.PENDING, Actor.SYSTEM)


# ---------------------------------------------------------------- property-based


moves = st.lists(st.tuples(st.sampled_from(list(S)), st.sampled_from(list(Actor))), max_size=40)


@settings(max_examples=500, deadline=None)
@given(start=st.sampled_from(list(S)), attempts=moves)
def test_no_sequence_of_requests_breaks_the_invariants(
    start: S, attempts: list[tuple[S, Actor]]
) -> None:
    """Whatever is requested, in any order, by anyone: the accepted path keeps the rules."""
    current = start
    for target, actor in attempts:
        try:
            new = transition(current, target, actor)
        except InvalidTransition:
            continue
        assert current not in FINAL_STATUSES, "nothing leaves done/failed/aborted"
        assert not (current is S.SENT and new is S.PENDING), "sent never goes back to pending"
        if current is S.HELD:
            assert actor is Actor.PERSON or (actor is Actor.PRINT_END and new is S.PENDING), (
                "held is only left by a person's action, or re-armed by the end of its print"
            )
        if actor is Actor.PRINT_END:
            assert (current, new) == (S.HELD, S.PENDING), "the end of a print only re-arms"
        if new is S.SENT:
            assert current is S.PENDING, "only a pending task is sent"
        current = new


@given(st.sampled_from(sorted(ALLOWED)))
def test_every_allowed_transition_is_accepted(edge: tuple[S, S, Actor]) -> None:
    current, target, actor = edge
    assert transition(current, target, actor) is target


# ---------------------------------------------------------------- next task


def view(
    task_id: str,
    kind: TaskKind,
    status: S,
    order: int,
    *,
    group: str | None = None,
    load_next: bool = False,
    printer_id: int | None = None,
    hold_scope: HoldScope | None = None,
) -> TaskView:
    step = {TaskKind.TAKE: 0, TaskKind.REPLACE: 1, TaskKind.HOMING: 0}[kind]
    return TaskView(
        task_id, kind, status, order, step, group, None, load_next, printer_id, hold_scope
    )


def test_the_oldest_pending_task_goes_first() -> None:
    tasks = [
        view("h", TaskKind.HOMING, S.PENDING, 3),
        view("a:take", TaskKind.TAKE, S.PENDING, 1, group="a"),
        view("a:replace", TaskKind.REPLACE, S.PENDING, 1, group="a"),
    ]
    result = next_task(tasks)
    assert isinstance(result, TaskView)
    assert result.task_id == "a:take"


def test_a_held_task_stops_everything() -> None:
    tasks = [
        view("a:take", TaskKind.TAKE, S.HELD, 1, group="a"),
        view("h", TaskKind.HOMING, S.PENDING, 2),
    ]
    assert isinstance(next_task(tasks), Blocked)


def test_a_task_held_for_the_arm_stops_everything() -> None:
    tasks = [
        view(
            "a:take", TaskKind.TAKE, S.HELD, 1, group="a", printer_id=14, hold_scope=HoldScope.ARM
        ),
        view("b:take", TaskKind.TAKE, S.PENDING, 2, group="b", printer_id=15),
    ]
    assert next_task(tasks) == Blocked("task a:take is held: the arm waits for a person")


def test_a_task_held_for_its_printer_stops_only_that_printer() -> None:
    """A hold on printer 14 (nothing was sent): 14's later swap waits, 15's and homing go."""
    held = view(
        "a:take", TaskKind.TAKE, S.HELD, 1, group="a", printer_id=14, hold_scope=HoldScope.PRINTER
    )
    tasks = [
        held,
        view("a:replace", TaskKind.REPLACE, S.PENDING, 1, group="a", printer_id=14),
        view("c:take", TaskKind.TAKE, S.PENDING, 2, group="c", printer_id=14),
        view("b:take", TaskKind.TAKE, S.PENDING, 3, group="b", printer_id=15),
        view("h", TaskKind.HOMING, S.PENDING, 4),
    ]
    result = next_task(tasks)
    assert isinstance(result, TaskView)
    assert result.task_id == "b:take"
    assert blocked_printers(tasks) == {14}
    rest = [t for t in tasks if t.printer_id != 15]
    result = next_task(rest)
    assert isinstance(result, TaskView)
    assert result.task_id == "h"
    assert next_task([held, *tasks[1:3]]) == Idle()


def test_a_sent_task_blocks_the_next() -> None:
    tasks = [
        view("a:take", TaskKind.TAKE, S.SENT, 1, group="a"),
        view("h", TaskKind.HOMING, S.PENDING, 2),
    ]
    assert next_task(tasks) == Blocked("task a:take is in flight")


def test_homing_never_comes_between_a_take_and_its_replace() -> None:
    """Homing recorded earlier than a later swap still waits for a replace that must follow."""
    take_done = view("b:take", TaskKind.TAKE, S.DONE, 5, group="b", load_next=True)
    tasks = [
        view("h", TaskKind.HOMING, S.PENDING, 2),
        view("b:replace", TaskKind.REPLACE, S.PENDING, 5, group="b"),
    ]
    result = next_task(tasks, [take_done])
    assert isinstance(result, TaskView)
    assert result.task_id == "b:replace"


def test_a_replace_waits_for_its_take() -> None:
    tasks = [view("a:replace", TaskKind.REPLACE, S.PENDING, 1, group="a")]
    take_pending = view("a:take", TaskKind.TAKE, S.PENDING, 1, group="a")
    assert next_task(tasks, [take_pending]) == Idle()
    take_aborted = view("a:take", TaskKind.TAKE, S.ABORTED, 1, group="a")
    assert next_task(tasks, [take_aborted]) == Idle()


def test_a_waiting_replace_lets_other_work_through() -> None:
    """No clean plate for printer a: b's swap and homing go on meanwhile."""
    take_done = view("a:take", TaskKind.TAKE, S.DONE, 1, group="a", load_next=False)
    tasks = [
        view("a:replace", TaskKind.REPLACE, S.WAITING, 1, group="a"),
        view("h", TaskKind.HOMING, S.PENDING, 2),
    ]
    result = next_task(tasks, [take_done])
    assert isinstance(result, TaskView)
    assert result.task_id == "h"


def test_nothing_open_is_idle() -> None:
    assert next_task([]) == Idle()


def test_default_mqtt_client_id_follows_the_topic_prefix() -> None:
    """Two farms under different prefixes on one broker must not share a client id."""
    from robot_arm_orchestrator.settings import Settings

    plain = Settings(pantheon_env="dev")
    a = Settings(pantheon_env="dev", mqtt_topic_prefix="test/a/")
    b = Settings(pantheon_env="dev", mqtt_topic_prefix="test/b/")
    assert plain.mqtt_client_id == "robot-arm-orchestrator"
    assert a.mqtt_client_id.startswith("robot-arm-orchestrator-")
    assert len({plain.mqtt_client_id, a.mqtt_client_id, b.mqtt_client_id}) == 3
    assert Settings(pantheon_env="dev", mqtt_client_id="fixed").mqtt_client_id == "fixed"


@pytest.mark.parametrize(
    ("status", "kind", "plate_named", "allowed"),
    [
        (S.HELD, TaskKind.TAKE, False, True),
        (S.HELD, TaskKind.REPLACE, False, True),
        (S.PENDING, TaskKind.TAKE, False, True),  # the operator did it by hand
        (S.PENDING, TaskKind.REPLACE, False, False),  # which plate went in is not known
        (S.PENDING, TaskKind.REPLACE, True, True),  # ... unless the operator says it
        (S.WAITING, TaskKind.REPLACE, False, False),
        (S.WAITING, TaskKind.REPLACE, True, True),  # no clean plate: the operator cleaned one
        (S.WAITING, TaskKind.TAKE, True, False),
        (S.PENDING, TaskKind.HOMING, True, False),
        (S.SENT, TaskKind.TAKE, False, False),  # in flight: the robot will say
        (S.SENT, TaskKind.REPLACE, True, False),
        (S.DONE, TaskKind.TAKE, False, False),
        (S.DONE, TaskKind.REPLACE, True, False),
    ],
)
def test_what_a_person_may_mark_done(
    status: S, kind: TaskKind, plate_named: bool, allowed: bool
) -> None:
    assert person_may_mark_done(status, kind, plate_named=plate_named) is allowed
    if allowed and status is not S.HELD:
        assert can_transition(status, S.DONE, Actor.PERSON)


@pytest.mark.parametrize(
    ("plate", "problem"),
    [
        (None, "there is no plate 801"),
        (PlateView(801, BedType.TEXTURED_PEI, BedState.CLEAN, "A", 1), None),
        (PlateView(801, BedType.TEXTURED_PEI, BedState.CLEAN, "A", 1, "p:replace"), None),
        (
            PlateView(801, BedType.TEXTURED_PEI, BedState.CLEAN, "A", 1, "other:replace"),
            "plate 801 is reserved for other:replace",
        ),
        (
            PlateView(801, BedType.TEXTURED_PEI, BedState.WITH_PART, "A", 1),
            "plate 801 is with_part, not clean",
        ),
        (
            PlateView(801, BedType.SMOOTH_PEI, BedState.IN_PRINTER, "A", 1),
            "plate 801 is in_printer, not clean",
        ),
    ],
)
def test_which_plate_an_operator_may_have_loaded(
    plate: PlateView | None, problem: str | None
) -> None:
    assert hand_load_problem(plate, 801, "p:replace") == problem
