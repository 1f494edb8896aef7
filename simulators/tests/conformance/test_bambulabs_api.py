"""Baseline: ``bambulabs_api`` (BambuTools' published client) runs a whole job on every model.

Not a finding: this passes on the simulator before and after the fixes. It proves the
adapted library (``bla.py``: only the ports differ) reaches the simulator the way it reaches
a printer, so the findings' tests that use it fail for their own reasons: connect (its
on-connect ``pushall`` + ``get_version``), its FTP upload (``TYPE I``, ``STOR``, close
without ``unwrap``), ``start_print`` (``project_file`` with ``ftp:///name``, the fixed
``sequence_id`` "10000000"), and its getters on the merged report.
"""

import io
import time
from collections.abc import Callable

import pytest
from bambulabs_api.states_info import GcodeState

from .bla import BlaSession
from .simfarm import MODELS
from .stranger import build_3mf, gcode_text

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("model", MODELS)
def test_a_whole_job_through_bambulabs_api(
    model: str, printer: int, bla: Callable[[int], BlaSession]
) -> None:
    """Upload, start, the state through the library's getters up to FINISH at 100 %."""
    session = bla(printer)
    p = session.printer
    assert p.get_state() is GcodeState.IDLE
    name = f"bla-{model.lower()}.gcode.3mf"
    reply = p.upload_file(io.BytesIO(build_3mf(gcode_text(minutes=10))), name)
    assert str(reply).startswith("226"), reply
    mark = session.mark()
    assert p.start_print(name, 1, use_ams=False, ams_mapping=[-1])
    _, echo = session.wait_for(
        lambda m: m.get("print", {}).get("command") == "project_file", 5, mark
    )
    assert echo["print"]["sequence_id"] == "10000000"
    assert str(echo["print"].get("result", "")).lower() == "success", echo
    session.wait_for(lambda m: m.get("print", {}).get("gcode_state") == "FINISH", 15, mark)
    time.sleep(0.1)
    assert p.get_state() is GcodeState.FINISH
    assert p.get_percentage() == 100
    assert p.print_error_code() == 0
