"""``bambu-sim``: N simulated Bambu printers (MQTT/TLS + implicit FTPS) until SIGINT/SIGTERM."""

import argparse
import logging
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any

from pantheon_common.errors import ConfigurationError
from pantheon_common.farm import load_layout, parse_printer_ids
from pantheon_contracts.printer import PrinterModel
from pantheon_sim.bambu.farm import BambuSimFarm, FarmConfig, SimConfigError
from pantheon_sim.bambu.mqtt_endpoint import BrokerError
from pantheon_sim.bambu.printer import AMS_TRAYS, FaultSettings, Plate, SimTiming

log = logging.getLogger("bambu-sim")

EPILOG = """\
examples:
  bambu-sim --printers 11-15,21-25 --speed 60 --access-code 12345678
      10 P1S printers on 127.0.0.1, MQTT 188NN, FTPS 199NN (NN = printer id)
  bambu-sim --layout farm.yaml --bind layout
      the farm's printers on their own loopback addresses, ports 8883/990 (needs root)
  bambu-sim --printers 14 --fault '14:fail_at_percent=50' --fault '*:silent=true'
  bambu-sim --printers 14,15 --ams '14:PLA,,PETG'
      printer 14 with an AMS unit: PLA in tray 0, tray 1 empty, PETG in tray 2, tray 3 empty
  bambu-sim --layout farm.yaml --bind ports --listen-host 0.0.0.0 --advertise-host bambu-sim
      in a container: listen on every interface, tell clients the service name

access codes come from PRINTER_<id>_ACCESS_CODE or --access-code (all printers).
fault keys: silent, refuse_commands, fail_at_percent, fail_error, drop_mqtt_after_s,
offline_s, ftps_rate_limit, ftps_426_after_write, ftps_capacity_bytes,
duplicate_requests (see POST
/printers/{id}/faults of the control API).
"""


def _parse_fault(text: str) -> tuple[str, dict[str, str]]:
    target, sep, rest = text.partition(":")
    if not sep or not target.strip():
        raise argparse.ArgumentTypeError(f"fault {text!r}: expected ID:key=value[,key=value]")
    values: dict[str, str] = {}
    for item in rest.split(","):
        if not item.strip():
            continue
        key, eq, value = item.partition("=")
        if not eq:
            raise argparse.ArgumentTypeError(f"fault {text!r}: {item!r} is not key=value")
        values[key.strip()] = value.strip()
    return target.strip(), values


def _parse_ams(text: str) -> tuple[str, list[str | None]]:
    target, sep, rest = text.partition(":")
    trays: list[str | None] = [t.strip() or None for t in rest.split(",")]
    if not sep or not target.strip() or len(trays) > AMS_TRAYS:
        raise argparse.ArgumentTypeError(
            f"ams {text!r}: expected ID:TYPE[,TYPE...] with up to {AMS_TRAYS} trays"
        )
    return target.strip(), trays


def _fault_settings(values: dict[str, str]) -> FaultSettings:
    data: dict[str, object] = dict(values)
    if "fail_error" in values:
        data["fail_error"] = int(values["fail_error"], 0)
    return FaultSettings.model_validate(data)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bambu-sim",
        description="Simulate Bambu Lab printers: MQTT 3.1.1 over TLS (bblp + access code) and "
        "implicit FTPS per printer, with plates, faults and a control HTTP API.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--printers", help="printer ids, e.g. 11-15,21-25")
    which.add_argument("--layout", type=Path, help="farm layout file (farm.yaml)")
    p.add_argument(
        "--only", help="with --layout: simulate only these ids (e.g. 14,15); default all"
    )
    p.add_argument(
        "--model",
        choices=[m.value for m in PrinterModel],
        default="P1S",
        help="model of printers given with --printers (default P1S)",
    )
    p.add_argument(
        "--bind",
        choices=["layout", "ports"],
        help="layout: each printer on its host (127.0.0.<id>) with 8883/990; ports: all on "
        "127.0.0.1 with base+id ports (default: layout with --layout, ports with --printers)",
    )
    p.add_argument(
        "--listen-host",
        help="with --bind ports: address the MQTT listeners, FTPS servers and passive data "
        "ports bind (default 127.0.0.1; 0.0.0.0 in a container)",
    )
    p.add_argument(
        "--advertise-host",
        help="with --bind ports: host written to endpoints.json for clients (default: the "
        "listen host; e.g. the compose service name)",
    )
    p.add_argument(
        "--mqtt-base", type=int, default=18800, help="MQTT port = base + id (18800; 0 = free ports)"
    )
    p.add_argument(
        "--ftps-base", type=int, default=19900, help="FTPS port = base + id (19900; 0 = free ports)"
    )
    p.add_argument(
        "--pasv-base",
        type=int,
        default=40000,
        help="passive FTPS data ports: base + id*10 .. +9 (40000: printer 14 -> "
        "40140-40149; 0 = any free port)",
    )
    p.add_argument("--data-dir", type=Path, default=Path(".bambu-sim"), help="(.bambu-sim)")
    p.add_argument("--access-code", help="one LAN access code for every printer")
    p.add_argument("--speed", type=float, default=1.0, help="print time divisor (default 1)")
    p.add_argument("--prepare-s", type=float, default=3.0, help="wall s in PREPARE (3)")
    p.add_argument(
        "--report-interval", type=float, default=1.0, help="wall s between reports while busy"
    )
    p.add_argument(
        "--idle-report-interval", type=float, default=5.0, help="wall s between idle reports"
    )
    p.add_argument(
        "--ack-delay", type=float, default=0.0, help="wall s before a project_file is acked"
    )
    p.add_argument(
        "--seconds-per-line",
        type=float,
        default=0.04,
        help="printer s per G-code line when a file has no time estimate (0.04)",
    )
    p.add_argument(
        "--initial-plate",
        choices=[x.value for x in Plate],
        default=Plate.CLEAN.value,
        help="plate on every bed at start (clean)",
    )
    p.add_argument("--topic-prefix", default="", help="prepended to device/... topics")
    p.add_argument("--control-host", default="127.0.0.1")
    p.add_argument(
        "--control-port", type=int, default=9990, help="control HTTP API port (9990; 0 = free)"
    )
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        type=_parse_fault,
        metavar="ID:KEY=VALUE[,KEY=VALUE]",
        help="scripted fault for printer ID ('*' = all); repeatable",
    )
    p.add_argument(
        "--ams",
        action="append",
        default=[],
        type=_parse_ams,
        metavar="ID:TYPE,TYPE,...",
        help="fit printer ID ('*' = all) with an AMS unit: filament type per tray, empty for "
        "an empty tray (up to 4); repeatable",
    )
    p.add_argument(
        "--tls13-hangs",
        default="",
        metavar="IDS",
        help="these printers (e.g. 14,15) never answer a TLS 1.3 ClientHello on MQTT, as the "
        "P2S firmware does; clients must cap TLS at 1.2",
    )
    p.add_argument(
        "--client-limit",
        choices=["refuse", "drop-oldest"],
        default="refuse",
        help="past a printer's MQTT client cap (4 on P1/A1, 10 on X1): refuse the newcomer "
        "(default) or let it in and drop the oldest client",
    )
    p.add_argument("--log-level", default="INFO")
    return p


def config_from_args(args: argparse.Namespace) -> FarmConfig:
    """Turn parsed arguments into a farm configuration (SimConfigError/ValueError if wrong)."""
    timing = SimTiming(
        speed=args.speed,
        prepare_s=args.prepare_s,
        report_interval_s=args.report_interval,
        idle_report_interval_s=args.idle_report_interval,
        ack_delay_s=args.ack_delay,
        seconds_per_line=args.seconds_per_line,
    )
    if args.bind == "layout" and (args.listen_host or args.advertise_host):
        raise SimConfigError("--listen-host/--advertise-host need --bind ports")
    hosts: dict[str, Any] = {}
    if args.listen_host is not None:
        hosts["listen_host"] = args.listen_host
    if args.advertise_host is not None:
        hosts["advertise_host"] = args.advertise_host
    common: dict[str, Any] = {
        **hosts,
        "data_dir": args.data_dir.resolve(),
        "access_code": args.access_code,
        "mqtt_base": args.mqtt_base,
        "ftps_base": args.ftps_base,
        "pasv_base": args.pasv_base,
        "timing": timing,
        "initial_plate": Plate(args.initial_plate),
        "topic_prefix": args.topic_prefix,
        "control_host": args.control_host,
        "control_port": args.control_port,
    }
    if args.layout is not None:
        only = parse_printer_ids(args.only) if args.only else None
        config = FarmConfig.from_layout(
            load_layout(args.layout), only=only, bind=args.bind or "layout", **common
        )
    else:
        config = FarmConfig.for_ids(
            parse_printer_ids(args.printers),
            model=PrinterModel(args.model),
            bind=args.bind or "ports",
            **common,
        )
    ids = [p.id for p in config.printers]
    faults: dict[int, FaultSettings] = {}
    for target, values in args.fault:
        targets = ids if target == "*" else [int(target)]
        for pid in targets:
            if pid not in ids:
                raise SimConfigError(f"--fault for printer {pid}, which is not simulated")
            merged = faults.get(pid, FaultSettings()).model_dump(exclude_defaults=True)
            merged.update(_fault_settings(values).model_dump(exclude_defaults=True))
            faults[pid] = FaultSettings.model_validate(merged)
    ams: dict[int, list[str | None]] = {}
    for target, trays in args.ams:
        for pid in ids if target == "*" else [int(target)]:
            if pid not in ids:
                raise SimConfigError(f"--ams for printer {pid}, which is not simulated")
            ams[pid] = trays
    hanging = frozenset(parse_printer_ids(args.tls13_hangs)) if args.tls13_hangs else frozenset()
    if hanging - set(ids):
        raise SimConfigError(
            f"--tls13-hangs for printers not simulated: {sorted(hanging - set(ids))}"
        )
    return replace(
        config,
        faults=faults,
        ams=ams,
        tls13_hangs=hanging,
        client_limit="drop_oldest" if args.client_limit == "drop-oldest" else "refuse",
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = config_from_args(args)
    except (SimConfigError, ConfigurationError, ValueError) as err:
        print(f"bambu-sim: {err}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    farm = BambuSimFarm(config)
    try:
        farm.start()
    except (SimConfigError, BrokerError, OSError) as err:
        print(f"bambu-sim: cannot start: {err}", file=sys.stderr)
        return 1
    try:
        for pid in farm.printer_ids:
            ep = farm.endpoint(pid)
            print(
                f"printer {pid} {ep.model} {ep.serial}: mqtts://{ep.host}:{ep.mqtt_port} "
                f"ftps://{ep.host}:{ep.ftps_port}",
                flush=True,
            )
        print(f"CA: {farm.ca_file}", flush=True)
        print(f"endpoints: {config.data_dir / 'endpoints.json'}", flush=True)
        if farm.control_url:
            print(f"control API: {farm.control_url}", flush=True)
        print("bambu-sim ready", flush=True)
        stop.wait()
        log.info("stopping")
    finally:
        farm.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
