"""`./farm demo` (pantheon-demo) against a running native farm: work appears and gets done.

The demo logs in to pantheon-api with the farm's generated admin password, uploads one sample
file per plate type, queues jobs for both, watches, and reports utilization; every job it queued
must end finished, and the plate-type logic must have loaded a smooth plate for the second file.
"""

from __future__ import annotations

import pytest

from pantheon_devtools import demo

from .conftest import FarmFactory, FarmPorts

PORTS = FarmPorts.block(26600, printer_port_base=62000)


def test_demo_queues_work_that_the_farm_prints(
    start_farm: FarmFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    farm = start_farm([31, 32], PORTS)
    code = demo.main(
        [
            "--api",
            f"http://127.0.0.1:{PORTS.api}",
            "--farm-dir",
            str(farm.dir),
            "--jobs",
            "1",
            "--watch",
            "150",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "queued 2 jobs on two plate types" in out
    assert "2 finished" in out, out
    assert "farm utilization during the demo" in out
    files = {p["file"] for p in farm.prints()}
    assert files == {name for name, *_ in demo.SAMPLES}
    plates = {p["file"]: farm.bed(p["bed_id"])["type"] for p in farm.prints()}
    assert plates == {name: bed_type for name, bed_type, *_ in demo.SAMPLES}
