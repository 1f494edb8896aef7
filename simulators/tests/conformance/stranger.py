"""Clients written the way a stranger writes them: plain ``paho-mqtt`` and ``ftplib``.

Nothing here comes from the project (no ``pantheon_sim`` import, no copy of
``ImplicitFtpsClient``). It is what someone who read a forum post and the OpenBambuAPI notes
would write against a real printer:

* MQTT: paho v2, MQTT 3.1.1, ``bblp`` + access code, TLS verifying the CA but not the host
  name (the CN is the serial, as Home Assistant does), subscribe to the report topic, send
  ``pushall``, keep one dict that ``msg: 0`` replaces and ``msg: 1`` updates. It may subscribe
  to the request topic too (many do, to "see what was sent").
* FTPS: ``ftplib.FTP_TLS`` with the TLS socket opened at connect (implicit FTPS on a port of
  its own) and the data channel resuming the control channel's TLS session (the printers'
  vsFTPd refuses anything else with ``522``; stock ``ftplib`` never resumes). Nothing else:
  no ``TYPE I`` before ``STOR`` (the transfer stays in ASCII, the FTP default), ``SIZE`` asked
  whenever it wants (also before the upload), the data socket closed after the last byte
  without a TLS close_notify (every published client does that: ``unwrap()`` hangs on the
  printers) and the final reply read. (``upload(type_i=True)`` is there for the tests about
  something else, so that they do not depend on how ASCII mode is served.)
* A ``.gcode.3mf`` built with ``zipfile`` (entries stored, so the G-code's CRLF line ends are
  bytes of the file itself) and a parser that converts every ``vt_tray`` key.

Every FTPS command and reply can be kept in a :class:`Transcript` (the password redacted).
"""

import ftplib
import hashlib
import io
import json
import socket
import ssl
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

Json = dict[str, Any]


# ----- MQTT ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """One message as it arrived (``t``: ``time.monotonic()``)."""

    t: float
    topic: str
    raw: bytes
    payload: Json

    @property
    def print(self) -> Json:
        body = self.payload.get("print")
        return body if isinstance(body, dict) else {}

    @property
    def is_report(self) -> bool:
        return self.print.get("command") == "push_status"


@dataclass
class Suback:
    mid: int
    t: float
    codes: list[int]


class StrangerMqtt:
    """A paho client for one printer; every callback is recorded with its time."""

    def __init__(
        self,
        host: str,
        port: int,
        serial: str,
        access_code: str,
        ca_file: str | None,
        *,
        topic_prefix: str = "",
    ) -> None:
        self.host, self.port = host, port
        self.report_topic = f"{topic_prefix}device/{serial}/report"
        self.request_topic = f"{topic_prefix}device/{serial}/request"
        self.received: list[Received] = []
        self.sent: list[tuple[float, str, Json]] = []
        """What we published: (time.monotonic(), topic, payload)."""
        self.connacks: list[tuple[float, str]] = []
        self.subacks: dict[int, Suback] = {}
        self.disconnects: list[tuple[float, str]] = []
        self.state: Json = {}
        """``print`` fields: a ``msg: 0`` report replaces them, anything else updates them."""
        self._seq = 20000
        self._cond = threading.Condition()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"stranger-{uuid.uuid4().hex[:10]}",
            protocol=paho.MQTTv311,
        )
        self.client.username_pw_set("bblp", access_code)
        if ca_file is None:
            self.client.tls_set(cert_reqs=ssl.CERT_NONE)
        else:
            self.client.tls_set(ca_certs=ca_file, cert_reqs=ssl.CERT_REQUIRED)
        self.client.tls_insecure_set(True)  # CN = serial, not the address we dial
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    # paho callbacks (network thread)
    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._cond:
            self.connacks.append((time.monotonic(), str(reason)))
            self._cond.notify_all()
        if not reason.is_failure:
            client.subscribe(self.report_topic)

    def _on_subscribe(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        with self._cond:
            self.subacks[mid] = Suback(
                mid, time.monotonic(), [int(rc.value) for rc in reason_codes]
            )
            self._cond.notify_all()

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._cond:
            self.disconnects.append((time.monotonic(), str(reason)))
            self._cond.notify_all()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        now = time.monotonic()
        try:
            payload = json.loads(msg.payload.decode("utf-8", errors="replace"))
        except ValueError:
            payload = {"unparsed": msg.payload.decode("utf-8", errors="replace")}
        if not isinstance(payload, dict):
            payload = {"unparsed": payload}
        item = Received(now, msg.topic, bytes(msg.payload), payload)
        with self._cond:
            body = item.print
            if item.is_report:
                if body.get("msg") == 0:
                    self.state = dict(body)
                else:
                    self.state.update(body)
            self.received.append(item)
            self._cond.notify_all()

    # what the stranger does
    def connect(self, timeout: float = 10.0) -> "StrangerMqtt":
        self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()
        self._wait(lambda: bool(self.connacks), timeout, "no CONNACK")
        if self.connacks[0][1] != "Success":
            raise ConnectionError(f"CONNACK {self.connacks[0][1]}")
        return self

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def subscribe(self, topic: str) -> int:
        result, mid = self.client.subscribe(topic)
        if result != paho.MQTT_ERR_SUCCESS or mid is None:
            raise ConnectionError(f"subscribe failed locally: {result}")
        return mid

    def send(self, subsystem: str, command: str, **params: Any) -> str:
        """Publish ``{subsystem: {sequence_id, command, **params}}``; returns the sequence_id."""
        self._seq += 1
        seq = str(self._seq)
        payload = {subsystem: {"sequence_id": seq, "command": command, **params}}
        with self._cond:
            self.sent.append((time.monotonic(), self.request_topic, payload))
        self.client.publish(self.request_topic, json.dumps(payload), qos=0)
        return seq

    def pushall(self, timeout: float = 10.0) -> Json:
        """``pushing.pushall`` and the ``msg: 0`` report it brings."""
        mark = self.mark()
        self.send("pushing", "pushall", version=1, push_target=1)
        return self.wait_for(lambda m: m.is_report and m.print.get("msg") == 0, timeout, mark).print

    def mark(self) -> int:
        """An index into :attr:`received`: wait for what arrives from now on."""
        with self._cond:
            return len(self.received)

    def wait_for(
        self, predicate: Callable[[Received], bool], timeout: float = 10.0, start: int = 0
    ) -> Received:
        """The first message from index ``start`` on that matches (AssertionError on timeout)."""
        found: list[Received] = []

        def check() -> bool:
            for item in self.received[start:]:
                if predicate(item):
                    found.append(item)
                    return True
            return False

        self._wait(check, timeout, f"no matching message in {timeout} s; state={self.state}")
        return found[0]

    def reply(self, seq: str, command: str, timeout: float = 10.0, start: int = 0) -> Json:
        """The printer's answer to our ``sequence_id``, under any subsystem key."""
        msg = self.wait_for(
            lambda m: any(
                isinstance(b, dict) and b.get("sequence_id") == seq and b.get("command") == command
                for b in m.payload.values()
            ),
            timeout,
            start,
        )
        return next(b for b in msg.payload.values() if isinstance(b, dict))

    def wait_state(self, gcode_state: str, timeout: float = 15.0, start: int = 0) -> Json:
        """Wait until the merged state says ``gcode_state``."""
        self._wait(
            lambda: self.state.get("gcode_state") == gcode_state,
            timeout,
            f"never {gcode_state}: {self.state.get('gcode_state')}",
        )
        return dict(self.state)

    def wait_disconnect(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: bool(self.disconnects), timeout)

    def _wait(self, cond: Callable[[], bool], timeout: float, why: str) -> None:
        with self._cond:
            if not self._cond.wait_for(cond, timeout):
                raise AssertionError(why)


# ----- FTPS ------------------------------------------------------------------------------


@dataclass
class Transcript:
    """FTPS control-channel lines: ``>`` sent, ``<`` received, ``data`` the data channel."""

    t0: float = field(default_factory=time.monotonic)
    lines: list[Json] = field(default_factory=list)

    def add(self, direction: str, text: str) -> None:
        self.lines.append(
            {"t": round(time.monotonic() - self.t0, 3), "dir": direction, "line": text}
        )


class StrangerFtps(ftplib.FTP_TLS):
    """Implicit FTPS with ``ftplib``: TLS from the first byte, data channel resuming the
    control channel's TLS session. Nothing else is adapted."""

    def __init__(
        self,
        ca_file: str | None,
        *,
        timeout: float = 15.0,
        transcript: Transcript | None = None,
    ) -> None:
        context = ssl.create_default_context(cafile=ca_file)
        context.check_hostname = False  # CN = serial
        if ca_file is None:
            context.verify_mode = ssl.CERT_NONE
        self.transcript = transcript
        super().__init__(context=context, timeout=timeout)

    def connect(
        self,
        host: str = "",
        port: int = 0,
        timeout: float = -999,
        source_address: tuple[str, int] | None = None,
    ) -> str:
        """Implicit FTPS: wrap the socket before the greeting, never ``AUTH TLS``."""
        self.host, self.port = host, port
        if timeout != -999:
            self.timeout = timeout
        raw = socket.create_connection((host, port), self.timeout)
        self.af = raw.family
        self.sock = self.context.wrap_socket(raw, server_hostname=host)
        self.file = self.sock.makefile("r", encoding=self.encoding)
        self.welcome = self.getresp()
        return self.welcome

    def ntransfercmd(self, cmd: str, rest: int | str | None = None) -> tuple[socket.socket, int]:
        """Open the data channel; with ``PROT P`` resume the control session (else 522)."""
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)  # noqa: S321 - TLS below
        if getattr(self, "_prot_p", False):
            control = self.sock
            assert isinstance(control, ssl.SSLSocket)
            conn = self.context.wrap_socket(
                conn, server_hostname=self.host, session=control.session
            )
        return conn, size if size is not None else 0

    def putcmd(self, line: str) -> None:
        if self.transcript is not None:
            shown = "PASS ********" if line.upper().startswith("PASS ") else line
            self.transcript.add(">", shown)
        super().putcmd(line)

    def getresp(self) -> str:
        try:
            resp = super().getresp()
        except ftplib.Error as err:
            if self.transcript is not None:
                self.transcript.add("<", str(err))
            raise
        if self.transcript is not None:
            self.transcript.add("<", resp)
        return resp

    def upload(self, name: str, data: bytes, *, type_i: bool = False) -> str:
        """``STOR`` (in ASCII unless ``type_i``), all bytes, close, read the final reply."""
        if type_i:
            self.voidcmd("TYPE I")
        conn = self.transfercmd(f"STOR {name}")
        try:
            conn.sendall(data)
        finally:
            conn.close()
        if self.transcript is not None:
            self.transcript.add("data", f"{len(data)} bytes sent, data connection closed")
        return self.voidresp()

    def download(self, name: str) -> bytes:
        """``RETR`` after ``TYPE I`` (a download is where everybody remembers binary)."""
        out = io.BytesIO()
        self.voidcmd("TYPE I")
        conn = self.transfercmd(f"RETR {name}")
        try:
            while chunk := conn.recv(65536):
                out.write(chunk)
        finally:
            conn.close()
        self.voidresp()
        return out.getvalue()


def open_ftps(
    host: str,
    port: int,
    access_code: str,
    ca_file: str | None,
    *,
    transcript: Transcript | None = None,
) -> StrangerFtps:
    """Connect, log in, protect the data channel (``PBSZ 0`` + ``PROT P``)."""
    ftp = StrangerFtps(ca_file, transcript=transcript)
    ftp.connect(host, port)
    ftp.login("bblp", access_code)
    ftp.prot_p()
    return ftp


# ----- print files -----------------------------------------------------------------------


def gcode_text(*, minutes: int = 10, layers: int = 20, crlf: bool = True) -> bytes:
    """A small sliced G-code with Bambu Studio's header lines; CRLF line ends by default
    (Windows slicers write them)."""
    head = [
        "; HEADER_BLOCK_START",
        "; generated by a stranger's test",
        f"; model printing time: {minutes}m 0s; total estimated time: {minutes}m 0s",
        f"; total layer number: {layers}",
        "; HEADER_BLOCK_END",
    ]
    body = ["M104 S220", "M140 S55", "G28"]
    for layer in range(1, layers + 1):
        body += [";LAYER_CHANGE", f"M73 L{layer}"]
        body += [f"G1 X{(layer * 7 + i) % 200} Y{layer} E0.05" for i in range(8)]
    eol = "\r\n" if crlf else "\n"
    return (eol.join(head + body) + eol).encode()


def build_3mf(gcode: bytes, *, plate: int = 1) -> bytes:
    """A sliced package: ``Metadata/plate_N.gcode`` and its uppercase-hex ``.md5``, stored
    (not deflated), as the simplest exporters write it."""
    buf = io.BytesIO()
    entry = f"Metadata/plate_{plate}.gcode"
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr(
            "[Content_Types].xml",
            '<?xml version="1.0" encoding="UTF-8"?>\r\n<Types xmlns='
            '"http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="gcode" ContentType="text/x.gcode"/></Types>\r\n',
        )
        z.writestr(entry, gcode)
        z.writestr(f"{entry}.md5", hashlib.md5(gcode, usedforsecurity=False).hexdigest().upper())
    return buf.getvalue()


def project_file(name: str, **extra: Any) -> Json:
    """``print.project_file`` parameters for a file in the storage root (section 5.5)."""
    return {
        "param": "Metadata/plate_1.gcode",
        "url": f"ftp:///{name}",
        "file": name,
        "md5": "",
        "subtask_name": name.removesuffix(".gcode.3mf"),
        "project_id": "0",
        "profile_id": "0",
        "task_id": "0",
        "subtask_id": "0",
        "bed_type": "auto",
        "timelapse": False,
        "bed_leveling": True,
        "flow_cali": False,
        "vibration_cali": False,
        "layer_inspect": False,
        "use_ams": False,
        **extra,
    }


# ----- vt_tray ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ExternalSpool:
    """``print.vt_tray`` with every key converted, as a stranger's dashboard reads it."""

    id: int
    tag_uid: bytes
    tray_id_name: str
    tray_info_idx: str
    tray_type: str
    tray_sub_brands: str
    tray_color: tuple[int, int, int, int]
    tray_weight: int
    tray_diameter: float
    tray_temp: int
    tray_time: int
    bed_temp_type: int
    bed_temp: int
    nozzle_temp_max: int
    nozzle_temp_min: int
    xcam_info: bytes
    tray_uuid: bytes
    remain: int
    k: float
    n: int
    cali_idx: int


def parse_vt_tray(vt: Mapping[str, Any]) -> ExternalSpool:
    """Convert every key (KeyError when one is missing, ValueError when one does not parse)."""
    color = bytes.fromhex(str(vt["tray_color"]))
    if len(color) != 4:
        raise ValueError(f"tray_color {vt['tray_color']!r} is not RRGGBBAA")
    return ExternalSpool(
        id=int(vt["id"]),
        tag_uid=bytes.fromhex(str(vt["tag_uid"])),
        tray_id_name=str(vt["tray_id_name"]),
        tray_info_idx=str(vt["tray_info_idx"]),
        tray_type=str(vt["tray_type"]),
        tray_sub_brands=str(vt["tray_sub_brands"]),
        tray_color=(color[0], color[1], color[2], color[3]),
        tray_weight=int(vt["tray_weight"]),
        tray_diameter=float(vt["tray_diameter"]),
        tray_temp=int(vt["tray_temp"]),
        tray_time=int(vt["tray_time"]),
        bed_temp_type=int(vt["bed_temp_type"]),
        bed_temp=int(vt["bed_temp"]),
        nozzle_temp_max=int(vt["nozzle_temp_max"]),
        nozzle_temp_min=int(vt["nozzle_temp_min"]),
        xcam_info=bytes.fromhex(str(vt["xcam_info"])),
        tray_uuid=bytes.fromhex(str(vt["tray_uuid"])),
        remain=int(vt["remain"]),
        k=float(vt["k"]),
        n=int(vt["n"]),
        cali_idx=int(vt["cali_idx"]),
    )
