"""Decisions of printer-utilization: state mapping, interval building, report arithmetic."""
