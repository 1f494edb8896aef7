"""Load the harness plugin for these tests when the root conftest has not loaded it already."""

from __future__ import annotations

import pytest

import pantheon_devtools.pytest_plugin as harness_plugin

_PLUGIN_NAME = "pantheon_devtools.pytest_plugin"


def pytest_configure(config: pytest.Config) -> None:
    """Register the plugin once (the root conftest normally does it with ``pytest_plugins``)."""
    manager = config.pluginmanager
    if not manager.has_plugin(_PLUGIN_NAME) and not manager.is_registered(harness_plugin):
        manager.register(harness_plugin, _PLUGIN_NAME)
