"""Quote rates from the YAML file (SLICER_PRICING_FILE) with PRICE_* variables on top."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pantheon_common.errors import ConfigurationError
from slicer_api.domain.pricing import Rates, parse_material_prices
from slicer_api.settings import Settings


def load_rates(settings: Settings) -> Rates:
    """Defaults, then the YAML file, then the environment; ConfigurationError when invalid."""
    rates = Rates()
    try:
        if settings.slicer_pricing_file is not None:
            rates = rates.merged(_read_yaml(settings.slicer_pricing_file))
        env: dict[str, Any] = {
            "currency": settings.price_currency,
            "machine_per_hour": settings.price_machine_per_hour,
            "prep_hours": settings.price_prep_hours,
            "setup_fee": settings.price_setup_fee,
            "minimum": settings.price_minimum,
            "markup": settings.price_markup,
            "waste": settings.price_waste,
        }
        if settings.price_material_per_kg:
            env["material_per_kg"] = parse_material_prices(settings.price_material_per_kg)
        return rates.merged(env)
    except (ValueError, TypeError) as err:
        raise ConfigurationError(f"invalid pricing configuration: {err}") from err


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise ConfigurationError(f"cannot read SLICER_PRICING_FILE {path}: {err}") from err
    if not isinstance(data, dict):
        raise ConfigurationError(f"{path}: expected a mapping of pricing keys")
    return data
