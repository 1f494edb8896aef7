"""A week of the farm in a discrete-event simulation, deciding with the orchestrator's own code.

A real-time week cannot run here, so this simulates one (in about a second) with:

- the farm layout (farm.yaml): printers with their row/column, racks, the 40 plates and types;
- seeded print durations: lognormal around ``--median-h`` (3 h), clipped to 20 min .. 12 h; each
  printer starts mid-print (remaining time uniform in its first print) so finishes are spread;
- the robot: take / replace / homing durations (45 s / 45 s / 60 s), plus ``--overhead-s`` per
  motion (the dispatch and status round trip measured by farm_bench.py), the daily homing at
  21:00 UTC; after a replace the printer starts its next job ``--restart-s`` later;
- operators: a plate back in the rack with a part is clean again 5..30 min later (around the
  clock), or only during ``--operator-hours`` (then the rest waits for the next shift);
- every printer always has a next job queued (targeted at it), of plate type textured PEI, or
  smooth PEI with probability ``--smooth-share``.

Decisions come from robot_arm_orchestrator.domain, unchanged: ``plan_tasks`` for a finished
print, ``next_task`` for what the robot does next, ``bed_type_for_next_job`` and
``plate_candidates`` for the plate to load, ``due_homing_slot`` and ``plan_homing`` for the daily
homing. The simulation mirrors what ``dispatcher.py`` does around them (reserve the replace's
plate when its take is sent, so the replace follows at once (task ``load_next``); a replace
without a clean plate waits and does not block other tasks).

Policies:

- ``orchestrator``: the above (oldest task first; a take's replace right after it; a replace
  with no clean plate waits aside);
- ``fcfs``: strictly the arrival order of ``ready`` (take, then replace, per print; homing in
  its arrival place); a replace with no clean plate blocks the robot until one is cleaned.
  Same plate choice (domain code), only the order differs.

Lower bounds (per run, from the same duration draws):

- robot time per print >= c = take + replace (+ 2 x overhead): a printer that finished waits at
  least c for its plate swap even with an idle robot. Reported with the M/D/1 mean (Poisson
  arrivals at the achieved rate, deterministic service c) as a queueing reference;
- prints per week <= min(sum over printers of the prints that fit when every swap takes exactly
  c + restart, (week - homing time) / c);
- robot utilisation <= min(1, lambda_max x c) + homing time / week, lambda_max = the prints bound
  per second; the achieved utilisation is lambda_achieved x c + homing, so the gap is the gap in
  prints.

Prints one JSON object (``--json``: also written there) and markdown lines. Usage:
    uv run python bench/farm_week.py --days 7 --seed 9
"""

from __future__ import annotations

# ruff: noqa: S311  (seeded simulation draws, not secrets)
import argparse
import heapq
import json
import math
import random
import statistics
import sys
import time as wall
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from typing import Any

from pantheon_common.farm import FarmLayout, load_layout
from pantheon_contracts.beds import BedState, BedType
from pantheon_contracts.store import JobDoc, PrinterBed, RobotTaskStatus
from robot_arm_orchestrator.domain.homing import due_homing_slot
from robot_arm_orchestrator.domain.plates import (
    PlateView,
    PrinterPlace,
    bed_type_for_next_job,
    plate_candidates,
)
from robot_arm_orchestrator.domain.tasks import (
    Idle,
    TaskKind,
    TaskView,
    next_task,
    plan_homing,
    plan_tasks,
)

REPO = Path(__file__).resolve().parents[1]
START = datetime(2026, 11, 23, tzinfo=UTC)  # a Monday, 00:00 UTC
S = RobotTaskStatus


@dataclass(frozen=True)
class Config:
    days: float = 7.0
    seed: int = 9
    take_s: float = 45.0
    replace_s: float = 45.0
    homing_s: float = 60.0
    homing_at: clock = clock(21, 0)
    overhead_s: float = 0.0
    restart_s: float = 30.0
    median_h: float = 3.0
    sigma: float = 0.6
    min_s: float = 20 * 60.0
    max_s: float = 12 * 3600.0
    clean_min_s: float = 5 * 60.0
    clean_max_s: float = 30 * 60.0
    operator_hours: tuple[int, int] | None = None
    smooth_share: float = 0.0

    @property
    def horizon(self) -> float:
        return self.days * 86400.0

    @property
    def cycle(self) -> float:
        """Robot time per print: take + replace (+ their dispatch overhead)."""
        return self.take_s + self.replace_s + 2 * self.overhead_s


class Draws:
    """Seeded per-printer streams, identical for every policy of one seed (common numbers)."""

    def __init__(self, cfg: Config, printer_ids: list[int]) -> None:
        self.cfg = cfg
        self._dur = {p: random.Random(f"{cfg.seed}-duration-{p}") for p in printer_ids}
        self._jobs = {p: random.Random(f"{cfg.seed}-job-{p}") for p in printer_ids}
        self._cache: dict[int, list[float]] = {p: [] for p in printer_ids}
        self._types: dict[int, list[BedType]] = {p: [] for p in printer_ids}
        self._first = {p: random.Random(f"{cfg.seed}-first-{p}").random() for p in printer_ids}

    def duration(self, printer_id: int, n: int) -> float:
        """The n-th print's duration on a printer (n = 0: the remaining part of the first)."""
        cache = self._cache[printer_id]
        while len(cache) <= n:
            d = self._dur[printer_id].lognormvariate(
                math.log(self.cfg.median_h * 3600), self.cfg.sigma
            )
            cache.append(min(self.cfg.max_s, max(self.cfg.min_s, d)))
        return cache[n] * self._first[printer_id] if n == 0 else cache[n]

    def bed_type(self, printer_id: int, n: int) -> BedType:
        types = self._types[printer_id]
        while len(types) <= n:
            smooth = self._jobs[printer_id].random() < self.cfg.smooth_share
            types.append(BedType.SMOOTH_PEI if smooth else BedType.TEXTURED_PEI)
        return types[n]


@dataclass
class Task:
    task_id: str
    kind: TaskKind
    printer_id: int | None
    bed_id: int | None
    step: int
    group: str | None
    order: int
    status: RobotTaskStatus = S.PENDING
    load_next: bool = False

    def view(self) -> TaskView:
        return TaskView(
            task_id=self.task_id,
            kind=self.kind,
            status=self.status,
            order=self.order,
            step=self.step,
            group=self.group,
            bed_id=self.bed_id,
            load_next=self.load_next,
        )


@dataclass
class Plate:
    bed_id: int
    type: BedType
    rack: str
    slot: int
    state: BedState = BedState.CLEAN
    reserved_for: str | None = None
    printer_id: int | None = None


@dataclass
class Printer:
    place: PrinterPlace
    bed_id: int | None = None
    with_part: bool = False
    n: int = 0  # prints started
    next_job: JobDoc | None = None


@dataclass
class PrintRecord:
    printer_id: int
    finish: float
    take_start: float | None = None
    take_done: float | None = None
    replace_start: float | None = None
    replace_done: float | None = None
    reserved_at: float | None = None


@dataclass
class Totals:
    busy: dict[str, float] = field(default_factory=lambda: {"take": 0.0, "replace": 0.0})
    blocked_s: float = 0.0
    homings: int = 0
    printing_s: float = 0.0


class FarmSim:
    """One policy over one horizon."""

    def __init__(self, cfg: Config, layout: FarmLayout, policy: str) -> None:
        self.cfg = cfg
        self.policy = policy
        self.t = 0.0
        self._events: list[tuple[float, int, str, Any]] = []
        self._seq = 0
        self._order = 0
        self.rack_rows = {r.id: r.row for r in layout.racks}
        ids = sorted(p.id for p in layout.printers)
        self.draws = Draws(cfg, ids)
        self.plates = {b.id: Plate(b.id, b.type, b.home.rack, b.home.slot) for b in layout.beds}
        self.printers: dict[int, Printer] = {}
        for spec in layout.printers:
            place = PrinterPlace(
                printer_id=spec.id,
                model=spec.model.value,
                row=spec.where.row,
                col=spec.where.col,
                default_bed_type=spec.bed_type,
            )
            self.printers[spec.id] = Printer(place)
        self.tasks: dict[str, Task] = {}
        self.done_takes: dict[str, Task] = {}
        self.fifo: list[str] = []
        self.robot_task: Task | None = None
        self.blocked_since: float | None = None
        self.records: dict[str, PrintRecord] = {}
        self.totals = Totals()
        self.homing_slots: set[str] = set()
        self.clean_rng = random.Random(f"{cfg.seed}-operator")
        self.print_started: dict[int, float] = {}

    # -- events ---------------------------------------------------------------------------
    def at(self, when: float, what: str, payload: Any = None) -> None:
        self._seq += 1
        heapq.heappush(self._events, (when, self._seq, what, payload))

    def run(self) -> FarmSim:
        for pid, printer in self.printers.items():
            printer.next_job = self._job(pid, 0)
            bed = self._pick_plate(pid, f"initial-{pid}")
            if bed is None:
                raise RuntimeError(f"no plate for printer {pid} at the start")
            self._load(pid, bed)
            self._start_print(pid)
        day = 0
        while day <= self.cfg.days:
            slot = START + timedelta(days=day)
            slot = slot.replace(hour=self.cfg.homing_at.hour, minute=self.cfg.homing_at.minute)
            self.at((slot - START).total_seconds(), "homing_check")
            day += 1
        handlers: dict[str, Callable[[Any], None]] = {
            "finish": self._on_finish,
            "robot_done": self._on_robot_done,
            "clean": self._on_clean,
            "start": lambda pid: self._start_print(pid),
            "homing_check": lambda _: self._on_homing_check(),
        }
        while self._events and self._events[0][0] <= self.cfg.horizon:
            self.t, _, what, payload = heapq.heappop(self._events)
            handlers[what](payload)
            self._kick()
        self.t = self.cfg.horizon
        if self.blocked_since is not None:
            self.totals.blocked_s += self.t - self.blocked_since
        for started in self.print_started.values():
            self.totals.printing_s += self.t - started
        return self

    def _job(self, pid: int, n: int) -> JobDoc:
        return JobDoc.model_validate(
            {
                "_id": f"job-{pid}-{n}",
                "file": "sim.gcode.3mf",
                "seq": n,
                "target": {"printer_id": pid},
                "bed_type": self.draws.bed_type(pid, n).value,
            }
        )

    def _start_print(self, pid: int) -> None:
        printer = self.printers[pid]
        duration = self.draws.duration(pid, printer.n)
        printer.n += 1
        printer.next_job = self._job(pid, printer.n)
        self.print_started[pid] = self.t
        self.at(self.t + duration, "finish", pid)

    def _on_finish(self, pid: int) -> None:
        printer = self.printers[pid]
        self.totals.printing_s += self.t - self.print_started.pop(pid)
        printer.with_part = True
        if printer.bed_id is not None:
            self.plates[printer.bed_id].state = BedState.WITH_PART
        print_id = f"print-{pid}-{printer.n}"
        self.records[print_id] = PrintRecord(pid, self.t)
        bed = (
            None
            if printer.bed_id is None
            else PrinterBed(bed_id=printer.bed_id, state=BedState.WITH_PART)
        )
        self._record(plan_tasks(pid, bed, print_id))

    def _on_homing_check(self) -> None:
        slot = due_homing_slot(START + timedelta(seconds=self.t), self.cfg.homing_at)
        if slot is not None and slot not in self.homing_slots:
            self.homing_slots.add(slot)
            self._record([plan_homing(slot)])

    def _record(self, plans: list[Any]) -> None:
        self._order += 1  # all tasks of one ready share the order, as in the store
        for plan in plans:
            task = Task(
                plan.task_id,
                plan.kind,
                plan.printer_id,
                plan.bed_id,
                plan.step,
                plan.print_id,
                self._order,
            )
            self.tasks[task.task_id] = task
            self.fifo.append(task.task_id)

    def _on_clean(self, bed_id: int) -> None:
        plate = self.plates[bed_id]
        plate.state = BedState.CLEAN
        if self.policy == "orchestrator":  # the dispatcher's waiting -> pending re-check
            waiting = [t for t in self.tasks.values() if t.status is S.WAITING]
            for task in sorted(waiting, key=lambda t: (t.order, t.step, t.task_id)):
                if self._reserve(task) is not None:
                    task.status = S.PENDING

    # -- plates ---------------------------------------------------------------------------
    def _pick_plate(self, pid: int, owner: str) -> int | None:
        printer = self.printers[pid]
        jobs = [printer.next_job] if printer.next_job is not None else []
        bed_type = bed_type_for_next_job(jobs, printer.place)
        views = [
            PlateView(p.bed_id, p.type, p.state, p.rack, p.slot, p.reserved_for)
            for p in self.plates.values()
            if p.printer_id is None
        ]
        for candidate in plate_candidates(views, printer.place, bed_type, self.rack_rows):
            self.plates[candidate.bed_id].reserved_for = owner
            return candidate.bed_id
        return None

    def _reserve(self, task: Task) -> int | None:
        if task.bed_id is not None:
            return task.bed_id
        assert task.printer_id is not None
        bed = self._pick_plate(task.printer_id, task.task_id)
        if bed is not None:
            task.bed_id = bed
            record = self.records.get(str(task.group))
            if record is not None:
                record.reserved_at = self.t
        return bed

    def _load(self, pid: int, bed_id: int) -> None:
        plate = self.plates[bed_id]
        plate.state, plate.reserved_for, plate.printer_id = BedState.IN_PRINTER, None, pid
        printer = self.printers[pid]
        printer.bed_id, printer.with_part = bed_id, False

    def _clean_time(self) -> float:
        ready = self.t + self.clean_rng.uniform(self.cfg.clean_min_s, self.cfg.clean_max_s)
        hours = self.cfg.operator_hours
        if hours is None:
            return ready
        first, last = hours
        moment = START + timedelta(seconds=ready)
        if first <= moment.hour < last:
            return ready
        shift = moment.replace(hour=first, minute=0, second=0, microsecond=0)
        if moment.hour >= last:
            shift += timedelta(days=1)
        return (shift - START).total_seconds() + self.clean_rng.uniform(0, 3600)

    # -- robot ----------------------------------------------------------------------------
    def _kick(self) -> None:
        if self.robot_task is not None:
            return
        if self.policy == "fcfs":
            self._kick_fcfs()
        else:
            self._kick_orchestrator()

    def _kick_orchestrator(self) -> None:
        while True:
            open_tasks = [t for t in self.tasks.values() if t.status in (S.PENDING, S.WAITING)]
            groups = {t.group for t in open_tasks if t.kind is TaskKind.REPLACE}
            closed = [self.done_takes[g].view() for g in groups if g in self.done_takes]
            decision = next_task([t.view() for t in open_tasks], closed)
            if not isinstance(decision, TaskView):
                assert isinstance(decision, Idle), decision
                return
            task = self.tasks[decision.task_id]
            if task.kind is TaskKind.TAKE:
                partner = self.tasks.get(f"{task.group}:replace")
                if partner is not None and partner.status in (S.PENDING, S.WAITING):
                    task.load_next = self._reserve(partner) is not None
                    partner.status = S.PENDING if task.load_next else S.WAITING
                self._send(task)
                return
            if task.kind is TaskKind.REPLACE and self._reserve(task) is None:
                task.status = S.WAITING
                continue
            self._send(task)
            return

    def _kick_fcfs(self) -> None:
        while self.fifo:
            task = self.tasks[self.fifo[0]]
            if task.kind is TaskKind.REPLACE and self._reserve(task) is None:
                if self.blocked_since is None:
                    self.blocked_since = self.t
                return
            if self.blocked_since is not None:
                self.totals.blocked_s += self.t - self.blocked_since
                self.blocked_since = None
            self.fifo.pop(0)
            self._send(task)
            return

    def _send(self, task: Task) -> None:
        if self.policy == "orchestrator":
            self.fifo.remove(task.task_id)
        task.status = S.SENT
        self.robot_task = task
        motion = {
            TaskKind.TAKE: self.cfg.take_s,
            TaskKind.REPLACE: self.cfg.replace_s,
            TaskKind.HOMING: self.cfg.homing_s,
        }[task.kind]
        duration = motion + self.cfg.overhead_s
        end = min(self.t + duration, self.cfg.horizon)
        self.totals.busy[task.kind.value] = self.totals.busy.get(task.kind.value, 0.0) + (
            end - self.t
        )
        record = self.records.get(str(task.group))
        if record is not None:
            if task.kind is TaskKind.TAKE:
                record.take_start = self.t
            else:
                record.replace_start = self.t
        self.at(self.t + duration, "robot_done", task.task_id)

    def _on_robot_done(self, task_id: str) -> None:
        task = self.tasks.pop(task_id)
        task.status = S.DONE
        self.robot_task = None
        record = self.records.get(str(task.group))
        if task.kind is TaskKind.HOMING:
            self.totals.homings += 1
        elif task.kind is TaskKind.TAKE:
            assert task.printer_id is not None
            assert task.bed_id is not None
            self.done_takes[str(task.group)] = task
            plate = self.plates[task.bed_id]
            plate.printer_id, plate.state = None, BedState.WITH_PART
            printer = self.printers[task.printer_id]
            printer.bed_id, printer.with_part = None, False
            self.at(self._clean_time(), "clean", task.bed_id)
            if record is not None:
                record.take_done = self.t
        else:
            assert task.printer_id is not None
            assert task.bed_id is not None
            self.done_takes.pop(str(task.group), None)
            self._load(task.printer_id, task.bed_id)
            self.at(self.t + self.cfg.restart_s, "start", task.printer_id)
            if record is not None:
                record.replace_done = self.t


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bounds(cfg: Config, layout: FarmLayout) -> dict[str, float]:
    """Prints that fit if every swap took exactly c (+ restart), with the same draws."""
    ids = sorted(p.id for p in layout.printers)
    draws = Draws(cfg, ids)
    per_printer = 0
    for pid in ids:
        t, n = draws.duration(pid, 0), 0
        while t <= cfg.horizon:
            n += 1
            t += cfg.cycle + cfg.restart_s + draws.duration(pid, n)
        per_printer += n
    homings = math.floor(cfg.days)
    robot_cap = (cfg.horizon - homings * cfg.homing_s) / cfg.cycle
    prints = min(per_printer, robot_cap)
    rate = prints / cfg.horizon
    return {
        "prints_week_printers_only": per_printer,
        "prints_week_robot_capacity": round(robot_cap),
        "prints_per_day": round(prints / cfg.days, 1),
        "robot_utilization": round(
            min(1.0, rate * cfg.cycle) + homings * cfg.homing_s / cfg.horizon, 4
        ),
        "robot_wait_per_print_s": cfg.cycle,
    }


def summarize(sim: FarmSim) -> dict[str, Any]:
    cfg = sim.cfg
    finished = list(sim.records.values())
    swapped = [r for r in finished if r.replace_done is not None and r.take_done is not None]
    robot_wait: list[float] = []
    plate_wait: list[float] = []
    for r in swapped:
        assert r.replace_done is not None
        assert r.take_done is not None
        pw = max(0.0, (r.reserved_at or r.take_done) - r.take_done)
        plate_wait.append(pw)
        robot_wait.append(r.replace_done - r.finish - pw)
    busy = sum(sim.totals.busy.values())
    n_printers = len(sim.printers)
    rate = len(finished) / cfg.horizon
    rho = rate * cfg.cycle
    md1 = cfg.cycle + rho * cfg.cycle / (2 * (1 - rho)) if rho < 1 else math.inf
    return {
        "prints": len(finished),
        "prints_per_day": round(len(finished) / cfg.days, 1),
        "swaps_done": len(swapped),
        "printer_wait_for_robot_s": {
            "mean": round(statistics.mean(robot_wait), 1) if robot_wait else None,
            "p50": round(_pct(robot_wait, 0.5) or 0, 1),
            "p99": round(_pct(robot_wait, 0.99) or 0, 1),
            "max": round(max(robot_wait), 1) if robot_wait else None,
            "farm_hours_per_day": round(sum(robot_wait) / 3600 / cfg.days, 2),
            "share_of_printer_time_pct": round(
                100 * sum(robot_wait) / (n_printers * cfg.horizon), 3
            ),
            "md1_mean_reference": round(md1, 1),
        },
        "printer_wait_for_plate_s": {
            "mean": round(statistics.mean(plate_wait), 1) if plate_wait else None,
            "p99": round(_pct(plate_wait, 0.99) or 0, 1),
            "farm_hours_per_day": round(sum(plate_wait) / 3600 / cfg.days, 2),
        },
        "printer_printing_pct": round(100 * sim.totals.printing_s / (n_printers * cfg.horizon), 2),
        "robot_utilization": round(busy / cfg.horizon, 4),
        "robot_busy_hours": {k: round(v / 3600, 2) for k, v in sim.totals.busy.items()},
        "robot_blocked_on_plate_hours": round(sim.totals.blocked_s / 3600, 2),
        "homings": sim.totals.homings,
    }


SCENARIOS: dict[str, dict[str, Any]] = {
    "base": {},
    "day_shift": {"operator_hours": (7, 19), "smooth_share": 0.15},
    "short_prints": {"median_h": 0.75, "min_s": 10 * 60.0, "max_s": 4 * 3600.0},
}
SCENARIO_TEXT = {
    "base": "operators clean plates 5-30 min after a take, around the clock; all jobs textured PEI",
    "day_shift": "operators 07-19 only; 15 % of jobs need smooth PEI (8 such plates)",
    "short_prints": "as base, but prints of median 45 min (10 min..4 h): a busy robot",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--take-s", type=float, default=45.0)
    parser.add_argument("--replace-s", type=float, default=45.0)
    parser.add_argument("--homing-s", type=float, default=60.0)
    parser.add_argument(
        "--overhead-s", type=float, default=0.0, help="added to every motion (calibration)"
    )
    parser.add_argument("--restart-s", type=float, default=30.0, help="plate loaded -> printing")
    parser.add_argument("--median-h", type=float, default=3.0)
    parser.add_argument("--sigma", type=float, default=0.6, help="lognormal shape")
    parser.add_argument("--layout", type=Path, default=REPO / "farm.yaml")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated")
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()

    layout = load_layout(args.layout)
    base = Config(
        days=args.days,
        seed=args.seed,
        take_s=args.take_s,
        replace_s=args.replace_s,
        homing_s=args.homing_s,
        overhead_s=args.overhead_s,
        restart_s=args.restart_s,
        median_h=args.median_h,
        sigma=args.sigma,
    )
    started = wall.perf_counter()
    out: dict[str, Any] = {
        "config": {
            "printers": len(layout.printers),
            "plates": len(layout.beds),
            "days": base.days,
            "seed": base.seed,
            "take_s": base.take_s,
            "replace_s": base.replace_s,
            "homing_s": base.homing_s,
            "homing_at_utc": base.homing_at.isoformat("minutes"),
            "overhead_s": base.overhead_s,
            "restart_s": base.restart_s,
            "print_duration": f"lognormal median {base.median_h} h sigma {base.sigma}, "
            f"clipped {base.min_s / 60:g} min..{base.max_s / 3600:g} h",
            "cycle_s": base.cycle,
        },
        "scenarios": {},
    }
    lines: list[str] = []
    for name in [s for s in args.scenarios.split(",") if s]:
        cfg = replace(base, **SCENARIOS[name])
        draws = Draws(cfg, sorted(p.id for p in layout.printers))
        durations = [draws.duration(p.id, n) for p in layout.printers for n in range(1, 60)]
        entry: dict[str, Any] = {
            "about": SCENARIO_TEXT[name],
            "mean_print_h": round(statistics.mean(durations) / 3600, 2),
            "bound": bounds(cfg, layout),
        }
        for policy in ("fcfs", "orchestrator"):
            entry[policy] = summarize(FarmSim(cfg, layout, policy).run())
        out["scenarios"][name] = entry
        bound = entry["bound"]
        for policy in ("fcfs", "orchestrator"):
            r = entry[policy]
            w = r["printer_wait_for_robot_s"]
            lines.append(
                f"| {name} | {policy} | {r['prints_per_day']} (bound {bound['prints_per_day']})"
                f" | {w['mean']} s mean, p99 {w['p99']} s (bound {cfg.cycle:g} s, M/D/1 "
                f"{w['md1_mean_reference']} s); {w['farm_hours_per_day']} printer-h/day"
                f" | {r['printer_wait_for_plate_s']['farm_hours_per_day']} printer-h/day"
                f" | {100 * r['robot_utilization']:.1f} % (bound "
                f"{100 * bound['robot_utilization']:.1f} %) |"
            )
    out["sim_wall_s"] = round(wall.perf_counter() - started, 2)
    text = json.dumps(out)
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(text)
    print(
        "| scenario | policy | prints/day | printer wait for the robot per print | "
        "wait for a clean plate | robot utilisation |"
    )
    print("|---|---|---|---|---|---|")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
