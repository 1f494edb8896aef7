"""slicer-api settings: the hand-over key to pantheon-api is optional, other secrets are not."""

import hashlib

import pytest

from slicer_api.settings import Settings

SHOP_DIGEST = hashlib.sha256(b"a-real-shop-key-for-the-test").hexdigest()


def test_empty_pantheon_api_key_turns_the_hand_over_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PANTHEON_ENV", "production")
    monkeypatch.setenv("SLICER_API_KEYS", SHOP_DIGEST)
    monkeypatch.setenv("PANTHEON_API_KEY", "")  # as docker-compose passes an unset variable
    assert Settings().pantheon_api_key is None


def test_placeholder_pantheon_api_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PANTHEON_ENV", "production")
    monkeypatch.setenv("SLICER_API_KEYS", SHOP_DIGEST)
    monkeypatch.setenv("PANTHEON_API_KEY", "changeme")
    with pytest.raises(ValueError, match="PANTHEON_API_KEY"):
        Settings()
