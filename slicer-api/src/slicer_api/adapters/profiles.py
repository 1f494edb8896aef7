"""Loads the repository's PrusaSlicer profiles (slicer-api/profiles/*/*.ini) into a Catalog."""

from __future__ import annotations

from pathlib import Path

from slicer_api.domain.profiles import (
    Catalog,
    MaterialProfile,
    PrinterProfile,
    QualityProfile,
    parse_ini,
)
from slicer_api.errors import EngineMissing


def load_catalog(directory: Path) -> Catalog:
    """printers/bambu_<model>.ini, qualities/<name>.ini, materials/<name>.ini."""
    if not (directory / "printers").is_dir():
        raise EngineMissing(
            f"no profiles in {directory} (expected printers/, qualities/, materials/)"
        )
    printers = {}
    for ini in sorted((directory / "printers").glob("bambu_*.ini")):
        model = ini.stem.removeprefix("bambu_").upper()
        printers[model] = PrinterProfile.from_ini(model, str(ini), parse_ini(ini.read_text()))
    qualities = {
        ini.stem: QualityProfile.from_ini(ini.stem, str(ini), parse_ini(ini.read_text()))
        for ini in sorted((directory / "qualities").glob("*.ini"))
    }
    materials = {
        ini.stem.upper(): MaterialProfile.from_ini(
            ini.stem.upper(), str(ini), parse_ini(ini.read_text())
        )
        for ini in sorted((directory / "materials").glob("*.ini"))
    }
    return Catalog(printers=printers, qualities=qualities, materials=materials)
