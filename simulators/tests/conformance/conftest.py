"""Fixtures: one simulated farm (one printer per model) per test module, clients that close.

A module picks the farm's pace with a module-level ``TIMING`` (a ``SimTiming``; default
``simfarm.FAST``).
"""

import contextlib
import time
from collections.abc import Callable, Iterator

import pytest

import pantheon_sim
from pantheon_sim.bambu.farm import BambuSimFarm
from pantheon_sim.bambu.printer import SimTiming

from .bla import BlaSession
from .simfarm import FAST, PRINTER_OF, bla_session, ftps_client, make_farm, mqtt_client
from .stranger import StrangerFtps, StrangerMqtt


def pytest_report_header() -> str:
    """Which simulator the suite drives (``PYTHONPATH=/tmp/sim-old/simulators/src`` swaps it)."""
    return f"conformance: pantheon_sim from {pantheon_sim.__file__}"


@pytest.fixture(scope="module")
def farm(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BambuSimFarm]:
    timing = getattr(request.module, "TIMING", FAST)
    assert isinstance(timing, SimTiming)
    with make_farm(tmp_path_factory.mktemp("conformance"), timing) as sim:
        yield sim


@pytest.fixture
def printer(farm: BambuSimFarm, model: str) -> int:
    """The printer of the test's ``model``, reset: IDLE, clean plate, no faults, no job."""
    pid = PRINTER_OF[model]
    farm.reset(pid, plate="clean", bed_id=800 + pid)
    time.sleep(0.15)  # the reset's own report goes out first (the clock ticks every 50 ms)
    return pid


@pytest.fixture
def mqtt(farm: BambuSimFarm) -> Iterator[Callable[[int], StrangerMqtt]]:
    """Connect a stranger's MQTT client; closed after the test."""
    opened: list[StrangerMqtt] = []

    def make(printer_id: int) -> StrangerMqtt:
        client = mqtt_client(farm, printer_id)
        opened.append(client)
        return client.connect()

    yield make
    for client in opened:
        client.close()


@pytest.fixture
def ftps(farm: BambuSimFarm) -> Iterator[Callable[[int], StrangerFtps]]:
    """Open a stranger's FTPS session; closed after the test."""
    opened: list[StrangerFtps] = []

    def make(printer_id: int) -> StrangerFtps:
        session = ftps_client(farm, printer_id)
        opened.append(session)
        return session

    yield make
    for session in opened:
        try:
            session.quit()
        except Exception:
            session.close()


@pytest.fixture
def bla(farm: BambuSimFarm) -> Iterator[Callable[[int], BlaSession]]:
    """Connect a ``bambulabs_api.Printer``; disconnected after the test."""
    opened: list[BlaSession] = []

    def make(printer_id: int) -> BlaSession:
        session = bla_session(farm, printer_id)
        opened.append(session)
        return session.connect()

    yield make
    for session in opened:
        with contextlib.suppress(Exception):
            session.close()
