"""A queued job goes over FTPS to the simulator, prints, and FINISH yields one ``ready``."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import paho.mqtt.client as paho
import pika
import pymongo
from paho.mqtt.enums import CallbackAPIVersion

from pantheon_contracts.printer import PrinterModel
from pantheon_sim.bambu.ftps_client import ImplicitFtpsClient, printer_tls_context
from pantheon_sim.bambu.gcode3mf import build_gcode_3mf, sample_gcode
from pantheon_sim.bambu.printer import FaultSettings
from printer_service.adapters.bambu_driver import BambuDriver

from .conftest import FAST, RuntimeFactory, SimFactory, queue_job, seed_printer, wait_for


def _get_ready(amqp_url: str) -> list[tuple[Any, bytes]]:
    """Drain the ready queue (acking), returning (properties, body) of each message."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        messages = []
        while True:
            method, props, body = channel.basic_get("ready", auto_ack=True)
            if method is None:
                return messages
            messages.append((props, body))
    finally:
        connection.close()


def test_queued_job_is_printed_and_announced_once(
    sim_farm: SimFactory,
    service_factory: RuntimeFactory,
    db: pymongo.database.Database[dict[str, Any]],
    amqp_url: str,
) -> None:
    farm = sim_farm([14])
    seed_printer(db, 14, PrinterModel.P1S, 801)
    queue_job(db, "job-1", printer_id=14)
    runtime = service_factory(farm, 14)

    job = wait_for(
        lambda: (j := db.jobs.find_one({"_id": "job-1"})) and j["status"] == "finished" and j,
        30,
        "job-1 finished",
    )
    assert job["copies_done"] == 1
    assert "cube.gcode.3mf" in farm.printer(14)["files"]  # the wrapped file went over FTPS
    printer = db.printers.find_one({"_id": 14})
    assert printer is not None
    print_id = printer["current_print"]["print_id"]
    assert printer["current_print"]["result"] == "finished"
    assert printer["bed"] == {"bed_id": 801, "state": "with_part"}
    assert db.beds.find_one({"_id": 801})["state"] == "with_part"
    record = db.prints.find_one({"_id": print_id})
    assert record["result"] == "finished"
    assert record["job_id"] == "job-1"

    wait_for(
        lambda: (e := db.outbox.find_one({"_id": print_id})) and e.get("sent_at"),
        15,
        "the outbox entry confirmed",
    )
    messages = _get_ready(amqp_url)
    assert len(messages) == 1
    props, body = messages[0]
    assert body == b"14"
    assert props.message_id == print_id
    assert props.content_type == "text/plain"
    assert props.delivery_mode == 2
    assert props.timestamp
    # More ticks over the sticky FINISH: still no second message, no second print.
    ticks = runtime.service.prints_ended
    seen = runtime.service.driver.snapshot().last_seen
    wait_for(lambda: runtime.service.driver.snapshot().last_seen != seen, 5, "another report")
    assert runtime.service.prints_ended == ticks
    assert _get_ready(amqp_url) == []
    assert db.prints.count_documents({}) == 1
    assert farm.printer(14)["plate_refusals"] == 0


def test_a_plate_holding_a_part_is_never_printed_on(
    sim_farm: SimFactory,
    service_factory: RuntimeFactory,
    db: pymongo.database.Database[dict[str, Any]],
) -> None:
    farm = sim_farm([14])
    seed_printer(db, 14, PrinterModel.P1S, 801, bed_state="with_part")
    queue_job(db, "job-1", printer_id=14)
    runtime = service_factory(farm, 14)
    wait_for(
        lambda: "with_part" in runtime.service.dispatch_reason, 10, "dispatch blocked by the plate"
    )
    assert db.jobs.find_one({"_id": "job-1"})["status"] == "queued"
    assert farm.printer(14)["files"] == []
    assert farm.printer(14)["gcode_state"] == "IDLE"


def test_a_printer_refusing_the_plate_sends_the_job_back_with_an_attempt(
    sim_farm: SimFactory,
    service_factory: RuntimeFactory,
    db: pymongo.database.Database[dict[str, Any]],
) -> None:
    # An X1C sees the part on its bed and refuses (a P1S cannot see it and would print on it)
    farm = sim_farm([14], models={14: PrinterModel.X1C})
    farm.set_plate(14, "with_part", bed_id=801)  # MongoDB believes the plate is clean
    seed_printer(db, 14, PrinterModel.X1C, 801)
    queue_job(db, "job-1", printer_id=14, max_attempts=2)
    service_factory(farm, 14)
    job = wait_for(
        lambda: (j := db.jobs.find_one({"_id": "job-1"})) and j["status"] == "failed" and j,
        30,
        "job-1 failed after two refused attempts",
    )
    assert job["attempts"] == 2
    assert job["printer_id"] is None
    assert "refused" in job["last_error"]
    assert db.prints.count_documents({}) == 0
    assert "cube.gcode.3mf" not in farm.printer(14)["files"], "phantom file deleted"


def test_p1_deltas_and_x1_full_reports_mirror_the_same_state(
    sim_farm: SimFactory,
    service_factory: RuntimeFactory,
    db: pymongo.database.Database[dict[str, Any]],
) -> None:
    farm = sim_farm([14, 31], models={31: PrinterModel.X1C})
    seed_printer(db, 14, PrinterModel.P1S, 801)
    seed_printer(db, 31, PrinterModel.X1C, 802)
    queue_job(db, "job-14", printer_id=14)
    queue_job(db, "job-31", printer_id=31)
    p1 = service_factory(farm, 14)
    x1 = service_factory(farm, 31)
    for job_id in ("job-14", "job-31"):
        wait_for(
            lambda j=job_id: db.jobs.find_one({"_id": j})["status"] == "finished",
            30,
            f"{job_id} finished",
        )

    # gcode_file is left out: X1 reports "/data/Metadata/plate_1.gcode", P1 the 3MF name (4.2).
    fields = [
        "state",
        "gcode_state",
        "progress_pct",
        "remaining_min",
        "layer",
        "total_layers",
        "subtask_name",
        "print_error",
        "hms",
        "online",
        "link",
    ]

    def mirrored(printer_id: int) -> dict[str, Any]:
        doc = db.printers.find_one({"_id": printer_id}) or {}
        return {f: doc.get(f) for f in fields}

    wait_for(lambda: mirrored(14) == mirrored(31), 10, "both mirrors equal")
    assert mirrored(14)["state"] == "finished"
    assert mirrored(14)["progress_pct"] == 100
    assert mirrored(14)["subtask_name"] == "cube"
    p1_driver, x1_driver = p1.service.driver, x1.service.driver
    assert isinstance(p1_driver, BambuDriver)
    assert isinstance(x1_driver, BambuDriver)
    assert p1_driver.delta_reports > 0, "the P1 simulator sends deltas"
    assert x1_driver.delta_reports == 0, "the X1 simulator sends full reports"


def test_a_printer_with_an_ams_is_fed_from_its_loaded_tray(
    sim_farm: SimFactory,
    service_factory: RuntimeFactory,
    db: pymongo.database.Database[dict[str, Any]],
) -> None:
    """printer-service reads the AMS from the printer's reports and maps filament 1 to the
    loaded tray (use_ams, ams_mapping and ams_mapping2, section 5.5): the simulated printer
    feeds from tray 2 and leaves a part. Without ams_mapping2 it would print in air, and with
    use_ams on a printer without AMS refuse the job (simulator unit tests)."""
    farm = sim_farm([14])
    farm.set_ams(14, [None, None, "PLA", None])
    seed_printer(db, 14, PrinterModel.P1S, 801)
    queue_job(db, "job-ams", printer_id=14)
    service_factory(farm, 14)
    wait_for(
        lambda: (j := db.jobs.find_one({"_id": "job-ams"})) and j["status"] == "finished",
        30,
        "job-ams finished",
    )
    status = farm.printer(14)
    assert status["feed"] == {"tray": 2, "in_air": False}
    assert status["plate"] == "with_part"
    assert farm.printer(14)["print_error"] == 0


def test_a_printer_that_acks_after_the_start_timeout_prints_the_job_once(
    sim_farm: SimFactory,
    service_factory: RuntimeFactory,
    db: pymongo.database.Database[dict[str, Any]],
    amqp_url: str,
) -> None:
    """Acks may take 15-135 s (protocol doc 11.13). A printer that starts after printer-service
    stopped waiting prints the file it was given: the job is held meanwhile (not handed on, not
    sent again), and the late print is tracked like any other: one print, the plate with_part,
    one ready. Before, the job was retried into 'device is busy' until it failed, and the
    printer finished an untracked print on a plate the farm believed clean."""
    farm = sim_farm([14], timing=dataclasses.replace(FAST, ack_delay_s=4.0))
    seed_printer(db, 14, PrinterModel.P1S, 801)
    queue_job(db, "job-late", printer_id=14)
    service_factory(farm, 14, start_confirm_timeout_s=3.0)  # held until 6 s: the ack at 4 s
    job = wait_for(
        lambda: (j := db.jobs.find_one({"_id": "job-late"})) and j["status"] == "finished" and j,
        30,
        "job-late finished",
    )
    assert job["copies_done"] == 1
    assert job.get("attempts", 0) == 0
    assert db.prints.count_documents({}) == 1
    assert db.beds.find_one({"_id": 801})["state"] == "with_part"
    wait_for(lambda: db.outbox.find_one({"sent_at": {"$ne": None}}), 15, "the ready sent")
    assert [body for _, body in _get_ready(amqp_url)] == [b"14"]
    assert farm.printer(14)["print_error"] == 0  # never answered 'busy' to a second start


def test_a_start_delivered_twice_is_one_print(
    sim_farm: SimFactory,
    service_factory: RuntimeFactory,
    db: pymongo.database.Database[dict[str, Any]],
    amqp_url: str,
) -> None:
    """QoS 1 is at least once: after a lost PUBACK the printer gets project_file twice and
    answers the copy 'device is busy' under the same sequence_id. The first answer counts: the
    print it started is tracked, not mistaken for a refusal (which would hand the job on and
    leave an untracked print on the plate)."""
    farm = sim_farm(
        [14],
        faults={14: FaultSettings(duplicate_requests=True)},
        timing=dataclasses.replace(FAST, ack_delay_s=1.0),  # the copy is answered first
    )
    seed_printer(db, 14, PrinterModel.P1S, 801)
    queue_job(db, "job-dup", printer_id=14)
    service_factory(farm, 14)
    job = wait_for(
        lambda: (j := db.jobs.find_one({"_id": "job-dup"})) and j["status"] == "finished" and j,
        30,
        "job-dup finished",
    )
    assert job.get("attempts", 0) == 0
    assert db.prints.count_documents({}) == 1
    wait_for(lambda: db.outbox.find_one({"sent_at": {"$ne": None}}), 15, "the ready sent")
    assert [body for _, body in _get_ready(amqp_url)] == [b"14"]


def test_a_print_started_from_bambu_studio_sends_its_plate_to_the_robot(
    sim_farm: SimFactory,
    service_factory: RuntimeFactory,
    db: pymongo.database.Database[dict[str, Any]],
    amqp_url: str,
) -> None:
    """Someone starts a print on a farm printer from Bambu Studio (their own FTPS upload and
    project_file): printer-service did not start it, but the plate gets a part. It is tracked
    as a print without a job, so its end marks the plate with_part and announces ready."""
    farm = sim_farm([14])
    seed_printer(db, 14, PrinterModel.P1S, 801)
    runtime = service_factory(farm, 14)
    wait_for(lambda: runtime.service.driver.snapshot().live.state.value == "idle", 15, "idle")
    ep = farm.endpoint(14)
    ftps = ImplicitFtpsClient(context=printer_tls_context(ep.ca_file), timeout=10)
    ftps.connect(ep.host, ep.ftps_port)
    ftps.login("bblp", ep.access_code)
    ftps.upload(build_gcode_3mf(sample_gcode(layers=5, estimate="3m 0s")), "studio.gcode.3mf")
    ftps.close()
    studio = paho.Client(CallbackAPIVersion.VERSION2, client_id="bambu-studio")
    studio.tls_set_context(printer_tls_context(ep.ca_file))
    studio.username_pw_set("bblp", ep.access_code)
    studio.connect(ep.host, ep.mqtt_port)
    studio.loop_start()
    try:
        command = {
            "sequence_id": "1",
            "command": "project_file",
            "param": "Metadata/plate_1.gcode",
            "url": "ftp:///studio.gcode.3mf",
            "subtask_name": "studio",
            "use_ams": False,
        }
        studio.publish(ep.request_topic, json.dumps({"print": command}), qos=1).wait_for_publish(5)
        record = wait_for(
            lambda: (p := db.prints.find_one({"result": "finished"})) and p, 30, "its end tracked"
        )
    finally:
        studio.disconnect()
        studio.loop_stop()
    assert record["job_id"] is None
    assert record["file"] == "studio.gcode.3mf"
    assert db.beds.find_one({"_id": 801})["state"] == "with_part"
    wait_for(lambda: db.outbox.find_one({"sent_at": {"$ne": None}}), 15, "the ready sent")
    assert [body for _, body in _get_ready(amqp_url)] == [b"14"]
    assert db.prints.count_documents({}) == 1
