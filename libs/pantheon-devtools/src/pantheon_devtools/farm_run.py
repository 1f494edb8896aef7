"""``pantheon-run``: the whole simulated farm on one machine, every service its own process.

It makes the infrastructure available (the harness), writes a farm layout for the chosen
printers, seeds MongoDB, starts the simulators (bambu-sim, robot-arm-sim) and the services
(printer-service per printer, robot-arm-orchestrator, and every other service whose package is
installed), and supervises them: a process that dies is logged and restarted with backoff;
Ctrl-C or SIGTERM stops everything. Logs go to ``<run-dir>/farm/logs/<name>.log``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import yaml

from pantheon_common.farm import load_layout, parse_printer_ids, seed_farm
from pantheon_common.mongo import mongo_client, ping
from pantheon_contracts.beds import BedState
from pantheon_contracts.names import Collections
from pantheon_devtools.infra import (
    Endpoints,
    InfraError,
    create_mysql_database,
    default_run_dir,
    ensure_infra,
    find_repo_root,
)

LOG = logging.getLogger("pantheon_devtools.farm_run")
HOST = "127.0.0.1"
_MAX_BACKOFF_S = 30.0
_HEALTHY_AFTER_S = 30.0  # a process that ran this long gets its backoff reset


@dataclass
class ProcessSpec:
    """One supervised process."""

    name: str
    argv: list[str]
    env: dict[str, str]
    health_url: str | None = None
    """HTTP URL answering 200 once the process is ready."""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Running:
    spec: ProcessSpec
    proc: subprocess.Popen[bytes]
    log: IO[bytes]
    started: float
    restarts: int = 0
    backoff_s: float = 1.0
    next_start: float | None = None


class Supervisor:
    """Starts processes in order, restarts the ones that die, stops all on request."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        # Logs hold request lines, hosts and errors: readable by the farm's user only.
        self.log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.log_dir, 0o700)
        self._running: dict[str, _Running] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def _spawn(self, spec: ProcessSpec) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
        fd = os.open(
            self.log_dir / f"{spec.name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
        )
        os.fchmod(fd, 0o600)  # a log file of an earlier run may have been created 0644
        log = os.fdopen(fd, "ab")
        log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {spec.argv}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            spec.argv,
            env=spec.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stopped as a whole
        )
        return proc, log

    def start(self, spec: ProcessSpec, ready_timeout_s: float = 60.0) -> None:
        """Start ``spec`` and wait until its health URL answers (if it has one)."""
        proc, log = self._spawn(spec)
        with self._lock:
            self._running[spec.name] = _Running(spec, proc, log, time.monotonic())
        if spec.health_url:
            wait_http(spec.health_url, ready_timeout_s, spec.name, proc, spec.headers)
        LOG.info("%s: running (pid %d)", spec.name, proc.pid)

    def pids(self) -> dict[str, int]:
        """Current pid of each supervised process."""
        with self._lock:
            return {name: r.proc.pid for name, r in self._running.items()}

    def restarts(self) -> dict[str, int]:
        """How many times each process was restarted."""
        with self._lock:
            return {name: r.restarts for name, r in self._running.items()}

    def supervise(self, poll_s: float = 0.5) -> None:
        """Restart dead processes until :meth:`stop` is called."""
        while not self._stop.wait(poll_s):
            now = time.monotonic()
            with self._lock:
                for r in self._running.values():
                    code = r.proc.poll()
                    if code is None:
                        if now - r.started > _HEALTHY_AFTER_S:
                            r.backoff_s = 1.0
                        continue
                    if r.next_start is None:
                        LOG.warning(
                            "%s exited with %s; restarting in %.0f s (log: %s)",
                            r.spec.name,
                            code,
                            r.backoff_s,
                            self.log_dir / f"{r.spec.name}.log",
                        )
                        r.next_start = now + r.backoff_s
                        r.backoff_s = min(_MAX_BACKOFF_S, r.backoff_s * 2)
                    elif now >= r.next_start:
                        r.log.close()
                        r.proc, r.log = self._spawn(r.spec)
                        r.started, r.next_start = now, None
                        r.restarts += 1
                        LOG.info("%s restarted (pid %d)", r.spec.name, r.proc.pid)

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM every process group (newest first), then SIGKILL what is left."""
        self._stop.set()
        with self._lock:
            running = list(self._running.values())[::-1]
        for r in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(r.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for r in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                r.proc.wait(max(0.1, deadline - time.monotonic()))
            if r.proc.poll() is None:
                LOG.warning("%s ignored SIGTERM; killing it", r.spec.name)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(r.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                r.proc.wait(5)
            r.log.close()


def wait_http(
    url: str,
    timeout_s: float,
    name: str,
    proc: subprocess.Popen[bytes] | None = None,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Poll ``url`` until it answers 200; fail early if ``proc`` exits."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode} while starting")
        try:
            response = httpx.get(url, timeout=2.0, headers=dict(headers or {}))
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as err:
            last = str(err) or type(err).__name__
        time.sleep(0.2)
    raise RuntimeError(f"{name} not ready at {url} after {timeout_s:.0f} s ({last})")


@dataclass(frozen=True)
class FarmOptions:
    """What to run."""

    printers: list[int]
    speed: float
    run_dir: Path
    """The harness's run directory (servers, their passwords)."""
    farm_dir: Path
    """Where the farm keeps its state: generated secrets, simulator data, G-code, logs."""
    layout_path: Path
    printer_port_base: int = 50000
    sim_control_port: int = 9990
    robot_control_port: int = 9991
    orchestrator_port: int = 9973
    api_port: int = 9971
    utilization_port: int = 9972
    slicer_port: int = 9980
    bind: str = "layout"
    robot_speed: float | None = None
    prepare_s: float | None = None
    """Wall seconds a simulated printer spends in PREPARE (None: 10 printer-seconds)."""
    fresh: bool = False
    """Start from an empty farm state (MongoDB database, robot world, simulator storage)."""


def _installed(module: str) -> bool:
    """True when ``module`` (e.g. ``pantheon_api.__main__``) can be imported."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ModuleNotFoundError, ValueError):  # the parent package is not installed
        return False


def _script(name: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise RuntimeError(f"console script {name} not found (uv sync installs it)")
    return found


def _farm_secrets(path: Path, printers: list[int]) -> dict[str, str]:
    """Secrets of the native farm, generated once and kept 0600 (never in the repository)."""
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            key, sep, value = line.partition("=")
            if sep:
                values[key] = value
    wanted: dict[str, Callable[[], str]] = {
        "SERVICE_TOKEN": lambda: secrets.token_urlsafe(32),
        "PANTHEON_SECRET_KEY": lambda: secrets.token_urlsafe(48),
        # first admin of pantheon-api (user "admin") and the web shop's key for slicer-api
        "PANTHEON_ADMIN_PASSWORD": lambda: secrets.token_urlsafe(18),
        "SHOP_API_KEY": lambda: secrets.token_urlsafe(24),
    }
    for pid in printers:
        # Bambu access codes are 8 digits
        wanted[f"PRINTER_{pid}_ACCESS_CODE"] = lambda: f"{secrets.randbelow(10**8):08d}"
    changed = False
    for key, make in wanted.items():
        if not values.get(key):
            values[key] = make()
            changed = True
    if changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.writelines(f"{k}={v}\n" for k, v in sorted(values.items()))
    return values


def write_layout(source: Path, printers: list[int], target: Path) -> None:
    """The farm layout restricted to ``printers`` (every rack and plate kept)."""
    raw: dict[str, Any] = yaml.safe_load(source.read_text(encoding="utf-8"))
    known = {int(p["id"]) for p in raw["printers"]}
    missing = sorted(set(printers) - known)
    if missing:
        raise RuntimeError(f"printers {missing} are not in the farm layout {source}")
    raw["printers"] = [p for p in raw["printers"] if int(p["id"]) in printers]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(
        "# generated by pantheon-run from " + str(source) + "\n" + yaml.safe_dump(raw),
        encoding="utf-8",
    )


def sync_plates(world: Mapping[str, Any], mongo_url: str, db_name: str) -> int:
    """Record in MongoDB the plates the robot simulator's world puts in printers.

    Only printers MongoDB knows no plate for, and plates it still has clean in the rack, are
    written, so a restarted farm keeps what the services recorded. Returns how many.
    """
    placed = {int(k): v for k, v in (world.get("printers") or {}).items() if v is not None}
    client = mongo_client(mongo_url, app_name="pantheon-run")
    count = 0
    try:
        db = client[db_name]
        for printer_id, bed_id in placed.items():
            printer = db[Collections.PRINTERS].find_one({"_id": printer_id})
            bed = db[Collections.BEDS].find_one({"_id": int(bed_id)})
            if printer is None or bed is None or printer.get("bed"):
                continue
            if bed.get("state") != BedState.CLEAN.value:
                continue
            db[Collections.BEDS].update_one(
                {"_id": int(bed_id)},
                {"$set": {"state": BedState.IN_PRINTER.value, "location.printer_id": printer_id}},
            )
            db[Collections.PRINTERS].update_one(
                {"_id": printer_id},
                {"$set": {"bed": {"bed_id": int(bed_id), "state": BedState.IN_PRINTER.value}}},
            )
            count += 1
    finally:
        client.close()
    return count


def _printers_changed(opts: FarmOptions) -> bool:
    """True when the last run of this farm dir had other printers (its state would not fit)."""
    previous = opts.farm_dir / "printers.json"
    if not previous.exists():
        return False
    try:
        before = json.loads(previous.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True
    if sorted(before) != sorted(opts.printers):
        LOG.warning("printers changed since the last run (%s -> %s)", before, opts.printers)
        return True
    return False


def _reset_simulator_state(opts: FarmOptions) -> None:
    """Forget where the simulated robot put the plates and what the printers stored."""
    for name in ("robot-world.json", "robot-ledger.jsonl"):
        with contextlib.suppress(FileNotFoundError):
            (opts.farm_dir / name).unlink()
    shutil.rmtree(opts.farm_dir / "bambu-sim", ignore_errors=True)


ROBOT_STATUS_REPEAT_S = "0.25"
"""robot-arm-sim repeats its status this often (the job_id extension)."""
ROBOT_CONFIRM_S = "0.6"
"""The orchestrator's confirmation window for an ``available`` (over twice the repeat)."""


def build_specs(opts: FarmOptions, infra: Endpoints, env: dict[str, str]) -> list[ProcessSpec]:
    """Every process of the farm, in start order."""
    farm_dir = opts.farm_dir
    sim_dir = farm_dir / "bambu-sim"
    speed = str(opts.speed)
    token = env["SERVICE_TOKEN"]
    auth = {"Authorization": f"Bearer {token}"}
    specs = [
        ProcessSpec(
            "bambu-sim",
            [
                _script("bambu-sim"),
                "--layout",
                str(opts.layout_path),
                "--bind",
                opts.bind,
                "--data-dir",
                str(sim_dir),
                "--speed",
                speed,
                "--prepare-s",
                str(opts.prepare_s if opts.prepare_s is not None else max(0.5, 10 / opts.speed)),
                "--control-port",
                str(opts.sim_control_port),
            ],
            env,
            health_url=f"http://{HOST}:{opts.sim_control_port}/healthz",
        ),
        ProcessSpec(
            "robot-arm-sim",
            [
                _script("robot-arm-sim"),
                "--layout",
                str(opts.layout_path),
                "--speed",
                str(opts.robot_speed or opts.speed),
                "--ledger",
                str(farm_dir / "robot-ledger.jsonl"),
                "--world-file",
                str(farm_dir / "robot-world.json"),
                "--printer-sim-url",
                f"http://{HOST}:{opts.sim_control_port}",
                # the job_id extension's status repeat (the orchestrator's ROBOT_CONFIRM_S
                # below is more than twice as long)
                "--status-repeat-s",
                ROBOT_STATUS_REPEAT_S,
                "--control-port",
                str(opts.robot_control_port),
                "--log-format",
                "text",
            ],
            env,
            health_url=f"http://{HOST}:{opts.robot_control_port}/healthz",
        ),
    ]
    for pid in opts.printers:
        port = opts.printer_port_base + pid
        specs.append(
            ProcessSpec(
                f"printer-service-{pid}",
                [_script("printer-service"), str(pid), "bambu"],
                {
                    **env,
                    "HTTP_HOST": HOST,
                    "HTTP_PORT": str(port),
                    "BAMBU_CA_FILE": str(sim_dir / "ca.pem"),
                    "BAMBU_ENDPOINTS_FILE": str(sim_dir / "endpoints.json"),
                },
                health_url=f"http://{HOST}:{port}/healthz",
            )
        )
    specs.append(
        ProcessSpec(
            "robot-arm-orchestrator",
            [_script("robot-arm-orchestrator")],
            {
                **env,
                "HTTP_HOST": HOST,
                "HTTP_PORT": str(opts.orchestrator_port),
                "ROBOT_ECHOES_JOB_ID": "true",  # the simulator echoes job_id
                "ROBOT_CONFIRM_S": env.get("ROBOT_CONFIRM_S", ROBOT_CONFIRM_S),
            },
            health_url=f"http://{HOST}:{opts.orchestrator_port}/healthz",
            headers=auth,
        )
    )
    # printer-service of printer <id> listens on printer_port_base + id (50014 for 14)
    printer_url = f"http://{HOST}:{opts.printer_port_base // 1000}{{id:03d}}"
    if _installed("printer_utilization.__main__"):
        specs.append(
            ProcessSpec(
                "printer-utilization",
                [_script("printer-utilization")],
                {
                    **env,
                    "HTTP_HOST": HOST,
                    "HTTP_PORT": str(opts.utilization_port),
                    "PRINTER_SERVICE_URL_TEMPLATE": printer_url,
                    # its write-ahead spool belongs to this farm, not to the machine
                    "SPOOL_PATH": str(opts.farm_dir / "utilization-spool.jsonl"),
                },
                health_url=f"http://{HOST}:{opts.utilization_port}/healthz",
            )
        )
    if _installed("pantheon_api.__main__"):
        specs.append(
            ProcessSpec(
                "pantheon-api",
                [_script("pantheon-api")],
                {
                    **env,
                    "HTTP_HOST": HOST,
                    "PANTHEON_API_PORT": str(opts.api_port),
                    "PANTHEON_ADMIN_USERNAME": "admin",
                    "PRINTER_SERVICE_URL_TEMPLATE": printer_url,
                    "ORCHESTRATOR_URL": f"http://{HOST}:{opts.orchestrator_port}",
                    "UTILIZATION_URL": f"http://{HOST}:{opts.utilization_port}",
                },
                health_url=f"http://{HOST}:{opts.api_port}/healthz",
            )
        )
    if _installed("slicer_api.__main__"):
        shop_digest = hashlib.sha256(env["SHOP_API_KEY"].encode()).hexdigest()
        specs.append(
            ProcessSpec(
                "slicer-api",
                [_script("slicer-api")],
                {
                    **env,
                    "SLICER_API_HOST": HOST,
                    "SLICER_API_PORT": str(opts.slicer_port),
                    "SLICER_API_KEYS": shop_digest,
                    "SLICER_WORK_DIR": str(opts.farm_dir / "slicer"),
                    "SLICER_GCODE_STORE_DIR": env["GCODE_STORE_DIR"],
                },
                health_url=f"http://{HOST}:{opts.slicer_port}/healthz",
            )
        )
    return specs


def base_env(opts: FarmOptions, infra: Endpoints) -> dict[str, str]:
    """The environment every process of the native farm shares."""
    env = dict(os.environ)
    env.update(infra.as_env())
    secrets_file = opts.farm_dir / "secrets.env"
    env.update(_farm_secrets(secrets_file, opts.printers))
    # explicit settings from the caller's environment win (tests isolate themselves this way)
    for key in ("AMQP_URL", "MONGO_URL", "MQTT_TOPIC_PREFIX", "MYSQL_URL"):
        if os.environ.get(key):
            env[key] = os.environ[key]
    env.setdefault("MONGO_DB", "pantheon")
    gcode_dir = opts.farm_dir / "gcode"
    gcode_dir.mkdir(parents=True, exist_ok=True)
    env.update(
        {
            "FARM_LAYOUT": str(opts.layout_path),
            "GCODE_STORE_DIR": str(gcode_dir),
            "LOG_FORMAT": "text",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def run_farm(opts: FarmOptions, ready: Callable[[Supervisor], None] | None = None) -> int:
    """Bring the farm up and supervise it until SIGINT/SIGTERM; returns an exit code."""
    infra = ensure_infra(opts.run_dir)
    env = base_env(opts, infra)
    layout = load_layout(opts.layout_path)
    fresh = opts.fresh or _printers_changed(opts)
    if not os.environ.get("MYSQL_URL"):
        env["MYSQL_URL"] = create_mysql_database(infra, "utilization", fresh=fresh)
    client = mongo_client(env["MONGO_URL"], app_name="pantheon-run")
    try:
        ping(client)
        if fresh:
            LOG.info("starting from an empty farm state (database %s)", env["MONGO_DB"])
            client.drop_database(env["MONGO_DB"])
            _reset_simulator_state(opts)
        seed_farm(client[env["MONGO_DB"]], layout)
    finally:
        client.close()
    (opts.farm_dir / "printers.json").write_text(json.dumps(opts.printers), encoding="utf-8")
    supervisor = Supervisor(opts.farm_dir / "logs")
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        specs = build_specs(opts, infra, env)
        for spec in specs:
            if stop.is_set():
                return 130
            try:
                supervisor.start(spec)
            except RuntimeError as err:
                # the supervisor keeps restarting it; the rest of the farm still comes up
                LOG.error("%s did not become ready: %s", spec.name, err)
                continue
            if spec.name == "robot-arm-sim":
                world = httpx.get(f"http://{HOST}:{opts.robot_control_port}/world", timeout=5)
                placed = sync_plates(world.json(), env["MONGO_URL"], env["MONGO_DB"])
                LOG.info("plates loaded in printers recorded in MongoDB: %d", placed)
        print_summary(opts, infra, env, specs)
        watcher = threading.Thread(target=supervisor.supervise, daemon=True)
        watcher.start()
        if ready is not None:
            ready(supervisor)
        while not stop.wait(0.5):
            pass
        return 0
    finally:
        LOG.info("stopping the farm")
        supervisor.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)


def print_summary(
    opts: FarmOptions, infra: Endpoints, env: Mapping[str, str], specs: list[ProcessSpec]
) -> None:
    """What runs where, for a person."""
    lines = [
        "",
        "Pantheon farm is running (Ctrl-C stops it):",
        f"  RabbitMQ UI        {infra.rabbitmq_management_url}  (user pantheon; password in "
        f"{opts.run_dir}/secrets.env)",
        f"  MQTT (robot bus)   {infra.mqtt_host}:{infra.mqtt_port}",
        f"  MongoDB            {env['MONGO_URL']}  database {env['MONGO_DB']}",
        f"  bambu-sim control  http://{HOST}:{opts.sim_control_port}/printers",
        f"  robot-arm-sim      http://{HOST}:{opts.robot_control_port}/world",
    ]
    for spec in specs:
        if spec.health_url and spec.name not in ("bambu-sim", "robot-arm-sim"):
            base = spec.health_url.rsplit("/", 1)[0]
            lines.append(f"  {spec.name:<18} {base}/docs")
    lines += [
        f"  secrets            {opts.farm_dir}/secrets.env (SERVICE_TOKEN; pantheon-api user "
        "admin: PANTHEON_ADMIN_PASSWORD; slicer-api X-API-Key: SHOP_API_KEY)",
        f"  logs               {opts.farm_dir}/logs/",
        "",
    ]
    print("\n".join(lines), flush=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``pantheon-run``."""
    parser = argparse.ArgumentParser(
        prog="pantheon-run",
        description="Run the whole simulated farm natively: infrastructure, simulated printers "
        "and robot, and every service, supervised (crashed processes are restarted).",
    )
    parser.add_argument("--printers", default=None, help="printer ids (default: the layout's)")
    parser.add_argument("--speed", type=float, default=60.0, help="simulation speed (60)")
    parser.add_argument("--robot-speed", type=float, default=None, help="robot speed (=speed)")
    parser.add_argument(
        "--prepare-s",
        type=float,
        default=None,
        help="wall seconds a simulated printer prepares (heats, levels) before printing "
        "(default: 10 s divided by the speed, at least 0.5)",
    )
    parser.add_argument("--layout", type=Path, default=None, help="farm layout (farm.yaml)")
    parser.add_argument("--run-dir", type=Path, default=None, help="harness run dir (.run)")
    parser.add_argument(
        "--farm-dir", type=Path, default=None, help="farm state, logs, G-code (<run-dir>/farm)"
    )
    parser.add_argument("--bind", choices=["layout", "ports"], default="layout")
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="start from an empty farm (drops the farm's MongoDB and MySQL state)",
    )
    parser.add_argument("--printer-port-base", type=int, default=50000, help="500<id> ports")
    parser.add_argument("--sim-control-port", type=int, default=9990)
    parser.add_argument("--robot-control-port", type=int, default=9991)
    parser.add_argument("--orchestrator-port", type=int, default=9973)
    parser.add_argument("--api-port", type=int, default=9971)
    parser.add_argument("--utilization-port", type=int, default=9972)
    parser.add_argument("--slicer-port", type=int, default=9980)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[pantheon-run] %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    run_dir = args.run_dir or default_run_dir()
    source = args.layout or Path(os.environ.get("FARM_LAYOUT") or find_repo_root() / "farm.yaml")
    try:
        if args.printer_port_base % 1000:
            raise ValueError("--printer-port-base must be a multiple of 1000 (port = base + id)")
        all_ids = sorted(load_layout(source).printer_ids)
        printers = parse_printer_ids(args.printers) if args.printers else all_ids
        farm_dir = (args.farm_dir or run_dir / "farm").resolve()
        layout_path = farm_dir / "farm.yaml"
        write_layout(source, printers, layout_path)
        opts = FarmOptions(
            printers=printers,
            speed=args.speed,
            run_dir=run_dir,
            farm_dir=farm_dir,
            layout_path=layout_path,
            printer_port_base=args.printer_port_base,
            sim_control_port=args.sim_control_port,
            robot_control_port=args.robot_control_port,
            orchestrator_port=args.orchestrator_port,
            api_port=args.api_port,
            utilization_port=args.utilization_port,
            slicer_port=args.slicer_port,
            bind=args.bind,
            robot_speed=args.robot_speed,
            prepare_s=args.prepare_s,
            fresh=args.fresh,
        )
        return run_farm(opts)
    except (InfraError, RuntimeError, ValueError) as err:
        print(f"pantheon-run: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
