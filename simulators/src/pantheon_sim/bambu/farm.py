"""``BambuSimFarm``: N simulated printers with their brokers, FTPS servers, clock and control API.

Usable in-process from tests::

    with BambuSimFarm(FarmConfig.for_ids([14], data_dir=tmp, access_code="12345678")) as farm:
        ep = farm.endpoint(14)   # host, mqtt_port, ftps_port, serial, access_code, ca_file
        farm.set_plate(14, "clean", bed_id=801)

and by ``bambu-sim`` (``__main__``).
"""

import copy
import ipaddress
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Self

from pantheon_common.farm import FarmLayout
from pantheon_contracts.printer import PrinterModel
from pantheon_sim.bambu.certs import ensure_ca, ensure_printer_cert
from pantheon_sim.bambu.control_api import ControlApiServer, create_app
from pantheon_sim.bambu.ftps import FtpsServer, FtpsSettings
from pantheon_sim.bambu.gcode3mf import StorageJobResolver
from pantheon_sim.bambu.mqtt_endpoint import (
    BrokerSettings,
    MqttEndpoint,
    free_port,
    make_socket_dir,
)
from pantheon_sim.bambu.printer import (
    PROFILES,
    VIOLATION_LOG_SIZE,
    FaultSettings,
    Payload,
    Plate,
    SimPrinter,
    SimTiming,
)

log = logging.getLogger(__name__)

BindMode = Literal["layout", "ports"]

SERIAL_PREFIX: dict[PrinterModel, str] = {
    PrinterModel.X1C: "00M00A",
    PrinterModel.X1E: "03W00A",
    PrinterModel.P1S: "01P00A",
    PrinterModel.P1P: "01S00A",
    PrinterModel.A1: "03900A",
    PrinterModel.A1MINI: "03000A",
}
"""Serial shapes per model (as in farm.yaml) for printers given by id only."""

TICK_S = 0.05


class SimConfigError(Exception):
    """The simulator cannot be configured as asked."""


@dataclass(frozen=True)
class SimPrinterSpec:
    """One simulated printer and where it listens (port 0 = pick a free port)."""

    id: int
    model: PrinterModel
    serial: str
    host: str
    mqtt_port: int
    ftps_port: int
    access_code: str
    passive_ports: range | None = None
    max_clients: int | None = None
    """None = the model profile's default (4 on P1/A1, 10 on X1)."""
    advertise_host: str | None = None
    """The host clients are told (endpoints.json, :meth:`BambuSimFarm.endpoint`); None = ``host``.
    ``host`` is the address the listeners bind (e.g. 0.0.0.0 in a container)."""

    @property
    def client_host(self) -> str:
        """The host a client connects to."""
        return self.advertise_host or self.host


@dataclass(frozen=True)
class FarmConfig:
    """Everything a farm of simulated printers needs."""

    printers: tuple[SimPrinterSpec, ...]
    data_dir: Path
    timing: SimTiming = field(default_factory=SimTiming)
    initial_plate: Plate = Plate.CLEAN
    topic_prefix: str = ""
    control_host: str = "127.0.0.1"
    control_port: int | None = 9990
    """None = no control API; 0 = a free port."""
    faults: Mapping[int, FaultSettings] = field(default_factory=dict)
    ams: Mapping[int, Sequence[str | None]] = field(default_factory=dict)
    """Printers fitted with an AMS unit: filament type per tray (None: empty)."""
    tls13_hangs: frozenset[int] = frozenset()
    """Printers that never answer a TLS 1.3 ClientHello on MQTT (the P2S firmware)."""
    client_limit: Literal["refuse", "drop_oldest"] = "refuse"
    """Past a printer's MQTT client cap: refuse the newcomer, or drop the oldest client."""

    @staticmethod
    def access_code_for(
        printer_id: int, access_code: str | None, env: Mapping[str, str] | None = None
    ) -> str:
        """``access_code`` if given, else ``PRINTER_<id>_ACCESS_CODE``; SimConfigError if none."""
        if access_code:
            return access_code
        source = os.environ if env is None else env
        code = source.get(f"PRINTER_{printer_id}_ACCESS_CODE", "")
        if not code:
            raise SimConfigError(
                f"no access code for printer {printer_id}: set PRINTER_{printer_id}_ACCESS_CODE "
                "or pass --access-code"
            )
        return code

    @classmethod
    def for_ids(
        cls,
        ids: list[int],
        *,
        data_dir: Path,
        access_code: str | None = None,
        model: PrinterModel = PrinterModel.P1S,
        models: Mapping[int, PrinterModel] | None = None,
        bind: BindMode = "ports",
        mqtt_base: int | None = 18800,
        ftps_base: int | None = 19900,
        pasv_base: int | None = 40000,
        listen_host: str = "127.0.0.1",
        advertise_host: str | None = None,
        env: Mapping[str, str] | None = None,
        **options: Any,
    ) -> "FarmConfig":
        """Printers given by id. ``bind='ports'``: ``listen_host`` (127.0.0.1) with base+id
        ports (a base of None or 0 = free ports), told to clients as ``advertise_host``
        (default: ``listen_host``); ``bind='layout'``: 127.0.0.<id> with 8883/990."""
        _check_hosts(bind, listen_host, advertise_host)
        specs = []
        for pid in ids:
            m = (models or {}).get(pid, model)
            serial = f"{SERIAL_PREFIX[m]}{pid:09d}"
            if bind == "layout":
                if not 1 <= pid <= 254:
                    raise SimConfigError(f"printer {pid} has no loopback address 127.0.0.{pid}")
                host, mqtt, ftps = f"127.0.0.{pid}", 8883, 990
            else:
                host = listen_host
                mqtt = mqtt_base + pid if mqtt_base else 0
                ftps = ftps_base + pid if ftps_base else 0
            specs.append(
                SimPrinterSpec(
                    id=pid,
                    model=m,
                    serial=serial,
                    host=host,
                    mqtt_port=mqtt,
                    ftps_port=ftps,
                    access_code=cls.access_code_for(pid, access_code, env),
                    passive_ports=_pasv_range(pasv_base, pid),
                    advertise_host=advertise_host if bind == "ports" else None,
                )
            )
        return cls(printers=tuple(specs), data_dir=data_dir, **options)

    @classmethod
    def from_layout(
        cls,
        layout: FarmLayout,
        *,
        data_dir: Path,
        only: list[int] | None = None,
        access_code: str | None = None,
        bind: BindMode = "layout",
        mqtt_base: int | None = 18800,
        ftps_base: int | None = 19900,
        pasv_base: int | None = 40000,
        listen_host: str = "127.0.0.1",
        advertise_host: str | None = None,
        env: Mapping[str, str] | None = None,
        **options: Any,
    ) -> "FarmConfig":
        """The printers of ``farm.yaml`` (``only`` restricts them); host/ports from the layout
        with ``bind='layout'``, else ``listen_host`` and base+id ports, told to clients as
        ``advertise_host`` (default: ``listen_host``)."""
        _check_hosts(bind, listen_host, advertise_host)
        specs = []
        for p in layout.printers:
            if only is not None and p.id not in only:
                continue
            if bind == "layout":
                host, mqtt, ftps = p.host, p.mqtt_port, p.ftps_port
            else:
                host = listen_host
                mqtt = mqtt_base + p.id if mqtt_base else 0
                ftps = ftps_base + p.id if ftps_base else 0
            specs.append(
                SimPrinterSpec(
                    id=p.id,
                    model=p.model,
                    serial=p.serial,
                    host=host,
                    mqtt_port=mqtt,
                    ftps_port=ftps,
                    access_code=cls.access_code_for(p.id, access_code, env),
                    passive_ports=_pasv_range(pasv_base, p.id),
                    advertise_host=advertise_host if bind == "ports" else None,
                )
            )
        if not specs:
            raise SimConfigError("no printers selected from the layout")
        return cls(printers=tuple(specs), data_dir=data_dir, **options)


def _check_hosts(bind: BindMode, listen_host: str, advertise_host: str | None) -> None:
    if not listen_host:
        raise SimConfigError("the listen host must not be empty")
    if advertise_host == "":
        raise SimConfigError("the advertise host must not be empty")
    if bind == "layout" and (listen_host != "127.0.0.1" or advertise_host is not None):
        raise SimConfigError(
            "listen/advertise hosts apply to bind mode 'ports'; 'layout' uses each printer's host"
        )


def pasv_masquerade(listen_host: str, advertise_host: str | None) -> str | None:
    """The address FTPS passive replies (227) should name instead of the control connection's
    local address, or None to keep that address.

    The local address of the accepted control connection is what the client reached, so it is
    right whenever the client connects directly (also in a container listening on 0.0.0.0:
    it is then the container's own address). Only an advertised IPv4 literal that differs
    from the listen address (a NAT in front of the simulator) replaces it; a 227 reply cannot
    carry a host name.
    """
    if advertise_host is None or advertise_host == listen_host:
        return None
    try:
        address = ipaddress.ip_address(advertise_host)
    except ValueError:
        return None
    return str(address) if address.version == 4 else None


def _reported_ip(spec: SimPrinterSpec) -> str:
    """The IPv4 address a printer reports in ``net``: the advertised or listen address when
    it is an IPv4 literal other than 0.0.0.0, else 127.0.0.1."""
    for host in (spec.advertise_host, spec.host):
        try:
            address = ipaddress.IPv4Address(host or "")
        except ValueError:
            continue
        if not address.is_unspecified:
            return str(address)
    return "127.0.0.1"


def _pasv_range(base: int | None, printer_id: int) -> range | None:
    if not base:
        return None
    start = base + printer_id * 10
    if start + 10 > 65536:
        raise SimConfigError(f"passive ports of printer {printer_id} exceed 65535")
    return range(start, start + 10)


@dataclass(frozen=True)
class PrinterEndpoint:
    """How a client reaches one simulated printer."""

    printer_id: int
    host: str
    mqtt_port: int
    ftps_port: int
    serial: str
    model: str
    access_code: str
    ca_file: Path
    topic_prefix: str = ""

    @property
    def report_topic(self) -> str:
        return f"{self.topic_prefix}device/{self.serial}/report"

    @property
    def request_topic(self) -> str:
        return f"{self.topic_prefix}device/{self.serial}/request"


class _Unit:
    """One printer's parts: state machine, lock, broker link, storage server."""

    def __init__(
        self, spec: SimPrinterSpec, sim: SimPrinter, storage: Path, endpoint: MqttEndpoint
    ) -> None:
        self.spec = spec
        self.sim = sim
        self.storage = storage
        self.mqtt = endpoint
        self.lock = threading.RLock()
        self.ftps: FtpsServer | None = None
        self.drop_due: float | None = None
        self.dropping = False


class BambuSimFarm:
    """N simulated printers; a context manager that starts and stops everything."""

    def __init__(self, config: FarmConfig) -> None:
        if not config.printers:
            raise SimConfigError("no printers to simulate")
        self.config = config
        self.data_dir = config.data_dir
        self._units: dict[int, _Unit] = {}
        self._stop = threading.Event()
        self._clock: threading.Thread | None = None
        self._api: ControlApiServer | None = None
        self._socket_dir: Path | None = None
        self.ca_file = config.data_dir / "ca.pem"

    # ----- lifecycle --------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Certificates, storage, brokers, FTPS servers, clock, control API; endpoints.json."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ca = ensure_ca(self.data_dir)
        self._socket_dir = make_socket_dir()
        try:
            for spec in self.config.printers:
                self._start_printer(spec, ca)
            self._write_endpoints()
            self._clock = threading.Thread(target=self._run_clock, name="bambu-sim-clock")
            self._clock.start()
            if self.config.control_port is not None:
                self._api = ControlApiServer(
                    create_app(self), self.config.control_host, self.config.control_port
                )
                self._api.start()
        except BaseException:
            self.stop()
            raise

    def _start_printer(self, spec: SimPrinterSpec, ca: Any) -> None:
        assert self._socket_dir is not None
        base = self.data_dir / "printers" / str(spec.id)
        pair = ensure_printer_cert(ca, base / "tls", spec.serial)
        storage = base / "sdcard"
        profile = PROFILES[spec.model]
        timing = self.config.timing
        resolver = StorageJobResolver(
            storage,
            folder_urls_fail=profile.folder_urls_fail,
            seconds_per_line=timing.seconds_per_line,
        )
        sim = SimPrinter(
            printer_id=spec.id,
            serial=spec.serial,
            profile=profile,
            resolve_job=resolver,
            timing=timing,
            plate=self.config.initial_plate,
            faults=self.config.faults.get(spec.id, FaultSettings()),
            ams=list(self.config.ams[spec.id]) if spec.id in self.config.ams else None,
            ip_address=_reported_ip(spec),
        )
        mqtt_port = spec.mqtt_port or free_port(spec.host)
        broker = BrokerSettings(
            name=str(spec.id),
            host=spec.host,
            port=mqtt_port,
            cert_file=pair.cert_file,
            key_file=pair.key_file,
            access_code=spec.access_code,
            topic_prefix=self.config.topic_prefix,
            max_clients=spec.max_clients or profile.max_clients,
            directory=base / "mqtt",
            drop_request_subscribers=profile.drops_request_subscribers,
            tls13_hangs=spec.id in self.config.tls13_hangs,
            drop_oldest_client=self.config.client_limit == "drop_oldest",
        )
        pid = spec.id
        endpoint = MqttEndpoint(
            broker,
            spec.serial,
            self._socket_dir,
            on_request=lambda payload: self._on_request(pid, payload),
            on_client_connected=lambda: self._on_client_connected(pid),
        )
        unit = _Unit(replace(spec, mqtt_port=mqtt_port), sim, storage, endpoint)
        self._units[spec.id] = unit
        unit.ftps = FtpsServer(
            FtpsSettings(
                name=str(spec.id),
                host=spec.host,
                port=spec.ftps_port,
                root=storage,
                cert_file=pair.cert_file,
                key_file=pair.key_file,
                access_code=spec.access_code,
                passive_ports=spec.passive_ports if spec.ftps_port else None,
                rate_limit=lambda: self._rate_limit(pid),
                reply_426_after_write=lambda: self._units[pid].sim.faults.ftps_426_after_write,
                capacity_bytes=lambda: self._units[pid].sim.faults.ftps_capacity_bytes,
                nlst_full_paths=profile.nlst_full_paths,
                masquerade_address=pasv_masquerade(spec.host, spec.advertise_host),
            )
        )
        unit.spec = replace(unit.spec, ftps_port=unit.ftps.port)
        unit.ftps.start()
        endpoint.start()
        self._schedule_drop(unit)

    def stop(self) -> None:
        """Stop everything; safe to call twice."""
        self._stop.set()
        if self._api is not None:
            self._api.stop()
            self._api = None
        if self._clock is not None:
            self._clock.join(timeout=5)
            self._clock = None
        for unit in self._units.values():
            unit.mqtt.stop()
            if unit.ftps is not None:
                unit.ftps.stop()
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None

    # ----- public API -------------------------------------------------------------------

    @property
    def printer_ids(self) -> list[int]:
        return sorted(self._units)

    @property
    def control_url(self) -> str | None:
        """Base URL of the control API, if it runs."""
        return self._api.url if self._api else None

    def endpoint(self, printer_id: int) -> PrinterEndpoint:
        spec = self._unit(printer_id).spec
        return PrinterEndpoint(
            printer_id=spec.id,
            host=spec.client_host,
            mqtt_port=spec.mqtt_port,
            ftps_port=spec.ftps_port,
            serial=spec.serial,
            model=spec.model.value,
            access_code=spec.access_code,
            ca_file=self.ca_file,
            topic_prefix=self.config.topic_prefix,
        )

    def printer(self, printer_id: int) -> dict[str, Any]:
        """Snapshot: state, gcode_state, plate, bed_id, storage files, faults, endpoint."""
        unit = self._unit(printer_id)
        with unit.lock:
            status = unit.sim.status()
        status["files"] = sorted(
            str(p.relative_to(unit.storage)) for p in unit.storage.rglob("*") if p.is_file()
        )
        status["host"] = unit.spec.client_host
        status["listen_host"] = unit.spec.host
        status["mqtt_port"] = unit.spec.mqtt_port
        status["ftps_port"] = unit.spec.ftps_port
        status["mqtt_up"] = unit.mqtt.broker.running
        status["tls13_hellos_held"] = unit.mqtt.broker.tls13_held
        status["mqtt_clients"] = unit.mqtt.clients
        status["mqtt_peers"] = unit.mqtt.broker.peers()
        status["request_subscribers_dropped"] = unit.mqtt.broker.dropped_subscribers
        return status

    def set_plate(self, printer_id: int, plate: Plate | str, bed_id: int | None = None) -> None:
        unit = self._unit(printer_id)
        with unit.lock:
            unit.sim.set_plate(Plate(plate), bed_id)
        log.info("printer %d: plate %s (bed %s)", printer_id, Plate(plate).value, bed_id)

    def set_ams(self, printer_id: int, trays: Sequence[str | None] | None) -> None:
        """Fit an AMS unit (filament type per tray, None for an empty one), or remove it."""
        unit = self._unit(printer_id)
        with unit.lock:
            unit.sim.set_ams(trays)
        log.info("printer %d: AMS %s", printer_id, "none" if trays is None else list(trays))

    def set_faults(self, printer_id: int, faults: FaultSettings) -> None:
        unit = self._unit(printer_id)
        with unit.lock:
            unit.sim.set_faults(faults)
            self._schedule_drop(unit)
        log.info("printer %d: faults %s", printer_id, faults.model_dump(exclude_defaults=True))

    def reboot(self, printer_id: int) -> None:
        """Power cycle: IDLE, no job memory, every MQTT connection dropped."""
        unit = self._unit(printer_id)
        with unit.lock:
            unit.sim.reboot(time.monotonic())
        self._drop_async(unit, 0.5)

    def reset(
        self, printer_id: int, plate: Plate | str = Plate.CLEAN, bed_id: int | None = None
    ) -> None:
        """Back to a fresh IDLE printer without faults, keeping its connections (for tests)."""
        unit = self._unit(printer_id)
        with unit.lock:
            unit.sim.set_faults(FaultSettings())
            unit.drop_due = None
            unit.sim.reboot(time.monotonic())
            unit.sim.set_plate(Plate(plate), bed_id)

    def drop_mqtt(self, printer_id: int, offline_s: float = 0.0) -> None:
        """Drop every MQTT connection of a printer now (the broker restarts)."""
        self._drop_async(self._unit(printer_id), offline_s)

    def storage_dir(self, printer_id: int) -> Path:
        return self._unit(printer_id).storage

    def violations(self) -> dict[str, Any]:
        """Prints started on a missing or used plate, over every printer: ``violations``
        (the count since the process started) and ``violation_log`` (the latest 100,
        oldest first). Reset and reboot keep them; a restart of bambu-sim does not."""
        total = 0
        entries: list[dict[str, Any]] = []
        for unit in self._units.values():
            with unit.lock:
                total += unit.sim.violations
                entries.extend(unit.sim.violation_log)
        entries.sort(key=lambda e: (e["time"], e["printer_id"]))
        return {"violations": total, "violation_log": entries[-VIOLATION_LOG_SIZE:]}

    # ----- internals --------------------------------------------------------------------

    def _unit(self, printer_id: int) -> _Unit:
        try:
            return self._units[printer_id]
        except KeyError:
            raise KeyError(f"no simulated printer {printer_id}") from None

    def _rate_limit(self, printer_id: int) -> int | None:
        return self._units[printer_id].sim.faults.ftps_rate_limit

    def _schedule_drop(self, unit: _Unit) -> None:
        after = unit.sim.faults.drop_mqtt_after_s
        unit.drop_due = None if after is None else time.monotonic() + after

    def _on_request(self, printer_id: int, payload: Payload) -> None:
        unit = self._units[printer_id]
        with unit.lock:
            seen = unit.sim.violations
            replies = unit.sim.handle_command(payload, time.monotonic())
            if unit.sim.faults.duplicate_requests:  # the DUP copy of a QoS 1 publish
                replies += unit.sim.handle_command(copy.deepcopy(payload), time.monotonic())
            self._log_violations(unit, seen)
        for reply in replies:
            unit.mqtt.publish(reply)

    @staticmethod
    def _log_violations(unit: _Unit, seen: int) -> None:
        """Log the violations recorded since the count was ``seen`` (call under the lock)."""
        new = unit.sim.violations - seen
        for entry in list(unit.sim.violation_log)[-new:] if new > 0 else []:
            log.error(
                "VIOLATION printer %d %s: %s (%s)",
                unit.spec.id,
                entry["category"],
                entry["reason"],
                entry["subtask_name"],
            )

    def _on_client_connected(self, printer_id: int) -> None:
        unit = self._units[printer_id]
        with unit.lock:
            unit.sim.client_connected()

    def _drop_async(self, unit: _Unit, offline_s: float) -> None:
        if unit.dropping:
            return
        unit.dropping = True

        def run() -> None:
            try:
                unit.mqtt.drop_connections(offline_s)
            except Exception:
                log.exception("printer %d: broker restart failed", unit.spec.id)
            finally:
                unit.dropping = False

        threading.Thread(target=run, name=f"drop-{unit.spec.id}", daemon=True).start()

    def _run_clock(self) -> None:
        while not self._stop.wait(TICK_S):
            now = time.monotonic()
            for unit in self._units.values():
                try:
                    with unit.lock:
                        seen = unit.sim.violations
                        out = unit.sim.tick(now)
                        self._log_violations(unit, seen)
                        drop = unit.drop_due is not None and now >= unit.drop_due
                        if drop:
                            unit.drop_due = None
                    for payload in out:
                        unit.mqtt.publish(payload)
                    if drop:
                        self._drop_async(unit, unit.sim.faults.offline_s)
                except Exception:
                    log.exception("printer %d: clock tick failed", unit.spec.id)

    def _write_endpoints(self) -> None:
        data = {
            str(u.spec.id): {
                "host": u.spec.client_host,
                "mqtt_port": u.spec.mqtt_port,
                "ftps_port": u.spec.ftps_port,
                "serial": u.spec.serial,
                "model": u.spec.model.value,
            }
            for u in self._units.values()
        }
        path = self.data_dir / "endpoints.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(path)
