"""Experiment drivers: `experiments/<name>.py` exposes `run(config, workdir) -> Results`."""
