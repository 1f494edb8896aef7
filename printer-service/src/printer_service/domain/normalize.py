"""Normalising a merged Bambu report into the suite's printer status (bambu-lan-protocol.md 4.2)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pantheon_contracts.printer import PrinterState, from_bambu


class Temperatures(BaseModel):
    """Temperatures in °C; None when the printer does not report one."""

    model_config = ConfigDict(frozen=True)

    nozzle: float | None = None
    nozzle_target: float | None = None
    bed: float | None = None
    bed_target: float | None = None
    chamber: float | None = None


class HmsEntry(BaseModel):
    """One active HMS alert (bambu-lan-protocol.md 8.1)."""

    model_config = ConfigDict(frozen=True)

    attr: int
    code: int
    id: str = Field(description="display code HMS_AAAA_BBBB_CCCC_DDDD without the prefix")
    severity: int = Field(description="1 fatal, 2 serious, 3 common, 4 info")


class LiveState(BaseModel):
    """The normalised live state of a printer: what ``printers`` mirrors and /status serves."""

    model_config = ConfigDict(frozen=True)

    state: PrinterState = PrinterState.UNKNOWN
    gcode_state: str | None = Field(default=None, description="raw Bambu gcode_state")
    progress_pct: int | None = Field(default=None, description="0..100")
    remaining_min: int | None = Field(default=None, description="estimated minutes left")
    layer: int | None = None
    total_layers: int | None = Field(default=None, description="None when unknown (0 on wire)")
    temps: Temperatures = Field(default_factory=Temperatures)
    subtask_name: str | None = None
    gcode_file: str | None = None
    print_error: int = Field(default=0, description="0 or 0xMMMMEEEE (8.2)")
    print_error_code: str | None = Field(default=None, description="MMMM-EEEE when not 0")
    hms: tuple[HmsEntry, ...] = ()


def _int(value: Any) -> int | None:
    """Ints that may arrive as strings or floats; None when absent or garbage."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return round(float(value), 1)
    except (TypeError, ValueError):
        return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _packed(value: Any) -> tuple[float, float] | None:
    """Newer firmware packs (target << 16) | current into one int (4.6)."""
    packed = _int(value)
    if packed is None:
        return None
    return float(packed & 0xFFFF), float((packed >> 16) & 0xFFFF)


def _device_temp(report: dict[str, Any], *path: str) -> tuple[float, float] | None:
    node: Any = report.get("device")
    for key in path:
        if isinstance(node, list):
            node = node[0] if node else None
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return _packed(node)


def hms_id(attr: int, code: int) -> str:
    """``0300_0100_0001_0007`` from attr/code (8.1)."""
    return f"{attr >> 16:04X}_{attr & 0xFFFF:04X}_{code >> 16:04X}_{code & 0xFFFF:04X}"


def error_code(print_error: int) -> str:
    """``0500-4004`` from 0x05004004 (8.2)."""
    return f"{print_error >> 16:04X}-{print_error & 0xFFFF:04X}"


def _hms(value: Any) -> tuple[HmsEntry, ...]:
    entries = []
    for item in value if isinstance(value, list) else []:
        if not isinstance(item, dict):
            continue
        attr, code = _hex_or_int(item.get("attr")), _hex_or_int(item.get("code"))
        if attr is None or code is None:
            continue
        entries.append(HmsEntry(attr=attr, code=code, id=hms_id(attr, code), severity=code >> 16))
    return tuple(entries)


def _hex_or_int(value: Any) -> int | None:
    """HMS attr/code are ints; a few firmwares send hex strings."""
    if isinstance(value, str):
        try:
            return int(value, 16)
        except ValueError:
            return None
    return _int(value)


def normalize(report: dict[str, Any], *, complete: bool, online: bool) -> LiveState:
    """The live state of a merged ``print`` object.

    ``complete`` says whether a full report was merged; without one every value is
    untrustworthy and the state stays UNKNOWN (4.4). Without a connection the state is
    OFFLINE whatever the last report said.
    """
    if not online:
        return LiveState(state=PrinterState.OFFLINE)
    if not complete:
        return LiveState(state=PrinterState.UNKNOWN)
    gcode_state = _str(report.get("gcode_state"))
    nozzle = _device_temp(report, "extruder", "info", "temp")
    bed = _device_temp(report, "bed", "info", "temp")
    chamber = _device_temp(report, "ctc", "info", "temp")
    temps = Temperatures(
        nozzle=nozzle[0] if nozzle else _float(report.get("nozzle_temper")),
        nozzle_target=nozzle[1] if nozzle else _float(report.get("nozzle_target_temper")),
        bed=bed[0] if bed else _float(report.get("bed_temper")),
        bed_target=bed[1] if bed else _float(report.get("bed_target_temper")),
        chamber=chamber[0] if chamber else _float(report.get("chamber_temper")),
    )
    total_layers = _int(report.get("total_layer_num"))
    print_error = _int(report.get("print_error")) or 0
    return LiveState(
        state=from_bambu(gcode_state),
        gcode_state=gcode_state,
        progress_pct=_int(report.get("mc_percent")),
        remaining_min=_int(report.get("mc_remaining_time")),
        layer=_int(report.get("layer_num")),
        total_layers=total_layers or None,
        temps=temps,
        subtask_name=_str(report.get("subtask_name")),
        gcode_file=_str(report.get("gcode_file")),
        print_error=print_error,
        print_error_code=error_code(print_error) if print_error else None,
        hms=_hms(report.get("hms")),
    )


def describe_error(live: LiveState) -> str | None:
    """Operator text for a failed print: print_error and HMS codes, or None if neither."""
    parts = []
    if live.print_error:
        parts.append(f"print_error {live.print_error_code}")
    parts.extend(f"HMS_{h.id}" for h in live.hms)
    return ", ".join(parts) or None
