"""The service's decisions end to end over in-memory doubles: dispatch, retries, outbox."""

import time
from pathlib import Path

import pytest

from pantheon_common.gcode_store import LocalGcodeStore
from pantheon_contracts.printer import PrinterModel, PrinterState
from printer_service.fakes import FakeDriver, FakeFarmStore
from printer_service.service import PrinterService, ServiceConfig

PID = 14


class Wakes:
    def __init__(self) -> None:
        self.count = 0

    def wake(self) -> None:
        self.count += 1


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


def _job(store: FakeFarmStore, job_id: str, **extra: object) -> None:
    store.jobs[job_id] = {
        "_id": job_id,
        "file": "cube.gcode",
        "bed_type": "textured_pei",
        "status": "queued",
        "target": {"printer_id": None, "model": None},
        **extra,
    }


def _service(
    driver: FakeDriver, store: FakeFarmStore, gcode: LocalGcodeStore, wakes: Wakes | None = None
) -> PrinterService:
    config = ServiceConfig(
        printer_id=PID, model=PrinterModel.P1S, start_confirm_timeout_s=0.3, dispatch_retry_s=0
    )
    return PrinterService(config, driver, store, gcode, wakes)


def test_dispatch_uploads_a_wrapped_file_and_finish_enqueues_one_ready(
    store: FakeFarmStore, gcode: LocalGcodeStore
) -> None:
    _job(store, "j1")
    driver, wakes = FakeDriver(), Wakes()
    service = _service(driver, store, gcode, wakes)
    service.step()
    assert list(driver.uploads) == ["cube.gcode.3mf"]
    assert driver.starts[0].subtask_name == "cube"
    assert store.jobs["j1"]["status"] == "printing"
    current = store.printers[PID]["current_print"]
    assert current["job_id"] == "j1"

    driver.set_state(PrinterState.FINISHED, "cube")
    service.step()
    service.step()  # FINISH seen again: nothing new
    assert list(store.outbox) == [current["print_id"]]
    assert wakes.count == 1
    assert store.jobs["j1"]["status"] == "finished"
    assert store.jobs["j1"]["copies_done"] == 1
    assert store.printers[PID]["bed"]["state"] == "with_part"
    assert store.beds[801]["state"] == "with_part"
    assert store.prints[current["print_id"]]["result"] == "finished"
    assert not driver.starts[1:], "a plate with a part is never printed on"


def test_a_restarted_service_never_enqueues_a_second_ready(
    store: FakeFarmStore, gcode: LocalGcodeStore
) -> None:
    _job(store, "j1")
    driver = FakeDriver()
    first = _service(driver, store, gcode)
    first.step()
    driver.set_state(PrinterState.FINISHED, "cube")
    first.step()
    entry = next(iter(store.outbox))
    # Crash before the print was closed: the next process sees FINISH again.
    store.printers[PID]["current_print"]["ended_at"] = None
    second = _service(driver, store, gcode)
    second.step()
    assert list(store.outbox) == [entry]
    assert store.jobs["j1"]["copies_done"] == 1


def test_a_finish_that_happened_while_down_is_recorded_once(
    store: FakeFarmStore, gcode: LocalGcodeStore
) -> None:
    _job(store, "j1", copies=2)
    driver = FakeDriver()
    _service(driver, store, gcode).step()
    driver.set_state(PrinterState.FINISHED, "cube")
    restarted = _service(driver, store, gcode)
    restarted.step()
    assert len(store.outbox) == 1
    assert store.jobs["j1"]["status"] == "queued"  # one copy of two
    assert store.jobs["j1"]["printer_id"] is None


def test_a_refused_start_returns_the_job_with_an_attempt_then_fails_it(
    store: FakeFarmStore, gcode: LocalGcodeStore
) -> None:
    _job(store, "j1", max_attempts=2)
    driver = FakeDriver()
    driver.refuse_with = "print_error 0500-806E"
    service = _service(driver, store, gcode)
    service.step()
    job = store.jobs["j1"]
    assert (job["status"], job["attempts"], job["printer_id"]) == ("queued", 1, None)
    assert "0500-806E" in job["last_error"]
    assert driver.uploads == {}, "the file is deleted after a failed dispatch"
    service.step()
    assert (job["status"], job["attempts"]) == ("failed", 2)
    assert store.printers[PID]["last_error"]


def test_an_ack_without_a_start_holds_the_job_then_gives_it_up(
    store: FakeFarmStore, gcode: LocalGcodeStore
) -> None:
    """No start within the timeout: the job stays with this printer for one more timeout (a
    late ack would print it), nothing else is claimed meanwhile; then it goes back."""
    _job(store, "j1")
    _job(store, "j2")
    driver = FakeDriver()
    driver.start_to = None
    service = _service(driver, store, gcode)
    service.step()
    assert store.jobs["j1"]["status"] == "uploading"  # held, not handed on
    assert "waiting" in store.printers[PID]["last_error"]
    assert "cube.gcode" in " ".join(driver.uploads), "the printer may still run the file"
    service.step()
    assert len(driver.starts) == 1  # j2 is not sent while the printer may start j1
    assert store.jobs["j2"]["status"] == "queued"
    time.sleep(0.35)
    service.step()
    assert store.jobs["j1"]["status"] == "queued"
    assert store.jobs["j1"]["attempts"] == 1
    assert "did not start" in store.jobs["j1"]["last_error"]


def test_a_start_confirmed_late_is_adopted_as_the_jobs_print(
    store: FakeFarmStore, gcode: LocalGcodeStore
) -> None:
    """The printer acks after the timeout and prints: the print is tracked (plate, ready) and
    the job is printing here, not back in the queue for another printer."""
    _job(store, "j1")
    driver = FakeDriver()
    driver.start_to = None
    service = _service(driver, store, gcode)
    service.step()
    driver.set_state(PrinterState.PRINTING, driver.starts[0].subtask_name)
    service.step()
    assert store.jobs["j1"]["status"] == "printing"
    assert store.jobs["j1"].get("attempts", 0) == 0
    current = store.printers[PID]["current_print"]
    assert current["job_id"] == "j1"
    driver.set_state(PrinterState.FINISHED, driver.starts[0].subtask_name)
    service.step()
    assert store.jobs["j1"]["status"] == "finished"
    assert store.beds[801]["state"] == "with_part"
    assert len(store.outbox) == 1
    assert len(driver.starts) == 1


def test_a_busy_answer_to_a_start_is_waited_out_and_the_start_adopted(
    store: FakeFarmStore, gcode: LocalGcodeStore
) -> None:
    """'device is busy' from a printer that was idle: most likely our own start delivered
    twice. The job is held, not handed on; the start that follows is adopted."""
    _job(store, "j1")
    driver = FakeDriver()
    driver.refuse_with = "device is busy"
    service = _service(driver, store, gcode)
    service.step()
    assert store.jobs["j1"]["status"] == "uploading"
    assert store.jobs["j1"].get("attempts", 0) == 0
    driver.set_state(PrinterState.PREPARING, driver.starts[0].subtask_name)
    service.step()
    assert store.jobs["j1"]["status"] == "printing"
    assert len(driver.starts) == 1


def test_a_print_started_elsewhere_is_tracked_and_its_plate_handed_to_the_robot(
    store: FakeFarmStore, gcode: LocalGcodeStore
) -> None:
    """Started from the printer's screen or Bambu Studio: no job, but the plate gets a part,
    so the end marks it with_part and announces ready (else the next job lands on top)."""
    driver = FakeDriver()
    service = _service(driver, store, gcode)
    service.step()
    driver.set_state(PrinterState.PRINTING, "someones_part")
    service.step()
    current = store.printers[PID]["current_print"]
    assert current["job_id"] is None
    service.step()
    assert len(store.prints) == 1  # once, not on every tick
    driver.set_state(PrinterState.FINISHED, "someones_part")
    service.step()
    assert store.beds[801]["state"] == "with_part"
    assert len(store.outbox) == 1
    assert driver.starts == []


def test_failed_print_notifies_ready_by_policy_and_counts_an_attempt(
    store: FakeFarmStore, gcode: LocalGcodeStore
) -> None:
    _job(store, "j1")
    driver = FakeDriver()
    service = _service(driver, store, gcode)
    service.step()
    driver.set_state(PrinterState.FAILED, "cube")
    service.step()
    assert len(store.outbox) == 1
    assert store.jobs["j1"]["attempts"] == 1
    assert store.jobs["j1"]["status"] == "queued"
    assert "failed" in store.printers[PID]["last_error"]


def test_no_ready_after_a_failure_when_the_policy_is_off(
    store: FakeFarmStore, gcode: LocalGcodeStore
) -> None:
    _job(store, "j1")
    driver = FakeDriver()
    config = ServiceConfig(printer_id=PID, model=PrinterModel.P1S, ready_on_failed=False)
    service = PrinterService(config, driver, store, gcode)
    service.step()
    driver.set_state(PrinterState.FAILED, "cube")
    service.step()
    assert store.outbox == {}
    assert store.printers[PID]["bed"]["state"] == "with_part"


def test_a_job_for_another_plate_type_or_printer_is_not_claimed(
    store: FakeFarmStore, gcode: LocalGcodeStore
) -> None:
    _job(store, "smooth", bed_type="smooth_pei")
    _job(store, "other", target={"printer_id": 15, "model": None})
    _job(store, "x1", target={"printer_id": None, "model": "X1C"})
    driver = FakeDriver()
    service = _service(driver, store, gcode)
    service.step()
    assert driver.starts == []
    assert "no queued job" in service.dispatch_reason
