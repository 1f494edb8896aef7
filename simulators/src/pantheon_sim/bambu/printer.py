"""One simulated Bambu printer as a pure state machine (bambu-lan-protocol.md sections 4, 5 and 11).

``SimPrinter`` holds the printer's state, takes decoded MQTT requests and the passing of time,
and returns the JSON payloads to publish on ``device/<serial>/report``. It does no I/O: the
print file is opened through an injected :data:`JobResolver`, and the caller publishes.
It is not thread-safe; the farm serialises calls with one lock per printer.
"""

import contextlib
import copy
import datetime
import ipaddress
import math
import random
import re
import time
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

from pantheon_contracts.printer import FULL_REPORT_MODELS, PrinterModel, from_bambu

Payload = dict[str, Any]


class GcodeState(StrEnum):
    """The ``gcode_state`` values this simulator emits (real values, section 4.3)."""

    IDLE = "IDLE"
    PREPARE = "PREPARE"
    RUNNING = "RUNNING"
    PAUSE = "PAUSE"
    FINISH = "FINISH"
    FAILED = "FAILED"


BUSY: Final = frozenset({GcodeState.PREPARE, GcodeState.RUNNING, GcodeState.PAUSE})
"""A job runs: a new ``project_file`` is refused with 0x05004004."""


class Plate(StrEnum):
    """What lies on the heatbed; the real printer has no such notion (section 11.17)."""

    NONE = "none"
    CLEAN = "clean"
    WITH_PART = "with_part"


class ViolationCategory(StrEnum):
    """A print started that a person would never start: damage the oracle counts.

    Only models that cannot see their bed start such a print (see ``ModelProfile.sees_bed``);
    the others refuse it with 0x0500806E.
    """

    PRINT_ON_PART = "print_on_part"
    """The plate still held a part: the nozzle prints onto (and into) it."""
    PRINT_WITHOUT_PLATE = "print_without_plate"
    """No plate on the bed: the printer levels and prints on the bare heatbed."""


VIOLATION_LOG_SIZE: Final = 100
"""Violations each printer keeps in its log (the count covers them all)."""


def plate_violation(plate: Plate) -> ViolationCategory | None:
    """What starting a print on ``plate`` would damage, if anything."""
    return {
        Plate.NONE: ViolationCategory.PRINT_WITHOUT_PLATE,
        Plate.WITH_PART: ViolationCategory.PRINT_ON_PART,
        Plate.CLEAN: None,
    }[plate]


class ErrorCode:
    """``print_error`` values (section 8.2) and the authorization refusal."""

    TASK_CANCELED: Final = 0x0300400C
    UNSUPPORTED_PATH: Final = 0x05004002
    CANNOT_PARSE: Final = 0x05004003
    BUSY: Final = 0x05004004
    FILE_NOT_AVAILABLE: Final = 0x05008013
    SD_EXCEPTION: Final = 0x0500C010
    FOREIGN_OBJECTS: Final = 0x0500806E
    FILAMENT_FEED: Final = 0x07008006
    AMS_MAPPING: Final = 0x07FF8012
    """07FF_8012 "Failed to get AMS mapping table" (section 9.10)."""
    LAN_AUTH_REFUSED: Final = 84033543
    """0x05024007: the ``err_code`` of a refused command without Developer Mode."""


HMS_VERIFY_FAILED: Final = {"attr": 0x05000500, "code": 0x00010007}
"""HMS 0500_0500_0001_0007 "MQTT command verification failed"."""

READ_ONLY_SUBSYSTEMS: Final = frozenset({"pushing", "info"})
"""Commands still honoured without Developer Mode (telemetry, pushall, get_version)."""

SPEED_MAGNITUDE: Final = {1: 50, 2: 100, 3: 124, 4: 166}
"""``spd_lvl`` -> ``spd_mag`` (% of standard speed)."""

AMBIENT_C: Final = 25.0


@dataclass(frozen=True)
class ModelProfile:
    """What differs between Bambu models in this simulator."""

    model: PrinterModel
    full_reports: bool
    """X1 pushes full objects every time; P1/A1 one full push then deltas."""
    idle_stage: int
    """``stg_cur`` while idle: -1 on X1, 255 on P1/A1."""
    product_name: str
    max_clients: int
    """Concurrent MQTT clients the printer accepts (community estimate, section 2.4)."""
    runs_gcode_file: bool
    """X1 runs ``gcode_file``; P1/A1 ack it and do nothing (observed bug, section 5.6)."""
    folder_urls_fail: bool
    """P1/A1 reject ``ftp:///folder/name`` with 0x0500C010 (section 5.5)."""
    nlst_full_paths: bool
    """FTPS ``NLST``: X1 answers full paths, P1/A1 bare names (section 6.1)."""
    drops_request_subscribers: bool
    """P1/A1 drop a client's connection when it subscribes to a ``.../request`` topic,
    before any SUBACK (section 11.4); X1 only refuses the subscription."""
    sees_bed: bool
    """X1C/X1E look at the bed (lidar + camera) before a print and refuse a plate that is
    missing or holds a part with 0x0500806E; P1/A1 have no such sensor and print anyway."""
    nozzle_type: str
    """``nozzle_type`` in full reports: X1 ships hardened steel, P1/A1 stainless steel."""


PROFILES: Final[dict[PrinterModel, ModelProfile]] = {
    m: ModelProfile(
        model=m,
        full_reports=m in FULL_REPORT_MODELS,
        idle_stage=-1 if m in FULL_REPORT_MODELS else 255,
        product_name={
            PrinterModel.X1C: "Bambu Lab X1 Carbon",
            PrinterModel.X1E: "Bambu Lab X1E",
            PrinterModel.P1S: "Bambu Lab P1S",
            PrinterModel.P1P: "Bambu Lab P1P",
            PrinterModel.A1: "Bambu Lab A1",
            PrinterModel.A1MINI: "Bambu Lab A1 mini",
        }[m],
        max_clients=10 if m in FULL_REPORT_MODELS else 4,
        runs_gcode_file=m in FULL_REPORT_MODELS,
        folder_urls_fail=m not in FULL_REPORT_MODELS,
        nlst_full_paths=m in FULL_REPORT_MODELS,
        drops_request_subscribers=m not in FULL_REPORT_MODELS,
        sees_bed=m in FULL_REPORT_MODELS,
        nozzle_type="hardened_steel" if m in FULL_REPORT_MODELS else "stainless_steel",
    )
    for m in PrinterModel
}


class FaultSettings(BaseModel):
    """Scripted faults of one printer (CLI ``--fault`` and ``POST /printers/{id}/faults``)."""

    model_config = ConfigDict(extra="forbid")

    silent: bool = Field(
        default=False,
        description="connected but no push_status (not even pushall) until pushing.start "
        "or a client reconnects",
    )
    refuse_commands: bool = Field(
        default=False,
        description="firmware without Developer Mode: control commands echoed with "
        "err_code 84033543 and HMS 0500_0500_0001_0007, state unchanged",
    )
    fail_at_percent: int | None = Field(
        default=None, ge=0, le=100, description="a running print fails when it reaches this %"
    )
    fail_error: int = Field(
        default=ErrorCode.FILAMENT_FEED, ge=0, description="print_error of the failure"
    )
    drop_mqtt_after_s: float | None = Field(
        default=None,
        ge=0,
        description="drop every MQTT connection this many wall seconds after the faults are "
        "set (one shot; the broker restarts)",
    )
    offline_s: float = Field(
        default=0.0, ge=0, le=3600, description="how long the broker stays down after a drop"
    )
    ftps_rate_limit: int | None = Field(
        default=None, gt=0, description="FTPS data throughput cap in bytes/s"
    )
    ftps_426_after_write: bool = Field(
        default=False,
        description="P2S quirk: an upload is answered 426 although the file was written whole",
    )
    ftps_capacity_bytes: int | None = Field(
        default=None,
        gt=0,
        description="storage size: an upload that would fill it past this is answered 552 "
        "and leaves nothing behind",
    )
    duplicate_requests: bool = Field(
        default=False,
        description="every request arrives twice, as when the PUBACK of a QoS 1 publish was "
        "lost and the client sent it again (DUP): the printer acts on both copies",
    )


@dataclass(frozen=True)
class SimTiming:
    """Pace of the simulation; print durations are divided by ``speed``."""

    speed: float = 1.0
    prepare_s: float = 3.0
    """Wall seconds spent in PREPARE (download, heating, levelling)."""
    report_interval_s: float = 1.0
    """Wall seconds between reports while something changes (state changes report at once)."""
    idle_report_interval_s: float = 5.0
    ack_delay_s: float = 0.0
    """Wall seconds between an accepted project_file and its echo + PREPARE."""
    cancel_error_s: float = 2.5
    """Wall seconds the 0x0300400C "task canceled" error shows after a stop."""
    seconds_per_line: float = 0.04
    """Printer seconds per G-code line when a file carries no time estimate."""

    def __post_init__(self) -> None:
        if self.speed <= 0:
            raise ValueError("speed must be > 0")


@dataclass(frozen=True)
class PrintJob:
    """A print file resolved from storage: what the printer will run."""

    file_name: str
    """Bare name on storage, e.g. ``cube.gcode.3mf``."""
    plate_path: str
    """The entry run (``Metadata/plate_1.gcode``) or the plain G-code path."""
    estimated_s: float
    """Printer seconds at standard speed."""
    total_layers: int


EXTERNAL_SPOOL: Final = 254
"""Global tray number of the external spool (``vt_tray``, section 4.5)."""
NO_TRAY: Final = 255
"""No tray loaded (``tray_now``/``tray_tar`` idle value)."""
AMS_TRAYS: Final = 4

GENERIC_FILAMENTS: Final[dict[str, tuple[str, int, int]]] = {
    "PLA": ("GFL99", 190, 250),
    "PLA-CF": ("GFL98", 190, 250),
    "PETG": ("GFG99", 220, 260),
    "ABS": ("GFB99", 240, 270),
    "ASA": ("GFB98", 240, 270),
    "PA": ("GFN99", 270, 300),
    "PA-CF": ("GFN98", 270, 300),
    "PC": ("GFC99", 260, 280),
    "PVA": ("GFS99", 190, 250),
    "TPU": ("GFU99", 200, 250),
}
"""Filament type -> (``tray_info_idx`` of the generic Bambu profile, nozzle min, max °C)
(bambulabs_api ``filament_info.FilamentEnum``)."""


@dataclass(frozen=True)
class TraySetting:
    """What a tray (AMS slot or external spool) says it holds: set when the spool is
    loaded, changed by ``print.ams_filament_setting``."""

    tray_type: str
    tray_info_idx: str
    tray_color: str
    """RRGGBBAA."""
    nozzle_temp_min: int
    nozzle_temp_max: int

    @classmethod
    def generic(cls, tray_type: str, color: str = "FFFFFFFF") -> "TraySetting":
        """The generic profile of ``tray_type`` (an unknown type gets no profile id)."""
        idx, low, high = GENERIC_FILAMENTS.get(tray_type.upper(), ("", 190, 250))
        return cls(tray_type, idx, color, low, high)

    def updated(self, body: Payload) -> "TraySetting":
        """This setting with the fields of an ``ams_filament_setting`` that make sense
        (non-empty strings, an RRGGBB[AA] colour, integer temperatures)."""
        changes: dict[str, Any] = {}
        for key in ("tray_type", "tray_info_idx"):
            value = body.get(key)
            if isinstance(value, str) and value:
                changes[key] = value
        color = body.get("tray_color")
        if isinstance(color, str) and re.fullmatch(r"[0-9A-Fa-f]{6}([0-9A-Fa-f]{2})?", color):
            changes["tray_color"] = (color + "FF" if len(color) == 6 else color).upper()
        for key in ("nozzle_temp_min", "nozzle_temp_max"):
            with contextlib.suppress(KeyError, ValueError):
                changes[key] = int(str(body[key]))
        return replace(self, **changes)

    def payload(self, tray_id: str, *, remain: int) -> Payload:
        """The tray object of a report (the key set of a real P1P, ha-bambulab
        ``tests/P1P.json``: bambulabs_api's ``FilamentTray`` needs every one)."""
        return {
            "id": tray_id,
            "remain": remain,
            "k": 0.019999999552965164,
            "n": 1,
            "cali_idx": -1,
            "tag_uid": "0000000000000000",
            "tray_id_name": "",
            "tray_info_idx": self.tray_info_idx,
            "tray_type": self.tray_type,
            "tray_sub_brands": "",
            "tray_color": self.tray_color,
            "tray_weight": "0",
            "tray_diameter": "0.00",
            "tray_temp": "0",
            "tray_time": "0",
            "bed_temp_type": "0",
            "bed_temp": "0",
            "nozzle_temp_max": str(self.nozzle_temp_max),
            "nozzle_temp_min": str(self.nozzle_temp_min),
            "xcam_info": "000000000000000000000000",
            "tray_uuid": "00000000000000000000000000000000",
        }


def setting_target(body: Payload) -> int | None:
    """The global tray an ``ams_filament_setting`` names: ``ams_id*4 + tray_id``, or
    EXTERNAL_SPOOL for ``ams_id`` 254/255 or ``tray_id`` 254 (Studio's "print without AMS"
    form is ams_id 255 + tray_id 254); None when the ids are missing or not numbers."""
    try:
        ams_id = int(str(body.get("ams_id")))
        tray_id = int(str(body.get("tray_id", body.get("slot_id"))))
    except ValueError:
        return None
    if ams_id in (254, NO_TRAY) or tray_id == EXTERNAL_SPOOL:
        return EXTERNAL_SPOOL
    if ams_id < 0 or not 0 <= tray_id < AMS_TRAYS:
        return None
    return ams_id * AMS_TRAYS + tray_id


def fan_gear(cooling: str, aux: str, chamber: str) -> int:
    """``fan_gear``: the three fans packed on the 0-255 scale, chamber << 16 | aux << 8 |
    part cooling; the string speeds are on a 0-15 scale (Bambu Studio ``DevFan``)."""

    def level(speed: str) -> int:
        return round(math.floor(int(speed) / 1.5) * 25.5)

    return level(chamber) << 16 | level(aux) << 8 | level(cooling)


def ipv4_le(address: str) -> int:
    """``net.info[].ip``: an IPv4 address as a little-endian uint32 (protocol doc 4.2)."""
    try:
        packed = ipaddress.IPv4Address(address).packed
    except ValueError:
        packed = ipaddress.IPv4Address("127.0.0.1").packed
    return int.from_bytes(packed, "little")


@dataclass(frozen=True)
class Feed:
    """Where a job's filament comes from: a global tray number (``ams_id*4 + slot``),
    EXTERNAL_SPOOL, or NO_TRAY when the printer never loads any (``in_air``)."""

    tray: int
    in_air: bool = False


def filament_feed(body: Payload, ams: Sequence[str | None] | None) -> Feed:
    """The feed of filament 1 for a ``project_file`` (sections 5.5, 9.10, 11.13).

    ``ams``: the filament type in each tray of AMS unit 0 (None for an empty tray), or None
    for a printer without AMS. Raises :class:`JobError` (07FF_8012 "Failed to get AMS mapping
    table") for ``use_ams`` on a printer without AMS, or a mapping to a tray that is not there
    or holds nothing. ``use_ams`` with ``ams_mapping`` but no ``ams_mapping2`` is accepted and
    never loads filament: the P1S "prints in air" (section 4.4).
    """
    if body.get("use_ams") is not True:
        return Feed(EXTERNAL_SPOOL)
    if ams is None:
        raise JobError(ErrorCode.AMS_MAPPING, "Failed to get AMS mapping table (no AMS)")
    mapping = body.get("ams_mapping")
    first = mapping[0] if isinstance(mapping, list) and mapping else None
    if not isinstance(first, int) or isinstance(first, bool):
        raise JobError(ErrorCode.AMS_MAPPING, "Failed to get AMS mapping table (ams_mapping)")
    mapping2 = body.get("ams_mapping2")
    if not isinstance(mapping2, list) or not mapping2:
        return Feed(NO_TRAY, in_air=True)
    if first == -1:
        return Feed(EXTERNAL_SPOOL)
    ams_id, slot = divmod(first, AMS_TRAYS)
    entry = mapping2[0]
    if not isinstance(entry, dict) or (entry.get("ams_id"), entry.get("slot_id")) != (ams_id, slot):
        raise JobError(
            ErrorCode.AMS_MAPPING, "Failed to get AMS mapping table (ams_mapping2 disagrees)"
        )
    if ams_id != 0 or slot >= len(ams) or not ams[slot]:
        raise JobError(
            ErrorCode.AMS_MAPPING, f"Failed to get AMS mapping table (tray {first} is empty)"
        )
    return Feed(first)


class JobError(Exception):
    """The print file cannot be run; ``code`` is the ``print_error`` to latch."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


JobResolver = Callable[[Payload], PrintJob]
"""Opens the file a ``project_file``/``gcode_file`` command names; raises :class:`JobError`."""


@dataclass
class _Job:
    spec: PrintJob
    subtask_name: str
    task_id: str
    subtask_id: str
    project_id: str
    profile_id: str
    started_wall: float
    prepare_started: float
    feed: Feed = Feed(EXTERNAL_SPOOL)
    violation: ViolationCategory | None = None
    """The plate was not clean and the printer could not see it: recorded when it starts."""
    work_s: float = 0.0
    """Printer seconds of the file done so far."""


@dataclass
class _Pending:
    due: float
    payload: Payload


_GCODE_TEMP = re.compile(r"^\s*(M104|M109|M140|M190)\b.*?\bS(-?\d+(?:\.\d+)?)", re.IGNORECASE)
_GCODE_HOME = re.compile(r"^\s*G28\b", re.IGNORECASE)


@dataclass
class _Temps:
    nozzle: float = AMBIENT_C
    nozzle_target: float = 0.0
    bed: float = AMBIENT_C
    bed_target: float = 0.0
    chamber: float = AMBIENT_C


@dataclass
class SimPrinter:
    """A Bambu printer: request in, reports out (see the module docstring)."""

    printer_id: int
    serial: str
    profile: ModelProfile
    resolve_job: JobResolver
    timing: SimTiming = field(default_factory=SimTiming)
    plate: Plate = Plate.CLEAN
    bed_id: int | None = None
    faults: FaultSettings = field(default_factory=FaultSettings)
    wall_clock: Callable[[], float] = time.time
    seed: int | None = None
    ams: list[str | None] | None = None
    """Filament type per tray of one AMS unit (None: empty tray); None: no AMS."""
    ip_address: str = "127.0.0.1"
    """Reported in ``net.info[].ip`` (an IPv4 literal; anything else reports 127.0.0.1)."""

    def __post_init__(self) -> None:
        self.state = GcodeState.IDLE
        self.print_error = 0
        self.hms: list[dict[str, int]] = []
        self.temps = _Temps()
        self.spd_lvl = 2
        self.home_flag = 0x100  # bit 8: storage present
        self.lights: dict[str, str] = {"chamber_light": "on"}
        self.job: _Job | None = None
        self.last_file = ""
        self.percent = 0
        self.layer = 0
        self.total_layers = 0
        self.remaining_min = 0
        self.prepare_percent = 0
        self.stg_cur = self.profile.idle_stage
        self.stream_on = True
        self._seq = 0
        self._pending_start: _Pending | None = None
        self._cancel_error_until: float | None = None
        self._rng = random.Random(  # noqa: S311 - Wi-Fi RSSI jitter, not security
            self.printer_id if self.seed is None else self.seed
        )
        self._wifi = -45
        self._last_tick: float | None = None
        self._next_report = 0.0
        self._report_now = False
        self.trays: dict[int, TraySetting] = {EXTERNAL_SPOOL: TraySetting.generic("PLA")}
        """What each tray holds: AMS slots by global number, the external spool as 254."""
        self._fit_trays()
        self.plate_refusals = 0
        self.violations = 0
        """Prints started on a plate that was missing or held a part (never reset)."""
        self.violation_log: deque[dict[str, Any]] = deque(maxlen=VIOLATION_LOG_SIZE)
        self._published: Payload = self._fields()

    # ----- public API -------------------------------------------------------------------

    def handle_command(self, payload: Payload, now: float) -> list[Payload]:
        """Apply one decoded request; returns the payloads to publish at once."""
        out: list[Payload] = []
        before = (self.state, self.print_error, len(self.hms), self.spd_lvl)
        for subsystem, body in payload.items():
            if not isinstance(body, dict):
                continue
            command = str(body.get("command", ""))
            if self.faults.refuse_commands and subsystem not in READ_ONLY_SUBSYSTEMS:
                out.append(self._refuse(subsystem, body))
                continue
            handler = _HANDLERS.get((subsystem, command))
            if handler is None:
                out.append(self._echo(subsystem, body, "failed", "unsupported command"))
                continue
            out.extend(handler(self, subsystem, body, now))
        if (self.state, self.print_error, len(self.hms), self.spd_lvl) != before:
            self._report_now = True
        if self._report_now or self._fields() != self._published:
            # A printer pushes what a command changed at once (P1/A1 a delta, X1 a full
            # report), not at its next periodic report.
            report = self._periodic_report(now, jitter=False)
            if report is not None:
                out.append(report)
        return out

    def tick(self, now: float) -> list[Payload]:
        """Let time pass to ``now`` (monotonic s); returns due echoes and a report if due."""
        out: list[Payload] = []
        dt = 0.0 if self._last_tick is None else max(0.0, now - self._last_tick)
        self._last_tick = now
        before = (self.state, self.print_error, len(self.hms))
        if self._pending_start is not None and now >= self._pending_start.due:
            pending, self._pending_start = self._pending_start, None
            out.append(pending.payload)
            self._enter_prepare(now)
        self._advance(now, dt)
        if self._cancel_error_until is not None and now >= self._cancel_error_until:
            self._cancel_error_until = None
            if self.print_error == ErrorCode.TASK_CANCELED:
                self.print_error = 0
        if (self.state, self.print_error, len(self.hms)) != before:
            self._report_now = True
        if self._report_now or now >= self._next_report:
            report = self._periodic_report(now, jitter=False)
            if report is not None:
                out.append(report)
        return out

    def full_report(self) -> Payload:
        """A ``msg: 0`` snapshot, the base later deltas are computed against."""
        fields = self._fields()
        self._published = copy.deepcopy(fields)
        return self._push(0, fields)

    def client_connected(self) -> None:
        """A client (re)connected: a silent stream speaks again (section 2.5)."""
        if self.faults.silent:
            self.faults = self.faults.model_copy(update={"silent": False})
        self.stream_on = True

    def set_plate(self, plate: Plate, bed_id: int | None) -> None:
        """The robot or a test changed what lies on the bed."""
        self.plate = plate
        self.bed_id = bed_id if plate is not Plate.NONE else None

    def set_ams(self, trays: Sequence[str | None] | None) -> None:
        """Fit (filament type per tray, up to 4), refill or remove (None) the AMS unit."""
        if trays is not None and len(trays) > AMS_TRAYS:
            raise ValueError(f"an AMS unit has {AMS_TRAYS} trays")
        self.ams = None if trays is None else [t or None for t in trays]
        self._fit_trays()
        self._report_now = True

    def _fit_trays(self) -> None:
        """Tray settings for the loaded AMS slots: a slot that keeps its filament type keeps
        its setting, a new spool gets its type's generic profile, an empty slot none."""
        loaded = {i: kind for i, kind in enumerate(self.ams or []) if kind}
        for tray in [t for t in self.trays if t != EXTERNAL_SPOOL and t not in loaded]:
            del self.trays[tray]
        for tray, kind in loaded.items():
            if tray not in self.trays or self.trays[tray].tray_type != kind:
                self.trays[tray] = TraySetting.generic(kind)

    def set_faults(self, faults: FaultSettings) -> None:
        """Replace the fault settings (drops are scheduled by the farm)."""
        self.faults = faults

    def reboot(self, now: float) -> None:
        """Power cycle: back to IDLE with no memory of the last job (section 9.13)."""
        if self.state in BUSY and self.plate is Plate.CLEAN and self._extruding():
            self.plate = Plate.WITH_PART
        self.state = GcodeState.IDLE
        self.job = None
        self._pending_start = None
        self.print_error = 0
        self.hms = []
        self.percent = self.layer = self.total_layers = self.remaining_min = 0
        self.prepare_percent = 0
        self.stg_cur = self.profile.idle_stage
        self.temps = _Temps()
        self.stream_on = True
        self._report_now = True
        self._published = self._fields()

    def status(self) -> dict[str, Any]:
        """The simulator's view for the control API (not a Bambu payload)."""
        return {
            "id": self.printer_id,
            "serial": self.serial,
            "model": self.profile.model.value,
            "gcode_state": self.state.value,
            "state": from_bambu(self.state.value).value,
            "plate": self.plate.value,
            "bed_id": self.bed_id,
            "mc_percent": self.percent,
            "mc_remaining_time": self.remaining_min,
            "layer_num": self.layer,
            "total_layer_num": self.total_layers,
            "print_error": self.print_error,
            "hms": list(self.hms),
            "subtask_name": self.job.subtask_name if self.job else "",
            "gcode_file": self.last_file,
            "stream_on": self.stream_on,
            "plate_refusals": self.plate_refusals,
            "violations": self.violations,
            "violation_log": list(self.violation_log),
            "faults": self.faults.model_dump(),
            "ams": list(self.ams) if self.ams is not None else None,
            "feed": None
            if self.job is None
            else {"tray": self.job.feed.tray, "in_air": self.job.feed.in_air},
        }

    # ----- command handlers -------------------------------------------------------------

    def _cmd_pushall(self, subsystem: str, body: Payload, now: float) -> list[Payload]:
        if self.faults.silent:
            return []
        self._next_report = now + self._interval()
        return [self.full_report()]

    def _cmd_push_start(self, subsystem: str, body: Payload, now: float) -> list[Payload]:
        self.client_connected()
        self._report_now = True
        return []

    def _cmd_push_stop(self, subsystem: str, body: Payload, now: float) -> list[Payload]:
        self.stream_on = False
        return []

    def _cmd_get_version(self, subsystem: str, body: Payload, now: float) -> list[Payload]:
        reply = self._echo(subsystem, body, "success", "")
        name = self.profile.product_name
        reply["info"]["module"] = [
            {"name": "ota", "sw_ver": "01.08.02.00", "hw_ver": "", "sn": self.serial},
            {"name": "mc", "sw_ver": "00.00.30.00", "hw_ver": "MC07", "sn": self.serial},
            {
                "name": "rv1126" if self.profile.full_reports else "esp32",
                "sw_ver": "01.08.02.00",
                "hw_ver": "AP05",
                "sn": self.serial,
                "product_name": name,
            },
        ]
        return [reply]

    def _cmd_project_file(self, subsystem: str, body: Payload, now: float) -> list[Payload]:
        if self.state in BUSY or self._pending_start is not None:
            self.print_error = ErrorCode.BUSY
            return [self._echo(subsystem, body, "failed", "device is busy")]
        violation = plate_violation(self.plate)
        if violation is not None and self.profile.sees_bed:
            self.print_error = ErrorCode.FOREIGN_OBJECTS
            self.plate_refusals += 1
            return [self._echo(subsystem, body, "failed", "foreign objects on heatbed")]
        try:
            feed = filament_feed(body, self.ams)
        except JobError as err:
            self.print_error = err.code
            self._report_now = True
            return [self._echo(subsystem, body, "failed", err.reason)]
        # A printer that cannot see its bed starts anyway: the damage is recorded at start.
        return self._start(subsystem, body, now, feed, violation)

    def _cmd_gcode_file(self, subsystem: str, body: Payload, now: float) -> list[Payload]:
        if not self.profile.runs_gcode_file:
            return [self._echo(subsystem, body, "success", "success")]
        return self._cmd_project_file(subsystem, body, now)

    def _start(
        self,
        subsystem: str,
        body: Payload,
        now: float,
        feed: Feed,
        violation: ViolationCategory | None,
    ) -> list[Payload]:
        try:
            spec = self.resolve_job(body)
        except JobError as err:
            self.print_error = err.code
            self._report_now = True
            return [self._echo(subsystem, body, "failed", err.reason)]
        stem = spec.file_name.split("/")[-1]
        for suffix in (".gcode.3mf", ".3mf", ".gcode"):
            if stem.endswith(suffix):
                stem = stem[: -len(suffix)]
                break
        self.job = _Job(
            spec=spec,
            subtask_name=str(body.get("subtask_name") or stem),
            task_id=str(body.get("task_id", "0")),
            subtask_id=str(body.get("subtask_id", "0")),
            project_id=str(body.get("project_id", "0")),
            profile_id=str(body.get("profile_id", "0")),
            started_wall=self.wall_clock(),
            prepare_started=now,
            feed=feed,
            violation=violation,
        )
        echo = self._echo(subsystem, body, "success", "")
        if self.timing.ack_delay_s > 0:
            self._pending_start = _Pending(due=now + self.timing.ack_delay_s, payload=echo)
            return []
        self._enter_prepare(now)
        return [echo]

    def _cmd_pause(self, subsystem: str, body: Payload, now: float) -> list[Payload]:
        if self.state is not GcodeState.RUNNING:
            return [self._echo(subsystem, body, "failed", "not printing")]
        self.state = GcodeState.PAUSE
        self.stg_cur = 16
        return [self._echo(subsystem, body, "success", "")]

    def _cmd_resume(self, subsystem: str, body: Payload, now: float) -> list[Payload]:
        if self.state is not GcodeState.PAUSE:
            return [self._echo(subsystem, body, "failed", "not paused")]
        self.state = GcodeState.RUNNING
        self.stg_cur = 0
        return [self._echo(subsystem, body, "success", "")]

    def _cmd_stop(self, subsystem: str, body: Payload, now: float) -> list[Payload]:
        if self.state not in BUSY:
            if self._pending_start is not None:
                self._pending_start = None
                self.job = None
                return [self._echo(subsystem, body, "success", "")]
            return [self._echo(subsystem, body, "failed", "no task running")]
        self._end(GcodeState.FAILED, now, error=ErrorCode.TASK_CANCELED)
        self.percent = self.layer = 0
        self._cancel_error_until = now + self.timing.cancel_error_s
        return [self._echo(subsystem, body, "success", "")]

    def _cmd_gcode_line(self, subsystem: str, body: Payload, now: float) -> list[Payload]:
        for line in str(body.get("param", "")).splitlines():
            m = _GCODE_TEMP.match(line)
            if m:
                target = max(0.0, float(m.group(2)))
                if m.group(1).upper() in ("M104", "M109"):
                    self.temps.nozzle_target = target
                else:
                    self.temps.bed_target = target
            elif _GCODE_HOME.match(line):
                self.home_flag |= 0x7  # x, y, z homed
        return [self._echo(subsystem, body, "success", "")]

    def _cmd_print_speed(self, subsystem: str, body: Payload, now: float) -> list[Payload]:
        try:
            level = int(str(body.get("param", "")))
        except ValueError:
            level = 0
        if level not in SPEED_MAGNITUDE:
            return [self._echo(subsystem, body, "failed", "invalid speed level")]
        self.spd_lvl = level
        return [self._echo(subsystem, body, "success", "")]

    def _cmd_clean_print_error(self, subsystem: str, body: Payload, now: float) -> list[Payload]:
        self.print_error = 0
        return [self._echo(subsystem, body, "success", "")]

    def _cmd_ledctrl(self, subsystem: str, body: Payload, now: float) -> list[Payload]:
        node, mode = body.get("led_node"), body.get("led_mode")
        if not isinstance(node, str) or mode not in ("on", "off", "flashing"):
            return [self._echo(subsystem, body, "failed", "invalid light")]
        self.lights[node] = str(mode)
        return [self._echo(subsystem, body, "success", "")]

    def _cmd_ams_filament_setting(self, subsystem: str, body: Payload, now: float) -> list[Payload]:
        """Accepted and echoed ``success`` like the firmware does (Bambuddy sends one to
        learn whether Developer Mode is on); applied to the named tray when it holds a spool
        (an AMS slot of a fitted unit, or the external spool)."""
        tray = setting_target(body)
        if tray is not None and tray in self.trays:
            setting = self.trays[tray].updated(body)
            self.trays[tray] = setting
            if tray != EXTERNAL_SPOOL and self.ams is not None:
                self.ams[tray] = setting.tray_type
        return [self._echo(subsystem, body, "success", "")]

    # ----- internals --------------------------------------------------------------------

    def _echo(self, subsystem: str, body: Payload, result: str, reason: str) -> Payload:
        echoed = dict(body)
        echoed["result"] = result
        echoed["reason"] = reason
        return {subsystem: echoed}

    def _refuse(self, subsystem: str, body: Payload) -> Payload:
        if HMS_VERIFY_FAILED not in self.hms:
            self.hms.append(dict(HMS_VERIFY_FAILED))
            self._report_now = True
        echoed = dict(body)
        echoed["err_code"] = ErrorCode.LAN_AUTH_REFUSED
        return {subsystem: echoed}

    def _enter_prepare(self, now: float) -> None:
        assert self.job is not None
        self.job.prepare_started = now
        if self.job.violation is not None:
            self._record_violation(self.job.violation, self.job.subtask_name)
        self.state = GcodeState.PREPARE
        self.print_error = 0
        self.hms = [h for h in self.hms if h == HMS_VERIFY_FAILED]
        self.percent = self.layer = 0
        self.total_layers = self.job.spec.total_layers
        self.remaining_min = math.ceil(self.job.spec.estimated_s / 60)
        self.prepare_percent = 0
        self.stg_cur = 2
        self.temps.nozzle_target = 220.0
        self.temps.bed_target = 55.0
        self.last_file = (
            f"/data/{self.job.spec.plate_path}"
            if self.profile.full_reports and self.job.spec.plate_path.startswith("Metadata/")
            else self.job.spec.file_name
        )

    def _record_violation(self, category: ViolationCategory, subtask_name: str) -> None:
        reason = {
            ViolationCategory.PRINT_ON_PART: "printed onto a plate with a part",
            ViolationCategory.PRINT_WITHOUT_PLATE: "printed with no plate on the bed",
        }[category]
        self.violations += 1
        when = datetime.datetime.fromtimestamp(self.wall_clock(), datetime.UTC)
        self.violation_log.append(
            {
                "time": when.isoformat(),
                "printer_id": self.printer_id,
                "category": category.value,
                "reason": reason,
                "subtask_name": subtask_name,
            }
        )

    def _advance(self, now: float, dt: float) -> None:
        self._move_temps(dt)
        job = self.job
        if job is None:
            return
        if self.state is GcodeState.PREPARE:
            elapsed = now - job.prepare_started
            total = self.timing.prepare_s
            frac = 1.0 if total <= 0 else min(1.0, elapsed / total)
            # The file is read in the first half of PREPARE (gcode_file_prepare_percent
            # 0 -> 100); heating and levelling take the rest. 100 is reported while still
            # in PREPARE, never first in the report that says RUNNING.
            percent = 100 if total <= 0 else min(100, int(elapsed / (total / 2) * 100))
            reached_full = percent == 100 and self.prepare_percent < 100
            self.prepare_percent = percent
            if reached_full:
                self._report_now = True
            stages = (2, 13, 1, 8)
            self.stg_cur = stages[min(len(stages) - 1, int(frac * len(stages)))]
            if frac >= 1.0 and not reached_full:
                self.state = GcodeState.RUNNING
                self.stg_cur = 0
                self.layer = 1 if self.total_layers else 0
        elif self.state is GcodeState.RUNNING:
            magnitude = SPEED_MAGNITUDE[self.spd_lvl] / 100
            job.work_s += dt * self.timing.speed * magnitude
            total = max(job.spec.estimated_s, 1e-9)
            frac = min(1.0, job.work_s / total)
            self.percent = min(100, int(frac * 100))
            if self.total_layers:
                self.layer = min(self.total_layers, int(frac * self.total_layers) + 1)
            left_s = max(0.0, job.spec.estimated_s - job.work_s) / magnitude
            self.remaining_min = math.ceil(left_s / 60 - 1e-9)
            fail_at = self.faults.fail_at_percent
            if fail_at is not None and self.percent >= fail_at and frac < 1.0:
                self._end(GcodeState.FAILED, now, error=self.faults.fail_error)
                self.hms.append(_hms_for(self.faults.fail_error))
            elif frac >= 1.0:
                self.percent = 100
                self.layer = self.total_layers
                self.remaining_min = 0
                self._end(GcodeState.FINISH, now, error=0)

    def _end(self, state: GcodeState, now: float, *, error: int) -> None:
        self.state = state
        self.print_error = error
        self.remaining_min = 0
        self.stg_cur = self.profile.idle_stage
        self.temps.nozzle_target = self.temps.bed_target = 0.0
        if self._extruding():
            self.plate = Plate.WITH_PART
        self._report_now = True

    def _extruding(self) -> bool:
        """The job puts plastic on the plate (not a print in air)."""
        return self.job is None or not self.job.feed.in_air

    def _move_temps(self, dt: float) -> None:
        t = self.temps
        scale = dt * max(1.0, self.timing.speed)
        t.nozzle = _approach(t.nozzle, t.nozzle_target or AMBIENT_C, 4.0 * scale)
        t.bed = _approach(t.bed, t.bed_target or AMBIENT_C, 1.0 * scale)

    def _interval(self) -> float:
        t = self.temps
        active = (
            self.state in (GcodeState.PREPARE, GcodeState.RUNNING)
            or abs(t.nozzle - (t.nozzle_target or AMBIENT_C)) > 0.5
            or abs(t.bed - (t.bed_target or AMBIENT_C)) > 0.5
        )
        return self.timing.report_interval_s if active else self.timing.idle_report_interval_s

    def _periodic_report(self, now: float, *, jitter: bool = True) -> Payload | None:
        """The next report (None while the stream is off); ``jitter``: the Wi-Fi signal
        drifts (timer reports; a push for a command carries only what the command changed)."""
        self._report_now = False
        self._next_report = now + self._interval()
        if self.faults.silent or not self.stream_on:
            return None
        if jitter:
            self._wifi = max(-70, min(-35, self._wifi + self._rng.choice((-1, 0, 1))))
        fields = self._fields()
        if self.profile.full_reports:
            self._published = copy.deepcopy(fields)
            return self._push(0, fields)
        delta = {k: v for k, v in fields.items() if self._published.get(k) != v}
        self._published = copy.deepcopy(fields)
        return self._push(1, delta)

    def _push(self, msg: int, fields: Payload) -> Payload:
        self._seq += 1
        body: Payload = {"command": "push_status", "msg": msg, "sequence_id": str(self._seq)}
        body.update(copy.deepcopy(fields))
        return {"print": body}

    def _fields(self) -> Payload:
        """Every field of a full report (the key set of public P1P/A1/X1C pushall captures,
        ha-bambulab ``pybambu/tests/*.json``); deltas carry the ones that changed."""
        t = self.temps
        job = self.job if self._pending_start is None else None  # not acked: nothing shows
        running = self.state in (GcodeState.PREPARE, GcodeState.RUNNING, GcodeState.PAUSE)
        cooling = "15" if running else "0"
        return {
            "gcode_state": self.state.value,
            "print_type": "local" if job else "idle",
            "subtask_name": job.subtask_name if job else "",
            "gcode_file": self.last_file,
            "gcode_file_prepare_percent": str(self.prepare_percent),
            "gcode_start_time": str(int(job.started_wall)) if job else "0",
            "task_id": job.task_id if job else "0",
            "subtask_id": job.subtask_id if job else "0",
            "project_id": job.project_id if job else "0",
            "profile_id": job.profile_id if job else "0",
            "mc_percent": self.percent,
            "mc_remaining_time": self.remaining_min,
            "mc_print_stage": "2" if running else "1",
            "mc_print_sub_stage": 0,
            "layer_num": self.layer,
            "total_layer_num": self.total_layers,
            "stg": [2, 13, 1, 8] if job else [],
            "stg_cur": self.stg_cur,
            "nozzle_temper": round(t.nozzle, 1),
            "nozzle_target_temper": round(t.nozzle_target, 1),
            "bed_temper": round(t.bed, 1),
            "bed_target_temper": round(t.bed_target, 1),
            "chamber_temper": round(t.chamber, 1) if self.profile.full_reports else 5,
            "spd_lvl": self.spd_lvl,
            "spd_mag": SPEED_MAGNITUDE[self.spd_lvl],
            "print_error": self.print_error,
            "hms": [dict(h) for h in self.hms],
            "cooling_fan_speed": cooling,
            "big_fan1_speed": "0",
            "big_fan2_speed": "0",
            "fan_gear": fan_gear(cooling, "0", "0"),
            "heatbreak_fan_speed": "15" if t.nozzle > 50 else "0",
            "wifi_signal": f"{self._wifi}dBm",
            "sdcard": True,
            "home_flag": self.home_flag,
            "hw_switch_state": 1 if running and self._extruding() else 0,
            "lights_report": [{"node": n, "mode": m} for n, m in sorted(self.lights.items())],
            "ams": self._ams_fields(running),
            "ams_status": 0,
            "ams_rfid_status": 0,
            "vt_tray": self.trays[EXTERNAL_SPOOL].payload(str(EXTERNAL_SPOOL), remain=0),
            "nozzle_diameter": "0.4",
            "nozzle_type": self.profile.nozzle_type,
            "k": "0.0200",
            "lifecycle": "product",
            "mess_production_state": "active",
            "force_upgrade": False,
            "queue_number": 0,
            "queue_total": 0,
            "queue_est": 0,
            "queue_sts": 0,
            "mc_print_line_number": "0",
            "s_obj": [],
            "filam_bak": [],
            "net": {"conf": 0, "info": [{"ip": ipv4_le(self.ip_address), "mask": 16777215}]},
            "online": {"ahb": False, "rfid": False, "version": zlib.crc32(self.serial.encode())},
            "upload": {"status": "idle", "progress": 0, "message": ""},
            "upgrade_state": {
                "sequence_id": 0,
                "progress": "",
                "status": "IDLE",
                "consistency_request": False,
                "dis_state": 0,
                "err_code": 0,
                "force_upgrade": False,
                "message": "0%, 0B/s",
                "module": "",
                "new_version_state": 2,
                "cur_state_code": 0,
                "new_ver_list": [],
            },
            "ipcam": {
                "ipcam_dev": "1",
                "ipcam_record": "disable",
                "timelapse": "disable",
                "resolution": "1080p",
                "tutk_server": "disable",
                "mode_bits": 3,
            },
            "xcam": {"first_layer_inspector": False, "spaghetti_detector": False},
        }

    def _ams_fields(self, running: bool) -> Payload:
        """``print.ams`` (section 4.5): unit 0 with its trays when fitted; the tray feeding
        the running job in ``tray_now``/``tray_tar`` (255 when none is)."""
        feeding = self.job.feed.tray if running and self.job is not None else NO_TRAY
        fed = str(feeding if feeding < EXTERNAL_SPOOL or self.ams is not None else NO_TRAY)
        if self.ams is None:
            units: list[Payload] = []
            exist_bits = "0"
        else:
            # A loaded slot carries the whole tray object (plus the colour list of newer
            # firmware), an empty one only its id (protocol doc 4.7).
            trays: list[Payload] = [
                {
                    **self.trays[i].payload(str(i), remain=80),
                    "ctype": 0,
                    "cols": [self.trays[i].tray_color],
                }
                if kind
                else {"id": str(i)}
                for i, kind in enumerate(self.ams)
            ]
            units = [{"id": "0", "humidity": "4", "temp": "24.1", "tray": trays}]
            exist_bits = format(sum(1 << i for i, kind in enumerate(self.ams) if kind), "x")
        return {
            "ams": units,
            "ams_exist_bits": "1" if self.ams is not None else "0",
            "tray_exist_bits": exist_bits,
            "tray_is_bbl_bits": "0",
            "tray_now": fed,
            "tray_tar": fed,
            "tray_pre": "255",
            "tray_read_done_bits": exist_bits,
            "tray_reading_bits": "0",
            "version": 1,
            "insert_flag": True,
            "power_on_flag": False,
        }


def _approach(value: float, target: float, step: float) -> float:
    if abs(target - value) <= step:
        return target
    return value + step if target > value else value - step


def _hms_for(print_error: int) -> dict[str, int]:
    """An HMS entry for a print_error: module word in attr, severity 2 (serious) + code."""
    return {"attr": (print_error >> 16) << 16, "code": (2 << 16) | (print_error & 0xFFFF)}


_Handler = Callable[[SimPrinter, str, Payload, float], list[Payload]]
_HANDLERS: Final[dict[tuple[str, str], _Handler]] = {
    ("pushing", "pushall"): SimPrinter._cmd_pushall,
    ("pushing", "start"): SimPrinter._cmd_push_start,
    ("pushing", "stop"): SimPrinter._cmd_push_stop,
    ("info", "get_version"): SimPrinter._cmd_get_version,
    ("print", "project_file"): SimPrinter._cmd_project_file,
    ("print", "gcode_file"): SimPrinter._cmd_gcode_file,
    ("print", "pause"): SimPrinter._cmd_pause,
    ("print", "resume"): SimPrinter._cmd_resume,
    ("print", "stop"): SimPrinter._cmd_stop,
    ("print", "gcode_line"): SimPrinter._cmd_gcode_line,
    ("print", "print_speed"): SimPrinter._cmd_print_speed,
    ("print", "clean_print_error"): SimPrinter._cmd_clean_print_error,
    ("print", "ams_filament_setting"): SimPrinter._cmd_ams_filament_setting,
    ("system", "ledctrl"): SimPrinter._cmd_ledctrl,
}
