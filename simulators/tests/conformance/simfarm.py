"""The simulated farm the conformance suite drives, and the clients pointed at it.

One in-process ``BambuSimFarm`` per test module (README "In-process"): one printer of each
model, free ports, no topic prefix (``bambulabs_api`` has no notion of one; each simulated
printer has a broker of its own), the CA in the farm's data directory. This is the only
module of the suite that imports the simulator; the clients (``stranger``, ``bla``) do not.
"""

from pathlib import Path
from typing import Final

from pantheon_contracts.printer import PrinterModel
from pantheon_sim.bambu.farm import BambuSimFarm, FarmConfig
from pantheon_sim.bambu.printer import SimTiming

from .bla import BlaSession
from .stranger import StrangerFtps, StrangerMqtt, Transcript, open_ftps

ACCESS_CODE: Final = "24681357"

PRINTERS: Final[dict[int, PrinterModel]] = {
    1: PrinterModel.X1C,
    2: PrinterModel.X1E,
    3: PrinterModel.P1S,
    4: PrinterModel.P1P,
    5: PrinterModel.A1,
    6: PrinterModel.A1MINI,
}
MODELS: Final = [m.value for m in PRINTERS.values()]
"""Every simulated model, the parametrization of per-model tests."""
PRINTER_OF: Final = {m.value: pid for pid, m in PRINTERS.items()}
X1_MODELS: Final = frozenset({"X1C", "X1E"})
"""Full reports every time, a heatbed foreign-object sensor, request subscriptions refused."""
P1_A1_MODELS: Final = frozenset(MODELS) - X1_MODELS
"""Deltas after one full report, no bed sensor, request subscribers dropped."""

FAST: Final = SimTiming(
    speed=1200.0,
    prepare_s=0.3,
    report_interval_s=0.2,
    idle_report_interval_s=0.5,
    cancel_error_s=0.5,
)
"""Jobs of 10 printer-minutes run in half a wall second."""


def make_farm(
    data_dir: Path, timing: SimTiming, printers: dict[int, PrinterModel] | None = None
) -> BambuSimFarm:
    """A farm (not started: use it as a context manager)."""
    chosen = dict(PRINTERS if printers is None else printers)
    config = FarmConfig.for_ids(
        sorted(chosen),
        models=chosen,
        data_dir=data_dir,
        access_code=ACCESS_CODE,
        mqtt_base=None,
        ftps_base=None,
        pasv_base=None,
        timing=timing,
        topic_prefix="",
        control_port=0,
    )
    return BambuSimFarm(config)


def mqtt_client(farm: BambuSimFarm, printer_id: int) -> StrangerMqtt:
    """A stranger's MQTT client for one printer (not connected yet)."""
    ep = farm.endpoint(printer_id)
    return StrangerMqtt(ep.host, ep.mqtt_port, ep.serial, ep.access_code, str(ep.ca_file))


def ftps_client(
    farm: BambuSimFarm, printer_id: int, transcript: Transcript | None = None
) -> StrangerFtps:
    """A stranger's FTPS session with one printer, logged in, data channel protected."""
    ep = farm.endpoint(printer_id)
    return open_ftps(ep.host, ep.ftps_port, ep.access_code, str(ep.ca_file), transcript=transcript)


def bla_session(farm: BambuSimFarm, printer_id: int) -> BlaSession:
    """A ``bambulabs_api.Printer`` for one printer (not connected yet)."""
    ep = farm.endpoint(printer_id)
    return BlaSession(ep.host, ep.mqtt_port, ep.ftps_port, ep.serial, ep.access_code)
