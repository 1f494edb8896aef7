"""Mesh measurements (volume, surface, size, bodies) and sanity checks, with numpy only."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Vertices = npt.NDArray[np.float64]
Faces = npt.NDArray[np.int64]

DEGENERATE_AREA_MM2 = 1e-10
MIN_VOLUME_MM3 = 1e-3


class MeshProblem(ValueError):
    """The mesh is not printable: empty, flat, all degenerate, or without volume."""


@dataclass(frozen=True)
class MeshStats:
    """What the checks and the fast quote need (millimetres)."""

    triangles: int
    vertices: int
    size_mm: tuple[float, float, float]
    min_mm: tuple[float, float, float]
    volume_mm3: float
    area_mm2: float
    bodies: int
    watertight: bool
    degenerate_triangles: int

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MeshStats:
        """Inverse of :meth:`to_json`."""
        return cls(
            triangles=int(data["triangles"]),
            vertices=int(data["vertices"]),
            size_mm=(data["size_mm"][0], data["size_mm"][1], data["size_mm"][2]),
            min_mm=(data["min_mm"][0], data["min_mm"][1], data["min_mm"][2]),
            volume_mm3=float(data["volume_mm3"]),
            area_mm2=float(data["area_mm2"]),
            bodies=int(data["bodies"]),
            watertight=bool(data["watertight"]),
            degenerate_triangles=int(data["degenerate_triangles"]),
        )


_MIX = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9], dtype=np.uint64)


def weld(triangles: npt.NDArray[np.floating[Any]]) -> tuple[Vertices, Faces]:
    """Indexed mesh from a triangle soup (n, 3, 3): identical corners become one vertex.

    Corners are grouped by a 64-bit mix of their coordinates' bits (sorting one integer per
    corner is several times faster than sorting 24-byte rows); if two different corners ever
    share a key, the exact row comparison is used instead.
    """
    flat = np.ascontiguousarray(triangles.reshape(-1, 3), dtype=np.float64)
    flat = flat + 0.0  # -0.0 and 0.0 must weld together
    bits = flat.view(np.uint64)
    keys = (bits * _MIX).sum(axis=1, dtype=np.uint64)  # wraps modulo 2**64: a hash
    keys ^= keys >> np.uint64(29)
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    if not np.array_equal(bits[first][inverse], bits):  # a collision: weld row by row
        rows = flat.view(np.dtype((np.void, flat.dtype.itemsize * 3))).ravel()
        _, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
    return flat[first], inverse.reshape(-1, 3).astype(np.int64)


def measure(vertices: Vertices, faces: Faces) -> MeshStats:
    """Measure an indexed mesh; raises MeshProblem when it cannot be printed."""
    if len(faces) == 0 or len(vertices) == 0:
        raise MeshProblem("the model has no triangles")
    if not np.all(np.isfinite(vertices)):
        raise MeshProblem("the model has non-finite vertex coordinates")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise MeshProblem("a triangle refers to a vertex that does not exist")
    in_use = np.zeros(len(vertices), dtype=bool)
    in_use[faces.ravel()] = True
    used = vertices[in_use]
    low = used.min(axis=0)
    size = used.max(axis=0) - low
    a, b, c = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    cross = np.cross(b - a, c - a)
    areas = 0.5 * np.linalg.norm(cross, axis=1)
    degenerate = int(np.count_nonzero(areas <= DEGENERATE_AREA_MM2))
    if degenerate == len(faces):
        raise MeshProblem(f"all {len(faces)} triangles are degenerate (zero area)")
    if np.any(size <= 0):
        raise MeshProblem(
            "the model is flat ({:.3f} x {:.3f} x {:.3f} mm): it has no thickness".format(*size)
        )
    # Signed tetrahedra against the bounding-box corner keep the sums well conditioned.
    volume = float(abs(np.einsum("ij,ij->i", a - low, np.cross(b - low, c - low)).sum()) / 6.0)
    if volume < MIN_VOLUME_MM3:
        raise MeshProblem("the model encloses no volume (an open or flat surface)")
    return MeshStats(
        triangles=len(faces),
        vertices=len(vertices),
        size_mm=(float(size[0]), float(size[1]), float(size[2])),
        min_mm=(float(low[0]), float(low[1]), float(low[2])),
        volume_mm3=volume,
        area_mm2=float(areas.sum()),
        bodies=count_bodies(len(vertices), faces, in_use),
        watertight=is_watertight(faces),
        degenerate_triangles=degenerate,
    )


def is_watertight(faces: Faces) -> bool:
    """Every edge is shared by exactly two triangles."""
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    # One int64 key per undirected edge: a 1-D sort is far faster than unique(axis=0).
    keys = np.sort(edges[:, 0] * (int(faces.max()) + 1) + edges[:, 1])
    boundaries = np.flatnonzero(np.diff(keys)) + 1
    counts = np.diff(np.concatenate([[0], boundaries, [len(keys)]]))
    return bool(np.all(counts == 2))


def count_bodies(
    vertex_count: int, faces: Faces, in_use: npt.NDArray[np.bool_] | None = None
) -> int:
    """Connected shells: label propagation with pointer jumping (O(log n) rounds)."""
    parent = np.arange(vertex_count, dtype=np.int64)
    u = np.concatenate([faces[:, 0], faces[:, 1]])
    v = np.concatenate([faces[:, 1], faces[:, 2]])
    while True:
        pu, pv = parent[u], parent[v]
        low = np.minimum(pu, pv)
        before = parent.copy()
        np.minimum.at(parent, pu, low)
        np.minimum.at(parent, pv, low)
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
        if np.array_equal(parent, before):
            break
    if in_use is None:
        in_use = np.zeros(vertex_count, dtype=bool)
        in_use[faces.ravel()] = True
    # Every shell ends labelled with its smallest vertex, the one vertex that is its own label.
    return int(np.count_nonzero(in_use & (parent == np.arange(vertex_count))))
