"""Timing helper shared by the experiments' ``bench`` variants.

Benchmarks report ratios measured in the same run; to keep load drift on a shared machine from favouring
one arm, the timed calls of all arms are interleaved round-robin instead of timed one arm after another.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, List

__all__ = ["time_interleaved"]


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
