"""robot-arm-sim against the real bambu-sim: a door never opens on a print in progress.

bambu-sim runs in-process (its own TLS brokers and FTPS servers); the print is started as
printer-service would: FTPS upload, then ``project_file`` over MQTT.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from pantheon_contracts.robot import RobotJob
from pantheon_sim.bambu.farm import BambuSimFarm, FarmConfig
from pantheon_sim.bambu.ftps_client import ImplicitFtpsClient, printer_tls_context
from pantheon_sim.bambu.gcode3mf import build_gcode_3mf, sample_gcode
from pantheon_sim.bambu.printer import SimTiming
from pantheon_sim.robot import RobotArmSim, RobotSimSettings
from pantheon_sim.robot.testing import RobotBus as Bus

pytestmark = pytest.mark.integration

Settings = Callable[..., RobotSimSettings]
ACCESS_CODE = "12345678"
# 10 printer-hours at speed 60: ten wall minutes of RUNNING, far longer than the test
LONG_JOB = build_gcode_3mf(sample_gcode(layers=50, estimate="10h 0m 0s"))


@pytest.fixture
def farm(tmp_path: Path) -> Iterator[BambuSimFarm]:
    """One simulated P1S, printer 14, with its control API on a free port."""
    config = FarmConfig.for_ids(
        [14],
        data_dir=tmp_path / "bambu-sim",
        access_code=ACCESS_CODE,
        mqtt_base=None,
        ftps_base=None,
        pasv_base=None,
        timing=SimTiming(speed=60, prepare_s=0.3, report_interval_s=0.2),
        topic_prefix=f"test/{uuid.uuid4().hex[:8]}/",
        control_port=0,
    )
    with BambuSimFarm(config) as sim:
        yield sim


def printer_command(farm: BambuSimFarm, printer_id: int, command: str, **params: Any) -> None:
    """Publish one ``print`` command on the printer's own TLS broker (QoS 1, acknowledged)."""
    ep = farm.endpoint(printer_id)
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"robot-test-{uuid.uuid4().hex[:8]}",
        protocol=paho.MQTTv311,
    )
    client.tls_set_context(printer_tls_context(ep.ca_file))
    client.username_pw_set("bblp", ep.access_code)
    client.connect(ep.host, ep.mqtt_port, keepalive=30)
    client.loop_start()
    try:
        body = {"print": {"sequence_id": "1", "command": command, **params}}
        client.publish(ep.request_topic, json.dumps(body), qos=1).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def start_print(farm: BambuSimFarm, printer_id: int, name: str = "long.gcode.3mf") -> None:
    """Upload a long job over FTPS and start it with ``project_file``."""
    ep = farm.endpoint(printer_id)
    ftps = ImplicitFtpsClient(
        context=printer_tls_context(ep.ca_file), timeout=10, expected_serial=ep.serial
    )
    ftps.connect(ep.host, ep.ftps_port)
    ftps.login("bblp", ep.access_code)
    try:
        ftps.upload(LONG_JOB, name)
    finally:
        ftps.quit()
    printer_command(
        farm,
        printer_id,
        "project_file",
        param="Metadata/plate_1.gcode",
        url=f"ftp:///{name}",
        file=name,
        md5="",
        subtask_name="long",
        task_id="0",
        subtask_id="0",
        use_ams=False,
    )


def wait_state(farm: BambuSimFarm, printer_id: int, state: str, timeout_s: float = 10.0) -> None:
    """Poll bambu-sim until the printer's pantheon state is ``state``."""
    deadline = time.monotonic() + timeout_s
    while farm.printer(printer_id)["state"] != state:
        assert time.monotonic() < deadline, f"printer {printer_id}: {farm.printer(printer_id)}"
        time.sleep(0.05)


def test_the_arm_reads_the_real_printer_state_before_opening_its_door(
    farm: BambuSimFarm, bus: Bus, sim_settings: Settings
) -> None:
    assert farm.control_url is not None
    with RobotArmSim(sim_settings(robot_sim_printer_sim_url=farm.control_url)) as sim:
        # idle: the arm takes the plate out, loads a clean one, and tells bambu-sim
        bus.send(RobotJob.take(14, 804, job_id="take-idle"))
        bus.wait_for({"status": "available", "job_id": "take-idle"})
        assert farm.printer(14)["plate"] == "none"
        bus.send(RobotJob.replace(14, 827, job_id="replace-idle"))
        bus.wait_for({"status": "available", "job_id": "replace-idle"})
        assert (farm.printer(14)["plate"], farm.printer(14)["bed_id"]) == ("clean", 827)

        start_print(farm, 14)
        wait_state(farm, 14, "printing")
        bus.send(RobotJob.take(14, 827, job_id="take-printing"))
        bus.wait_for(
            {
                "status": "error",
                "job_id": "take-printing",
                "reason": "printer 14 is printing (RUNNING): opening its door would wreck "
                "the print",
            }
        )

        printer_command(farm, 14, "pause", param="")
        wait_state(farm, 14, "paused")
        bus.send(RobotJob.take(14, 827, job_id="take-paused"))
        bus.wait_for(
            {
                "status": "error",
                "job_id": "take-paused",
                "reason": "printer 14 is paused (PAUSE): opening its door would wreck the print",
            }
        )
        assert sim.violations == 2
        assert [e["category"] for e in sim.violation_log] == ["printer_busy", "printer_busy"]
        assert sim.world["printers"]["14"] == 827  # the plate never moved
        assert [m["job_id"] for m in sim.motions()] == ["take-idle", "replace-idle"]

        printer_command(farm, 14, "stop")
        wait_state(farm, 14, "failed")  # a stopped print: the plate may come out
        bus.send(RobotJob.take(14, 827, job_id="take-failed"))
        bus.wait_for({"status": "available", "job_id": "take-failed"})
        assert farm.printer(14)["plate"] == "none"
        assert sim.violations == 2
