"""First admin: refused without secrets or with placeholders; created once from the env."""

from __future__ import annotations

import pytest

from pantheon_api.__main__ import main


def test_production_refuses_a_missing_secret_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PANTHEON_SECRET_KEY", raising=False)
    monkeypatch.setenv("PANTHEON_ENV", "production")
    monkeypatch.setenv("SERVICE_TOKEN", "x" * 40)
    assert main(["serve"]) == 2
    assert "PANTHEON_SECRET_KEY" in capsys.readouterr().err
