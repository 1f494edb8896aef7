"""A printer's MQTT endpoint: a private mosquitto (TLS 1.2, bblp + code) and the sim's link.

Each printer gets its own mosquitto process with two listeners (``per_listener_settings``):
the printer-facing TLS listener (password file with ``bblp``, an ACL that only lets ``bblp``
read ``device/+/report`` and write ``device/+/request``, a connection cap) and a unix socket
that only the simulator uses. TLS is capped at 1.2 through a private OpenSSL config, because
mosquitto 2.0's ``tls_version tlsv1.2`` is a floor, not a cap. The broker's notice log is
published on ``$SYS/broker/log/N``; the simulator reads it to see clients (re)connect.

P1/A1 drop a client that subscribes to a request topic (protocol doc 11.4). The ACL refuses
the subscription; for those models the broker also logs subscriptions (``$SYS/broker/log/M/
subscribe``), and the simulator then connects on its own socket with the offender's client id:
the broker closes the older connection with that id (MQTT session takeover), and the
simulator's stand-in disconnects at once.
"""

import contextlib
import json
import logging
import os
import pwd
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from pantheon_sim.bambu.tls_gate import Tls13Gate

log = logging.getLogger(__name__)

MOSQUITTO = os.environ.get("BAMBU_SIM_MOSQUITTO", "/usr/sbin/mosquitto")
MOSQUITTO_PASSWD = os.environ.get("BAMBU_SIM_MOSQUITTO_PASSWD", "/usr/bin/mosquitto_passwd")

_OPENSSL_CNF = """\
# bambu-sim: the printers speak TLS 1.2 only (bambu-lan-protocol.md 2.2)
openssl_conf = default_conf
[default_conf]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
MinProtocol = TLSv1.2
MaxProtocol = TLSv1.2
"""


class BrokerError(Exception):
    """A printer's mosquitto could not be configured or started."""


@dataclass(frozen=True)
class BrokerSettings:
    """What one printer's broker needs."""

    name: str
    host: str
    port: int
    cert_file: Path
    key_file: Path
    access_code: str
    topic_prefix: str
    max_clients: int
    directory: Path
    """Where config, password file, ACL and log live."""
    drop_request_subscribers: bool = False
    """P1/A1: a client that subscribes to a ``device/+/request`` topic loses its connection."""
    tls13_hangs: bool = False
    """P2S: a ClientHello offering TLS 1.3 is never answered (tls_gate.py)."""
    drop_oldest_client: bool = False
    """Past ``max_clients``, let the newcomer in and drop the oldest client (protocol doc 2.4:
    "an existing client ... gets dropped"); default: refuse the newcomer."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now on ``host`` (for brokers that need a port up front)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class MosquittoBroker:
    """One private mosquitto process; start/stop/restart, never orphaned on a clean exit."""

    def __init__(self, settings: BrokerSettings, socket_dir: Path) -> None:
        self.settings = settings
        self.socket_path = socket_dir / f"{settings.name}.sock"
        self._dir = settings.directory
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        # With the TLS 1.3 gate, mosquitto's TLS listener moves to a loopback port behind it.
        self.tls_host, self.tls_port = settings.host, settings.port
        self._gate: Tls13Gate | None = None
        if settings.tls13_hangs:
            self.tls_host, self.tls_port = "127.0.0.1", free_port("127.0.0.1")
            self._gate = Tls13Gate(
                settings.host, settings.port, (self.tls_host, self.tls_port), settings.name
            )

    @property
    def pid_file(self) -> Path:
        return self._dir / "mosquitto.pid"

    def write_config(self) -> Path:
        s = self.settings
        self._dir.mkdir(parents=True, exist_ok=True)
        passwd = self._dir / "passwd"
        passwd.unlink(missing_ok=True)
        try:
            subprocess.run(
                [MOSQUITTO_PASSWD, "-c", "-b", str(passwd), "bblp", s.access_code],
                check=True,
                capture_output=True,
                timeout=10,
            )
        except (OSError, subprocess.SubprocessError) as err:
            raise BrokerError(f"mosquitto_passwd failed for {s.name}: {err}") from err
        acl = self._dir / "acl"
        acl.write_text(
            "user bblp\n"
            f"topic read {s.topic_prefix}device/+/report\n"
            f"topic write {s.topic_prefix}device/+/request\n"
        )
        (self._dir / "openssl.cnf").write_text(_OPENSSL_CNF)
        user = pwd.getpwuid(os.getuid()).pw_name
        conf = self._dir / "mosquitto.conf"
        conf.write_text(
            f"""\
# bambu-sim printer {s.name}: generated, rewritten on every start
per_listener_settings true
persistence false
user {user}
log_dest topic
log_dest file {self._dir / "mosquitto.log"}
log_type error
log_type warning
log_type notice
{"log_type subscribe" if s.drop_request_subscribers else "# subscriptions not logged"}
max_queued_messages 10000

# the simulator's own link
listener 0 {self.socket_path}
allow_anonymous true

# the printer's face: MQTT 3.1.1 over TLS, bblp + access code
listener {self.tls_port} {self.tls_host}
certfile {s.cert_file}
keyfile {s.key_file}
tls_version tlsv1.2
allow_anonymous false
password_file {passwd}
acl_file {acl}
max_connections {s.max_clients + 1 if s.drop_oldest_client else s.max_clients}
"""
        )
        return conf

    def start(self, timeout_s: float = 10.0) -> None:
        """Start the process and wait until both listeners accept connections."""
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                return
            conf = self._dir / "mosquitto.conf"
            if not conf.is_file():
                conf = self.write_config()
            self.socket_path.unlink(missing_ok=True)
            env = dict(os.environ, OPENSSL_CONF=str(self._dir / "openssl.cnf"))
            err_log = (self._dir / "mosquitto.stderr").open("ab")
            try:
                self._proc = subprocess.Popen(
                    [MOSQUITTO, "-c", str(conf)],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=err_log,
                    stderr=err_log,
                    start_new_session=True,
                )
            except OSError as err:
                raise BrokerError(f"cannot run {MOSQUITTO}: {err}") from err
            finally:
                err_log.close()
            self.pid_file.write_text(f"{self._proc.pid}\n")
            proc = self._proc
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BrokerError(
                    f"mosquitto for printer {self.settings.name} exited ({proc.returncode}); "
                    f"see {self._dir / 'mosquitto.log'}"
                )
            if self.socket_path.exists() and _tcp_open(_probe_host(self.tls_host), self.tls_port):
                if self._gate is not None:
                    self._gate.start()
                return
            time.sleep(0.02)
        self.stop()
        raise BrokerError(f"mosquitto for printer {self.settings.name} did not start in time")

    def stop(self) -> None:
        """Terminate the process group; kill it if it lingers."""
        if self._gate is not None:
            self._gate.stop()
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        self.pid_file.unlink(missing_ok=True)
        self.socket_path.unlink(missing_ok=True)

    @property
    def tls13_held(self) -> int | None:
        """TLS 1.3 ClientHellos left unanswered so far; None without the P2S gate."""
        return None if self._gate is None else self._gate.held

    @property
    def running(self) -> bool:
        proc = self._proc
        return proc is not None and proc.poll() is None

    @staticmethod
    def kill_stale(directory: Path) -> None:
        """Kill a mosquitto a crashed earlier run left behind in ``directory``."""
        pid_file = directory / "mosquitto.pid"
        try:
            pid = int(pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return
        if str(directory / "mosquitto.conf").encode() in cmdline:
            log.warning("killing stale mosquitto %d from an earlier run", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        pid_file.unlink(missing_ok=True)


def _probe_host(host: str) -> str:
    """Where to check a listener bound to ``host``: loopback for a wildcard address."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104


def _tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


RequestHandler = Callable[[dict[str, Any]], None]


class MqttEndpoint:
    """The broker plus the simulator's client on its unix socket."""

    def __init__(
        self,
        settings: BrokerSettings,
        serial: str,
        socket_dir: Path,
        on_request: RequestHandler,
        on_client_connected: Callable[[], None],
    ) -> None:
        self.broker = MosquittoBroker(settings, socket_dir)
        self.serial = serial
        prefix = settings.topic_prefix
        self.report_topic = f"{prefix}device/{serial}/report"
        self.request_topic = f"{prefix}device/{serial}/request"
        self._on_request = on_request
        self._on_client_connected = on_client_connected
        self._clients: list[str] = []
        """bblp clients connected now, oldest first (from the broker's notice log)."""
        self._clients_lock = threading.Lock()
        self._connected = threading.Event()
        self._client_id = f"bambu-sim-{serial}"
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self._client_id,
            transport="unix",
            protocol=paho.MQTTv311,
        )
        self._client.reconnect_delay_set(1, 2)
        self._client.on_connect = self._handle_connect
        self._client.on_disconnect = self._handle_disconnect
        self._client.on_message = self._handle_message
        self._started = False

    def start(self) -> None:
        MosquittoBroker.kill_stale(self.broker.settings.directory)
        self.broker.write_config()
        self.broker.start()
        self._client.connect_async(str(self.broker.socket_path), 1, keepalive=30)
        self._client.loop_start()
        self._started = True
        if not self._connected.wait(10):
            raise BrokerError(f"simulator could not reach its broker for {self.serial}")

    def stop(self) -> None:
        if self._started:
            self._client.disconnect()
            self._client.loop_stop()
            self._started = False
        self.broker.stop()

    def drop_connections(self, offline_s: float) -> None:
        """Every client loses its connection (the broker restarts after ``offline_s``)."""
        log.info("printer %s: dropping MQTT connections for %.1f s", self.serial, offline_s)
        self._connected.clear()
        self.broker.stop()
        if offline_s > 0:
            time.sleep(offline_s)
        self.broker.start()
        self._connected.wait(10)

    def publish(self, payload: dict[str, Any]) -> None:
        """Reports at QoS 0, pretty-printed like the firmware (section 3)."""
        if not self._connected.is_set():
            return
        self._client.publish(self.report_topic, json.dumps(payload, indent=4), qos=0)

    # paho callbacks (network thread): never raise
    def _handle_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.warning("printer %s: internal broker link refused: %s", self.serial, reason)
            return
        topics = [(self.request_topic, 1), ("$SYS/broker/log/N", 0)]
        if self.broker.settings.drop_request_subscribers:
            topics.append((_SUBSCRIBE_LOG, 0))
        client.subscribe(topics)
        self._connected.set()

    def _handle_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connected.clear()

    def _handle_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        try:
            if msg.topic == _SUBSCRIBE_LOG:
                self._check_subscription(msg.payload.decode("utf-8", errors="replace"))
                return
            if msg.topic.startswith("$SYS/"):
                text = msg.payload.decode("utf-8", errors="replace")
                self._follow_clients(text)
                if "New client connected" in text and "u'bblp'" in text:
                    self._on_client_connected()
                return
            try:
                payload = json.loads(msg.payload.decode("utf-8", errors="replace"))
            except ValueError:
                log.info("printer %s: ignoring a request that is not JSON", self.serial)
                return
            if isinstance(payload, dict):
                self._on_request(payload)
        except Exception:
            log.exception("printer %s: request handling failed", self.serial)

    @property
    def clients(self) -> list[str]:
        """Client ids of the printer's MQTT clients now, oldest first."""
        with self._clients_lock:
            return list(self._clients)

    def _follow_clients(self, line: str) -> None:
        """Keep the list of connected clients from the broker's notice log; past the cap in
        drop-oldest mode, drop the oldest."""
        _, _, text = line.partition(": ")
        oldest: str | None = None
        with self._clients_lock:
            if text.startswith("New client connected") and "u'bblp'" in text:
                client_id = _connected_id(text)
                if client_id is not None:
                    if client_id in self._clients:
                        self._clients.remove(client_id)
                    self._clients.append(client_id)
                    if (
                        self.broker.settings.drop_oldest_client
                        and len(self._clients) > self.broker.settings.max_clients
                    ):
                        oldest = self._clients.pop(0)
            else:
                for client_id in list(self._clients):
                    if _says_gone(text, client_id):
                        self._clients.remove(client_id)
        if oldest is not None:
            self._drop_client(oldest, "the client cap was reached: dropping the oldest")

    def _check_subscription(self, line: str) -> None:
        """``<time>: <client id> <qos> <topic>``: a client other than the simulator that
        subscribed to a request topic is dropped."""
        client_id, _, topic = _parse_subscribe_log(line)
        if client_id is None or client_id == self._client_id:
            return
        prefix = self.broker.settings.topic_prefix
        if not (topic.startswith(f"{prefix}device/") and topic.endswith("/request")):
            return
        self._drop_client(client_id, f"it subscribed to {topic}")

    def _drop_client(self, client_id: str, why: str) -> None:
        """Close ``client_id``'s connection, from a thread of its own (not paho's)."""
        log.info("printer %s: dropping client %r: %s", self.serial, client_id, why)
        threading.Thread(
            target=self._take_over, args=(client_id,), name="bambu-sim-drop", daemon=True
        ).start()

    def _take_over(self, client_id: str) -> None:
        """Connect with ``client_id`` on the simulator's socket (the broker closes the client's
        own connection), then leave."""
        connected = threading.Event()
        stand_in = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            transport="unix",
            protocol=paho.MQTTv311,
        )
        stand_in.on_connect = lambda *args: connected.set()
        try:
            stand_in.connect(str(self.broker.socket_path), 1, keepalive=10)
            stand_in.loop_start()
            if not connected.wait(5):
                log.warning("printer %s: could not drop %r", self.serial, client_id)
            stand_in.disconnect()
            stand_in.loop_stop()
        except OSError as err:
            log.warning("printer %s: could not drop %r: %s", self.serial, client_id, err)


_SUBSCRIBE_LOG = "$SYS/broker/log/M/subscribe"
_GONE = ("disconnect", "closed its connection", "exceeded timeout", "closing old connection")


def _connected_id(text: str) -> str | None:
    """The client id of ``New client connected from <addr> as <id> (p2, ...).``"""
    head, sep, _ = text.rpartition(" (")
    _, as_, client_id = head.partition(" as ")
    return client_id if sep and as_ and client_id else None


def _says_gone(text: str, client_id: str) -> bool:
    """Does a notice line say ``client_id``'s connection ended (mosquitto 2.0 wording)?"""
    lowered = text.lower()
    named = any(f"{c}lient {client_id}{end}" in text for c in "Cc" for end in (" ", ",", ":", "."))
    return named and any(word in lowered for word in _GONE)


def _parse_subscribe_log(line: str) -> tuple[str | None, int, str]:
    """(client id, qos, topic) of a mosquitto subscribe log line; (None, 0, "") if it is not
    one. A client id may hold spaces; a request topic holds none."""
    _, sep, rest = line.partition(": ")
    parts = rest.rsplit(" ", 2)
    if not sep or len(parts) != 3 or not parts[1].isdigit():
        return None, 0, ""
    return parts[0], int(parts[1]), parts[2].strip()


def make_socket_dir() -> Path:
    """A short directory for unix sockets (their paths must stay under 108 bytes)."""
    return Path(tempfile.mkdtemp(prefix="bsim-"))
