"""Metadata of a G-code file (plain ``.gcode`` or Bambu ``.gcode.3mf``), read without trust.

A ``.3mf`` is a ZIP archive: before anything is read from it the archive is checked as a
whole (member names, member count, declared sizes, compression ratios); only a few small
members are then read, each with a byte budget, so a hostile archive costs bounded time and
memory. Nothing is ever extracted to disk.

Sources, in order of trust: ``Metadata/slice_info.config`` (Bambu Studio / OrcaSlicer, also
written by slicer-api), ``Metadata/plate_N.json`` (bed type), the G-code header comments of
``Metadata/plate_1.gcode`` or of a plain file (Bambu ``HEADER_BLOCK`` and PrusaSlicer's
trailing ``; key = value`` block).
"""

from __future__ import annotations

import json
import re
import stat
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO
from xml.etree import ElementTree

from pantheon_contracts.beds import BedType
from pantheon_contracts.printer import PrinterModel

__all__ = [
    "ArchiveLimits",
    "GcodeMetadata",
    "InvalidPackage",
    "MetadataError",
    "UnsafeArchive",
    "bed_type_from_text",
    "check_archive",
    "parse_duration",
    "parse_gcode_text",
    "printer_model_from_text",
    "read_metadata",
]

HEAD_BYTES = 256 * 1024
"""Bytes read from the start (and end, for plain files) of a G-code body for its comments."""
CONFIG_MAX_BYTES = 4 * 1024 * 1024
"""Largest XML/JSON member read from a 3MF."""
RATIO_MIN_BYTES = 1024 * 1024
"""Members smaller than this are not ratio-checked (a tiny member of zeros is harmless)."""


class MetadataError(Exception):
    """The file cannot be accepted; ``str(err)`` is the reason shown to the user."""


class InvalidPackage(MetadataError):
    """Not a readable archive / G-code file."""


class UnsafeArchive(MetadataError):
    """The archive is hostile or too expensive: path traversal, zip bomb, too many members."""


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    """What a 3MF may cost."""

    max_uncompressed_bytes: int = 2 * 1024**3
    max_ratio: float = 100.0
    max_members: int = 10_000


@dataclass(frozen=True, slots=True)
class GcodeMetadata:
    """What the file says about itself (None: not stated)."""

    printer_model: PrinterModel | None = None
    printer_model_raw: str | None = None
    bed_type: BedType | None = None
    estimated_s: float | None = None
    filament_g: float | None = None
    plate_count: int = 1


# -- names -------------------------------------------------------------------------------

_MODEL_IDS = {
    "BL-P001": PrinterModel.X1C,
    "BL-P002": PrinterModel.X1C,
    "C13": PrinterModel.X1E,
    "C11": PrinterModel.P1P,
    "C12": PrinterModel.P1S,
    "N1": PrinterModel.A1MINI,
    "N2S": PrinterModel.A1,
}


def printer_model_from_text(text: str) -> PrinterModel | None:
    """``Bambu Lab P1S`` / ``C12`` / ``X1 Carbon`` / ``A1 mini`` -> PrinterModel, else None."""
    raw = text.strip()
    if raw.upper() in _MODEL_IDS:
        return _MODEL_IDS[raw.upper()]
    squashed = re.sub(r"[^a-z0-9]", "", raw.lower()).removeprefix("bambulab")
    table = {
        "x1c": PrinterModel.X1C,
        "x1carbon": PrinterModel.X1C,
        "x1": PrinterModel.X1C,
        "x1e": PrinterModel.X1E,
        "p1s": PrinterModel.P1S,
        "p1p": PrinterModel.P1P,
        "a1": PrinterModel.A1,
        "a1mini": PrinterModel.A1MINI,
    }
    return table.get(squashed)


def bed_type_from_text(text: str) -> BedType | None:
    """Bambu/Orca plate names (``Textured PEI Plate``, ``hot_plate``, ``eng_plate``) -> BedType."""
    lowered = text.strip().lower()
    if not lowered:
        return None
    try:
        return BedType(lowered)
    except ValueError:
        pass
    if "textured" in lowered:
        return BedType.TEXTURED_PEI
    if "cool" in lowered or "supertack" in lowered:
        return BedType.COOL_PLATE
    if "eng" in lowered:
        return BedType.ENGINEERING
    if "hot" in lowered or "high temp" in lowered or "smooth" in lowered or "pei" in lowered:
        return BedType.SMOOTH_PEI
    return None


# -- G-code comments ---------------------------------------------------------------------

_PARTS = re.compile(r"(\d+(?:\.\d+)?)\s*([dhms])", re.IGNORECASE)
_UNIT_S = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_ESTIMATE = (
    re.compile(r"total estimated time\s*[:=]\s*([0-9dhms .]+)", re.IGNORECASE),
    re.compile(r"estimated printing time(?: \(normal mode\))?\s*[:=]\s*([0-9dhms .]+)", re.I),
    re.compile(r"model printing time\s*[:=]\s*([0-9dhms .]+)", re.IGNORECASE),
)
_FILAMENT_G = (
    re.compile(r"total filament weight \[g\]\s*[:=]\s*([0-9.]+)", re.IGNORECASE),
    re.compile(r"filament used \[g\]\s*[:=]\s*([0-9.,\s]+)", re.IGNORECASE),
)
_MODEL = re.compile(r"^;\s*printer_model\s*[:=]\s*(.+)$", re.IGNORECASE)
_BED = re.compile(r"^;\s*curr_bed_type\s*[:=]\s*(.+)$", re.IGNORECASE)
_TIME_PREFIX = re.compile(r"^;\s*TIME\s*:\s*(\d+)\s*$")  # Cura flavour


def parse_duration(text: str) -> float | None:
    """``1h 2m 3s`` -> 3723.0; ``95`` (bare seconds) -> 95.0; None when nothing is found."""
    stripped = text.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", stripped):
        return float(stripped)
    parts = _PARTS.findall(stripped)
    if not parts:
        return None
    return sum(float(n) * _UNIT_S[u.lower()] for n, u in parts)


def _grams(text: str) -> float | None:
    # "12.3, 4.5" (one value per extruder) sums up.
    total = 0.0
    found = False
    for piece in text.replace(",", " ").split():
        try:
            total += float(piece)
            found = True
        except ValueError:
            return None
    return round(total, 3) if found else None


def parse_gcode_text(text: str) -> GcodeMetadata:
    """Metadata from the comment lines of a G-code body (head and/or tail)."""
    estimated: float | None = None
    grams: float | None = None
    model_raw: str | None = None
    bed: BedType | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith(";"):
            continue
        if estimated is None:
            for pattern in _ESTIMATE:
                if (m := pattern.search(line)) and (value := parse_duration(m.group(1))):
                    estimated = value
                    break
            else:
                if m := _TIME_PREFIX.match(line):
                    estimated = float(m.group(1))
        if grams is None:
            for pattern in _FILAMENT_G:
                if (m := pattern.search(line)) and (value := _grams(m.group(1))) is not None:
                    grams = value
                    break
        if model_raw is None and (m := _MODEL.match(line)):
            model_raw = m.group(1).strip().strip('"')
        if bed is None and (m := _BED.match(line)):
            bed = bed_type_from_text(m.group(1).strip('" '))
    return GcodeMetadata(
        printer_model=printer_model_from_text(model_raw) if model_raw else None,
        printer_model_raw=model_raw,
        bed_type=bed,
        estimated_s=estimated,
        filament_g=grams,
    )


def _merge(first: GcodeMetadata, second: GcodeMetadata) -> GcodeMetadata:
    """Fields of ``first``, gaps filled from ``second``."""
    return GcodeMetadata(
        printer_model=first.printer_model or second.printer_model,
        printer_model_raw=first.printer_model_raw or second.printer_model_raw,
        bed_type=first.bed_type or second.bed_type,
        estimated_s=first.estimated_s if first.estimated_s is not None else second.estimated_s,
        filament_g=first.filament_g if first.filament_g is not None else second.filament_g,
        plate_count=max(first.plate_count, second.plate_count),
    )


# -- archives ----------------------------------------------------------------------------

_PLATE_GCODE = re.compile(r"^Metadata/plate_(\d+)\.gcode$")


def _unsafe_name(name: str) -> str | None:
    """Why a member name is refused, or None."""
    if not name:
        return "an empty member name"
    if "\\" in name:
        return f"a backslash in member name {name!r}"
    if "\x00" in name:
        return "a NUL in a member name"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return f"an absolute member name {name!r}"
    if any(part == ".." for part in PurePosixPath(name).parts):
        return f"a '..' member name {name!r}"
    return None


_DOS_DIRECTORY = 0x10
"""MS-DOS attribute bit of a directory (low byte of ``external_attr``)."""


def _entry_kind_problem(info: zipfile.ZipInfo) -> str | None:
    """Why a member's kind is refused (a symlink, device, FIFO, socket...), or None.

    The high 16 bits of ``external_attr`` carry the Unix ``st_mode`` when the archive was made
    on Unix: a symlink member is a path for whoever extracts it (the printer, a person), not
    G-code. Only regular files and directories are accepted, and a plate's G-code must be a
    regular file.
    """
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    directory = info.is_dir() or kind == stat.S_IFDIR or bool(info.external_attr & _DOS_DIRECTORY)
    if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
        what = {
            stat.S_IFLNK: "a symbolic link",
            stat.S_IFCHR: "a character device",
            stat.S_IFBLK: "a block device",
            stat.S_IFIFO: "a FIFO",
            stat.S_IFSOCK: "a socket",
        }.get(kind, f"a special entry (mode {mode:o})")
        return f"member {info.filename!r} is {what}, not a regular file"
    if directory and _PLATE_GCODE.match(info.filename.rstrip("/")):
        return f"member {info.filename!r} is a directory, not a plate's G-code"
    return None


def check_archive(infos: Iterable[zipfile.ZipInfo], limits: ArchiveLimits) -> None:
    """Refuse an archive whose member list is hostile (raise `UnsafeArchive`)."""
    total = 0
    for count, info in enumerate(infos, start=1):
        if count > limits.max_members:
            raise UnsafeArchive(f"archive has more than {limits.max_members} members")
        if problem := _unsafe_name(info.filename):
            raise UnsafeArchive(f"archive refused: {problem}")
        if problem := _entry_kind_problem(info):
            raise UnsafeArchive(f"archive refused: {problem}")
        total += info.file_size
        if total > limits.max_uncompressed_bytes:
            raise UnsafeArchive(
                f"archive refused: more than {limits.max_uncompressed_bytes} bytes uncompressed"
            )
        if info.file_size >= RATIO_MIN_BYTES:
            ratio = info.file_size / max(info.compress_size, 1)
            if ratio > limits.max_ratio:
                raise UnsafeArchive(
                    f"archive refused: member {info.filename!r} expands {ratio:.0f}x "
                    f"(limit {limits.max_ratio:g}x)"
                )


def _read_member(zf: zipfile.ZipFile, name: str, budget: int) -> bytes:
    with zf.open(name) as member:
        return member.read(budget)


def _parse_xml(data: bytes) -> ElementTree.Element | None:
    # No DTDs at all: they are the vehicle of entity-expansion (billion laughs) and XXE.
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise UnsafeArchive("archive refused: XML with a DTD or entity declaration")
    try:
        return ElementTree.fromstring(data)  # noqa: S314 - DTDs refused above, size bounded
    except ElementTree.ParseError:
        return None


def _slice_info(data: bytes) -> GcodeMetadata:
    root = _parse_xml(data)
    if root is None:
        return GcodeMetadata()
    plates = list(root.iter("plate"))
    estimated = 0.0
    grams = 0.0
    have_time = have_weight = False
    model: PrinterModel | None = None
    model_raw: str | None = None
    bed: BedType | None = None
    for plate in plates:
        meta = {m.get("key"): m.get("value") or "" for m in plate.iter("metadata")}
        if (value := meta.get("prediction")) and (seconds := parse_duration(value)) is not None:
            estimated += seconds
            have_time = True
        if value := meta.get("weight"):
            try:
                grams += float(value)
                have_weight = True
            except ValueError:
                pass
        if model_raw is None and (value := meta.get("printer_model_id")):
            model_raw = value
            model = printer_model_from_text(value)
        if bed is None and (value := meta.get("bed_type") or meta.get("curr_bed_type")):
            bed = bed_type_from_text(value)
    return GcodeMetadata(
        printer_model=model,
        printer_model_raw=model_raw,
        bed_type=bed,
        estimated_s=estimated if have_time else None,
        filament_g=round(grams, 3) if have_weight else None,
        plate_count=max(1, len(plates)),
    )


def _plate_json(data: bytes) -> BedType | None:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if isinstance(doc, dict) and isinstance(doc.get("bed_type"), str):
        return bed_type_from_text(doc["bed_type"])
    return None


def read_3mf(file: IO[bytes], limits: ArchiveLimits) -> GcodeMetadata:
    """Check the archive, then read its metadata (raises `MetadataError`)."""
    try:
        zf = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise InvalidPackage(f"not a valid 3MF (ZIP) file: {err}") from err
    with zf:
        infos = zf.infolist()
        check_archive(infos, limits)
        names = {info.filename for info in infos}
        plates = sorted(int(m.group(1)) for name in names if (m := _PLATE_GCODE.match(name)))
        try:
            result = GcodeMetadata(plate_count=max(1, len(plates)))
            if "Metadata/slice_info.config" in names:
                info = _slice_info(_read_member(zf, "Metadata/slice_info.config", CONFIG_MAX_BYTES))
                result = _merge(info, result) if plates else info
            if plates:
                first = f"Metadata/plate_{plates[0]}"
                if result.bed_type is None and f"{first}.json" in names:
                    bed = _plate_json(_read_member(zf, f"{first}.json", CONFIG_MAX_BYTES))
                    result = _merge(result, GcodeMetadata(bed_type=bed))
                head = _read_member(zf, f"{first}.gcode", HEAD_BYTES)
                header = parse_gcode_text(head.decode("utf-8", "replace"))
                result = _merge(result, header)
                if len(plates) > 1:
                    result = GcodeMetadata(
                        printer_model=result.printer_model,
                        printer_model_raw=result.printer_model_raw,
                        bed_type=result.bed_type,
                        estimated_s=result.estimated_s,
                        filament_g=result.filament_g,
                        plate_count=len(plates),
                    )
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as err:
            raise InvalidPackage(f"damaged 3MF member: {err}") from err
        except RuntimeError as err:  # encrypted members
            raise InvalidPackage(f"unreadable 3MF member: {err}") from err
        return result


def read_gcode(file: IO[bytes], size: int) -> GcodeMetadata:
    """Metadata of a plain G-code file: comments of its head and tail."""
    file.seek(0)
    head = file.read(HEAD_BYTES)
    tail = b""
    if size > HEAD_BYTES:
        file.seek(max(HEAD_BYTES, size - HEAD_BYTES))
        tail = file.read(HEAD_BYTES)
    if b"\x00" in head[:4096]:
        raise InvalidPackage("not a text G-code file (binary content)")
    return _merge(
        parse_gcode_text(head.decode("utf-8", "replace")),
        parse_gcode_text(tail.decode("utf-8", "replace")),
    )


def read_metadata(name: str, file: IO[bytes], size: int, limits: ArchiveLimits) -> GcodeMetadata:
    """Metadata of the stored-to-be file ``name`` (its content in the seekable ``file``).

    An empty file is refused: a printer would "print" nothing and report it finished.
    """
    lowered = name.lower()
    if size <= 0:
        raise InvalidPackage(f"{name} is empty (0 bytes): nothing to print")
    file.seek(0)
    if lowered.endswith(".3mf"):
        return read_3mf(file, limits)
    if lowered.endswith(".bgcode"):
        return GcodeMetadata()  # binary G-code: metadata blocks not parsed (yet)
    return read_gcode(file, size)
