"""Thin adapters shared by Pantheon services."""
