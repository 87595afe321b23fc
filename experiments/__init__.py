"""Experiment drivers: `experiments/<name>.py` exposes `run(config, workdir) -> Results`.

They run from the checkout (they are not installed with the library `research`): `python -m experiments.run
--config=NAME:VARIANT` from its root, or `research-run` from any directory inside it.
"""
