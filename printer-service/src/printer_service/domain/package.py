"""Bambu print packages: wrap plain G-code into a ``.gcode.3mf`` (bambu-lan-protocol.md 7).

``print.gcode_file`` is unreliable off X1, so plain G-code is wrapped into a ZIP holding
``Metadata/plate_1.gcode`` and its ``.md5`` (uppercase hex, no newline: a stale or lower-case
MD5 makes P1S refuse the file) and started with ``project_file`` like a sliced project.
"""

from __future__ import annotations

import hashlib
import io
import zipfile

PLATE_ENTRY = "Metadata/plate_1.gcode"
MD5_ENTRY = PLATE_ENTRY + ".md5"
_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="gcode" ContentType="text/x.gcode"/>'
    '<Default Extension="md5" ContentType="text/plain"/></Types>'
)


class PackageError(ValueError):
    """The file cannot be printed as a Bambu project."""


def needs_wrapping(name: str) -> bool:
    """Plain G-code (``.gcode``) must be wrapped; ``.3mf`` projects are sent as they are."""
    return name.lower().endswith(".gcode")


def wrapped_name(name: str) -> str:
    """``cube.gcode`` -> ``cube.gcode.3mf``; a project keeps its name."""
    return f"{name}.3mf" if needs_wrapping(name) else name


def plate_md5(gcode: bytes) -> str:
    """The uppercase hex MD5 the printer validates."""
    return hashlib.md5(gcode, usedforsecurity=False).hexdigest().upper()


def wrap_gcode(gcode: bytes) -> bytes:
    """A minimal ``.gcode.3mf``: the plate G-code, its MD5 and the OPC content types."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", _CONTENT_TYPES)
        archive.writestr(PLATE_ENTRY, gcode)
        archive.writestr(MD5_ENTRY, plate_md5(gcode))
    return buffer.getvalue()


def project_md5(package: bytes) -> str:
    """The plate MD5 to send with ``project_file``: the one in the package, or "" (skip).

    Raises :class:`PackageError` when the package is not a ZIP or has no plate 1 G-code.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(package)) as archive:
            names = set(archive.namelist())
            if PLATE_ENTRY not in names:
                raise PackageError(f"the project has no {PLATE_ENTRY}")
            if MD5_ENTRY in names:
                return archive.read(MD5_ENTRY).decode("ascii", "replace").strip().upper()
    except zipfile.BadZipFile as err:
        raise PackageError(f"not a 3MF (ZIP) file: {err}") from err
    return ""


def prepare(name: str, content: bytes) -> tuple[str, bytes, str]:
    """(name on the printer, bytes to upload, md5 for project_file) for a stored file."""
    package = wrap_gcode(content) if needs_wrapping(name) else content
    return wrapped_name(name), package, project_md5(package)
