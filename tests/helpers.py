"""Shared test helpers."""
from __future__ import annotations

import json
import os
from typing import Any

import numpy as np


def run_experiment(config_file: str, variant: str, workdir, overrides: dict[str, Any] | None = None):
  """Runs ``configs/<config_file>:<variant>`` in-process through the runner; returns the results.json dict.

  ``config_file`` is e.g. ``"perturb_max.py"``; ``overrides`` maps dotted keys to values exactly as
  ``--config.key=value`` would (values may be strings, parsed like the CLI does, or Python values).
  """
  from experiments import run as runner
  cfg = runner.load_config(f"configs/{config_file}:{variant}", overrides or {})
  runner.run_config(cfg, str(workdir), command=f"pytest run_experiment({config_file}:{variant})")
  with open(os.path.join(str(workdir), "results.json")) as f:
    rec = json.load(f)
  assert os.path.exists(os.path.join(str(workdir), "results.md"))
  return rec


def finite_difference_grad(f, x: np.ndarray, eps: float = 1e-3) -> np.ndarray:
  """Central finite differences of a scalar function of a float64 numpy array."""
  x = np.asarray(x, np.float64)
  g = np.zeros_like(x)
  it = np.nditer(x, flags=["multi_index"])
  for _ in it:
    i = it.multi_index
    xp = x.copy(); xp[i] += eps
    xm = x.copy(); xm[i] -= eps
    g[i] = (float(f(xp)) - float(f(xm))) / (2 * eps)
  return g
