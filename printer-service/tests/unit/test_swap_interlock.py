"""The plate-swap interlock over in-memory doubles: no start while the robot swaps the plate,
and every start bracketed by ``printers.starting`` (set before, cleared after, whatever the
outcome)."""

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pantheon_common.errors import StoreUnavailable
from pantheon_common.gcode_store import LocalGcodeStore
from pantheon_contracts.beds import BedType
from pantheon_contracts.printer import PrinterModel, PrinterState
from pantheon_contracts.store import JobDoc, PrinterStart
from printer_service.api.app import create_app
from printer_service.domain.ports import StartRequest
from printer_service.fakes import FakeDriver, FakeFarmStore
from printer_service.service import DispatchFailed, NotDispatchable, PrinterService, ServiceConfig

PID = 14
SINCE = datetime(2026, 12, 5, 8, 30, 0, tzinfo=UTC)
SWAP = {"task_id": "p9:take", "print_id": "p9", "since": SINCE}
SWAP_TEXT = (
    "the robot is swapping this printer's plate (task p9:take since 2026-12-05 08:30:00 UTC)"
)


@pytest.fixture
def store() -> FakeFarmStore:
    s = FakeFarmStore()
    s.beds[801] = {"_id": 801, "type": "textured_pei", "state": "in_printer"}
    s.printers[PID] = {"bed": {"bed_id": 801, "state": "in_printer"}, "current_print": None}
    return s


@pytest.fixture
def gcode(tmp_path: Path) -> LocalGcodeStore:
    g = LocalGcodeStore(tmp_path)
    g.put("cube.gcode", [b"G28\nG1 X1\n"])
    return g


class WatchingDriver(FakeDriver):
    """A FakeDriver that notes ``printers.starting`` (and /status) while a file goes over."""

    def __init__(self, store: FakeFarmStore) -> None:
        super().__init__()
        self.store = store
        self.service: PrinterService | None = None
        self.seen: list[tuple[str, Any, Any]] = []

    def _note(self, what: str) -> None:
        status = self.service.status()["starting"] if self.service else None
        self.seen.append((what, self.store.printers[PID].get("starting"), status))

    def upload(self, name: str, data: bytes) -> None:
        self._note("upload")
        super().upload(name, data)

    def start_print(self, request: StartRequest) -> str:
        self._note("start_print")
        return super().start_print(request)


def _job(store: FakeFarmStore, job_id: str, **extra: object) -> None:
    store.jobs[job_id] = {
        "_id": job_id,
        "file": "cube.gcode",
        "bed_type": "textured_pei",
        "status": "queued",
        "target": {"printer_id": None, "model": None},
        **extra,
    }


def _service(driver: FakeDriver, store: FakeFarmStore, gcode: LocalGcodeStore) -> PrinterService:
    config = ServiceConfig(
        printer_id=PID, model=PrinterModel.P1S, start_confirm_timeout_s=0.3, dispatch_retry_s=0
    )
    service = PrinterService(config, driver, store, gcode)
    if isinstance(driver, WatchingDriver):
        driver.service = service
    return service


def _marks(store: FakeFarmStore, monkeypatch: pytest.MonkeyPatch) -> list[PrinterStart]:
    """Record every start marker the service asks the store for."""
    marks: list[PrinterStart] = []
    original = store.mark_starting

    def mark(printer_id: int, start: PrinterStart) -> bool:
        marks.append(start)
        return original(printer_id, start)

    monkeypatch.setattr(store, "mark_starting", mark)
    return marks


def _starting(store: FakeFarmStore) -> Any:
    return store.printers[PID].get("starting")


# -- no start while the robot swaps the plate ----------------------------------------------------
def test_a_swap_blocks_the_claim_and_status_names_it(
    store: FakeFarmStore, gcode: LocalGcodeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.printers[PID]["swap"] = SWAP
    _job(store, "j1")
    marks = _marks(store, monkeypatch)
    driver = FakeDriver(PrinterState.FINISHED)
    service = _service(driver, store, gcode)
    for _ in range(3):
        service.step()
    assert store.jobs["j1"]["status"] == "queued"
    assert driver.uploads == {}
    assert driver.starts == []
    assert marks == [], "no start marker is even tried during a swap"
    status = service.status()
    assert status["dispatch"]["reason"].startswith(SWAP_TEXT)
    assert status["dispatch"]["reason"].endswith("no print starts")
    since = "2026-12-05T08:30:00Z"
    assert status["swap"] == {"task_id": "p9:take", "print_id": "p9", "since": since}
    assert status["starting"] is None

    store.printers[PID]["swap"] = None  # the replace is done
    service.step()
    assert store.jobs["j1"]["status"] == "printing"
    assert service.status()["swap"] is None


def test_the_swap_is_named_before_a_plate_holding_a_part(
    store: FakeFarmStore, gcode: LocalGcodeStore
) -> None:
    """A take just sent: the plate is with_part too, but the reason a person reads is the swap."""
    store.printers[PID]["bed"]["state"] = "with_part"
    store.printers[PID]["swap"] = SWAP
    service = _service(FakeDriver(PrinterState.FINISHED), store, gcode)
    service.step()
    assert service.dispatch_reason.startswith(SWAP_TEXT)
    with pytest.raises(NotDispatchable, match="task p9:take"):
        service.print_file("cube.gcode")


def test_a_swap_is_named_even_while_the_printer_is_offline(
    store: FakeFarmStore, gcode: LocalGcodeStore
) -> None:
    store.printers[PID]["swap"] = SWAP
    service = _service(FakeDriver(PrinterState.OFFLINE), store, gcode)
    service.step()
    assert service.dispatch_reason.startswith(SWAP_TEXT)


def test_a_manual_print_during_a_swap_is_refused_409_naming_it(
    store: FakeFarmStore, gcode: LocalGcodeStore
) -> None:
    store.printers[PID]["swap"] = SWAP
    driver = FakeDriver()
    service = _service(driver, store, gcode)
    app = create_app(service, gcode, token="t0ken", upload_max_bytes=1000)
    with TestClient(app) as client:
        answer = client.post(
            "/print", headers={"Authorization": "Bearer t0ken"}, json={"file": "cube.gcode"}
        )
    assert answer.status_code == 409
    assert answer.json()["detail"].startswith(SWAP_TEXT)
    assert driver.uploads == {}
    assert driver.starts == []
    assert _starting(store) is None


def test_an_unreadable_swap_still_blocks_every_start(
    store: FakeFarmStore, gcode: LocalGcodeStore
) -> None:
    """Any non-null printers.swap is a swap (as for the compare-and-set filter), even one a
    person typed by hand that is not a PrinterSwap."""
    store.printers[PID]["swap"] = "robot busy"
    _job(store, "j1")
    driver = FakeDriver()
    service = _service(driver, store, gcode)
    service.step()
    assert driver.starts == []
    assert "unreadable printers.swap 'robot busy'" in service.dispatch_reason
    with pytest.raises(NotDispatchable, match="swapping"):
        service.print_file("cube.gcode")


# -- the compare-and-set: a swap that begins after the decision ----------------------------------
def test_a_swap_begun_between_the_decision_and_the_claim_stops_the_claim(
    store: FakeFarmStore, gcode: LocalGcodeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    _job(store, "j1")
    original = store.next_job

    def next_job_then_swap(printer_id: int, model: str, bed_type: BedType) -> JobDoc | None:
        store.printers[PID]["swap"] = SWAP  # the orchestrator wins the race
        return original(printer_id, model, bed_type)

    monkeypatch.setattr(store, "next_job", next_job_then_swap)
    driver = FakeDriver()
    service = _service(driver, store, gcode)
    service.step()
    assert store.jobs["j1"]["status"] == "queued", "nothing claimed"
    assert driver.uploads == {}
    assert driver.starts == []
    assert _starting(store) is None
    assert service.dispatch_reason.startswith(SWAP_TEXT)
    assert service.status()["swap"]["task_id"] == "p9:take"


def test_a_swap_begun_just_before_a_manual_start_refuses_it(
    store: FakeFarmStore, gcode: LocalGcodeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = store.mark_starting

    def swap_then_mark(printer_id: int, start: PrinterStart) -> bool:
        store.printers[PID]["swap"] = SWAP
        return original(printer_id, start)

    monkeypatch.setattr(store, "mark_starting", swap_then_mark)
    driver = FakeDriver()
    service = _service(driver, store, gcode)
    with pytest.raises(NotDispatchable) as refused:
        service.print_file("cube.gcode")
    assert str(refused.value).startswith(SWAP_TEXT)
    assert driver.uploads == {}
    assert driver.starts == []
    assert _starting(store) is None


# -- printers.starting brackets every start ------------------------------------------------------
def test_the_marker_is_set_during_a_job_start_and_cleared_once_the_print_is_tracked(
    store: FakeFarmStore, gcode: LocalGcodeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    _job(store, "j1")
    driver = WatchingDriver(store)
    service = _service(driver, store, gcode)
    seen_at_clear: list[Any] = []
    original = store.clear_starting

    def clear(printer_id: int) -> None:
        seen_at_clear.append(store.printers[PID]["current_print"])
        original(printer_id)

    monkeypatch.setattr(store, "clear_starting", clear)
    service.step()
    assert [(what, s["what"], st["what"]) for what, s, st in driver.seen] == [
        ("upload", "job j1", "job j1"),
        ("start_print", "job j1", "job j1"),
    ]
    assert store.jobs["j1"]["status"] == "printing"
    assert _starting(store) is None
    assert service.status()["starting"] is None
    # The start-up clear (no print yet), then the one after the start: by then the print was
    # open, so at every moment the orchestrator sees a start marker or an open print.
    assert seen_at_clear[0] is None
    assert seen_at_clear[-1]["job_id"] == "j1"
    assert seen_at_clear[-1]["ended_at"] is None


def test_the_marker_is_cleared_after_a_refused_start(
    store: FakeFarmStore, gcode: LocalGcodeStore
) -> None:
    _job(store, "j1")
    driver = WatchingDriver(store)
    driver.refuse_with = "print_error 0500-806E"
    service = _service(driver, store, gcode)
    service.step()
    assert driver.seen[0][1]["what"] == "job j1"
    assert store.jobs["j1"]["status"] == "queued"
    assert _starting(store) is None


def test_the_marker_is_cleared_when_the_job_was_taken_meanwhile(
    store: FakeFarmStore, gcode: LocalGcodeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job read first is claimed by another printer before this one claims it."""
    _job(store, "j1")
    marks = _marks(store, monkeypatch)
    original = store.next_job

    def next_job_then_taken(printer_id: int, model: str, bed_type: BedType) -> JobDoc | None:
        job = original(printer_id, model, bed_type)
        store.jobs["j1"].update(status="assigned", printer_id=15)
        return job

    monkeypatch.setattr(store, "next_job", next_job_then_taken)
    driver = FakeDriver()
    service = _service(driver, store, gcode)
    service.step()
    assert [m.what for m in marks] == ["job j1"]
    assert store.jobs["j1"]["printer_id"] == 15
    assert driver.starts == []
    assert _starting(store) is None
    assert "no queued job" in service.dispatch_reason


def test_an_idle_printer_with_an_empty_queue_writes_no_marker(
    store: FakeFarmStore, gcode: LocalGcodeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    marks = _marks(store, monkeypatch)
    service = _service(FakeDriver(), store, gcode)
    for _ in range(5):
        service.step()
    assert marks == []
    assert "no queued job" in service.dispatch_reason


def test_the_marker_stays_while_a_late_start_is_held_then_is_cleared_when_given_up(
    store: FakeFarmStore, gcode: LocalGcodeStore
) -> None:
    _job(store, "j1")
    driver = FakeDriver()
    driver.start_to = None  # acked, never started
    service = _service(driver, store, gcode)
    service.step()
    assert store.jobs["j1"]["status"] == "uploading"
    assert _starting(store)["what"] == "job j1", "the printer may still start: kept"
    service.step()
    assert _starting(store)["what"] == "job j1"
    time.sleep(0.35)
    service.step()
    assert store.jobs["j1"]["status"] == "queued"
    assert _starting(store) is None


def test_the_marker_is_cleared_when_a_late_start_is_adopted(
    store: FakeFarmStore, gcode: LocalGcodeStore
) -> None:
    _job(store, "j1")
    driver = FakeDriver()
    driver.start_to = None
    service = _service(driver, store, gcode)
    service.step()
    assert _starting(store) is not None
    driver.set_state(PrinterState.PRINTING, driver.starts[0].subtask_name)
    service.step()
    assert store.jobs["j1"]["status"] == "printing"
    assert store.printers[PID]["current_print"]["job_id"] == "j1"
    assert _starting(store) is None


def test_a_manual_print_sets_and_clears_the_marker(
    store: FakeFarmStore, gcode: LocalGcodeStore
) -> None:
    driver = WatchingDriver(store)
    service = _service(driver, store, gcode)
    service.step()
    print_id = service.print_file("cube.gcode")
    assert [s["what"] for _, s, _ in driver.seen] == ["file cube.gcode", "file cube.gcode"]
    assert store.printers[PID]["current_print"]["print_id"] == print_id
    assert _starting(store) is None


def test_a_refused_manual_print_clears_the_marker(
    store: FakeFarmStore, gcode: LocalGcodeStore
) -> None:
    driver = WatchingDriver(store)
    driver.refuse_with = "print_error 0500-806E"
    service = _service(driver, store, gcode)
    with pytest.raises(DispatchFailed):
        service.print_file("cube.gcode")
    assert driver.seen[0][1]["what"] == "file cube.gcode"
    assert _starting(store) is None


def test_a_manual_print_held_for_a_late_start_keeps_the_marker_until_settled(
    store: FakeFarmStore, gcode: LocalGcodeStore
) -> None:
    driver = FakeDriver()
    driver.start_to = None
    service = _service(driver, store, gcode)
    with pytest.raises(DispatchFailed):
        service.print_file("cube.gcode")
    assert _starting(store)["what"] == "file cube.gcode"
    service.step()  # the control thread does not clear a marker a held start owns
    assert _starting(store)["what"] == "file cube.gcode"
    time.sleep(0.35)
    service.step()
    assert _starting(store) is None


# -- leftovers -----------------------------------------------------------------------------------
def test_a_restarted_service_clears_the_marker_a_crash_left(
    store: FakeFarmStore, gcode: LocalGcodeStore
) -> None:
    store.printers[PID]["starting"] = {"what": "job j0", "since": SINCE}
    service = _service(FakeDriver(), store, gcode)
    service.step()
    assert _starting(store) is None


def test_a_clear_that_failed_is_done_on_the_next_tick(
    store: FakeFarmStore, gcode: LocalGcodeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = _service(FakeDriver(), store, gcode)
    service.step()  # start-up done
    _job(store, "j1")
    original = store.clear_starting
    failures = [StoreUnavailable("MongoDB clearing the start marker failed: timeout")]

    def flaky_clear(printer_id: int) -> None:
        if failures:
            raise failures.pop()
        original(printer_id)

    monkeypatch.setattr(store, "clear_starting", flaky_clear)
    service.step()
    assert store.jobs["j1"]["status"] == "printing"
    assert _starting(store) is not None, "the clear failed"
    service.step()
    assert _starting(store) is None


@pytest.mark.parametrize(
    ("doc", "swap", "starting"),
    [
        ({}, None, None),
        ({"swap": None, "starting": None}, None, None),
        ({"swap": SWAP}, "p9:take", None),
        ({"swap": {"task_id": "x"}}, "? (unreadable printers.swap", None),  # no since
        ({"starting": {"what": "job j1", "since": SINCE}}, None, "job j1"),
        ({"starting": "garbage"}, None, None),  # our own marker: informative only
    ],
)
def test_the_record_reads_swap_and_starting_tolerantly(
    store: FakeFarmStore, doc: dict[str, Any], swap: str | None, starting: str | None
) -> None:
    store.printers[PID].update(doc)
    record = store.load_printer(PID)
    if swap is None:
        assert record.swap is None
    else:
        assert record.swap is not None
        assert record.swap.task_id.startswith(swap)
    assert (record.starting.what if record.starting else None) == starting
