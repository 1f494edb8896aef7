"""`.env.example` lists every variable the code and the compose files read."""

import inspect
import re
from pathlib import Path

from pydantic_settings import BaseSettings

from pantheon_common import settings as settings_module

REPO = Path(__file__).resolve().parents[1]
ENV_EXAMPLE = REPO / ".env.example"
_ASSIGNMENT = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=", re.MULTILINE)
_COMPOSE_REF = re.compile(r"\$\{([A-Z][A-Z0-9_]*)")


def _documented() -> set[str]:
    return set(_ASSIGNMENT.findall(ENV_EXAMPLE.read_text(encoding="utf-8")))


def _settings_variables() -> set[str]:
    names: set[str] = set()
    for _, cls in inspect.getmembers(settings_module, inspect.isclass):
        if issubclass(cls, BaseSettings) and cls.__module__ == settings_module.__name__:
            names.update(field.upper() for field in cls.model_fields)
    return names


def test_every_settings_field_is_documented() -> None:
    missing = _settings_variables() - _documented()
    assert not missing, f".env.example lacks {sorted(missing)}"


def test_every_compose_variable_is_documented() -> None:
    used: set[str] = set()
    for path in REPO.glob("docker-compose*.yml"):
        used.update(_COMPOSE_REF.findall(path.read_text(encoding="utf-8")))
    assert used, "no compose file found"
    missing = used - _documented()
    assert not missing, f".env.example lacks {sorted(missing)} used by the compose files"


def test_printer_access_codes_are_documented() -> None:
    from pantheon_common.farm import load_layout

    layout = load_layout(REPO / "farm.yaml")
    missing = {f"PRINTER_{p.id}_ACCESS_CODE" for p in layout.printers} - _documented()
    assert not missing, f".env.example lacks {sorted(missing)}"


def test_no_secret_has_a_value() -> None:
    secret_words = ("PASSWORD", "TOKEN", "SECRET", "ACCESS_CODE", "API_KEY")
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        if any(word in name for word in secret_words):
            assert value == "", f"{name} has a value in .env.example; secrets stay empty"
