"""Keeping ``metrics.jsonl`` consistent across resumes.

A run killed after logging step ``s`` but whose latest checkpoint is step ``c < s`` re-trains steps
``c+1..s`` when resumed; :func:`drop_records_after` removes the records it logged past the checkpoint so
that no step appears twice and the file reads as one uninterrupted run.
"""
from __future__ import annotations

import json
import os
from typing import Iterable

import numpy as np


def drop_records_after(path: str, runs: Iterable[str | None], step: int) -> int:
  """Removes the records of ``runs`` (``None``: records without a ``"run"`` tag) whose step is past ``step``.

  Lines cut short by a kill are removed too. Returns the number of lines dropped; rewrites atomically.
  """
  if not os.path.exists(path):
    return 0
  ids = set(runs)
  kept, dropped = [], 0
  with open(path) as f:
    for line in f:
      try:
        rec = json.loads(line)
      except json.JSONDecodeError:
        dropped += 1
        continue
      if rec.get("run") in ids and rec.get("step", 0) > step:
        dropped += 1
      else:
        kept.append(line if line.endswith("\n") else line + "\n")
  if dropped:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
      f.writelines(kept)
    os.replace(tmp, path)
  return dropped


def read_records(path: str, runs: Iterable[str | None] | None = None) -> list[dict]:
  """The records of ``metrics.jsonl`` (of ``runs`` only, when given), in file order; [] if there is none."""
  if not os.path.exists(path):
    return []
  ids = None if runs is None else set(runs)
  out = []
  with open(path) as f:
    for line in f:
      try:
        rec = json.loads(line)
      except json.JSONDecodeError:
        continue
      if ids is None or rec.get("run") in ids:
        out.append(rec)
  return out


def curves(records: Iterable[dict], key: str = "loss") -> dict[str | None, tuple[list[int], list[float]]]:
  """``run -> (steps, values)`` of ``key`` from records, sorted by step (the whole curve, across resumes)."""
  by_run: dict[str | None, dict[int, float]] = {}
  for r in records:
    if key in r:
      by_run.setdefault(r.get("run"), {})[int(r["step"])] = float(r[key])
  return {run: (sorted(d), [d[s] for s in sorted(d)]) for run, d in by_run.items()}


def steps_to_target(steps, values, target: float):
  """Per curve, the first recorded step whose value is <= ``target``; censored at one recording interval past
  the end if it never gets there. ``values`` is ``[T]`` or ``[runs, T]`` over the recorded ``steps`` ``[T]``."""
  steps, values = np.asarray(steps, float), np.asarray(values, float)
  never = steps[-1] + (steps[-1] - steps[-2] if len(steps) > 1 else steps[-1])
  reached = values <= target
  first = np.where(reached.any(-1), steps[np.argmax(reached, axis=-1)], never)
  return first if first.ndim else float(first)
