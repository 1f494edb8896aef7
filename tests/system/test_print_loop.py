"""The native farm (`./farm run` = pantheon-run): the loop of architecture.md 4 end to end.

Two simulated printers, the robot simulator and every service run as separate processes under
the supervisor, on their own vhost, database, topic prefix and ports. A file uploaded and four
jobs queued through pantheon-api are printed once each, every finished plate is swapped once
(the robot simulator's ledger), a killed printer-service is restarted, and Ctrl-C leaves no
process behind.
"""

from __future__ import annotations

import os
import signal

from .conftest import FarmFactory, FarmPorts, gcode_package, http_ok, pid_listening
from .conftest import stop_farm_with_ctrl_c as ctrl_c

PORTS = FarmPorts.block(26100, printer_port_base=21000)


def test_native_farm_prints_swaps_restarts_and_stops_cleanly(start_farm: FarmFactory) -> None:
    farm = start_farm([14, 15], PORTS)
    # an operator's path, through pantheon-api only: log in (done), upload, queue four jobs
    farm.upload("cube.gcode.3mf", gcode_package(minutes=20))
    jobs = [farm.queue_job("cube.gcode.3mf", "textured_pei", model="P1S") for _ in range(4)]
    farm.wait_jobs(jobs, "finished", 120)
    farm.wait(
        lambda: len(farm.tasks(status="done")) == 8,
        60,
        "eight robot tasks done (orchestrator GET /tasks)",
        context=lambda: str([(t["id"], t["status"]) for t in farm.tasks()]),
    )
    prints = farm.prints()
    assert len(prints) == 4
    assert {p["printer_id"] for p in prints} == {14, 15}
    motions = farm.assert_no_motion_twice()
    assert len(motions) == 8
    assert not farm.ledger(event="refused")

    # a printer-service killed with SIGKILL comes back by itself
    port = PORTS.printer_port_base + 14
    pid = farm.service_pid(port)
    os.kill(pid, signal.SIGKILL)
    farm.wait(
        lambda: pid_listening(port) not in (None, pid),
        30,
        "printer-service-14 back",
        logs=("pantheon-run", "printer-service-14"),
    )
    assert http_ok(f"http://127.0.0.1:{port}/healthz")

    ctrl_c(farm)
