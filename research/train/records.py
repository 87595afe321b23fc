"""Keeping ``metrics.jsonl`` consistent across resumes.

A run killed after logging step ``s`` but whose latest checkpoint is step ``c < s`` re-trains steps
``c+1..s`` when resumed; :func:`drop_records_after` removes the records it logged past the checkpoint so
that no step appears twice and the file reads as one uninterrupted run.
"""
from __future__ import annotations

import json
import os
from typing import Iterable


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
