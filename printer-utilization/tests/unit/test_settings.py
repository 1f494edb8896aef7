"""Settings: empty variables mean "not set"; URL templates."""

import pytest

from printer_utilization.domain.targets import service_url
from printer_utilization.settings import Settings


def test_empty_gap_and_spool_mean_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATA_GAP_S", "")
    monkeypatch.setenv("SPOOL_PATH", "")
    monkeypatch.setenv("POLL_INTERVAL_S", "4")
    settings = Settings(pantheon_env="dev")
    assert settings.gap_s == 12
    assert settings.spool_path is None


@pytest.mark.parametrize(
    ("template", "url"),
    [
        ("http://printer-service-{id}:8080", "http://printer-service-14:8080"),
        ("http://printer-service-{printer_id}:8080/", "http://printer-service-14:8080"),
        ("http://127.0.0.1:{port}", "http://127.0.0.1:50014"),
    ],
)
def test_url_template(template: str, url: str) -> None:
    assert service_url(template, 14) == url
