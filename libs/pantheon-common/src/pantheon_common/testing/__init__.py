"""Test helpers shipped with pantheon-common: contract suites that every implementation reuses."""
