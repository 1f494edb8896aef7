"""Make the real infrastructure servers available for tests and native runs, without Docker.

`ensure_infra` checks each server and, when needed, installs it (Debian packages), starts it and
waits until it is ready:

- RabbitMQ: the machine's Debian ``rabbitmq-server`` (system service) with the management plugin
  and an administrator user ``pantheon``;
- MariaDB: the machine's Debian server (system service) with a user ``pantheon``;
- Mosquitto: an instance owned by the harness, configured from ``infra/mosquitto/mosquitto.conf``
  (persistence on every change), with its files under ``<run_dir>/mosquitto/``;
- a MongoDB-protocol server: ``MONGO_URL`` when set, otherwise an owned ``nx-27017``.

Generated passwords live in ``<run_dir>/secrets.env`` (mode 0600); the resulting connection
settings are written to ``<run_dir>/infra.env``. `stop_owned` stops only the owned processes
(Mosquitto, nx-27017); system services are never stopped.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import quote, unquote, urlsplit

import httpx
import pika
import pika.exceptions
import pymongo
import pymongo.errors
import pymysql

LOG: Final = logging.getLogger("pantheon_devtools.infra")

HOST: Final = "127.0.0.1"
RABBITMQ_USER: Final = "pantheon"
MYSQL_USER: Final = "pantheon"

SECRETS_FILE: Final = "secrets.env"
ENV_FILE: Final = "infra.env"
_LOCK_FILE: Final = ".infra.lock"
_RABBIT_PW_KEY: Final = "PANTHEON_RABBITMQ_PASSWORD"
_MYSQL_PW_KEY: Final = "PANTHEON_MYSQL_PASSWORD"

_RABBITMQ_SERVER: Final = Path("/usr/sbin/rabbitmq-server")
_RABBITMQ_ENABLED_PLUGINS: Final = Path("/etc/rabbitmq/enabled_plugins")
_RABBITMQ_CONF: Final = Path("/etc/rabbitmq/rabbitmq.conf")
_RABBITMQ_ENV_CONF: Final = Path("/etc/rabbitmq/rabbitmq-env.conf")
_RABBITMQ_MNESIA: Final = Path("/var/lib/rabbitmq/mnesia")
_RABBITMQ_LOG_DIR: Final = Path("/var/log/rabbitmq")
_MARIADBD: Final = Path("/usr/sbin/mariadbd")
_MARIADB_DATADIR: Final = Path("/var/lib/mysql")
_MARIADB_RUN_DIR: Final = Path("/run/mysqld")
_MARIADB_LOG: Final = Path("/var/log/mysql/error.log")
_MOSQUITTO: Final = Path("/usr/sbin/mosquitto")

_RABBITMQ_START_TIMEOUT: Final = 90.0
_MANAGEMENT_TIMEOUT: Final = 60.0
_MARIADB_START_TIMEOUT: Final = 60.0
_MOSQUITTO_START_TIMEOUT: Final = 10.0
_MONGO_START_TIMEOUT: Final = 30.0
_STOP_TIMEOUT: Final = 10.0
_RABBITMQ_STOP_TIMEOUT: Final = 60.0
_RABBITMQ_REREGISTER_TIMEOUT: Final = 75.0  # RabbitMQ's epmd monitor checks once a minute


class InfraError(RuntimeError):
    """A server could not be made available; the message names the server and its log."""


@dataclass(frozen=True)
class Ports:
    """Where the harness looks for (or starts) each server; overridable by environment."""

    amqp: int = 5672
    rabbitmq_management: int = 15672
    mysql: int = 3306
    mqtt: int = 11883
    mongo: int = 27017

    @classmethod
    def from_env(cls) -> Ports:
        """Read ``PANTHEON_INFRA_<NAME>_PORT`` variables, falling back to the defaults."""
        defaults = cls()

        def port(name: str, default: int) -> int:
            raw = os.environ.get(f"PANTHEON_INFRA_{name}_PORT", "").strip()
            if not raw:
                return default
            try:
                value = int(raw)
            except ValueError:
                raise InfraError(f"PANTHEON_INFRA_{name}_PORT={raw!r} is not a port") from None
            if not 0 < value < 65536:
                raise InfraError(f"PANTHEON_INFRA_{name}_PORT={raw!r} is not a port")
            return value

        return cls(
            amqp=port("AMQP", defaults.amqp),
            rabbitmq_management=port("RABBITMQ_MANAGEMENT", defaults.rabbitmq_management),
            mysql=port("MYSQL", defaults.mysql),
            mqtt=port("MQTT", defaults.mqtt),
            mongo=port("MONGO", defaults.mongo),
        )


@dataclass(frozen=True)
class Endpoints:
    """How to reach every server the harness made available."""

    amqp_url: str
    rabbitmq_management_url: str
    rabbitmq_user: str
    rabbitmq_password: str
    mqtt_host: str
    mqtt_port: int
    mongo_url: str
    mysql_url: str

    def as_env(self) -> dict[str, str]:
        """The environment variables the services read."""
        return {
            "AMQP_URL": self.amqp_url,
            "RABBITMQ_MANAGEMENT_URL": self.rabbitmq_management_url,
            "RABBITMQ_MANAGEMENT_USER": self.rabbitmq_user,
            "RABBITMQ_MANAGEMENT_PASSWORD": self.rabbitmq_password,
            "MQTT_HOST": self.mqtt_host,
            "MQTT_PORT": str(self.mqtt_port),
            "MONGO_URL": self.mongo_url,
            "MYSQL_URL": self.mysql_url,
        }

    def amqp_url_for_vhost(self, vhost: str) -> str:
        """The AMQP URL of the ``pantheon`` user on another virtual host."""
        base = self.amqp_url.rsplit("/", 1)[0]
        return f"{base}/{quote(vhost, safe='')}"


@dataclass(frozen=True)
class ServiceStatus:
    """One row of `infra_status`."""

    name: str
    address: str
    answering: bool
    owner: str
    details: str = ""


# --------------------------------------------------------------------------- paths and files


def find_repo_root() -> Path:
    """The workspace root: the nearest parent holding ``infra/mosquitto/mosquitto.conf``."""
    for start in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        for candidate in (start, *start.parents):
            if (candidate / "infra" / "mosquitto" / "mosquitto.conf").is_file():
                return candidate
    for candidate in (Path.cwd().resolve(), *Path.cwd().resolve().parents):
        if (candidate / "uv.lock").is_file():
            return candidate
    return Path.cwd().resolve()


def default_run_dir() -> Path:
    """``$PANTHEON_RUN_DIR`` or ``<repo>/.run``."""
    env = os.environ.get("PANTHEON_RUN_DIR", "").strip()
    return Path(env).resolve() if env else find_repo_root() / ".run"


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` atomically with mode 0600 (never readable by others, not even briefly)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)
    os.chmod(path, 0o600)


def _parse_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        values[key.strip()] = value.strip()
    return values


def secrets_path(run_dir: Path) -> Path:
    """``run_dir/secrets.env``, or ``$PANTHEON_INFRA_SECRETS_FILE`` to share one between checkouts.

    The ``pantheon`` users of RabbitMQ and MariaDB are machine-wide: two run directories with
    different secrets would keep resetting each other's passwords.
    """
    shared = os.environ.get("PANTHEON_INFRA_SECRETS_FILE", "").strip()
    return Path(shared).resolve() if shared else run_dir / SECRETS_FILE


def load_secrets(run_dir: Path) -> dict[str, str]:
    """The generated passwords, created once and kept in `secrets_path` (mode 0600)."""
    path = secrets_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    values = _parse_env_file(path)
    missing = [key for key in (_RABBIT_PW_KEY, _MYSQL_PW_KEY) if not values.get(key)]
    if missing:
        for key in missing:
            values[key] = secrets.token_urlsafe(24)
        body = "".join(f"{key}={value}\n" for key, value in values.items())
        _write_private(path, "# generated by pantheon-infra; keep private\n" + body)
    elif path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)
    return values


def _write_env_file(run_dir: Path, endpoints: Endpoints) -> None:
    path = run_dir / ENV_FILE
    text = "".join(f"{key}={value}\n" for key, value in endpoints.as_env().items())
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        if path.stat().st_mode & 0o777 != 0o600:
            os.chmod(path, 0o600)
        return
    _write_private(path, text)


@contextlib.contextmanager
def _run_dir_lock(run_dir: Path) -> Iterator[None]:
    """Serialise harness runs that share a run directory (parallel pytest sessions)."""
    with open(run_dir / _LOCK_FILE, "a+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _prepare_run_dir(run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    # Owned servers drop to their own users (mosquitto): they must be able to traverse it.
    mode = run_dir.stat().st_mode & 0o777
    if mode & 0o011 != 0o011:
        os.chmod(run_dir, mode | 0o011)  # noqa: S103 - traverse only (x), no read or write


# --------------------------------------------------------------------------- small helpers


def _port_open(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _wait_until(
    check: Callable[[], bool],
    timeout: float,
    failure: Callable[[], str],
    *,
    abort: Callable[[], str | None] | None = None,
) -> None:
    """Poll ``check`` (quickly at first, then every 0.25 s) until true or ``timeout``."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        if check():
            return
        if abort is not None and (reason := abort()) is not None:
            raise InfraError(reason)
        if time.monotonic() >= deadline:
            raise InfraError(failure())
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


def _run(
    cmd: list[str],
    *,
    what: str,
    timeout: float = 120.0,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(
            cmd,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
            cwd="/",
        )
    except FileNotFoundError as exc:
        raise InfraError(f"{what}: {cmd[0]} not found ({exc})") from None
    except subprocess.TimeoutExpired:
        raise InfraError(
            f"{what}: `{' '.join(cmd[:3])} ...` timed out after {timeout:.0f} s"
        ) from None
    if check and result.returncode != 0:
        output = (result.stderr.strip() or result.stdout.strip())[-1500:]
        raise InfraError(
            f"{what}: `{' '.join(cmd[:3])} ...` failed with exit code {result.returncode}: {output}"
        )
    return result


def _is_root() -> bool:
    return os.geteuid() == 0


def _chown(path: Path, user: str) -> None:
    if not _is_root():
        return
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)


def _pid_alive(pid: int) -> bool:
    """True for a running process; a zombie (killed, not yet reaped) counts as dead."""
    _reap_children()
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[:1]
    return state != ["Z"] and state != ["X"]


def _owned_pid(pid_file: Path, marker: str) -> int | None:
    """The pid in ``pid_file`` if that process is alive and its command line has ``marker``."""
    try:
        pid = int(pid_file.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None
    if pid <= 1 or not _pid_alive(pid):
        return None
    cmdline = _cmdline(pid)
    return pid if cmdline is not None and marker in cmdline else None


# Owned processes started by this Python process: kept so they are reaped (no zombies) and
# never garbage-collected while running.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _reap_children() -> None:
    for pid, child in list(_CHILDREN.items()):
        if child.poll() is not None:
            del _CHILDREN[pid]


def _terminate(pid: int, name: str, *, timeout: float = _STOP_TIMEOUT) -> None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _pid_alive(pid):
        LOG.info("%s: pid %d ignored SIGTERM; killing it", name, pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + _STOP_TIMEOUT
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)


def _cmdline(pid: int) -> str | None:
    """The command line of ``pid``, arguments joined by spaces; None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace")


def _listener_pids(port: int) -> list[int]:
    """Pids of the processes listening on TCP ``port`` (via ``ss``; empty if unknown)."""
    try:
        out = subprocess.run(
            ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return sorted({int(m) for m in re.findall(r"pid=(\d+)", out)})


def _evict_other_harness(port: int, name: str, signature: Callable[[str], bool]) -> None:
    """Stop a server on ``port`` that another checkout's harness started (its run dir differs).

    CI clones the repository afresh on a machine where a developer's harness may still run
    its own Mosquitto or nx-27017 on the same port; those are ours to replace. Anything else
    on the port is left alone (the caller then reports the port as taken).
    """
    for pid in _listener_pids(port):
        cmdline = _cmdline(pid)
        if cmdline is not None and signature(cmdline):
            LOG.info(
                "%s: stopping pid %d on port %d, left by another checkout's harness",
                name,
                pid,
                port,
            )
            _terminate(pid, name)


def _stop_server(
    name: str, port: int, is_server: Callable[[str], bool], timeout: float
) -> list[int]:
    """SIGTERM (then SIGKILL after ``timeout``) the ``is_server`` processes listening on
    ``port`` and wait until it is closed; InfraError when no such process listens there."""
    pids = [pid for pid in _listener_pids(port) if is_server(_cmdline(pid) or "")]
    if not pids:
        raise InfraError(f"{name}: no {name} server process listens on {HOST}:{port}")
    for pid in pids:
        _terminate(pid, name, timeout=timeout)
    _wait_until(
        lambda: not _port_open(port),
        _STOP_TIMEOUT,
        lambda: f"{name}: {HOST}:{port} still answers after stopping the server",
    )
    return pids


def _is_harness_mosquitto(cmdline: str) -> bool:
    return (
        "mosquitto" in cmdline
        and "/mosquitto/mosquitto.conf" in cmdline
        and ("/etc/mosquitto/" not in cmdline)
    )


def _is_harness_nx(cmdline: str) -> bool:
    return "nx-27017" in cmdline and "/mongo/data" in cmdline


def _tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return ("; last lines: " + " | ".join(text)) if text else ""


class _Apt:
    """Installs Debian packages; runs ``apt-get update`` at most once per process."""

    updated = False

    @classmethod
    def install(cls, what: str, packages: list[str], install: bool) -> None:
        command = "apt-get install -y --no-install-recommends " + " ".join(packages)
        if not install:
            raise InfraError(f"{what}: not installed; run `{command}` (installing is disabled)")
        if not _is_root() or shutil.which("apt-get") is None:
            raise InfraError(
                f"{what}: not installed and not running as root on Debian; run `{command}` as root"
            )
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if not cls.updated:
            LOG.info("%s: apt-get update", what)
            _run(["apt-get", "update"], what=what, timeout=600, env=env)
            cls.updated = True
        LOG.info("%s: installing %s", what, " ".join(packages))
        _run(
            ["apt-get", "install", "-y", "--no-install-recommends", *packages],
            what=what,
            timeout=1200,
            env=env,
        )


# --------------------------------------------------------------------------- RabbitMQ


def _erl_env() -> dict[str, str]:
    # Without this any rabbitmqctl call starts an epmd listening on 0.0.0.0:4369.
    return {**os.environ, "ERL_EPMD_ADDRESS": HOST}


def _ensure_epmd() -> None:
    if _port_open(4369):
        return
    epmd = shutil.which("epmd") or next(
        (str(p) for p in sorted(Path("/usr/lib/erlang").glob("erts-*/bin/epmd"))), None
    )
    if epmd is None:
        raise InfraError("rabbitmq: epmd not found (is erlang-base installed?)")
    if _is_root():
        cmd = ["su", "rabbitmq", "-s", "/bin/sh", "-c", f"{epmd} -address {HOST} -daemon"]
    else:
        cmd = [epmd, "-address", HOST, "-daemon"]
    _run(cmd, what="rabbitmq (epmd)", env=_erl_env(), timeout=30)
    _wait_until(lambda: _port_open(4369), 10, lambda: "rabbitmq: epmd did not start on 4369")
    LOG.info("rabbitmq: started epmd on %s:4369", HOST)


def _rabbitmqctl(
    *args: str, stdin: str | None = None, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return _run(
        ["rabbitmqctl", *args],
        what="rabbitmq",
        stdin=stdin,
        env=_erl_env(),
        check=check,
        timeout=timeout,
    )


def _management_enabled() -> bool:
    try:
        return "rabbitmq_management" in _RABBITMQ_ENABLED_PLUGINS.read_text(encoding="utf-8")
    except OSError:
        return False


def _management_status(ports: Ports, password: str) -> int | None:
    """HTTP status of ``/api/whoami`` as ``pantheon``; None when nothing answers."""
    try:
        response = httpx.get(
            f"http://{HOST}:{ports.rabbitmq_management}/api/whoami",
            auth=(RABBITMQ_USER, password),
            timeout=5.0,
        )
    except httpx.HTTPError:
        return None
    return response.status_code


def _append_config_lines(path: Path, lines: dict[str, str]) -> None:
    """Append ``key = value`` lines whose key prefix is not configured in ``path`` yet."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    missing = [
        line
        for prefix, line in lines.items()
        if not re.search(rf"^\s*{re.escape(prefix)}", text, re.MULTILINE)
    ]
    if not missing:
        return
    if text and not text.endswith("\n"):
        text += "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        text + "# added by pantheon-infra\n" + "\n".join(missing) + "\n", encoding="utf-8"
    )
    LOG.info("rabbitmq: added %s to %s", ", ".join(missing), path)


def _configure_fresh_rabbitmq(ports: Ports) -> None:
    """Before the very first start: loopback only, a node name that resolves to loopback."""
    if any(_RABBITMQ_MNESIA.glob("*@*")):
        return
    _append_config_lines(
        _RABBITMQ_ENV_CONF,
        {"NODENAME": "NODENAME=rabbit@localhost", "ERL_EPMD_ADDRESS": f"ERL_EPMD_ADDRESS={HOST}"},
    )
    _append_config_lines(
        _RABBITMQ_CONF, {"listeners.tcp": f"listeners.tcp.local = {HOST}:{ports.amqp}"}
    )


def _configure_management_listener(ports: Ports) -> None:
    """Keep the management UI on loopback across restarts (only valid once it is enabled)."""
    _append_config_lines(
        _RABBITMQ_CONF,
        {
            "management.tcp.ip": f"management.tcp.ip = {HOST}",
            "management.tcp.port": f"management.tcp.port = {ports.rabbitmq_management}",
        },
    )


def _rabbitmq_log_hint() -> str:
    logs = sorted(_RABBITMQ_LOG_DIR.glob("*.log"), key=lambda p: p.stat().st_mtime)
    return str(logs[-1]) if logs else str(_RABBITMQ_LOG_DIR)


def _cli_reaches_node() -> bool:
    """True when ``rabbitmqctl`` reaches the running node, waiting for it to re-register.

    A node whose epmd died keeps serving AMQP, unregistered; once an epmd runs again, RabbitMQ's
    epmd monitor re-registers the node within a minute. Until then no CLI command reaches it.
    """
    _ensure_epmd()
    deadline = time.monotonic() + _RABBITMQ_REREGISTER_TIMEOUT
    while True:
        if _rabbitmqctl("ping", "-t", "5", check=False, timeout=30).returncode == 0:
            return True
        if time.monotonic() >= deadline:
            return False
        LOG.info("rabbitmq: node not registered with epmd yet; waiting for it")
        time.sleep(3)


def _is_rabbitmq_node(cmdline: str) -> bool:
    return "beam" in cmdline and "rabbit" in cmdline


def _restart_unreachable_node(ports: Ports) -> None:
    """Stop a node that serves AMQP but that ``rabbitmqctl`` cannot reach, so it starts afresh.

    This happens when epmd dies under a running node and the node does not register again with
    the new one: it keeps serving AMQP, but no CLI command (users, vhosts, ``stop_app``) reaches
    it, so a restart is the only cure.
    """
    hint = (
        f"RabbitMQ answers on {HOST}:{ports.amqp} but `rabbitmqctl ping` cannot reach its node "
        "(its epmd registration is lost)"
    )
    if not _is_root():
        raise InfraError(
            f"rabbitmq: {hint}; as root, stop the beam.smp process and run "
            "`rabbitmq-server -detached`"
        )
    LOG.warning("rabbitmq: %s; restarting it", hint)
    _stop_server("rabbitmq", ports.amqp, _is_rabbitmq_node, _RABBITMQ_STOP_TIMEOUT)


def _ensure_rabbitmq(ports: Ports, password: str, install: bool) -> None:
    if _port_open(ports.amqp) and not _cli_reaches_node():
        _restart_unreachable_node(ports)
    if _port_open(ports.amqp) and _management_status(ports, password) == 200:
        LOG.info(
            "rabbitmq: running on %s:%d (management %s:%d)",
            HOST,
            ports.amqp,
            HOST,
            ports.rabbitmq_management,
        )
        return

    if not _port_open(ports.amqp):
        if not _RABBITMQ_SERVER.exists():
            _Apt.install("rabbitmq", ["rabbitmq-server"], install)
        _configure_fresh_rabbitmq(ports)
        _ensure_epmd()
        if not _management_enabled():
            _run(
                ["rabbitmq-plugins", "enable", "--offline", "rabbitmq_management"],
                what="rabbitmq",
                env=_erl_env(),
            )
        _configure_management_listener(ports)
        started = time.monotonic()
        _run(["rabbitmq-server", "-detached"], what="rabbitmq", env=_erl_env(), timeout=60)
        _wait_until(
            lambda: _port_open(ports.amqp),
            _RABBITMQ_START_TIMEOUT,
            lambda: (
                f"rabbitmq: did not answer on {HOST}:{ports.amqp} within "
                f"{_RABBITMQ_START_TIMEOUT:.0f} s after `rabbitmq-server -detached`; "
                f"see {_rabbitmq_log_hint()}"
            ),
        )
        LOG.info(
            "rabbitmq: started on %s:%d in %.1f s", HOST, ports.amqp, time.monotonic() - started
        )
    else:
        LOG.info("rabbitmq: running on %s:%d", HOST, ports.amqp)

    if _management_status(ports, password) is None:
        if not _management_enabled():
            _ensure_epmd()
            # The plugin reads its listener at start: bind it to loopback before enabling it.
            _rabbitmqctl(
                "eval",
                "application:set_env(rabbitmq_management, tcp_config, "
                f'[{{ip, "{HOST}"}}, {{port, {ports.rabbitmq_management}}}]).',
            )
            _run(
                ["rabbitmq-plugins", "enable", "rabbitmq_management"],
                what="rabbitmq",
                env=_erl_env(),
            )
            _configure_management_listener(ports)
            LOG.info("rabbitmq: enabled the management plugin")
        _wait_until(
            lambda: _management_status(ports, password) is not None,
            _MANAGEMENT_TIMEOUT,
            lambda: (
                f"rabbitmq: the management API did not answer on "
                f"http://{HOST}:{ports.rabbitmq_management} within {_MANAGEMENT_TIMEOUT:.0f} s; "
                f"see {_rabbitmq_log_hint()}"
            ),
        )

    if _management_enabled():
        _configure_management_listener(ports)
    if _management_status(ports, password) != 200:
        _reset_rabbitmq_user(password)
        status = _management_status(ports, password)
        if status != 200:
            raise InfraError(
                f"rabbitmq: user {RABBITMQ_USER} still cannot log in to the management API "
                f"(HTTP {status}); see {_rabbitmq_log_hint()}"
            )
    _wait_until(
        lambda: _amqp_login(ports, password),
        _MANAGEMENT_TIMEOUT,
        lambda: (
            f"rabbitmq: user {RABBITMQ_USER} cannot open an AMQP connection on "
            f"{HOST}:{ports.amqp}; see {_rabbitmq_log_hint()}"
        ),
    )
    LOG.info(
        "rabbitmq: management UI http://%s:%d (user %s)",
        HOST,
        ports.rabbitmq_management,
        RABBITMQ_USER,
    )


def _amqp_login(ports: Ports, password: str) -> bool:
    """True when ``pantheon`` can open an AMQP connection on the default virtual host."""
    parameters = pika.ConnectionParameters(
        host=HOST,
        port=ports.amqp,
        virtual_host="/",
        credentials=pika.PlainCredentials(RABBITMQ_USER, password),
        connection_attempts=1,
        socket_timeout=5,
        blocked_connection_timeout=5,
    )
    try:
        connection = pika.BlockingConnection(parameters)
    except pika.exceptions.AMQPError:
        return False
    connection.close()
    return True


def _reset_rabbitmq_user(password: str) -> None:
    _ensure_epmd()
    # The password goes through stdin, never on a command line.
    added = _rabbitmqctl("add_user", RABBITMQ_USER, stdin=password + "\n", check=False)
    if added.returncode == 0:
        LOG.info("rabbitmq: created administrator %s", RABBITMQ_USER)
    elif "already exists" in (added.stdout + added.stderr):
        _rabbitmqctl("change_password", RABBITMQ_USER, stdin=password + "\n")
        LOG.info("rabbitmq: reset the password of %s", RABBITMQ_USER)
    else:
        raise InfraError(
            f"rabbitmq: `rabbitmqctl add_user {RABBITMQ_USER}` failed: "
            f"{(added.stderr or added.stdout).strip()[-800:]}"
        )
    _rabbitmqctl("set_user_tags", RABBITMQ_USER, "administrator")
    _rabbitmqctl("set_permissions", "-p", "/", RABBITMQ_USER, ".*", ".*", ".*")


# --------------------------------------------------------------------------- MariaDB


def _mysql_login(ports: Ports, password: str) -> int:
    """0 when ``pantheon`` logs in over TCP, else the MySQL error code (2003: no server)."""
    try:
        connection = pymysql.connect(
            host=HOST, port=ports.mysql, user=MYSQL_USER, password=password, connect_timeout=5
        )
    except pymysql.err.MySQLError as exc:
        return exc.args[0] if exc.args and isinstance(exc.args[0], int) else -1
    connection.close()
    return 0


def _mysql_admin(infra: Endpoints) -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
    parts = urlsplit(infra.mysql_url)
    return pymysql.connect(
        host=parts.hostname or HOST,
        port=parts.port or 3306,
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        autocommit=True,
        connect_timeout=10,
    )


def _plain_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_]{1,64}", name):
        raise ValueError(f"not a plain database name: {name!r}")
    return name


def create_mysql_database(infra: Endpoints, name: str, *, fresh: bool = False) -> str:
    """Create the utf8mb4 database ``name`` on the harness's MariaDB if it is missing (dropped
    first when ``fresh``); its URL for the ``pantheon`` user."""
    with _mysql_admin(infra) as connection, connection.cursor() as cursor:
        if fresh:
            cursor.execute(f"DROP DATABASE IF EXISTS `{_plain_name(name)}`")
        cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{_plain_name(name)}` CHARACTER SET utf8mb4")
    return f"{infra.mysql_url}/{name}?charset=utf8mb4"


def drop_mysql_database(infra: Endpoints, name: str) -> None:
    """Drop the database ``name`` (missing is fine)."""
    with _mysql_admin(infra) as connection, connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{_plain_name(name)}`")


@contextlib.contextmanager
def scratch_mysql_database(infra: Endpoints, prefix: str) -> Iterator[str]:
    """A new database ``<prefix>_<hex>`` for a test or a benchmark, dropped afterwards; its URL."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    url = create_mysql_database(infra, name, fresh=True)
    try:
        yield url
    finally:
        drop_mysql_database(infra, name)


def _ensure_mariadb(ports: Ports, password: str, install: bool) -> None:
    if _port_open(ports.mysql) and _mysql_login(ports, password) == 0:
        LOG.info("mariadb: running on %s:%d", HOST, ports.mysql)
        return
    if not _port_open(ports.mysql):
        _start_mariadb(ports, install)
    else:
        LOG.info("mariadb: running on %s:%d", HOST, ports.mysql)
    code = _mysql_login(ports, password)
    if code != 0:
        _provision_mysql_user(ports, password)
        code = _mysql_login(ports, password)
        if code != 0:
            raise InfraError(
                f"mariadb: user {MYSQL_USER} cannot log in over TCP even after "
                f"provisioning (MySQL error {code}); see {_MARIADB_LOG}"
            )


def stop_mariadb(ports: Ports | None = None) -> None:
    """Stop the system MariaDB the way an operator or a crash would (for outage tests).

    SIGTERM to the server listening on the MySQL port, then wait until the port is closed.
    `ensure_infra` starts it again.
    """
    ports = ports or Ports.from_env()
    pids = _stop_server(
        "mariadb",
        ports.mysql,
        lambda cmdline: "mariadbd" in cmdline or "mysqld" in cmdline,
        _MARIADB_START_TIMEOUT,
    )
    LOG.info("mariadb: stopped pid %s", ", ".join(map(str, pids)))


def _start_mariadb(ports: Ports, install: bool) -> None:
    if not _MARIADBD.exists():
        _Apt.install("mariadb", ["mariadb-server", "mariadb-client"], install)
    if not _is_root():
        raise InfraError(
            f"mariadb: not running on {HOST}:{ports.mysql} and only root can "
            "start the system server"
        )
    for directory in (_MARIADB_RUN_DIR, _MARIADB_LOG.parent):
        directory.mkdir(parents=True, exist_ok=True)
        _chown(directory, "mysql")
    if not (_MARIADB_DATADIR / "mysql").is_dir():
        LOG.info("mariadb: initialising %s", _MARIADB_DATADIR)
        _MARIADB_DATADIR.mkdir(parents=True, exist_ok=True)
        _chown(_MARIADB_DATADIR, "mysql")
        _run(
            [
                "mariadb-install-db",
                "--user=mysql",
                f"--datadir={_MARIADB_DATADIR}",
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
            ],
            what="mariadb",
            timeout=120,
        )
    started = time.monotonic()
    _run(
        [
            "start-stop-daemon",
            "--start",
            "--oknodo",
            "--background",
            "--exec",
            str(_MARIADBD),
            "--",
            "--user=mysql",
            f"--bind-address={HOST}",
            f"--port={ports.mysql}",
            f"--log-error={_MARIADB_LOG}",
        ],
        what="mariadb",
        timeout=60,
    )
    _wait_until(
        lambda: _port_open(ports.mysql),
        _MARIADB_START_TIMEOUT,
        lambda: (
            f"mariadb: did not answer on {HOST}:{ports.mysql} within "
            f"{_MARIADB_START_TIMEOUT:.0f} s; see {_MARIADB_LOG}{_tail(_MARIADB_LOG, 4)}"
        ),
    )
    LOG.info("mariadb: started on %s:%d in %.1f s", HOST, ports.mysql, time.monotonic() - started)


def _provision_mysql_user(ports: Ports, password: str) -> None:
    statements = []
    for host in (HOST, "localhost"):
        account = f"'{MYSQL_USER}'@'{host}'"
        statements += [
            f"CREATE USER IF NOT EXISTS {account} IDENTIFIED BY '{password}';",
            f"ALTER USER {account} IDENTIFIED BY '{password}';",
            f"GRANT ALL PRIVILEGES ON *.* TO {account} WITH GRANT OPTION;",
        ]
    statements.append("FLUSH PRIVILEGES;")
    sql = "\n".join(statements) + "\n"
    errors: list[str] = []
    # 1. OS root over the unix socket (Debian's root account uses unix_socket authentication).
    client = shutil.which("mariadb") or shutil.which("mysql")
    if client is not None:
        result = _run(
            [client, "--protocol=socket", "-u", "root"],
            what="mariadb",
            stdin=sql,
            check=False,
            timeout=60,
        )
        if result.returncode == 0:
            LOG.info("mariadb: provisioned user %s", MYSQL_USER)
            return
        errors.append(f"socket: {result.stderr.strip()[-400:]}")
    # 2. Machines where root has an empty password over TCP.
    try:
        connection = pymysql.connect(
            host=HOST,
            port=ports.mysql,
            user="root",
            password="",
            connect_timeout=5,
            autocommit=True,
        )
    except pymysql.err.MySQLError as exc:
        errors.append(f"tcp root: {exc}")
    else:
        with connection, connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
        LOG.info("mariadb: provisioned user %s", MYSQL_USER)
        return
    raise InfraError(
        f"mariadb: could not create user {MYSQL_USER} as root ({'; '.join(errors)}); "
        f"see {_MARIADB_LOG}"
    )


# --------------------------------------------------------------------------- Mosquitto


def _mqtt_handshake(port: int, host: str = HOST, timeout: float = 1.0) -> bool:
    """A raw MQTT 3.1.1 CONNECT; true when the broker accepts it (CONNACK return code 0)."""
    client_id = f"pantheon-infra-{secrets.token_hex(4)}".encode()
    variable = b"\x00\x04MQTT\x04\x02\x00\x0a"
    payload = len(client_id).to_bytes(2, "big") + client_id
    body = variable + payload
    packet = b"\x10" + bytes([len(body)]) + body
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(packet)
            reply = b""
            while len(reply) < 4:
                chunk = sock.recv(4 - len(reply))
                if not chunk:
                    return False
                reply += chunk
            with contextlib.suppress(OSError):
                sock.sendall(b"\xe0\x00")  # DISCONNECT
    except OSError:
        return False
    return reply[0] == 0x20 and reply[3] == 0


def _private_log(path: Path) -> None:
    """Create ``path`` (or keep it) readable and writable by its owner only (0600)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
    except PermissionError as exc:  # another user's file: the server still starts
        LOG.warning("cannot make %s private (0600): %s", path, exc)


def mosquitto_paths(run_dir: Path) -> dict[str, Path]:
    """Files of the owned Mosquitto instance."""
    base = run_dir / "mosquitto"
    return {
        "dir": base,
        "data": base / "data",
        "conf": base / "mosquitto.conf",
        "log": base / "mosquitto.log",
        "pid": base / "mosquitto.pid",
    }


def render_mosquitto_conf(template: str, run_dir: Path, port: int) -> str:
    """The repository's config with the listener, persistence path, log and pid file local."""
    paths = mosquitto_paths(run_dir)
    out: list[str] = []
    seen_listener = False
    for line in template.splitlines():
        stripped = line.strip()
        if re.fullmatch(r"listener\s+1883(\s+\S+)?", stripped):
            out.append(f"listener {port} {HOST}")
            seen_listener = True
        elif stripped.startswith("persistence_location"):
            out.append(f"persistence_location {paths['data']}/")
        elif re.fullmatch(r"log_dest\s+stdout", stripped):
            out.append(f"log_dest file {paths['log']}")
        elif stripped.startswith("pid_file"):
            continue
        else:
            out.append(line)
    if not seen_listener:
        raise InfraError("mosquitto: infra/mosquitto/mosquitto.conf has no `listener 1883` line")
    # Run as the harness's own user: started as root, mosquitto would otherwise drop to user
    # `mosquitto`, which cannot enter a checkout under a private directory (mktemp -d is 0700).
    user = pwd.getpwuid(os.geteuid()).pw_name
    out.insert(
        0,
        f"# rendered by pantheon-infra from infra/mosquitto/mosquitto.conf\n"
        f"pid_file {paths['pid']}\nuser {user}",
    )
    return "\n".join(out) + "\n"


def _ensure_mosquitto(run_dir: Path, ports: Ports, install: bool) -> int:
    paths = mosquitto_paths(run_dir)
    template_path = find_repo_root() / "infra" / "mosquitto" / "mosquitto.conf"
    try:
        template = template_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InfraError(
            f"mosquitto: cannot read the config template {template_path}: {exc}"
        ) from None
    conf = render_mosquitto_conf(template, run_dir, ports.mqtt)
    paths["dir"].mkdir(parents=True, exist_ok=True)
    old_conf = paths["conf"].read_text(encoding="utf-8") if paths["conf"].is_file() else None

    pid = _owned_pid(paths["pid"], str(paths["conf"]))
    if pid is not None:
        if old_conf == conf and _mqtt_handshake(ports.mqtt):
            LOG.info("mosquitto: running on %s:%d (pid %d)", HOST, ports.mqtt, pid)
            return pid
        reason = "config changed" if old_conf != conf else "not answering"
        LOG.info("mosquitto: restarting pid %d (%s)", pid, reason)
        _terminate(pid, "mosquitto")
    if _port_open(ports.mqtt):
        _evict_other_harness(ports.mqtt, "mosquitto", _is_harness_mosquitto)
    if _port_open(ports.mqtt):
        raise InfraError(
            f"mosquitto: port {HOST}:{ports.mqtt} is taken by a process the harness "
            "does not own; free it or set PANTHEON_INFRA_MQTT_PORT"
        )
    if not _MOSQUITTO.exists():
        _Apt.install("mosquitto", ["mosquitto", "mosquitto-clients"], install)

    paths["data"].mkdir(parents=True, exist_ok=True)
    _private_log(paths["log"])
    for path in (paths["dir"], paths["data"], paths["log"]):
        _chown(path, "mosquitto")
    for existing in paths["data"].iterdir():
        _chown(existing, "mosquitto")
    paths["conf"].write_text(conf, encoding="utf-8")
    with contextlib.suppress(FileNotFoundError):
        paths["pid"].unlink()

    started = time.monotonic()
    _run([str(_MOSQUITTO), "-d", "-c", str(paths["conf"])], what="mosquitto", timeout=30)
    _wait_until(
        lambda: _mqtt_handshake(ports.mqtt),
        _MOSQUITTO_START_TIMEOUT,
        lambda: (
            f"mosquitto: did not accept an MQTT connection on {HOST}:{ports.mqtt} within "
            f"{_MOSQUITTO_START_TIMEOUT:.0f} s; see {paths['log']}{_tail(paths['log'], 4)}"
        ),
    )
    pid = _owned_pid(paths["pid"], str(paths["conf"]))
    if pid is None:
        raise InfraError(
            f"mosquitto: started but wrote no pid to {paths['pid']}; see {paths['log']}"
        )
    LOG.info(
        "mosquitto: started on %s:%d (pid %d) in %.2f s",
        HOST,
        ports.mqtt,
        pid,
        time.monotonic() - started,
    )
    return pid


# --------------------------------------------------------------------------- MongoDB protocol


def _mongo_ping(url: str, timeout: float = 1.0) -> bool:
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
        url, serverSelectionTimeoutMS=int(timeout * 1000), connectTimeoutMS=int(timeout * 1000)
    )
    try:
        client.admin.command("ping")
    except pymongo.errors.PyMongoError:
        return False
    finally:
        client.close()
    return True


def mongo_paths(run_dir: Path) -> dict[str, Path]:
    """Files of the owned nx-27017 instance."""
    base = run_dir / "mongo"
    return {
        "dir": base,
        "data": base / "data",
        "log": base / "nx-27017.log",
        "out": base / "nx-27017.out",
        "pid": base / "nx-27017.pid",
    }


def _nx_executable() -> str:
    beside = Path(sys.executable).parent / "nx-27017"
    if beside.exists():
        return str(beside)
    found = shutil.which("nx-27017")
    if found is None:
        raise InfraError("mongo: the nx-27017 console script is missing (uv sync installs it)")
    return found


def _ensure_mongo(run_dir: Path, ports: Ports) -> str:
    external = os.environ.get("MONGO_URL", "").strip()
    if external:
        if not _mongo_ping(external, timeout=5.0):
            raise InfraError("mongo: MONGO_URL is set but the server there does not answer ping")
        LOG.info("mongo: using MONGO_URL (answers ping)")
        return external

    url = f"mongodb://{HOST}:{ports.mongo}"
    paths = mongo_paths(run_dir)
    pid = _owned_pid(paths["pid"], str(paths["data"]))
    if pid is not None:
        if _mongo_ping(url):
            LOG.info("mongo: nx-27017 running on %s:%d (pid %d)", HOST, ports.mongo, pid)
            return url
        LOG.info("mongo: restarting nx-27017 pid %d (not answering)", pid)
        _terminate(pid, "mongo")
    if _port_open(ports.mongo):
        _evict_other_harness(ports.mongo, "mongo", _is_harness_nx)
    if _port_open(ports.mongo):
        raise InfraError(
            f"mongo: port {HOST}:{ports.mongo} is taken by a process the harness does not own; "
            f"set MONGO_URL=mongodb://{HOST}:{ports.mongo} to use it, or PANTHEON_INFRA_MONGO_PORT"
        )
    paths["data"].mkdir(parents=True, exist_ok=True)
    # A pid file left by a killed server makes nx-27017 refuse to start.
    with contextlib.suppress(FileNotFoundError):
        paths["pid"].unlink()
    started = time.monotonic()
    _private_log(paths["log"])  # nx-27017 appends to it
    _private_log(paths["out"])
    with open(paths["out"], "ab") as out:
        child = subprocess.Popen(
            [
                _nx_executable(),
                "--data-dir",
                str(paths["data"]),
                "--host",
                HOST,
                "-p",
                str(ports.mongo),
                "--log-file",
                str(paths["log"]),
                "--pid-file",
                str(paths["pid"]),
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=paths["dir"],
            start_new_session=True,
        )
    _CHILDREN[child.pid] = child

    def exited() -> str | None:
        code = child.poll()
        if code is None:
            return None
        return (
            f"mongo: nx-27017 exited with code {code} while starting; see {paths['log']} "
            f"and {paths['out']}{_tail(paths['out'], 4)}"
        )

    _wait_until(
        lambda: _mongo_ping(url, timeout=0.5),
        _MONGO_START_TIMEOUT,
        lambda: (
            f"mongo: nx-27017 did not answer ping on {HOST}:{ports.mongo} within "
            f"{_MONGO_START_TIMEOUT:.0f} s; see {paths['log']}"
        ),
        abort=exited,
    )
    if not paths["pid"].is_file():
        paths["pid"].write_text(f"{child.pid}\n", encoding="ascii")
    LOG.info(
        "mongo: started nx-27017 on %s:%d (pid %d) in %.2f s",
        HOST,
        ports.mongo,
        child.pid,
        time.monotonic() - started,
    )
    return url


# --------------------------------------------------------------------------- public API


def ensure_infra(run_dir: Path | None = None, *, install: bool = True) -> Endpoints:
    """Make RabbitMQ, MariaDB, Mosquitto and a MongoDB-protocol server answer; return them.

    Idempotent and quick when everything already runs. ``install=False`` refuses to run
    ``apt-get``. Raises `InfraError` naming the server (and its log) that cannot be made
    available. Also writes ``run_dir/infra.env`` (mode 0600).
    """
    run_dir = (run_dir or default_run_dir()).resolve()
    _prepare_run_dir(run_dir)
    ports = Ports.from_env()
    started = time.monotonic()
    with _run_dir_lock(run_dir):
        values = load_secrets(run_dir)
        rabbit_pw, mysql_pw = values[_RABBIT_PW_KEY], values[_MYSQL_PW_KEY]
        _ensure_rabbitmq(ports, rabbit_pw, install)
        _ensure_mariadb(ports, mysql_pw, install)
        _ensure_mosquitto(run_dir, ports, install)
        mongo_url = _ensure_mongo(run_dir, ports)
        endpoints = Endpoints(
            amqp_url=f"amqp://{RABBITMQ_USER}:{quote(rabbit_pw, safe='')}@{HOST}:{ports.amqp}/%2F",
            rabbitmq_management_url=f"http://{HOST}:{ports.rabbitmq_management}",
            rabbitmq_user=RABBITMQ_USER,
            rabbitmq_password=rabbit_pw,
            mqtt_host=HOST,
            mqtt_port=ports.mqtt,
            mongo_url=mongo_url,
            mysql_url=(
                f"mysql+pymysql://{MYSQL_USER}:{quote(mysql_pw, safe='')}@{HOST}:{ports.mysql}"
            ),
        )
        _write_env_file(run_dir, endpoints)
    LOG.info(
        "infra: ready in %.2f s; settings in %s", time.monotonic() - started, run_dir / ENV_FILE
    )
    return endpoints


def stop_owned(run_dir: Path | None = None) -> list[str]:
    """Stop the servers the harness owns (Mosquitto, nx-27017); returns what was stopped."""
    run_dir = (run_dir or default_run_dir()).resolve()
    stopped: list[str] = []
    if not run_dir.is_dir():
        return stopped
    with _run_dir_lock(run_dir):
        for name, pid_file, marker in (
            ("mosquitto", mosquitto_paths(run_dir)["pid"], str(mosquitto_paths(run_dir)["conf"])),
            ("mongo", mongo_paths(run_dir)["pid"], str(mongo_paths(run_dir)["data"])),
        ):
            pid = _owned_pid(pid_file, marker)
            if pid is not None:
                _terminate(pid, name)
                LOG.info("%s: stopped pid %d", name, pid)
                stopped.append(f"{name} (pid {pid})")
            with contextlib.suppress(FileNotFoundError):
                pid_file.unlink()
    return stopped


def infra_status(run_dir: Path | None = None) -> list[ServiceStatus]:
    """What answers where, without starting anything."""
    run_dir = (run_dir or default_run_dir()).resolve()
    ports = Ports.from_env()
    secrets_file = secrets_path(run_dir)
    values = _parse_env_file(secrets_file)
    rows: list[ServiceStatus] = []

    management = _management_status(ports, values.get(_RABBIT_PW_KEY, ""))
    mgmt_text = (
        "not answering"
        if management is None
        else "ok"
        if management == 200
        else f"HTTP {management} for {RABBITMQ_USER}"
    )
    rows.append(
        ServiceStatus(
            "rabbitmq",
            f"{HOST}:{ports.amqp}",
            _port_open(ports.amqp),
            "system service",
            f"UI http://{HOST}:{ports.rabbitmq_management} ({mgmt_text}); user {RABBITMQ_USER}, "
            f"password in {secrets_file}",
        )
    )
    rows.append(
        ServiceStatus(
            "mariadb",
            f"{HOST}:{ports.mysql}",
            _port_open(ports.mysql),
            "system service",
            f"user {MYSQL_USER}, password in {secrets_file}",
        )
    )
    mqtt_pid = _owned_pid(mosquitto_paths(run_dir)["pid"], str(mosquitto_paths(run_dir)["conf"]))
    rows.append(
        ServiceStatus(
            "mosquitto",
            f"{HOST}:{ports.mqtt}",
            _mqtt_handshake(ports.mqtt),
            f"owned (pid {mqtt_pid})" if mqtt_pid else "not owned",
            f"log {mosquitto_paths(run_dir)['log']}",
        )
    )
    external = os.environ.get("MONGO_URL", "").strip()
    if external:
        rows.append(ServiceStatus("mongo", "MONGO_URL", _mongo_ping(external), "external"))
    else:
        mongo_pid = _owned_pid(mongo_paths(run_dir)["pid"], str(mongo_paths(run_dir)["data"]))
        rows.append(
            ServiceStatus(
                "mongo",
                f"{HOST}:{ports.mongo}",
                _mongo_ping(f"mongodb://{HOST}:{ports.mongo}"),
                f"owned nx-27017 (pid {mongo_pid})" if mongo_pid else "not owned",
                f"log {mongo_paths(run_dir)['log']}",
            )
        )
    return rows


def read_env_file(run_dir: Path | None = None) -> dict[str, str]:
    """The settings written by the last `ensure_infra` (empty when there is none)."""
    return _parse_env_file((run_dir or default_run_dir()).resolve() / ENV_FILE)
