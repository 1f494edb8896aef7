"""Printer models, qualities and materials the farm slices for, and the build-volume check."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pantheon_contracts.beds import BedType

BAMBU_MODEL_IDS = {"P1S": "C12", "X1C": "BL-P001", "A1": "N2S"}
"""``printer_model_id`` written into slice_info.config (public descriptions; unverified)."""

BAMBU_BED_NAMES = {
    BedType.TEXTURED_PEI: "textured_plate",
    BedType.SMOOTH_PEI: "hot_plate",
    BedType.COOL_PLATE: "cool_plate",
    BedType.ENGINEERING: "eng_plate",
}
"""Our plate types as Bambu names them in plate_N.json / project_file ``bed_type``."""


def parse_ini(text: str) -> dict[str, str]:
    """PrusaSlicer ``key = value`` lines; ``#`` comments and blank lines ignored."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        key, sep, value = stripped.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return values


def render_ini(layers: Sequence[Mapping[str, str]]) -> str:
    """One PrusaSlicer ini from ``layers``, a later layer's key replacing an earlier one's:
    what successive ``--load`` files and command-line options do."""
    merged: dict[str, str] = {}
    for layer in layers:
        merged.update(layer)
    return "".join(f"{key} = {value}\n" for key, value in merged.items())


@dataclass(frozen=True)
class PrinterProfile:
    """One printer model: its ini and build volume (mm)."""

    model: str
    ini: str
    bed_x: float
    bed_y: float
    max_z: float
    nozzle_diameter: float
    bambu_model_id: str

    @classmethod
    def from_ini(cls, model: str, ini: str, values: dict[str, str]) -> PrinterProfile:
        """Read the build volume from ``bed_shape`` (rectangle corners) and ``max_print_height``."""
        corners = [tuple(float(c) for c in p.split("x")) for p in values["bed_shape"].split(",")]
        xs = [c[0] for c in corners]
        ys = [c[1] for c in corners]
        return cls(
            model=model,
            ini=ini,
            bed_x=max(xs) - min(xs),
            bed_y=max(ys) - min(ys),
            max_z=float(values["max_print_height"]),
            nozzle_diameter=float(values.get("nozzle_diameter", "0.4").split(",")[0]),
            bambu_model_id=BAMBU_MODEL_IDS.get(model, ""),
        )

    @property
    def centre(self) -> tuple[float, float]:
        """Where the engine centres the part (``--center``)."""
        return self.bed_x / 2, self.bed_y / 2


@dataclass(frozen=True)
class QualityProfile:
    """A layer height and its shell settings."""

    name: str
    ini: str
    layer_height: float
    first_layer_height: float
    perimeters: int
    top_layers: int
    bottom_layers: int
    default_infill: float

    @classmethod
    def from_ini(cls, name: str, ini: str, values: dict[str, str]) -> QualityProfile:
        """Read the values the fast estimate needs."""
        return cls(
            name=name,
            ini=ini,
            layer_height=float(values["layer_height"]),
            first_layer_height=float(values.get("first_layer_height", values["layer_height"])),
            perimeters=int(values.get("perimeters", "2")),
            top_layers=int(values.get("top_solid_layers", "5")),
            bottom_layers=int(values.get("bottom_solid_layers", "3")),
            default_infill=float(values.get("fill_density", "15%").rstrip("%")) / 100,
        )


@dataclass(frozen=True)
class MaterialProfile:
    """A filament: its type and density (g/cm3)."""

    name: str
    ini: str
    filament_type: str
    density_g_cm3: float
    diameter_mm: float

    @classmethod
    def from_ini(cls, name: str, ini: str, values: dict[str, str]) -> MaterialProfile:
        """Read type, density and diameter."""
        return cls(
            name=name,
            ini=ini,
            filament_type=values.get("filament_type", name.upper()),
            density_g_cm3=float(values["filament_density"]),
            diameter_mm=float(values.get("filament_diameter", "1.75")),
        )


@dataclass(frozen=True)
class Catalog:
    """Every profile the service offers, by name (printer models upper-case, materials too)."""

    printers: dict[str, PrinterProfile] = field(default_factory=dict)
    qualities: dict[str, QualityProfile] = field(default_factory=dict)
    materials: dict[str, MaterialProfile] = field(default_factory=dict)
    default_quality: str = "0.20_standard"


def fit_problem(size: tuple[float, float, float], printer: PrinterProfile) -> str | None:
    """Why a part of ``size`` (x, y, z mm, as placed) does not fit ``printer``, or None."""
    limits = (printer.bed_x, printer.bed_y, printer.max_z)
    over = [
        f"{axis} {value:.1f} > {limit:.0f} mm"
        for axis, value, limit in zip("xyz", size, limits, strict=True)
        if value > limit
    ]
    if not over:
        return None
    return (
        f"the part is {size[0]:.1f} x {size[1]:.1f} x {size[2]:.1f} mm; the {printer.model} "
        f"builds at most {limits[0]:.0f} x {limits[1]:.0f} x {limits[2]:.0f} mm "
        f"({', '.join(over)})"
    )
