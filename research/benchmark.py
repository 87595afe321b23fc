"""Timing helper shared by the experiments' ``bench`` variants.

Benchmarks report ratios measured in the same run; to keep load drift on a shared machine from favouring
one arm, the timed calls of all arms are interleaved round-robin instead of timed one arm after another.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, List

import numpy as np

__all__ = ["time_interleaved", "ratio_vs_target", "geometric"]


def time_interleaved(calls: Dict[str, Callable[[], Any]], rounds: int, *,
                     alternate: bool = True) -> Dict[str, List[float]]:
  """Wall-clock seconds of every call in ``calls``, ``rounds`` samples each, taken round-robin.

  Each value of ``calls`` is a zero-argument callable that blocks until its work is done (wrap jitted
  functions with ``jax.block_until_ready``); compile and warm them up before. With ``alternate`` the order
  is reversed every other round, so no arm always runs right after the same neighbour. Returns
  ``{name: [seconds per round]}``; callers take the median or the minimum.
  """
  if rounds < 1:
    raise ValueError(f"rounds must be >= 1, got {rounds}")
  samples = {name: [] for name in calls}
  names = list(calls)
  for r in range(rounds):
    for name in (names[::-1] if alternate and r % 2 else names):
      t0 = time.perf_counter()
      calls[name]()
      samples[name].append(time.perf_counter() - t0)
  return samples


def ratio_vs_target(r, target: float, claim: str):
  """Per-round time ratios ``r`` against a target, judged by the shared verdict rule on the log scale (ratios
  of times are multiplicative and heavy-tailed under load). Returns the assessment and :func:`geometric`'s
  string (the geometric mean with its back-transformed 95 % interval)."""
  from research import verdict as V
  r = np.asarray(r, np.float64)
  return V.compare(np.log(r), np.full_like(r, np.log(target)), claim=claim), geometric(r)


def geometric(r) -> str:
  from research import verdict as V
  iv = V.interval(np.log(np.asarray(r, np.float64)))
  return f"{np.exp(iv.mean):.3g} [{np.exp(iv.lo):.3g}, {np.exp(iv.hi):.3g}] (geometric, n={iv.n})"
