"""Model generators for tests and benchmarks: meshes and a B-rep STEP box, written from scratch.

Shipped with the package (not under tests/) so bench/slicer_bench.py builds the same models.
"""

from __future__ import annotations

import io
import math
import struct
import zipfile

import numpy as np
import numpy.typing as npt

Triangles = npt.NDArray[np.float64]
"""Array of shape (n, 3, 3): n triangles, three vertices each, millimetres."""

_BOX_FACES = (
    (0, 2, 3), (0, 3, 1), (4, 5, 7), (4, 7, 6), (0, 1, 5), (0, 5, 4),
    (2, 6, 7), (2, 7, 3), (0, 4, 6), (0, 6, 2), (1, 3, 7), (1, 7, 5),
)  # fmt: skip


def box(
    size: tuple[float, float, float], origin: tuple[float, float, float] = (0, 0, 0)
) -> Triangles:
    """A closed box of 12 outward-facing triangles."""
    sx, sy, sz = size
    ox, oy, oz = origin
    corners = np.array(
        [(ox + x * sx, oy + y * sy, oz + z * sz) for z in (0, 1) for y in (0, 1) for x in (0, 1)],
        dtype=np.float64,
    )
    tris: Triangles = corners[np.array(_BOX_FACES)]
    return tris


def cylinder(radius: float, height: float, sections: int = 64) -> Triangles:
    """A closed cylinder standing on z = 0, centred on x = y = radius."""
    angles = np.linspace(0.0, 2 * math.pi, sections, endpoint=False)
    ring = np.stack([radius + radius * np.cos(angles), radius + radius * np.sin(angles)], axis=1)
    tris: list[list[tuple[float, float, float]]] = []
    centre = (radius, radius)
    for i in range(sections):
        (x0, y0), (x1, y1) = ring[i], ring[(i + 1) % sections]
        tris.append([(centre[0], centre[1], 0.0), (x1, y1, 0.0), (x0, y0, 0.0)])
        tris.append([(centre[0], centre[1], height), (x0, y0, height), (x1, y1, height)])
        tris.append([(x0, y0, 0.0), (x1, y1, 0.0), (x1, y1, height)])
        tris.append([(x0, y0, 0.0), (x1, y1, height), (x0, y0, height)])
    return np.array(tris, dtype=np.float64)


def knot_tube(rings: int = 1563, segments: int = 32, scale: float = 15.0) -> Triangles:
    """A closed trefoil-knot tube: rings x segments x 2 triangles (100 032 by default)."""
    t = np.linspace(0.0, 2 * math.pi, rings, endpoint=False)
    centre = np.stack(
        [np.sin(t) + 2 * np.sin(2 * t), np.cos(t) - 2 * np.cos(2 * t), -np.sin(3 * t)], axis=1
    )
    tangent = np.roll(centre, -1, axis=0) - np.roll(centre, 1, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    helper = np.array([0.0, 0.0, 1.0])
    normal = np.cross(tangent, helper)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    binormal = np.cross(tangent, normal)
    phi = np.linspace(0.0, 2 * math.pi, segments, endpoint=False)
    radius = 0.45
    pts = (
        centre[:, None, :]
        + radius * np.cos(phi)[None, :, None] * normal[:, None, :]
        + radius * np.sin(phi)[None, :, None] * binormal[:, None, :]
    ) * scale
    pts -= pts.reshape(-1, 3).min(axis=0)
    i = np.arange(rings)[:, None]
    j = np.arange(segments)[None, :]
    a = i * segments + j
    b = ((i + 1) % rings) * segments + j
    c = ((i + 1) % rings) * segments + (j + 1) % segments
    d = i * segments + (j + 1) % segments
    flat = pts.reshape(-1, 3)
    faces = np.concatenate(
        [np.stack([a, c, b], axis=-1).reshape(-1, 3), np.stack([a, d, c], axis=-1).reshape(-1, 3)]
    )
    tris: Triangles = flat[faces]
    return tris


def stl_binary(tris: Triangles) -> bytes:
    """Binary STL bytes (normals left zero: readers recompute them)."""
    n = len(tris)
    record = np.zeros(n, dtype=[("normal", "<f4", 3), ("v", "<f4", (3, 3)), ("attr", "<u2")])
    record["v"] = tris
    return b"pantheon test model".ljust(80, b" ") + struct.pack("<I", n) + record.tobytes()


def stl_ascii(tris: Triangles, name: str = "part") -> bytes:
    """ASCII STL bytes."""
    out = io.StringIO()
    out.write(f"solid {name}\n")
    for tri in tris:
        out.write("  facet normal 0 0 0\n    outer loop\n")
        for x, y, z in tri:
            out.write(f"      vertex {x:.6f} {y:.6f} {z:.6f}\n")
        out.write("    endloop\n  endfacet\n")
    out.write(f"endsolid {name}\n")
    return out.getvalue().encode()


def _indexed(tris: Triangles) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    vertices, inverse = np.unique(tris.reshape(-1, 3), axis=0, return_inverse=True)
    return vertices, inverse.reshape(-1, 3).astype(np.int64)


def obj(tris: Triangles) -> bytes:
    """Wavefront OBJ bytes (1-based indices)."""
    vertices, faces = _indexed(tris)
    lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]
    return ("\n".join(lines) + "\n").encode()


def threemf(tris: Triangles, extra_members: dict[str, bytes] | None = None) -> bytes:
    """A minimal 3MF package with one mesh object (plus any extra members, for attack tests)."""
    vertices, faces = _indexed(tris)
    verts = "".join(f'<vertex x="{x:.6f}" y="{y:.6f}" z="{z:.6f}"/>' for x, y, z in vertices)
    trias = "".join(f'<triangle v1="{a}" v2="{b}" v3="{c}"/>' for a, b, c in faces)
    model = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<model unit="millimeter" xmlns="http://schemas.microsoft.com/3dmanufacturing/core/2015/02">'
        f'<resources><object id="1" type="model"><mesh><vertices>{verts}</vertices>'
        f"<triangles>{trias}</triangles></mesh></object></resources>"
        '<build><item objectid="1"/></build></model>'
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(
            "[Content_Types].xml",
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" '
            'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="model" '
            'ContentType="application/vnd.ms-package.3dmanufacturing-3dmodel+xml"/></Types>',
        )
        zf.writestr(
            "_rels/.rels",
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            '<Relationship Target="/3D/3dmodel.model" Id="rel0" '
            'Type="http://schemas.microsoft.com/3dmanufacturing/2013/01/3dmodel"/></Relationships>',
        )
        zf.writestr("3D/3dmodel.model", model)
        for name, data in (extra_members or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


def step_box(size: tuple[float, float, float]) -> bytes:
    """A STEP AP214 file holding one B-rep box (manifold solid, six planar faces), millimetres."""
    sx, sy, sz = size
    entities: list[str] = []

    def add(text: str) -> int:
        entities.append(text)
        return len(entities)

    app = add("APPLICATION_CONTEXT('automotive design')")
    add(
        f"APPLICATION_PROTOCOL_DEFINITION('international standard','automotive_design',2000,#{app})"
    )
    pctx = add(f"PRODUCT_CONTEXT('',#{app},'mechanical')")
    product = add(f"PRODUCT('box','box','',(#{pctx}))")
    formation = add(f"PRODUCT_DEFINITION_FORMATION('','',#{product})")
    dctx = add(f"PRODUCT_DEFINITION_CONTEXT('part definition',#{app},'design')")
    pdef = add(f"PRODUCT_DEFINITION('design','',#{formation},#{dctx})")
    pds = add(f"PRODUCT_DEFINITION_SHAPE('','',#{pdef})")
    length = add("(LENGTH_UNIT() NAMED_UNIT(*) SI_UNIT(.MILLI.,.METRE.))")
    angle = add("(NAMED_UNIT(*) PLANE_ANGLE_UNIT() SI_UNIT($,.RADIAN.))")
    solid_angle = add("(NAMED_UNIT(*) SI_UNIT($,.STERADIAN.) SOLID_ANGLE_UNIT())")
    uncertainty = add(
        f"UNCERTAINTY_MEASURE_WITH_UNIT(LENGTH_MEASURE(1.E-07),#{length},"
        "'distance_accuracy_value','confusion accuracy')"
    )
    gctx = add(
        "(GEOMETRIC_REPRESENTATION_CONTEXT(3) "
        f"GLOBAL_UNCERTAINTY_ASSIGNED_CONTEXT((#{uncertainty}))"
        f" GLOBAL_UNIT_ASSIGNED_CONTEXT((#{length},#{angle},#{solid_angle}))"
        " REPRESENTATION_CONTEXT('Context #1','3D Context with UNIT and UNCERTAINTY'))"
    )

    def point(p: tuple[float, float, float]) -> int:
        return add("CARTESIAN_POINT('',({:.6f},{:.6f},{:.6f}))".format(*p))

    def direction(d: tuple[float, float, float]) -> int:
        return add("DIRECTION('',({:.1f},{:.1f},{:.1f}))".format(*d))

    corners = [(x * sx, y * sy, z * sz) for z in (0, 1) for y in (0, 1) for x in (0, 1)]
    vertex_ids = [add(f"VERTEX_POINT('',#{point(c)})") for c in corners]
    edges: dict[tuple[int, int], int] = {}

    def edge(a: int, b: int) -> tuple[int, bool]:
        key = (min(a, b), max(a, b))
        if key not in edges:
            p, q = corners[key[0]], corners[key[1]]
            delta = tuple(qi - pi for pi, qi in zip(p, q, strict=True))
            dist = math.sqrt(sum(d * d for d in delta))
            unit = tuple(d / dist for d in delta)
            vec = add(f"VECTOR('',#{direction(unit)},{dist:.6f})")  # type: ignore[arg-type]
            line = add(f"LINE('',#{point(p)},#{vec})")
            edges[key] = add(
                f"EDGE_CURVE('',#{vertex_ids[key[0]]},#{vertex_ids[key[1]]},#{line},.T.)"
            )
        return edges[key], a < b

    # Each face: its corner cycle (counter-clockwise seen from outside) and outward normal.
    faces = [
        ((0, 2, 3, 1), (0.0, 0.0, -1.0)),
        ((4, 5, 7, 6), (0.0, 0.0, 1.0)),
        ((0, 1, 5, 4), (0.0, -1.0, 0.0)),
        ((2, 6, 7, 3), (0.0, 1.0, 0.0)),
        ((0, 4, 6, 2), (-1.0, 0.0, 0.0)),
        ((1, 3, 7, 5), (1.0, 0.0, 0.0)),
    ]
    face_ids = []
    for cycle, normal in faces:
        oriented = []
        for k in range(4):
            curve, forward = edge(cycle[k], cycle[(k + 1) % 4])
            oriented.append(add(f"ORIENTED_EDGE('',*,*,#{curve},{'.T.' if forward else '.F.'})"))
        loop = add("EDGE_LOOP('',({}))".format(",".join(f"#{o}" for o in oriented)))
        bound = add(f"FACE_OUTER_BOUND('',#{loop},.T.)")
        ref = (1.0, 0.0, 0.0) if abs(normal[0]) < 0.5 else (0.0, 1.0, 0.0)
        placement = add(
            f"AXIS2_PLACEMENT_3D('',#{point(corners[cycle[0]])},#{direction(normal)},"
            f"#{direction(ref)})"
        )
        plane = add(f"PLANE('',#{placement})")
        face_ids.append(add(f"ADVANCED_FACE('',(#{bound}),#{plane},.T.)"))
    shell = add("CLOSED_SHELL('',({}))".format(",".join(f"#{f}" for f in face_ids)))
    brep = add(f"MANIFOLD_SOLID_BREP('box',#{shell})")
    origin = add(
        f"AXIS2_PLACEMENT_3D('',#{point((0, 0, 0))},#{direction((0, 0, 1))},"
        f"#{direction((1, 0, 0))})"
    )
    rep = add(f"ADVANCED_BREP_SHAPE_REPRESENTATION('',(#{brep},#{origin}),#{gctx})")
    add(f"SHAPE_DEFINITION_REPRESENTATION(#{pds},#{rep})")
    data = "\n".join(f"#{i}={text};" for i, text in enumerate(entities, start=1))
    return (
        "ISO-10303-21;\nHEADER;\nFILE_DESCRIPTION(('pantheon test box'),'2;1');\n"
        "FILE_NAME('box.step','2026-01-01T00:00:00',('pantheon'),('pantheon'),'','','');\n"
        "FILE_SCHEMA(('AUTOMOTIVE_DESIGN { 1 0 10303 214 1 1 1 1 }'));\nENDSEC;\nDATA;\n"
        f"{data}\nENDSEC;\nEND-ISO-10303-21;\n"
    ).encode()
