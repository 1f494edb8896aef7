"""Readers for STL (binary and ASCII), OBJ and 3MF, with zip-slip and zip-bomb protection.

They run inside the limited parser process (mesh_probe.py), never in the API process.
"""

from __future__ import annotations

import posixpath
import re
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import numpy.typing as npt

from slicer_api.domain.mesh import Faces, Vertices, weld


class ReadError(ValueError):
    """The file cannot be read as the format it claims."""


class ArchiveRefused(ReadError):
    """A 3MF archive with unsafe member names or that inflates beyond the limits."""


@dataclass(frozen=True)
class ZipLimits:
    """Limits applied to 3MF archives before anything is inflated."""

    max_total_bytes: int
    max_ratio: float
    max_members: int = 10_000


_STL_RECORD = np.dtype([("normal", "<f4", 3), ("v", "<f4", (3, 3)), ("attr", "<u2")])
_ASCII_VERTEX = re.compile(rb"vertex\s+(\S+)\s+(\S+)\s+(\S+)")
_UNIT_MM = {
    "micron": 0.001,
    "millimeter": 1.0,
    "centimeter": 10.0,
    "inch": 25.4,
    "foot": 304.8,
    "meter": 1000.0,
}
_CORE_NS = "{http://schemas.microsoft.com/3dmanufacturing/core/2015/02}"


def read_mesh(path: Path, fmt: str, zip_limits: ZipLimits) -> tuple[Vertices, Faces]:
    """An indexed mesh in millimetres from ``path`` read as ``fmt`` (stl, obj, 3mf)."""
    if fmt == "stl":
        return weld(read_stl(path.read_bytes()))
    if fmt == "obj":
        return read_obj(path.read_bytes())
    if fmt == "3mf":
        return read_3mf(path, zip_limits)
    raise ReadError(f"no reader for {fmt}")


def read_stl(data: bytes) -> npt.NDArray[np.float64]:
    """Triangle soup (n, 3, 3) from binary or ASCII STL."""
    if len(data) >= 84:
        (count,) = struct.unpack_from("<I", data, 80)
        if len(data) == 84 + count * 50:
            records = np.frombuffer(data, dtype=_STL_RECORD, count=count, offset=84)
            return records["v"].astype(np.float64)
    head = data[:1024].lstrip().lower()
    if head.startswith(b"solid"):
        found = _ASCII_VERTEX.findall(data)
        if len(found) % 3:
            raise ReadError("ASCII STL: the vertex count is not a multiple of 3")
        try:
            coords = np.array(found, dtype=np.float64)
        except ValueError as err:
            raise ReadError("ASCII STL: a vertex coordinate is not a number") from err
        return coords.reshape(-1, 3, 3) if len(coords) else np.zeros((0, 3, 3))
    if len(data) < 84:
        raise ReadError("STL: the file is shorter than a binary STL header")
    raise ReadError("STL: the size does not match the triangle count (truncated or not an STL)")


def read_obj(data: bytes) -> tuple[Vertices, Faces]:
    """Vertices and fan-triangulated faces of a Wavefront OBJ (1-based or negative indices)."""
    vertices: list[tuple[float, float, float]] = []
    faces: list[tuple[int, int, int]] = []
    for number, raw in enumerate(data.splitlines(), start=1):
        parts = raw.split()
        if not parts:
            continue
        try:
            if parts[0] == b"v":
                vertices.append((float(parts[1]), float(parts[2]), float(parts[3])))
            elif parts[0] == b"f":
                idx = []
                for token in parts[1:]:
                    i = int(token.split(b"/")[0])
                    idx.append(i - 1 if i > 0 else len(vertices) + i)
                faces.extend((idx[0], idx[k], idx[k + 1]) for k in range(1, len(idx) - 1))
        except (ValueError, IndexError) as err:
            raise ReadError(f"OBJ line {number}: {raw[:60]!r} cannot be read") from err
    return np.array(vertices, dtype=np.float64).reshape(-1, 3), np.array(
        faces, dtype=np.int64
    ).reshape(-1, 3)


def check_archive(archive: zipfile.ZipFile, limits: ZipLimits) -> None:
    """Refuse traversal names, too many members, too much inflated data, bomb-like ratios."""
    infos = archive.infolist()
    if len(infos) > limits.max_members:
        raise ArchiveRefused(f"3MF: {len(infos)} members (limit {limits.max_members})")
    total = 0
    for info in infos:
        name = info.filename
        parts = name.replace("\\", "/").split("/")
        if (
            name.startswith(("/", "\\"))
            or ".." in parts
            or re.match(r"^[A-Za-z]:", name)
            or "\x00" in name
        ):
            raise ArchiveRefused(f"3MF: unsafe member name {name!r} (absolute or with '..')")
        total += info.file_size
        if total > limits.max_total_bytes:
            raise ArchiveRefused(
                f"3MF: members inflate to more than {limits.max_total_bytes} bytes"
            )
        if info.file_size > 1024 * 1024 and info.file_size > limits.max_ratio * max(
            info.compress_size, 1
        ):
            raise ArchiveRefused(
                f"3MF: member {name!r} compresses {info.file_size / max(info.compress_size, 1):.0f}"
                f":1 (limit {limits.max_ratio:.0f}:1)"
            )


def _read_member(archive: zipfile.ZipFile, name: str, limit: int) -> bytes:
    """Inflate one member, never past ``limit`` bytes whatever its header claims."""
    chunks: list[bytes] = []
    size = 0
    with archive.open(name) as member:
        while chunk := member.read(1024 * 1024):
            size += len(chunk)
            if size > limit:
                raise ArchiveRefused(f"3MF: member {name!r} inflates beyond {limit} bytes")
            chunks.append(chunk)
    return b"".join(chunks)


def _start_part(archive: zipfile.ZipFile, limit: int) -> str:
    names = set(archive.namelist())
    if "_rels/.rels" in names:
        rels = _parse_xml(_read_member(archive, "_rels/.rels", limit), "_rels/.rels")
        for rel in rels.iter():
            target = rel.get("Target")
            if target and rel.get("Type", "").endswith("/3dmodel"):
                name = posixpath.normpath(target.lstrip("/"))
                if name in names:
                    return name
    for candidate in ("3D/3dmodel.model", "3D/3DModel.model"):
        if candidate in names:
            return candidate
    raise ReadError("3MF: no 3D model part (3D/3dmodel.model)")


def _parse_xml(data: bytes, name: str) -> ET.Element:
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise ArchiveRefused(f"3MF: {name} declares a DTD or entities (refused)")
    try:
        return ET.fromstring(data)  # noqa: S314 - no DTD, so no entity expansion
    except ET.ParseError as err:
        raise ReadError(f"3MF: {name} is not well-formed XML: {err}") from err


def _transform(text: str | None) -> npt.NDArray[np.float64]:
    """3MF 3x4 matrix (row-vector convention) as a 4x4 affine matrix."""
    matrix = np.eye(4)
    if text:
        values = [float(v) for v in text.split()]
        if len(values) != 12:
            raise ReadError(f"3MF: transform {text!r} does not have 12 numbers")
        matrix[:, :3] = np.array(values).reshape(4, 3)
    return matrix


def read_3mf(path: Path, limits: ZipLimits) -> tuple[Vertices, Faces]:
    """Every build item of the 3MF, with its object and component transforms, in mm."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise ReadError(f"3MF: not a zip archive ({err})") from err
    with archive:
        check_archive(archive, limits)
        name = _start_part(archive, limits.max_total_bytes)
        root = _parse_xml(_read_member(archive, name, limits.max_total_bytes), name)
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else _CORE_NS
    scale = _UNIT_MM.get(root.get("unit", "millimeter"))
    if scale is None:
        raise ReadError(f"3MF: unknown unit {root.get('unit')!r}")
    meshes: dict[str, tuple[Vertices, Faces]] = {}
    components: dict[str, list[tuple[str, npt.NDArray[np.float64]]]] = {}
    for obj in root.iter(f"{ns}object"):
        oid = obj.get("id", "")
        mesh = obj.find(f"{ns}mesh")
        if mesh is not None:
            try:
                verts = np.array(
                    [
                        (float(v.get("x", "")), float(v.get("y", "")), float(v.get("z", "")))
                        for v in mesh.iter(f"{ns}vertex")
                    ],
                    dtype=np.float64,
                ).reshape(-1, 3)
                tris = np.array(
                    [
                        (int(t.get("v1", "")), int(t.get("v2", "")), int(t.get("v3", "")))
                        for t in mesh.iter(f"{ns}triangle")
                    ],
                    dtype=np.int64,
                ).reshape(-1, 3)
            except ValueError as err:
                raise ReadError(f"3MF: object {oid}: bad vertex or triangle ({err})") from err
            meshes[oid] = (verts, tris)
        comps = obj.find(f"{ns}components")
        if comps is not None:
            components[oid] = [
                (c.get("objectid", ""), _transform(c.get("transform")))
                for c in comps.iter(f"{ns}component")
            ]
    all_vertices: list[Vertices] = []
    all_faces: list[Faces] = []
    offset = 0

    def place(oid: str, matrix: npt.NDArray[np.float64], depth: int) -> None:
        nonlocal offset
        if depth > 16:
            raise ReadError("3MF: components nest deeper than 16 levels (a cycle?)")
        if oid in meshes:
            verts, tris = meshes[oid]
            if len(tris) and (tris.min() < 0 or tris.max() >= len(verts)):
                raise ReadError(f"3MF: object {oid} has a triangle without a vertex")
            homogeneous = np.hstack([verts, np.ones((len(verts), 1))])
            all_vertices.append((homogeneous @ matrix)[:, :3] * scale)
            all_faces.append(tris + offset)
            offset += len(verts)
        for child, child_matrix in components.get(oid, []):
            place(child, child_matrix @ matrix, depth + 1)
        if oid not in meshes and oid not in components:
            raise ReadError(f"3MF: the build refers to a missing object {oid!r}")

    build = root.find(f"{ns}build")
    items = [] if build is None else list(build.iter(f"{ns}item"))
    for item in items:
        place(item.get("objectid", ""), _transform(item.get("transform")), 0)
    if not all_vertices:
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
    return np.concatenate(all_vertices), np.concatenate(all_faces)


def write_binary_stl(path: Path, vertices: Vertices, faces: Faces) -> None:
    """The normalised model the engine slices (what was checked is what gets sliced)."""
    record = np.zeros(len(faces), dtype=_STL_RECORD)
    record["v"] = vertices[faces]
    with path.open("wb") as handle:
        handle.write(b"pantheon slicer-api normalised model".ljust(80, b" "))
        handle.write(struct.pack("<I", len(faces)))
        handle.write(record.tobytes())
