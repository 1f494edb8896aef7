"""MongoDB adapter: the robot task log (``robot_tasks``) and the plate inventory it moves.

``robot_tasks`` (owned here), one document per robot motion::

    _id            "<print_id>:take" | "<print_id>:replace" | "homing:<message id or daily-DATE>"
    kind           take | replace | homing
    status         pending | waiting | sent | done | failed | held | aborted (RobotTaskStatus)
    printer_id     int | null (homing)
    bed_id         take: the plate in the printer; replace: the reserved plate (null until then)
    bed_type       replace: the plate type chosen for the printer's next job
    print_id       the ``ready`` message id served (null for homing)
    print_id_synthetic  true when the id was made up (hand-typed ready, no current print)
    source         ready | homing | schedule
    order, step    dispatch order: tasks of one ready share ``order``; take 0, replace 1
    job_id         correlation id of the last attempt (sent in the job when the robot echoes)
    attempts       how many times it was published
    load_next      take: sent with load_next_bed_without_homing
    payload        the last JSON published
    error          why it is held or failed
    hold           while held: {scope: printer|arm, until: print_end|null} (domain/tasks.py)
    created_at, updated_at, sent_at, finished_at
    history        [{at, from, to, actor, note}]

Every status change is a compare-and-set on the current status (``find_one_and_update``), so two
writers can never both move one task. Plates are reserved with a compare-and-set on ``beds``
(state clean and ``reserved_for`` null -> ``reserved_for`` = the replace task id).

``printers.swap`` (pantheon_contracts.store.PrinterSwap) is written here: set with a
compare-and-set while ``printers.starting`` is null, before a take or replace is published, and
cleared when the swap is over (replace done, or its tasks closed by a person). printer-service
sets ``printers.starting`` only while ``swap`` is null: one document, so the two exclude each
other.
"""

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import pymongo.errors
from pymongo import ReturnDocument
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.write_concern import WriteConcern

from pantheon_common.errors import StoreUnavailable
from pantheon_common.mongo import ASCENDING, DESCENDING, Document, IndexSpec, ensure_indexes
from pantheon_contracts.beds import BedState, BedType
from pantheon_contracts.names import Collections
from pantheon_contracts.printer import PrinterState
from pantheon_contracts.store import (
    JobDoc,
    JobStatus,
    PrinterBed,
    PrinterStart,
    PrinterSwap,
    RobotTaskStatus,
)
from robot_arm_orchestrator.domain.interlock import PrinterLive, PrintRef
from robot_arm_orchestrator.domain.plates import PlateView
from robot_arm_orchestrator.domain.tasks import (
    OPEN_STATUSES,
    Actor,
    HoldScope,
    HoldUntil,
    TaskKind,
    TaskPlan,
    TaskView,
    transition,
)

DISPATCH_STATE: Final = "robot_dispatch"
"""One document ``{_id: "dispatch", paused: bool, reason, updated_at}`` (owned here)."""

INDEXES: Final = (
    IndexSpec(Collections.ROBOT_TASKS, [("status", ASCENDING), ("order", ASCENDING)]),
    IndexSpec(Collections.ROBOT_TASKS, [("print_id", ASCENDING)]),
    IndexSpec(Collections.ROBOT_TASKS, [("created_at", DESCENDING)]),
    IndexSpec(Collections.BEDS, [("reserved_for", ASCENDING)]),
)

_DURABLE = WriteConcern(w="majority", j=True)


class TaskConflict(Exception):
    """The task was not in the expected status (someone else moved it), or does not exist."""


@dataclass(frozen=True)
class Hold:
    """Why and how a task is held (``robot_tasks.hold`` plus ``error``)."""

    reason: str
    scope: HoldScope
    until: HoldUntil | None = None

    def fields(self) -> dict[str, Any]:
        """The task fields a hold sets."""
        until = self.until.value if self.until else None
        return {"error": self.reason, "hold": {"scope": self.scope.value, "until": until}}


def _now() -> datetime:
    return datetime.now(UTC)


def _model(kind: Any, raw: object) -> Any:
    """``kind`` validated from a sub-document, or None when absent or unreadable."""
    if not isinstance(raw, dict):
        return None
    try:
        return kind.model_validate(raw)
    except ValueError:
        return None


def _float_or_none(value: object) -> float | None:
    try:
        return None if value is None else float(str(value))
    except ValueError:
        return None


def stored_datetime(value: object) -> datetime | None:
    """An aware UTC datetime from a stored time (naive ones are UTC; nx-27017, the test
    server, hands back a datetime written with ``$set`` as its ISO text)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def printer_live(doc: Mapping[str, Any]) -> PrinterLive:
    """The interlock's view of a ``printers`` document (unreadable fields read as unknown)."""
    try:
        state = PrinterState(str(doc.get("state")))
    except ValueError:
        state = PrinterState.UNKNOWN
    current = doc.get("current_print")
    ref = None
    if isinstance(current, dict) and current.get("print_id"):
        ref = PrintRef(
            print_id=str(current["print_id"]),
            printer_id=int(str(doc["_id"])),
            ended=current.get("ended_at") is not None,
        )
    raw_temps = doc.get("temps")
    temps: Mapping[str, Any] = raw_temps if isinstance(raw_temps, dict) else {}
    progress = doc.get("progress_pct")
    return PrinterLive(
        printer_id=int(str(doc["_id"])),
        model=str(doc.get("model", "")),
        state=state,
        online=doc.get("online") in (True, 1),
        last_seen=stored_datetime(doc.get("last_seen")),
        bed=_model(PrinterBed, doc.get("bed")),
        current_print=ref,
        starting=_model(PrinterStart, doc.get("starting")),
        swap=_model(PrinterSwap, doc.get("swap")),
        nozzle_target=_float_or_none(temps.get("nozzle_target")),
        bed_target=_float_or_none(temps.get("bed_target")),
        progress_pct=int(progress) if isinstance(progress, int | float) else None,
    )


def _int_or_none(value: object) -> int | None:
    if value is None:
        return None
    return int(str(value))


def _plate_view(doc: Mapping[str, Any]) -> PlateView | None:
    home = doc.get("home") or {}
    try:
        return PlateView(
            bed_id=int(str(doc["_id"])),
            type=BedType(doc["type"]),
            state=BedState(doc["state"]),
            rack=str(home.get("rack")),
            slot=int(home.get("slot", 0)),
            reserved_for=doc.get("reserved_for") or None,
        )
    except (KeyError, ValueError):
        return None


def _hold_scope(doc: Mapping[str, Any]) -> HoldScope | None:
    hold = doc.get("hold")
    try:
        return HoldScope(hold["scope"]) if isinstance(hold, dict) else None
    except (KeyError, ValueError):
        return None


def hold_until(doc: Mapping[str, Any]) -> HoldUntil | None:
    """What releases a held task besides a person (None: only a person)."""
    hold = doc.get("hold")
    try:
        return HoldUntil(hold["until"]) if isinstance(hold, dict) and hold.get("until") else None
    except ValueError:
        return None


def task_view(doc: Mapping[str, Any]) -> TaskView:
    """The dispatcher's view of a task document."""
    return TaskView(
        task_id=str(doc["_id"]),
        kind=TaskKind(doc["kind"]),
        status=RobotTaskStatus(doc["status"]),
        order=int(doc.get("order", 0)),
        step=int(doc.get("step", 0)),
        group=doc.get("print_id"),
        bed_id=_int_or_none(doc.get("bed_id")),
        load_next=bool(doc.get("load_next")),
        printer_id=_int_or_none(doc.get("printer_id")),
        hold_scope=_hold_scope(doc),
    )


class TaskStore:
    """All MongoDB I/O of the orchestrator; pymongo errors become :class:`StoreUnavailable`."""

    def __init__(self, db: Database[Document]) -> None:
        self._db = db
        self.tasks: Collection[Document] = db.get_collection(
            Collections.ROBOT_TASKS, write_concern=_DURABLE
        )
        self.beds: Collection[Document] = db.get_collection(
            Collections.BEDS, write_concern=_DURABLE
        )
        self.printers: Collection[Document] = db.get_collection(
            Collections.PRINTERS, write_concern=_DURABLE
        )
        self.jobs: Collection[Document] = db[Collections.JOBS]
        self.db_prints: Collection[Document] = db[Collections.PRINTS]
        self.state: Collection[Document] = db.get_collection(DISPATCH_STATE, write_concern=_DURABLE)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except pymongo.errors.DuplicateKeyError:
            raise
        except pymongo.errors.PyMongoError as err:
            raise StoreUnavailable(f"MongoDB failed while {what}: {err}") from err

    def ensure_indexes(self) -> None:
        """Create the indexes this service queries by (idempotent)."""
        ensure_indexes(self._db, INDEXES)

    def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless MongoDB answers."""
        self._call("pinging", self._db.command, "ping")

    # -- intake ----------------------------------------------------------------------------
    def printer(self, printer_id: int) -> PrinterLive | None:
        """printer-service's live record of the printer, or None if MongoDB has no such one."""
        doc = self._call("reading a printer", self.printers.find_one, {"_id": printer_id})
        return None if doc is None else printer_live(doc)

    def print_ref(self, print_id: str) -> PrintRef | None:
        """The print ``print_id`` (``prints``, written by printer-service), or None."""
        doc = self._call(
            "reading a print",
            self.db_prints.find_one,
            {"_id": print_id},
            projection={"printer_id": 1, "ended_at": 1},
        )
        if doc is None or doc.get("printer_id") is None:
            return None
        return PrintRef(
            print_id=print_id,
            printer_id=int(str(doc["printer_id"])),
            ended=doc.get("ended_at") is not None,
        )

    def print_ended(self, print_id: str) -> bool | None:
        """Whether printer-service recorded the end of print ``print_id`` (None: no such print,
        e.g. an id made up for a hand-typed ready)."""
        ref = self.print_ref(print_id)
        return None if ref is None else ref.ended

    def recorded(self, print_id: str) -> bool:
        """Tasks exist for print ``print_id``."""
        doc = self._call(
            "reading tasks", self.tasks.find_one, {"print_id": print_id}, projection={"_id": 1}
        )
        return doc is not None

    def open_swap_task(self, printer_id: int) -> str | None:
        """An open take or replace of this printer, if any (its id)."""
        doc = self._call(
            "reading tasks",
            self.tasks.find_one,
            {
                "printer_id": printer_id,
                "kind": {"$in": [TaskKind.TAKE.value, TaskKind.REPLACE.value]},
                "status": {"$in": [s.value for s in OPEN_STATUSES]},
            },
            projection={"_id": 1},
        )
        return None if doc is None else str(doc["_id"])

    # -- the printer's swap marker ---------------------------------------------------------
    def claim_printer(self, printer_id: int, task_id: str, print_id: str | None) -> bool:
        """Mark the printer as being swapped by this swap (compare-and-set: only while no print
        is starting on it and no other swap holds it); False when the marker was refused."""
        swap = PrinterSwap(task_id=task_id, print_id=print_id, since=_now())
        # `field: None` means null or missing. Not `$in: [None]` here: nx-27017 (the test
        # server) matches such a filter in an update and then leaves the document unchanged.
        doc = self._call(
            "marking the printer's swap",
            self.printers.find_one_and_update,
            {
                "$and": [
                    {"_id": printer_id},
                    {"starting": None},
                    {"$or": [{"swap": None}, {"swap.print_id": print_id}]},
                ]
            },
            {"$set": {"swap": swap.model_dump()}},
            return_document=ReturnDocument.AFTER,
        )
        return doc is not None

    def release_printer(self, printer_id: int, print_id: str | None) -> None:
        """Clear the printer's swap marker if this swap (``print_id``) holds it."""
        self._call(
            "clearing the printer's swap",
            self.printers.update_one,
            {"_id": printer_id, "swap.print_id": print_id},
            {"$set": {"swap": None}},
        )

    def record(
        self,
        plans: Iterable[TaskPlan],
        *,
        source: str,
        synthetic: bool = False,
        note: str | None = None,
        hold: Hold | None = None,
    ) -> int:
        """Insert the planned tasks durably; returns how many were new (0 = all recorded before).

        Each task is inserted on its own: a duplicate key means that task was recorded already
        (a redelivery, or a crash between the two inserts), so the others are still written.
        With ``hold`` the first task is recorded ``held`` (the door interlock refused at intake);
        the others wait behind it as usual (a replace after its take).
        """
        order = time.time_ns()
        new = 0
        now = _now()
        for index, plan in enumerate(plans):
            held = hold if index == 0 else None
            status = RobotTaskStatus.HELD if held else RobotTaskStatus.PENDING
            history = [
                {"at": now, "from": None, "to": status.value, "actor": "system", "note": r}
                for r in ([held.reason] if held else [])
            ]
            doc: Document = {
                "_id": plan.task_id,
                "kind": plan.kind.value,
                "status": status.value,
                "printer_id": plan.printer_id,
                "bed_id": plan.bed_id,
                "bed_type": None,
                "print_id": plan.print_id,
                "print_id_synthetic": synthetic,
                "source": source,
                "note": note,
                "order": order,
                "step": plan.step,
                "job_id": None,
                "attempts": 0,
                "load_next": False,
                "payload": None,
                "error": None,
                "hold": None,
                "created_at": now,
                "updated_at": now,
                "sent_at": None,
                "finished_at": None,
                "history": history,
                **(held.fields() if held else {}),
            }
            try:
                self._call("recording a robot task", self.tasks.insert_one, doc)
            except pymongo.errors.DuplicateKeyError:
                continue
            new += 1
        return new

    # -- reading the log -------------------------------------------------------------------
    def get(self, task_id: str) -> Document | None:
        """One task document."""
        doc: Document | None = self._call("reading a task", self.tasks.find_one, {"_id": task_id})
        return doc

    def open_tasks(self) -> list[Document]:
        """Every task that is not final, in dispatch order."""
        cursor = self.tasks.find({"status": {"$in": [s.value for s in OPEN_STATUSES]}}).sort(
            [("order", ASCENDING), ("step", ASCENDING)]
        )
        docs: list[Document] = self._call("listing open tasks", list, cursor)
        return docs

    def takes_of(self, print_ids: Iterable[str]) -> list[Document]:
        """The take tasks of these prints (whatever their status)."""
        ids = [f"{p}:{TaskKind.TAKE.value}" for p in print_ids]
        if not ids:
            return []
        docs: list[Document] = self._call(
            "reading takes", list, self.tasks.find({"_id": {"$in": ids}})
        )
        return docs

    def list_tasks(
        self,
        *,
        status: str | None = None,
        kind: str | None = None,
        printer_id: int | None = None,
        print_id: str | None = None,
        limit: int = 100,
    ) -> list[Document]:
        """Newest first, filtered."""
        query: dict[str, Any] = {}
        if status:
            query["status"] = status
        if kind:
            query["kind"] = kind
        if printer_id is not None:
            query["printer_id"] = printer_id
        if print_id:
            query["print_id"] = print_id
        cursor = (
            self.tasks.find(query)
            .sort([("order", DESCENDING), ("step", DESCENDING)])
            .limit(max(1, min(limit, 1000)))
        )
        docs: list[Document] = self._call("listing tasks", list, cursor)
        return docs

    # -- transitions -----------------------------------------------------------------------
    def move(
        self,
        task_id: str,
        current: RobotTaskStatus,
        target: RobotTaskStatus,
        actor: Actor,
        *,
        note: str = "",
        extra: Mapping[str, Any] | None = None,
        inc: Mapping[str, int] | None = None,
    ) -> Document:
        """Compare-and-set the status (checked against the state machine); returns the new doc.

        Raises :class:`TaskConflict` when the task is not in ``current`` any more.
        """
        transition(current, target, actor)
        before = self.get(task_id)
        if before is None or before.get("status") != current.value:
            raise TaskConflict(f"task {task_id} is not {current} any more")
        now = _now()
        fields: dict[str, Any] = {"status": target.value, "updated_at": now, **(extra or {})}
        if current is RobotTaskStatus.HELD and target is not RobotTaskStatus.HELD:
            fields.setdefault("hold", None)
        if target in (RobotTaskStatus.DONE, RobotTaskStatus.ABORTED, RobotTaskStatus.FAILED):
            fields["finished_at"] = now
        # The whole history is rewritten under the status compare-and-set ($push of documents
        # is not in the subset the nx-27017 test server stores faithfully).
        history = before.get("history")
        fields["history"] = [
            *(history if isinstance(history, list) else []),
            {
                "at": now,
                "from": current.value,
                "to": target.value,
                "actor": actor.value,
                "note": note,
            },
        ]
        update: dict[str, Any] = {"$set": fields}
        if inc:
            update["$inc"] = dict(inc)
        doc: Document | None = self._call(
            "updating a task",
            self.tasks.find_one_and_update,
            {"_id": task_id, "status": current.value},
            update,
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            raise TaskConflict(f"task {task_id} is not {current} any more")
        return doc

    def sent_tasks(self) -> list[Document]:
        """Every task ``sent`` (in flight, or left so by a crash)."""
        docs: list[Document] = self._call(
            "finding sent tasks", list, self.tasks.find({"status": RobotTaskStatus.SENT.value})
        )
        return docs

    def hold_sent_tasks(self, note: str) -> list[str]:
        """Restart recovery: every ``sent`` task becomes ``held`` for the arm (never re-sent by
        itself)."""
        held = []
        for doc in self.sent_tasks():
            try:
                self.move(
                    str(doc["_id"]),
                    RobotTaskStatus.SENT,
                    RobotTaskStatus.HELD,
                    Actor.SYSTEM,
                    note=note,
                    extra=Hold(note, HoldScope.ARM).fields(),
                )
            except TaskConflict:
                continue
            held.append(str(doc["_id"]))
        return held

    def set_fields(self, task_id: str, status: RobotTaskStatus, fields: Mapping[str, Any]) -> bool:
        """Set fields of a task still in ``status`` (no status change); False if it moved."""
        result = self._call(
            "updating a task",
            self.tasks.update_one,
            {"_id": task_id, "status": status.value},
            {"$set": {**fields, "updated_at": _now()}},
        )
        return bool(result.matched_count)

    # -- plates ----------------------------------------------------------------------------
    def next_queued_jobs(self, printer_id: int, model: str, limit: int = 20) -> list[JobDoc]:
        """Queued jobs this printer could take, highest priority first."""
        # One explicit $and, and `$in: [None]` for "not set": nx-27017 (the test server) loses
        # conditions next to a top-level $or and does not match `field: None` inside one; real
        # MongoDB reads these forms exactly like the plain ones.
        unset = {"$in": [None]}
        query = {
            "$and": [
                {"status": JobStatus.QUEUED.value},
                {
                    "$or": [
                        {"target.printer_id": printer_id},
                        {"target.printer_id": unset, "target.model": model},
                        {"target.printer_id": unset, "target.model": unset},
                    ]
                },
            ]
        }
        cursor = self.jobs.find(query).sort([("priority", DESCENDING), ("seq", ASCENDING)])
        docs = self._call("reading queued jobs", list, cursor.limit(limit))
        jobs = []
        for doc in docs:
            try:
                jobs.append(JobDoc.model_validate(doc))
            except ValueError:
                continue  # a malformed job is printer-service's problem, not a plate choice
        return jobs

    def clean_plates(self, bed_type: BedType) -> list[PlateView]:
        """Clean plates of ``bed_type`` (reserved ones included; the choice filters them)."""
        docs = self._call(
            "reading plates",
            list,
            self.beds.find({"state": BedState.CLEAN.value, "type": bed_type.value}),
        )
        return [plate for doc in docs if (plate := _plate_view(doc)) is not None]

    def plate(self, bed_id: int) -> PlateView | None:
        """One plate, or None (unknown, or a document this service cannot read)."""
        doc = self._call("reading a plate", self.beds.find_one, {"_id": bed_id})
        return None if doc is None else _plate_view(doc)

    def reserved_plate(self, task_id: str) -> int | None:
        """The plate already reserved for ``task_id`` (after a crash), if any."""
        doc = self._call("reading a reservation", self.beds.find_one, {"reserved_for": task_id})
        return None if doc is None else int(str(doc["_id"]))

    def reserve_plate(self, bed_id: int, task_id: str) -> bool:
        """Atomically reserve clean, unreserved plate ``bed_id`` for ``task_id``."""
        doc = self._call(
            "reserving a plate",
            self.beds.find_one_and_update,
            {"_id": bed_id, "state": BedState.CLEAN.value, "reserved_for": None},
            {"$set": {"reserved_for": task_id, "reserved_at": _now()}},
            return_document=ReturnDocument.AFTER,
        )
        return doc is not None

    def release_plate(self, task_id: str) -> None:
        """Drop the reservation held by ``task_id`` (an aborted replace)."""
        self._call(
            "releasing a plate",
            self.beds.update_many,
            {"reserved_for": task_id},
            {"$set": {"reserved_for": None, "reserved_at": None}},
        )

    def bed_home(self, bed_id: int) -> tuple[str, int] | None:
        """A plate's home rack slot."""
        doc = self._call("reading a plate", self.beds.find_one, {"_id": bed_id})
        if doc is None:
            return None
        home = doc.get("home") or {}
        return str(home.get("rack")), int(home.get("slot", 0))

    def apply_take(self, printer_id: int, bed_id: int) -> None:
        """After a take: the plate (with its part) is in its home slot, the printer is empty."""
        home = self.bed_home(bed_id)
        rack, slot = home if home is not None else (None, None)
        self._call(
            "recording a take",
            self.beds.update_one,
            {"_id": bed_id},
            {
                "$set": {
                    "state": BedState.WITH_PART.value,
                    "location": {"rack": rack, "slot": slot, "printer_id": None},
                    "updated_at": _now(),
                }
            },
        )
        self._call(
            "recording a take",
            self.printers.update_one,
            {"_id": printer_id, "bed.bed_id": bed_id},
            {"$set": {"bed": None}},
        )

    def apply_replace(self, printer_id: int, bed_id: int, print_id: str | None = None) -> None:
        """After a replace: the clean plate is loaded and the swap marker of ``print_id``
        cleared (this lets printer-service start a job)."""
        self._call(
            "recording a replace",
            self.beds.update_one,
            {"_id": bed_id},
            {
                "$set": {
                    "state": BedState.IN_PRINTER.value,
                    "location": {"rack": None, "slot": None, "printer_id": printer_id},
                    "reserved_for": None,
                    "reserved_at": None,
                    "updated_at": _now(),
                },
                "$inc": {"cycles": 1},
            },
        )
        self._call(
            "recording a replace",
            self.printers.update_one,
            {"_id": printer_id},
            {"$set": {"bed": {"bed_id": bed_id, "state": BedState.IN_PRINTER.value}}},
        )
        self.release_printer(printer_id, print_id)

    # -- pause -----------------------------------------------------------------------------
    def paused(self) -> tuple[bool, str]:
        """Whether dispatching is paused (persisted, so a restart keeps it) and why."""
        doc = self._call("reading dispatch state", self.state.find_one, {"_id": "dispatch"})
        if doc is None:
            return False, ""
        return bool(doc.get("paused")), str(doc.get("reason") or "")

    def set_paused(self, paused: bool, reason: str) -> None:
        """Pause or resume dispatching."""
        self._call(
            "writing dispatch state",
            self.state.update_one,
            {"_id": "dispatch"},
            {"$set": {"paused": paused, "reason": reason, "updated_at": _now()}},
            upsert=True,
        )
