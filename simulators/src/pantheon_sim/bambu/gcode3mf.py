"""Reading print files as a Bambu printer does: ``project_file`` URLs, packages, G-code headers.

Error codes follow bambu-lan-protocol.md sections 5.5, 7 and 13: an unsupported URL form is
0x05004002 (0x0500C010 for folder URLs on P1/A1), a missing file 0x05008013, and a package
that cannot be parsed (not a ZIP, truncated, missing entry, MD5 mismatch) 0x05004003.
"""

import hashlib
import io
import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from xml.etree import ElementTree

from pantheon_sim.bambu.printer import ErrorCode, JobError, Payload, PrintJob

_DURATION = r"((?:\d+\s*d\s*)?(?:\d+\s*h\s*)?(?:\d+\s*m\s*)?(?:\d+(?:\.\d+)?\s*s)?)"
_ESTIMATE_PATTERNS = (
    re.compile(r"total estimated time\s*[:=]\s*" + _DURATION, re.IGNORECASE),
    re.compile(r"estimated printing time[^:=\n]*[:=]\s*" + _DURATION, re.IGNORECASE),
)
_LAYERS_PATTERNS = (
    re.compile(r"total layer number\s*[:=]\s*(\d+)", re.IGNORECASE),
    re.compile(r"total_layer_count\s*[:=]\s*(\d+)", re.IGNORECASE),
)
_M73_LAYER = re.compile(r"^M73\s+L(\d+)", re.IGNORECASE)
_PARTS = re.compile(r"(\d+(?:\.\d+)?)\s*([dhms])", re.IGNORECASE)
_UNIT_S = {"d": 86400, "h": 3600, "m": 60, "s": 1}


@dataclass(frozen=True)
class GcodeInfo:
    """What the printer learns from a G-code file."""

    estimated_s: float | None
    """The slicer's own estimate (header), seconds."""
    total_layers: int
    """Header layer count, else the number of layer markers; 0 = unknown."""
    lines: int
    md5: str
    """Uppercase hex MD5 of the bytes."""


def parse_duration(text: str) -> float | None:
    """``1h 2m 3s`` -> 3723.0; None when no part is found."""
    parts = _PARTS.findall(text)
    if not parts:
        return None
    return sum(float(n) * _UNIT_S[u.lower()] for n, u in parts)


def parse_gcode(data: bytes) -> GcodeInfo:
    """Scan G-code once: header estimate and layer count, layer markers, line count."""
    estimate: float | None = None
    header_layers = 0
    markers = 0
    max_m73 = 0
    lines = 0
    for raw in data.splitlines():
        lines += 1
        line = raw.decode("utf-8", errors="replace").strip()
        if not line:
            continue
        if line.startswith(";"):
            if line.upper().startswith(";LAYER_CHANGE"):
                markers += 1
                continue
            if estimate is None:
                for pattern in _ESTIMATE_PATTERNS:
                    m = pattern.search(line)
                    if m and m.group(1).strip():
                        estimate = parse_duration(m.group(1))
                        break
            if not header_layers:
                for pattern in _LAYERS_PATTERNS:
                    m = pattern.search(line)
                    if m:
                        header_layers = int(m.group(1))
                        break
        elif line[:3].upper() == "M73":
            m = _M73_LAYER.match(line)
            if m:
                max_m73 = max(max_m73, int(m.group(1)))
    layers = header_layers or markers or max_m73
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest().upper()
    return GcodeInfo(estimated_s=estimate, total_layers=layers, lines=lines, md5=md5)


def slice_info_prediction(xml_text: str, plate: int) -> float | None:
    """The ``prediction`` (seconds) of plate ``plate`` in ``Metadata/slice_info.config``."""
    try:
        root = ElementTree.fromstring(xml_text)  # noqa: S314 - files the sim's own users upload
    except ElementTree.ParseError:
        return None
    for plate_el in root.iter("plate"):
        meta = {m.get("key"): m.get("value") for m in plate_el.iter("metadata")}
        if meta.get("index") == str(plate) and meta.get("prediction"):
            try:
                return float(meta["prediction"] or "")
            except ValueError:
                return None
    return None


def resolve_url(url: str, file: str, root: Path, *, folder_urls_fail: bool) -> Path:
    """Map a ``project_file`` URL onto the storage root (section 5.5 scheme matrix)."""
    rel: str | None = None
    folder_error = False
    if url.startswith("ftp:///"):
        rel = url[len("ftp:///") :]
        folder_error = folder_urls_fail and "/" in rel.strip("/")
    elif url.startswith("ftp://"):
        rel = url[len("ftp://") :]
        folder_error = folder_urls_fail and "/" in rel.strip("/")
    elif url.startswith("file:///mnt/sdcard/"):
        rel = url[len("file:///mnt/sdcard/") :]
    elif url.startswith("file:///sdcard/"):
        rel = url[len("file:///sdcard/") :]
    elif not url and file:
        rel = file
    elif url.startswith("/mnt/sdcard/"):
        rel = url[len("/mnt/sdcard/") :]
    if rel is None or not rel.strip("/"):
        raise JobError(ErrorCode.UNSUPPORTED_PATH, f"unsupported print file path {url!r}")
    parts = PurePosixPath(rel.strip("/")).parts
    if any(p in ("..", ".") for p in parts):
        raise JobError(ErrorCode.UNSUPPORTED_PATH, f"unsupported print file path {url!r}")
    if folder_error:
        raise JobError(ErrorCode.SD_EXCEPTION, f"MicroSD read/write exception for {url!r}")
    path = root.joinpath(*parts)
    if not path.is_file():
        raise JobError(ErrorCode.FILE_NOT_AVAILABLE, f"print file {rel!r} is not available")
    return path


def open_project(path: Path, param: str, md5: str = "", *, seconds_per_line: float) -> PrintJob:
    """Open a ``.gcode.3mf`` and read the plate entry ``param``; JobError when unusable."""
    entry = param.strip().lstrip("/") or "Metadata/plate_1.gcode"
    try:
        with zipfile.ZipFile(path) as package:
            names = set(package.namelist())
            if entry not in names:
                raise JobError(ErrorCode.CANNOT_PARSE, f"{entry!r} is not in the package")
            data = package.read(entry)
            md5_entry = f"{entry}.md5"
            expected = package.read(md5_entry).decode().strip() if md5_entry in names else ""
            slice_info = (
                package.read("Metadata/slice_info.config").decode("utf-8", errors="replace")
                if "Metadata/slice_info.config" in names
                else ""
            )
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError) as err:
        raise JobError(ErrorCode.CANNOT_PARSE, f"unable to parse the file: {err}") from err
    info = parse_gcode(data)
    for wanted in (expected, md5.strip()):
        if wanted and wanted.upper() != info.md5:
            raise JobError(ErrorCode.CANNOT_PARSE, "unable to parse the file: MD5 mismatch")
    estimate = info.estimated_s
    if estimate is None and slice_info:
        m = re.search(r"plate_(\d+)\.gcode$", entry)
        estimate = slice_info_prediction(slice_info, int(m.group(1)) if m else 1)
    if estimate is None:
        estimate = info.lines * seconds_per_line
    return PrintJob(
        file_name=path.name,
        plate_path=entry,
        estimated_s=max(1.0, estimate),
        total_layers=info.total_layers,
    )


def open_gcode(path: Path, *, seconds_per_line: float) -> PrintJob:
    """A plain G-code file (``gcode_file`` on X1)."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise JobError(ErrorCode.FILE_NOT_AVAILABLE, f"cannot read {path.name}: {err}") from err
    info = parse_gcode(data)
    estimate = info.estimated_s if info.estimated_s is not None else info.lines * seconds_per_line
    return PrintJob(
        file_name=path.name,
        plate_path=path.name,
        estimated_s=max(1.0, estimate),
        total_layers=info.total_layers,
    )


class StorageJobResolver:
    """The printer's :data:`~pantheon_sim.bambu.printer.JobResolver` over its storage folder."""

    def __init__(self, root: Path, *, folder_urls_fail: bool, seconds_per_line: float) -> None:
        self.root = root
        self.folder_urls_fail = folder_urls_fail
        self.seconds_per_line = seconds_per_line

    def __call__(self, command: Payload) -> PrintJob:
        kind = command.get("command")
        if kind == "gcode_file":
            param = str(command.get("param", ""))
            path = resolve_url(
                param if param.startswith("/mnt/sdcard/") else f"file:///sdcard/{param}",
                "",
                self.root,
                folder_urls_fail=False,
            )
            if path.name.endswith(".3mf"):
                return open_project(path, "", seconds_per_line=self.seconds_per_line)
            return open_gcode(path, seconds_per_line=self.seconds_per_line)
        path = resolve_url(
            str(command.get("url", "")),
            str(command.get("file", "")),
            self.root,
            folder_urls_fail=self.folder_urls_fail,
        )
        return open_project(
            path,
            str(command.get("param", "")),
            str(command.get("md5", "") or ""),
            seconds_per_line=self.seconds_per_line,
        )


def build_gcode_3mf(
    gcode: bytes,
    *,
    plate: int = 1,
    with_md5: bool = True,
    md5_override: str | None = None,
    prediction_s: float | None = None,
    extra: Iterable[tuple[str, bytes]] = (),
) -> bytes:
    """A minimal sliced package as Studio exports it (for tests and demos)."""
    buf = io.BytesIO()
    entry = f"Metadata/plate_{plate}.gcode"
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr(
            "[Content_Types].xml",
            '<?xml version="1.0" encoding="UTF-8"?>\n<Types xmlns='
            '"http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="gcode" ContentType="text/x.gcode"/></Types>\n',
        )
        z.writestr(entry, gcode)
        if with_md5:
            digest = hashlib.md5(gcode, usedforsecurity=False).hexdigest().upper()
            z.writestr(f"{entry}.md5", md5_override if md5_override is not None else digest)
        if prediction_s is not None:
            z.writestr(
                "Metadata/slice_info.config",
                '<?xml version="1.0" encoding="UTF-8"?>\n<config><plate>'
                f'<metadata key="index" value="{plate}"/>'
                f'<metadata key="prediction" value="{int(prediction_s)}"/>'
                "</plate></config>\n",
            )
        for name, data in extra:
            z.writestr(name, data)
    return buf.getvalue()


def sample_gcode(*, layers: int = 10, estimate: str | None = "2m 0s", lines: int = 50) -> bytes:
    """A small G-code body with a Bambu-style header (for tests and demos)."""
    head = ["; HEADER_BLOCK_START", "; generated by pantheon bambu-sim"]
    if estimate is not None:
        head.append(f"; model printing time: {estimate}; total estimated time: {estimate}")
    head.append(f"; total layer number: {layers}")
    head.append("; HEADER_BLOCK_END")
    body = ["M104 S220", "M140 S55", "G28"]
    per_layer = max(1, lines // max(1, layers))
    for layer in range(1, layers + 1):
        body.append(";LAYER_CHANGE")
        body.append(f"M73 L{layer}")
        body.extend(f"G1 X{i % 200} Y{layer} E0.1" for i in range(per_layer))
    return ("\n".join(head + body) + "\n").encode()
