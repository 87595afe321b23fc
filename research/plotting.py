"""Figures of the experiment drivers: one place that makes, saves and closes them (headless, Agg backend)."""
from __future__ import annotations

import os
import sys
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def subplots(*args: Any, **kwargs: Any):
  """``plt.subplots`` on the headless backend."""
  return plt.subplots(*args, **kwargs)


def save_figure(fig, workdir: str, name: str, results: Any = None, dpi: int = 110) -> str:
  """Saves ``fig`` as ``workdir/name`` (tight layout), closes it, appends the path to ``results.plots``."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, name)
  fig.tight_layout()
  write_figure(fig, path, dpi)                # several processes (jax.distributed): only process 0 writes
  plt.close(fig)
  if results is not None:
    results.plots.append(path)
  return path


def write_figure(fig, path: str, dpi: int = 110) -> str:
  """``fig.savefig(path)`` on process 0 only (several processes: one writer); the caller closes ``fig``."""
  jax = sys.modules.get("jax")
  if jax is None or jax.process_index() == 0:
    fig.savefig(path, dpi=dpi)
  return path
