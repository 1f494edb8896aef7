"""A printer's MQTT endpoint: its TLS front, a private mosquitto and the simulator's link.

Each printer gets its own mosquitto process with two unix-socket listeners
(``per_listener_settings``): the clients' one, reached only through the printer's
:class:`~pantheon_sim.bambu.mqtt_front.MqttFront` (TLS 1.2 on the printer's address and the
client cap; then mosquitto's password file with ``bblp`` and an ACL that only lets ``bblp``
read ``device/+/report`` and write ``device/+/request``), and one that only the simulator
uses. The broker's notice log is published on ``$SYS/broker/log/N``; the simulator reads it
to see clients (re)connect and leave (client ids; their addresses are the front's, see
:meth:`MosquittoBroker.peers`).

Past the client cap in drop-oldest mode, the simulator connects on its own socket with the
oldest client's id: the broker closes the older connection with that id (MQTT session
takeover), the front closes that client, and the stand-in disconnects at once.
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

from pantheon_sim.bambu.mqtt_front import FrontError, FrontSettings, MqttFront

log = logging.getLogger(__name__)

MOSQUITTO = os.environ.get("BAMBU_SIM_MOSQUITTO", "/usr/sbin/mosquitto")
MOSQUITTO_PASSWD = os.environ.get("BAMBU_SIM_MOSQUITTO_PASSWD", "/usr/bin/mosquitto_passwd")


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
    """P1/A1: a client that subscribes to a request topic loses its connection before any
    SUBACK (mqtt_front.py)."""
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
        """The simulator's own listener."""
        self.client_socket_path = socket_dir / f"{settings.name}-bblp.sock"
        """The clients' listener, behind the front."""
        self._dir = settings.directory
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._front = MqttFront(
            FrontSettings(
                name=settings.name,
                host=settings.host,
                port=settings.port,
                backend=self.client_socket_path,
                cert_file=settings.cert_file,
                key_file=settings.key_file,
                topic_prefix=settings.topic_prefix,
                # drop-oldest: the newcomer gets in, then the oldest is taken over (below)
                max_clients=settings.max_clients + 1
                if settings.drop_oldest_client
                else settings.max_clients,
                drop_request_subscribers=settings.drop_request_subscribers,
                tls13_hangs=settings.tls13_hangs,
            )
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
max_queued_messages 10000

# the simulator's own link
listener 0 {self.socket_path}
allow_anonymous true

# the printer's face, behind its TLS front (mqtt_front.py): MQTT 3.1.1, bblp + access code
listener 0 {self.client_socket_path}
allow_anonymous false
password_file {passwd}
acl_file {acl}
# no max_connections: mosquitto 2.0 ignores it on a unix socket; the front holds the cap
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
            self.client_socket_path.unlink(missing_ok=True)
            err_log = (self._dir / "mosquitto.stderr").open("ab")
            try:
                self._proc = subprocess.Popen(
                    [MOSQUITTO, "-c", str(conf)],
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
            if _unix_open(self.socket_path) and _unix_open(self.client_socket_path):
                try:
                    self._front.start()
                except FrontError as err:
                    self.stop()
                    raise BrokerError(str(err)) from err
                return
            time.sleep(0.02)
        self.stop()
        raise BrokerError(f"mosquitto for printer {self.settings.name} did not start in time")

    def stop(self) -> None:
        """Close the printer's MQTT port and every client connection, then terminate the
        broker's process group (killed if it lingers)."""
        self._front.stop()
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
        self.client_socket_path.unlink(missing_ok=True)

    @property
    def tls13_held(self) -> int | None:
        """TLS 1.3 ClientHellos left unanswered so far; None unless the printer has the P2S
        firmware behaviour."""
        return self._front.held if self.settings.tls13_hangs else None

    @property
    def dropped_subscribers(self) -> int:
        """Connections closed so far for subscribing to a request topic (P1/A1)."""
        return self._front.dropped_subscribers

    def peers(self) -> dict[str, str]:
        """Client id -> ``host:port`` of each client connected now (mosquitto only sees the
        front's unix socket)."""
        return self._front.peers()

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


def _unix_open(path: Path) -> bool:
    """Does a listener accept on the unix socket ``path``?"""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.2)
        try:
            probe.connect(str(path))
        except OSError:
            return False
        return True


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
        client.subscribe([(self.request_topic, 1), ("$SYS/broker/log/N", 0)])
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


def make_socket_dir() -> Path:
    """A short directory for unix sockets (their paths must stay under 108 bytes)."""
    return Path(tempfile.mkdtemp(prefix="bsim-"))
