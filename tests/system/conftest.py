"""System-test harness: the native farm (``pantheon-run``) driven through its public interfaces.

`running_farm` starts ``python -m pantheon_devtools.farm_run`` as the tests' own subprocess: the
simulated printers (bambu-sim), the robot simulator and every service, supervised, on a RabbitMQ
vhost, MongoDB and MariaDB databases and an MQTT topic prefix of their own (pantheon-run takes
AMQP_URL, MONGO_URL, MONGO_DB, MYSQL_URL and MQTT_TOPIC_PREFIX from its environment) and on
ports no other farm of this suite uses. The `Farm` it yields speaks to the farm as a person
or a device would: the HTTP APIs of pantheon-api, the orchestrator and the simulators' control
APIs, RabbitMQ and MQTT. Every wait is bounded and a failed wait quotes the tail of the farm's logs
(``<farm-dir>/logs/<name>.log``).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import pika
import pymongo
import pytest

from pantheon_common.mqtt import MqttClient, MqttMessage
from pantheon_common.settings import MqttSettings
from pantheon_contracts.names import READY_QUEUE, ROBOT_JOB_TOPIC, ROBOT_STATUS_TOPIC
from pantheon_devtools.infra import Endpoints, default_run_dir, scratch_mysql_database
from pantheon_sim.bambu.gcode3mf import build_gcode_3mf, sample_gcode

T = TypeVar("T")
HOST = "127.0.0.1"
STARTUP_TIMEOUT_S = 90.0
PORTS_FREE_TIMEOUT_S = 180.0

# Settings the test farms share (read from the environment by the services; pantheon-run
# passes its own environment on):
TEST_FARM_ENV = {
    # no homing task of its own when a run crosses HOMING_TIME_UTC: task counts stay exact
    "DAILY_HOMING": "false",
    # printer-utilization looks often enough to see prints that last two seconds
    "POLL_INTERVAL_S": "0.5",
}


@dataclass(frozen=True)
class FarmPorts:
    """The farm's own ports (none shared with another test farm of this suite)."""

    sim_control: int
    robot_control: int
    orchestrator: int
    api: int
    utilization: int
    slicer: int
    printer_port_base: int
    """printer-service of printer <id> listens on base + id; a multiple of 1000."""

    def argv(self) -> list[str]:
        return [
            "--sim-control-port",
            str(self.sim_control),
            "--robot-control-port",
            str(self.robot_control),
            "--orchestrator-port",
            str(self.orchestrator),
            "--api-port",
            str(self.api),
            "--utilization-port",
            str(self.utilization),
            "--slicer-port",
            str(self.slicer),
            "--printer-port-base",
            str(self.printer_port_base),
        ]

    @classmethod
    def block(cls, first: int, printer_port_base: int) -> FarmPorts:
        """Six service ports from ``first`` on; printer <id> on ``printer_port_base + id``.

        Every port must lie outside the kernel's ephemeral range: there, any client connection
        of the test process (a pooled MongoDB or MariaDB connection lives for the whole run)
        may hold the port, and the farm cannot bind it.
        """
        low, high = ephemeral_port_range()
        for port in (first, first + 5, printer_port_base, printer_port_base + 99):
            if low <= port <= high:
                raise ValueError(f"port {port} is in the ephemeral range {low}-{high}")
        return cls(first, first + 1, first + 2, first + 3, first + 4, first + 5, printer_port_base)


def ephemeral_port_range() -> tuple[int, int]:
    """The kernel's range of ports for outgoing connections (Linux default 32768-60999)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    except (OSError, ValueError):
        return 32768, 60999
    return int(low), int(high)


# ----------------------------------------------------------------------------- small helpers


def wait_until(
    predicate: Callable[[], T | None],
    timeout_s: float,
    what: str,
    *,
    on_timeout: Callable[[], str] | None = None,
    poll_s: float = 0.25,
) -> T:
    """Poll ``predicate`` until it returns something truthy (returned) or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    last_error = ""
    while True:
        try:
            value = predicate()
        except (httpx.HTTPError, OSError, ValueError, KeyError) as err:
            value, last_error = None, f" (last error: {type(err).__name__}: {err})"
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = on_timeout() if on_timeout else ""
            raise AssertionError(
                f"timed out after {timeout_s:.0f} s waiting for {what}{last_error}{extra}"
            )
        time.sleep(poll_s)


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def pid_listening(port: int) -> int | None:
    """The pid of the process listening on ``port`` (``ss -ltnp``), if any."""
    out = subprocess.run(
        ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=False
    ).stdout
    marker = "pid="
    if marker not in out:
        return None
    return int(out.split(marker, 1)[1].split(",", 1)[0])


def port_free(port: int) -> bool:
    """Nothing listens on 127.0.0.1:``port`` (a bind would succeed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def farm_ports_in_use(printers: Sequence[int], ports: FarmPorts) -> list[int]:
    """Ports this farm needs that another process holds. bambu-sim with ``--bind ports`` puts
    printer <id> on fixed ports (MQTT 18800+id, FTPS 19900+id) that pantheon-run cannot move,
    so two farms with a printer in common cannot run at once. Its passive FTPS range
    (40000+10*id..+9) is not checked: the FTP server skips a port that is taken, and any
    process may hold one of them as an ephemeral port."""
    wanted = [
        ports.sim_control,
        ports.robot_control,
        ports.orchestrator,
        ports.api,
        ports.utilization,
        ports.slicer,
    ]
    for pid in printers:
        wanted += [ports.printer_port_base + pid, 18800 + pid, 19900 + pid]
    return [p for p in wanted if not port_free(p)]


def children_of(pid: int) -> list[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False
    ).stdout
    return [int(p) for p in out.split()]


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def gcode_package(minutes: int = 20, layers: int = 10) -> bytes:
    """A sliced ``.gcode.3mf`` whose header says it prints for ``minutes`` (printer time)."""
    return build_gcode_3mf(sample_gcode(layers=layers, estimate=f"{minutes}m 0s"))


def seed_job(printer_id: int, bed_id: int, *, take: bool) -> bytes:
    """A robot job exactly as the real robot expects it (architecture.md 3.2, no job_id)."""
    return json.dumps(
        {
            "printer_id": printer_id,
            "bed_id": bed_id,
            "take_from_printer": take,
            "load_next_bed_without_homing": True,
            "open_doors": [f"printer{printer_id}"],
        },
        separators=(",", ":"),
    ).encode()


# ----------------------------------------------------------------------------- the robot bus


class BusWatcher:
    """Records every ``robot_arm/job`` and ``robot_arm/status`` on the farm's topic prefix and
    publishes on them as an operator would (QoS 1, not retained)."""

    def __init__(self, host: str, port: int, prefix: str) -> None:
        settings = MqttSettings(
            pantheon_env="dev", mqtt_host=host, mqtt_port=port, mqtt_topic_prefix=prefix
        )
        self._client = MqttClient(
            settings, f"system-test-{secrets.token_hex(4)}", max_reconnect_s=2
        )
        self._lock = threading.Lock()
        self.jobs: list[dict[str, Any]] = []
        self.statuses: list[dict[str, Any]] = []
        self._client.subscribe(ROBOT_JOB_TOPIC, self._on_job)
        self._client.subscribe(ROBOT_STATUS_TOPIC, self._on_status)
        self._client.start()
        self._client.wait_connected(10)
        self._client.subscribe(ROBOT_JOB_TOPIC, self._on_job)  # now waits for the SUBACK
        self._client.subscribe(ROBOT_STATUS_TOPIC, self._on_status)

    @staticmethod
    def _parse(message: MqttMessage) -> dict[str, Any]:
        try:
            value = json.loads(message.payload)
        except json.JSONDecodeError:
            return {"unparsed": message.payload.decode("utf-8", "replace")}
        return value if isinstance(value, dict) else {"unparsed": value}

    def _on_job(self, message: MqttMessage) -> None:
        with self._lock:
            self.jobs.append(self._parse(message))

    def _on_status(self, message: MqttMessage) -> None:
        with self._lock:
            self.statuses.append(self._parse(message))

    def jobs_seen(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.jobs)

    def statuses_seen(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.statuses)

    @property
    def connected(self) -> bool:
        return self._client.connected

    def publish(self, topic: str, payload: bytes) -> None:
        self._client.publish(topic, payload)

    def stop(self) -> None:
        self._client.stop()


# ----------------------------------------------------------------------------- the farm


@dataclass
class Farm:
    """A running native farm and its public interfaces."""

    proc: subprocess.Popen[bytes]
    dir: Path
    ports: FarmPorts
    printers: list[int]
    infra: Endpoints
    amqp_url: str
    mqtt_prefix: str
    mongo_url: str
    mongo_db: str
    api: httpx.Client = field(init=False)
    orchestrator: httpx.Client = field(init=False)
    sim: httpx.Client = field(init=False)
    robot: httpx.Client = field(init=False)
    bus: BusWatcher | None = None

    def __post_init__(self) -> None:
        token = self.secret("SERVICE_TOKEN")
        self.orchestrator = httpx.Client(
            base_url=f"http://{HOST}:{self.ports.orchestrator}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=15,
        )
        self.api = httpx.Client(base_url=f"http://{HOST}:{self.ports.api}", timeout=15)
        self.sim = httpx.Client(base_url=f"http://{HOST}:{self.ports.sim_control}", timeout=15)
        self.robot = httpx.Client(base_url=f"http://{HOST}:{self.ports.robot_control}", timeout=15)

    def close(self) -> None:
        for client in (self.api, self.orchestrator, self.sim, self.robot):
            client.close()
        if self.bus is not None:
            self.bus.stop()

    # -- files, logs, waits --------------------------------------------------------------
    def secret(self, name: str) -> str:
        for line in (self.dir / "secrets.env").read_text().splitlines():
            key, _, value = line.partition("=")
            if key == name:
                return value
        raise AssertionError(f"{name} not in the farm's secrets.env")

    def log_tail(self, name: str, lines: int = 25) -> str:
        path = self.dir / "logs" / f"{name}.log"
        if name == "pantheon-run":
            path = self.dir / "pantheon-run.log"
        try:
            text = path.read_text(errors="replace").splitlines()
        except OSError as err:
            return f"\n--- {path}: {err}"
        return f"\n--- tail of {path}:\n" + "\n".join(text[-lines:])

    def logs(self, *names: str, lines: int = 25) -> str:
        chosen = names or (
            "robot-arm-orchestrator",
            "robot-arm-sim",
            *(f"printer-service-{p}" for p in self.printers),
        )
        return "".join(self.log_tail(n, lines) for n in chosen)

    def wait(
        self,
        predicate: Callable[[], T | None],
        timeout_s: float,
        what: str,
        *,
        logs: Sequence[str] = (),
        context: Callable[[], str] | None = None,
    ) -> T:
        """`wait_until` whose failure quotes the farm's logs (and ``context()``)."""

        def explain() -> str:
            extra = ""
            if context is not None:
                try:
                    extra = "\n" + context()
                except Exception as err:  # a failing explanation must not hide the timeout
                    extra = f"\n(context unavailable: {err})"
            return extra + self.logs(*logs)

        return wait_until(predicate, timeout_s, what, on_timeout=explain)

    # -- pantheon-api ----------------------------------------------------------------------
    def login(self) -> None:
        password = self.secret("PANTHEON_ADMIN_PASSWORD")
        reply = self.api.post("/api/auth/token", data={"username": "admin", "password": password})
        assert reply.status_code == 200, reply.text
        self.api.headers["Authorization"] = f"Bearer {reply.json()['access_token']}"

    def get(self, path: str, **params: Any) -> Any:
        reply = self.api.get(path, params=params)
        assert reply.status_code == 200, f"GET {path}: {reply.status_code} {reply.text}"
        return reply.json()

    def get_if_up(self, path: str, **params: Any) -> Any:
        """Like `get`, but None while the service behind pantheon-api does not answer (502/504)."""
        reply = self.api.get(path, params=params)
        if reply.status_code in (502, 503, 504):
            return None
        assert reply.status_code == 200, f"GET {path}: {reply.status_code} {reply.text}"
        return reply.json()

    def upload(self, name: str, package: bytes, **form: str) -> None:
        reply = self.api.post(
            "/api/files",
            files={"file": (name, package, "application/octet-stream")},
            data=form,
        )
        assert reply.status_code in (200, 201), reply.text

    def queue_job(self, file: str, bed_type: str, **target: Any) -> str:
        reply = self.api.post(
            "/api/jobs", json={"file": file, "target": target, "bed_type": bed_type}
        )
        assert reply.status_code in (200, 201), reply.text
        return str(reply.json()["id"])

    def jobs(self) -> dict[str, dict[str, Any]]:
        listed = self.get("/api/jobs", limit=1000)
        items = listed["items"] if isinstance(listed, dict) else listed
        return {str(j["id"]): j for j in items}

    def prints(self) -> list[dict[str, Any]]:
        return list(self.get("/api/prints", limit=1000))

    def printer(self, printer_id: int) -> dict[str, Any]:
        return dict(self.get(f"/api/printers/{printer_id}"))

    def bed(self, bed_id: int) -> dict[str, Any]:
        return dict(self.get(f"/api/beds/{bed_id}"))

    def wait_jobs(self, job_ids: Sequence[str], status: str, timeout_s: float) -> None:
        def done() -> bool:
            jobs = self.jobs()
            return all(jobs[j]["status"] == status for j in job_ids)

        self.wait(
            done,
            timeout_s,
            f"{len(job_ids)} jobs {status} (seen through pantheon-api)",
            context=lambda: (
                "jobs: "
                + json.dumps(
                    {
                        j: (
                            v["status"],
                            v.get("printer_id"),
                            v.get("attempts"),
                            v.get("last_error"),
                        )
                        for j, v in self.jobs().items()
                    }
                )
                + "\nheld: "
                + json.dumps([(t["id"], t.get("error")) for t in self.held()])
            ),
        )

    # -- orchestrator ------------------------------------------------------------------------
    def tasks(self, **params: Any) -> list[dict[str, Any]]:
        reply = self.orchestrator.get("/tasks", params={"limit": 1000, **params})
        assert reply.status_code == 200, reply.text
        return list(reply.json())

    def held(self) -> list[dict[str, Any]]:
        reply = self.orchestrator.get("/tasks/held")
        assert reply.status_code == 200, reply.text
        return list(reply.json())

    def dispatch_state(self) -> dict[str, Any]:
        reply = self.orchestrator.get("/dispatch")
        assert reply.status_code == 200, reply.text
        return dict(reply.json())

    def resolve_held_as_a_person(self) -> list[tuple[str, str]]:
        """Resolve every held task through pantheon-api the way an operator would: look at the
        arm's own record of the job (the robot simulator's ledger and world stand in for
        walking to the cell). A motion that ended ``done`` happened: ``done``. A motion that
        stopped half-way (``failed``): ``abort``. A motion still under way: wait and look
        again. No motion at all, with the arm standing still: it never happened, ``retry``
        (sent once more, with a new job id)."""
        decisions = []
        for task in self.get_if_up("/api/robot/tasks/held") or []:
            job_id = task.get("job_id")
            events = {e["event"] for e in self.ledger(job_id=job_id)} if job_id else set()
            if "done" in events:
                action = "done"
            elif "failed" in events:
                action = "abort"
            elif "motion" in events or self.world()["busy"]:
                continue  # the arm is moving: decide once it stands still
            else:
                action = "retry"
            reply = self.api.post(
                f"/api/robot/tasks/{task['id']}/resolve",
                json={"action": action, "note": "system test: checked the arm's ledger"},
            )
            assert reply.status_code == 200, f"resolve {task['id']} {action}: {reply.text}"
            decisions.append((task["id"], action))
        return decisions

    def drive_to_completion(
        self, job_ids: Sequence[str], timeout_s: float
    ) -> list[tuple[str, str]]:
        """Wait until every job is finished and every robot task is final, resolving held
        tasks as a person would whenever some show up. Returns the decisions taken."""
        decisions: list[tuple[str, str]] = []

        def settled() -> bool:
            decisions.extend(self.resolve_held_as_a_person())
            jobs = self.jobs()
            if not all(jobs[j]["status"] == "finished" for j in job_ids):
                return False
            prints = {p["id"] for p in self.prints() if p["job_id"] in job_ids}
            tasks = [t for t in self.tasks() if t.get("print_id") in prints]
            return len(tasks) == 2 * len(prints) and all(
                t["status"] in ("done", "aborted") for t in tasks
            )

        self.wait(
            settled,
            timeout_s,
            f"{len(job_ids)} jobs finished and their plates swapped",
            context=lambda: (
                "jobs: "
                + json.dumps({j: self.jobs()[j]["status"] for j in job_ids})
                + "\ntasks: "
                + json.dumps([(t["id"], t["status"], t.get("error")) for t in self.tasks()])
                + f"\ndecisions: {decisions}"
            ),
        )
        return decisions

    def assert_each_job_served_once(self, job_ids: Sequence[str]) -> None:
        """Nothing lost, nothing done twice: one finished print per job, one take and one
        replace per print (every ``ready`` served), one motion per completed task and no
        job_id executed twice in the robot's ledger."""
        prints = [p for p in self.prints() if p["job_id"] in job_ids]
        assert sorted(p["job_id"] for p in prints) == sorted(job_ids), prints
        assert all(p["result"] == "finished" for p in prints), prints
        print_ids = {p["id"] for p in prints}
        tasks = [t for t in self.tasks() if t.get("print_id") in print_ids]
        per_print = Counter((t["print_id"], t["kind"]) for t in tasks)
        assert per_print == {(p, k): 1 for p in print_ids for k in ("take", "replace")}
        motions = self.assert_no_motion_twice()
        motion_ids = Counter(m["job_id"] for m in motions)
        for task in tasks:
            if task["status"] == "done":
                assert motion_ids[task["job_id"]] == 1, (task, motions)
        done_everywhere = [t for t in self.tasks() if t["status"] == "done"]
        assert len(motions) == len(done_everywhere), "a motion no task accounts for"

    # -- simulators --------------------------------------------------------------------------
    def ledger(self, **params: Any) -> list[dict[str, Any]]:
        reply = self.robot.get("/ledger", params={k: v for k, v in params.items() if v})
        assert reply.status_code == 200, reply.text
        return list(reply.json())

    def motions(self) -> list[dict[str, Any]]:
        return [e for e in self.ledger() if e["event"] == "motion"]

    def robot_violations(self) -> tuple[int, list[dict[str, Any]]]:
        """How many jobs the robot simulator refused as physically damaging since the farm
        started (the safety oracle), and its log of the latest ones."""
        world = self.world()
        return int(world["violations"]), list(world.get("violation_log") or [])

    def printer_violations(self) -> tuple[int, list[dict[str, Any]]]:
        """How many physically damaging prints the printer simulator recorded (a print onto a
        part, or on a bare bed, by a model that cannot see its bed), and the latest ones."""
        reply = self.sim.get("/violations")
        assert reply.status_code == 200, reply.text
        found = reply.json()
        return int(found["violations"]), list(found.get("violation_log") or [])

    def world(self) -> dict[str, Any]:
        reply = self.robot.get("/world")
        assert reply.status_code == 200, reply.text
        return dict(reply.json())

    def sim_printer(self, printer_id: int) -> dict[str, Any]:
        reply = self.sim.get(f"/printers/{printer_id}")
        assert reply.status_code == 200, reply.text
        return dict(reply.json())

    # -- brokers -----------------------------------------------------------------------------
    def publish_ready(self, *bodies: bytes, message_ids: Sequence[str | None] = ()) -> None:
        """Publish to ``ready`` as an operator does in the RabbitMQ UI (no message_id), or,
        with ``message_ids`` (one per body), as printer-service or a forger would."""
        ids = list(message_ids) or [None] * len(bodies)
        connection = pika.BlockingConnection(pika.URLParameters(self.amqp_url))
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            for body, message_id in zip(bodies, ids, strict=True):
                properties = pika.BasicProperties(message_id=message_id, delivery_mode=2)
                channel.basic_publish(
                    exchange="", routing_key=READY_QUEUE, body=body, properties=properties
                )
        finally:
            connection.close()

    def watch_bus(self) -> BusWatcher:
        if self.bus is None:
            self.bus = BusWatcher(self.infra.mqtt_host, self.infra.mqtt_port, self.mqtt_prefix)
        return self.bus

    def service_pid(self, port: int) -> int:
        pid = pid_listening(port)
        assert pid is not None, f"nothing listens on {port}"
        return pid

    # -- invariants --------------------------------------------------------------------------
    def assert_no_motion_twice(self) -> list[dict[str, Any]]:
        """The robot ledger (the only witness of physical motions) has each job_id once."""
        motions = self.motions()
        ids = [m["job_id"] for m in motions if m.get("job_id")]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        assert not twice, f"motions executed twice: {twice}{self.logs('robot-arm-sim')}"
        return motions


@contextlib.contextmanager
def _vhost(infra: Endpoints) -> Iterator[str]:
    """A RabbitMQ virtual host of this farm (deleted afterwards); yields its AMQP URL."""
    name = f"pantheon-system-{secrets.token_hex(6)}"
    path = quote(name, safe="")
    with httpx.Client(
        base_url=infra.rabbitmq_management_url,
        auth=(infra.rabbitmq_user, infra.rabbitmq_password),
        timeout=30,
    ) as api:
        api.put(f"/api/vhosts/{path}", json={}).raise_for_status()
        api.put(
            f"/api/permissions/{path}/{quote(infra.rabbitmq_user, safe='')}",
            json={"configure": ".*", "write": ".*", "read": ".*"},
        ).raise_for_status()
        try:
            yield infra.amqp_url_for_vhost(name)
        finally:
            with contextlib.suppress(httpx.HTTPError):
                api.delete(f"/api/vhosts/{path}")


@contextlib.contextmanager
def _mongo_database(infra: Endpoints) -> Iterator[str]:
    """A MongoDB database name of this farm (dropped afterwards)."""
    name = f"pantheon_system_{secrets.token_hex(6)}"
    try:
        yield name
    finally:
        client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
            infra.mongo_url, serverSelectionTimeoutMS=10_000
        )
        try:
            client.drop_database(name)
        finally:
            client.close()


def _stop(proc: subprocess.Popen[bytes], timeout_s: float = 45) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@contextlib.contextmanager
def running_farm(
    infra: Endpoints,
    printers: Sequence[int],
    ports: FarmPorts,
    *,
    speed: float = 600,
    robot_speed: float = 50,
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
) -> Iterator[Farm]:
    """Start ``pantheon-run`` for ``printers``; yield the `Farm` once every part answers.

    The farm gets its own vhost, MongoDB and MariaDB databases, topic prefix and orchestrator
    MQTT client id; ``env`` adds service settings (e.g. shorter timeouts), ``args`` more
    options of pantheon-run (e.g. ``--prepare-s``). On exit the farm
    gets Ctrl-C (SIGINT); whatever is left is killed, and its directory
    removed (kept when ``PANTHEON_KEEP_FARM=1``).
    """
    with contextlib.ExitStack() as stack:
        amqp_url = stack.enter_context(_vhost(infra))
        mongo_db = stack.enter_context(_mongo_database(infra))
        mysql_url = stack.enter_context(scratch_mysql_database(infra, "pantheon_system"))
        prefix = f"test/{secrets.token_hex(6)}/"
        # Another farm (a developer's `./farm run`, a benchmark) may hold a printer's ports
        # for a while: wait for them rather than fail half-started.
        waited = time.monotonic()
        wait_until(
            lambda: not farm_ports_in_use(printers, ports),
            PORTS_FREE_TIMEOUT_S,
            f"the ports of printers {list(printers)} to be free",
            on_timeout=lambda: f" (in use: {farm_ports_in_use(printers, ports)})",
            poll_s=1.0,
        )
        if time.monotonic() - waited > 2:  # shown with a failure's captured output
            print(f"waited {time.monotonic() - waited:.0f} s for another farm to free the ports")
        farm_dir = default_run_dir() / f"system-farm-{secrets.token_hex(4)}"
        farm_dir.mkdir(parents=True)
        run_env = {
            **os.environ,
            **TEST_FARM_ENV,
            "SPOOL_PATH": str(farm_dir / "utilization-spool.jsonl"),
            **(env or {}),
            "AMQP_URL": amqp_url,
            "MONGO_URL": infra.mongo_url,
            "MONGO_DB": mongo_db,
            "MYSQL_URL": mysql_url,
            "MQTT_TOPIC_PREFIX": prefix,
            # one orchestrator per MQTT client id: another farm's orchestrator on the same
            # Mosquitto would otherwise take the session over again and again
            "MQTT_CLIENT_ID": f"robot-arm-orchestrator-{secrets.token_hex(4)}",
        }
        argv = [sys.executable, "-m", "pantheon_devtools.farm_run"]
        argv += ["--printers", ",".join(str(p) for p in printers)]
        argv += ["--speed", str(speed), "--robot-speed", str(robot_speed), "--bind", "ports"]
        argv += ["--farm-dir", str(farm_dir), *ports.argv(), *args]
        with (farm_dir / "pantheon-run.log").open("wb") as out:
            proc = subprocess.Popen(argv, env=run_env, stdout=out, stderr=subprocess.STDOUT)
        farm: Farm | None = None
        children: list[int] = []
        try:
            wait_until(
                lambda: (farm_dir / "secrets.env").exists() or proc.poll() is not None,
                30,
                "pantheon-run to write the farm's secrets",
            )
            farm = Farm(
                proc=proc,
                dir=farm_dir,
                ports=ports,
                printers=list(printers),
                infra=infra,
                amqp_url=amqp_url,
                mqtt_prefix=prefix,
                mongo_url=infra.mongo_url,
                mongo_db=mongo_db,
            )
            _wait_started(farm)
            children = children_of(proc.pid)
            _LIVE_FARMS[id(farm)] = farm
            yield farm
        finally:
            if farm is not None and _LIVE_FARMS.pop(id(farm), None) is not None:
                _STOPPED_FARMS[id(farm)] = _violations_now(farm)
            children = children or children_of(proc.pid)
            _stop(proc)
            for pid in children:  # every process of the farm is ours: none may outlive it
                if alive(pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pid, signal.SIGKILL)
            if farm is not None:
                farm.close()
            if os.environ.get("PANTHEON_KEEP_FARM") != "1":
                shutil.rmtree(farm_dir, ignore_errors=True)


def _wait_started(farm: Farm) -> None:
    """Every service answers and every printer is idle with its plate recorded."""
    proc = farm.proc

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(
                f"pantheon-run exited with {proc.returncode}{farm.logs('pantheon-run')}"
            )
        urls = [
            f"http://{HOST}:{farm.ports.orchestrator}/healthz",
            f"http://{HOST}:{farm.ports.api}/healthz",
            f"http://{HOST}:{farm.ports.robot_control}/healthz",
        ]
        urls += [f"http://{HOST}:{farm.ports.printer_port_base + p}/healthz" for p in farm.printers]
        return all(http_ok(u) for u in urls)

    farm.wait(up, STARTUP_TIMEOUT_S, "the farm to start", logs=("pantheon-run",))
    farm.login()

    def ready() -> bool:
        for pid in farm.printers:
            printer = farm.printer(pid)
            if not (printer.get("bed") and printer.get("online") and printer["state"] == "idle"):
                return False
        return True

    farm.wait(
        ready,
        60,
        "every printer online, idle, with its plate recorded (pantheon-api /api/printers)",
        context=lambda: json.dumps(farm.get("/api/printers"), default=str)[:3000],
    )


FarmFactory = Callable[..., Farm]

# The simulators are the safety oracles of every system test: a job the robot simulator refuses
# as damaging (a door opened on a printing printer, a take from an empty printer...) or a print
# the printer simulator records as damaging (onto a plate with a part, on a bare bed) fails the
# test that caused it, unless the test says it provokes it
# (``@pytest.mark.robot_violations(n)``, ``@pytest.mark.printer_violations(n)``).
Violations = dict[str, tuple[int, list[dict[str, Any]]] | None]
_LIVE_FARMS: dict[int, Farm] = {}
_STOPPED_FARMS: dict[int, Violations] = {}
_ORACLES = {
    "robot_violations": Farm.robot_violations,
    "printer_violations": Farm.printer_violations,
}


def _violations_now(farm: Farm) -> Violations:
    seen: Violations = {}
    for name, read in _ORACLES.items():
        try:
            seen[name] = read(farm)
        except (AssertionError, httpx.HTTPError, KeyError, ValueError):
            seen[name] = None  # the simulator does not answer: the test fails on its own
    return seen


@pytest.fixture(autouse=True)
def physical_safety_oracles(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fails a test during which a simulator counted a violation it did not expect."""
    baseline = {key: _violations_now(farm) for key, farm in _LIVE_FARMS.items()}
    _STOPPED_FARMS.clear()
    yield
    seen = {key: _violations_now(farm) for key, farm in _LIVE_FARMS.items()}
    seen.update(_STOPPED_FARMS)
    problems = []
    for name in _ORACLES:
        marker = request.node.get_closest_marker(name)
        allowed = int(marker.args[0]) if marker else 0
        found: list[dict[str, Any]] = []
        for key, now_all in seen.items():
            now = now_all.get(name)
            if now is None:
                continue
            before = baseline.get(key, {}).get(name)
            new = now[0] - (before[0] if before else 0)
            if new > 0:
                found += now[1][-new:] or [{"reason": f"{new} violation(s), no log"}]
        if len(found) != allowed:
            problems.append(
                f"{name}: {len(found)} during this test, {allowed} expected: "
                f"{json.dumps(found, default=str)}"
            )
    assert not problems, "a simulator counted physical violations: " + "; ".join(problems)


@pytest.fixture
def start_farm(infra: Endpoints) -> Iterator[FarmFactory]:
    """``start_farm(printers, ports, speed=, robot_speed=, env=)``: a running `Farm` (see
    `running_farm`), stopped with Ctrl-C and cleaned up when the test ends. For a farm
    shared by a module, use `running_farm` in a module-scoped fixture."""
    with contextlib.ExitStack() as stack:

        def start(printers: Sequence[int], ports: FarmPorts, **options: Any) -> Farm:
            return stack.enter_context(running_farm(infra, printers, ports, **options))

        yield start


def stop_farm_with_ctrl_c(farm: Farm) -> None:
    """Ctrl-C: pantheon-run exits 0 and no process of the farm survives it."""
    children = children_of(farm.proc.pid)
    assert children
    farm.proc.send_signal(signal.SIGINT)
    assert farm.proc.wait(45) == 0, farm.logs("pantheon-run")
    wait_until(lambda: not any(alive(c) for c in children), 15, "every farm process to stop")


def package_and_jobs(
    farm: Farm, count: int, bed_types: Sequence[str], *, minutes: int = 20, **target: Any
) -> list[str]:
    """Upload one package per plate type (bed type recorded with the file) and queue
    ``count`` jobs, cycling through ``bed_types`` in queue order."""
    for bed_type in dict.fromkeys(bed_types):
        farm.upload(f"cube_{bed_type}.gcode.3mf", gcode_package(minutes), bed_type=bed_type)
    jobs = []
    for i in range(count):
        bed_type = bed_types[i % len(bed_types)]
        jobs.append(farm.queue_job(f"cube_{bed_type}.gcode.3mf", bed_type, **target))
    return jobs
