"""slicer-api: models to Bambu ``.gcode.3mf`` with PrusaSlicer, and price quotes."""

__version__ = "0.1.0"
