"""Experiment configs: `configs/<name>.py` exposes `get_config(variant)` and `VARIANTS`."""
