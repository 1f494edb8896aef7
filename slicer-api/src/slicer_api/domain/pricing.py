"""Quotes: a fast estimate from the mesh, and the price formula with its lines shown.

price = max(minimum, (material + machine) x quantity x markup + setup fee), where
material = grams x (1 + waste) x price per kg / 1000 and machine = (hours + prep) x rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

from slicer_api.domain.mesh import MeshStats
from slicer_api.domain.profiles import MaterialProfile, QualityProfile

EXTRUSION_WIDTH_MM = 0.42
"""Perimeter width the fast estimate assumes for the shell (the profiles' 0.4 mm nozzle)."""

# Fast print-time model, fitted by hand against PrusaSlicer's estimate with the repo profiles
# (20 mm cube 508 s; slicing.md torus 1080 s): a fixed start, an effective volumetric rate,
# and a per-layer cost (travel, layer change, minimum layer time on small parts).
TIME_BASE_S = 60.0
TIME_CM3_PER_S = 0.012
TIME_PER_LAYER_S = 2.5


@dataclass(frozen=True)
class Rates:
    """Quote rates from configuration (env or YAML), shown in every quote."""

    currency: str = "EUR"
    material_per_kg: dict[str, float] = field(
        default_factory=lambda: {"PLA": 25.0, "PETG": 30.0, "ABS": 28.0}
    )
    machine_per_hour: float = 2.5
    prep_hours: float = 0.1
    setup_fee: float = 3.0
    minimum: float = 10.0
    markup: float = 1.3
    waste: float = 0.10

    def to_json(self) -> dict[str, Any]:
        """The rates as shown in a quote."""
        return {
            "currency": self.currency,
            "material_per_kg": dict(self.material_per_kg),
            "machine_per_hour": self.machine_per_hour,
            "prep_hours": self.prep_hours,
            "setup_fee": self.setup_fee,
            "minimum": self.minimum,
            "markup": self.markup,
            "waste": self.waste,
        }

    def merged(self, overrides: dict[str, Any]) -> Rates:
        """These rates with the non-None ``overrides`` applied (materials merged by name)."""
        values = {k: v for k, v in overrides.items() if v is not None}
        materials = dict(self.material_per_kg)
        materials.update(
            {k.upper(): float(v) for k, v in values.pop("material_per_kg", {}).items()}
        )
        unknown = set(values) - set(self.to_json())
        if unknown:
            raise ValueError(f"unknown pricing keys: {sorted(unknown)}")
        return replace(self, material_per_kg=materials, **values)


def parse_material_prices(text: str) -> dict[str, float]:
    """``PLA=25,PETG=30`` -> {"PLA": 25.0, "PETG": 30.0}."""
    prices: dict[str, float] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"material price {item!r} is not NAME=price")
        prices[name.strip().upper()] = float(value)
    return prices


@dataclass(frozen=True)
class Estimate:
    """Grams and print time of one part, and where they come from."""

    source: Literal["mesh", "slicer"]
    grams: float
    print_time_s: float
    filament_mm: float | None = None
    layers: int | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON."""
        return {
            "source": self.source,
            "grams": round(self.grams, 2),
            "print_time_s": round(self.print_time_s),
            "filament_mm": None if self.filament_mm is None else round(self.filament_mm, 1),
            "layers": self.layers,
        }


def fast_estimate(
    mesh: MeshStats, quality: QualityProfile, material: MaterialProfile, infill: float
) -> Estimate:
    """Grams and time without slicing: a solid shell of the perimeters, the rest at ``infill``.

    grams = (min(V, A x shell) + max(V - A x shell, 0) x infill) x density. Within about
    -15 %/+5 % of PrusaSlicer on the study's models (slicing.md section 4).
    """
    shell_mm = quality.perimeters * EXTRUSION_WIDTH_MM
    shell_mm3 = min(mesh.volume_mm3, mesh.area_mm2 * shell_mm)
    core_mm3 = max(mesh.volume_mm3 - shell_mm3, 0.0)
    plastic_cm3 = (shell_mm3 + core_mm3 * infill) / 1000.0
    grams = plastic_cm3 * material.density_g_cm3
    layers = max(1, math.ceil(mesh.size_mm[2] / quality.layer_height))
    time_s = TIME_BASE_S + plastic_cm3 / TIME_CM3_PER_S + layers * TIME_PER_LAYER_S
    filament_mm = plastic_cm3 * 1000.0 / (math.pi * (material.diameter_mm / 2) ** 2)
    return Estimate("mesh", grams, time_s, filament_mm, layers)


@dataclass(frozen=True)
class QuoteLine:
    """One line of a quote: what, how it was computed, how much."""

    item: str
    detail: str
    amount: Decimal

    def to_json(self) -> dict[str, Any]:
        """Amount as a string with two decimals (money never goes through float in JSON)."""
        return {"item": self.item, "detail": self.detail, "amount": f"{self.amount:.2f}"}


@dataclass(frozen=True)
class Quote:
    """A priced estimate: lines that add up to the total."""

    currency: str
    lines: tuple[QuoteLine, ...]
    total: Decimal
    rates: Rates
    estimate: Estimate
    quantity: int
    material: str

    def to_json(self) -> dict[str, Any]:
        """The quote as the API returns it."""
        return {
            "currency": self.currency,
            "material": self.material,
            "quantity": self.quantity,
            "estimate": self.estimate.to_json(),
            "lines": [line.to_json() for line in self.lines],
            "total": f"{self.total:.2f}",
            "rates": self.rates.to_json(),
            "formula": (
                "max(minimum, (material + machine) x quantity x markup + setup fee); "
                "material = grams x (1 + waste) x price per kg / 1000; "
                "machine = (print hours + prep hours) x machine rate"
            ),
        }


def _money(value: float | Decimal) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def price(estimate: Estimate, material: str, quantity: int, rates: Rates) -> Quote:
    """Apply the formula; every term becomes a line, and the lines add up to the total."""
    material = material.upper()
    if material not in rates.material_per_kg:
        raise KeyError(f"no price per kg configured for {material}")
    per_kg = rates.material_per_kg[material]
    grams = estimate.grams * (1 + rates.waste)
    hours = estimate.print_time_s / 3600.0
    material_cost = _money(grams * per_kg / 1000.0 * quantity)
    machine_cost = _money((hours + rates.prep_hours) * rates.machine_per_hour * quantity)
    subtotal = material_cost + machine_cost
    marked_up = _money(subtotal * Decimal(str(rates.markup)))
    setup = _money(rates.setup_fee)
    lines = [
        QuoteLine(
            "material",
            f"{quantity} x {estimate.grams:.2f} g {material} + {rates.waste:.0%} waste "
            f"at {per_kg:.2f} {rates.currency}/kg",
            material_cost,
        ),
        QuoteLine(
            "machine",
            f"{quantity} x ({hours:.3f} h print + {rates.prep_hours:.2f} h prep) "
            f"at {rates.machine_per_hour:.2f} {rates.currency}/h",
            machine_cost,
        ),
        QuoteLine("markup", f"x {rates.markup:g} on {subtotal:.2f}", marked_up - subtotal),
        QuoteLine("setup", "setup fee per order", setup),
    ]
    total = marked_up + setup
    minimum = _money(rates.minimum)
    if total < minimum:
        lines.append(
            QuoteLine("minimum", f"raised to the minimum order {minimum:.2f}", minimum - total)
        )
        total = minimum
    return Quote(rates.currency, tuple(lines), total, rates, estimate, quantity, material)
