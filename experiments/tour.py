"""Driver of configs/tour.py: runs each part's quick variant and merges the tables."""
from __future__ import annotations

import os
import time
import traceback

from experiments import run as runner
from research.report import Results, Row


def run(config, workdir: str) -> Results:
  res = Results(title=f"Tour of all articles ({config.part_variant} variants)")
  failures = []
  for part in [p.strip() for p in config.parts.split(",") if p.strip()]:
    path = os.path.join(runner.ROOT, "configs", f"{part}.py")
    if not os.path.exists(path):
      res.rows.append(Row(f"[{part}]", "-", "not available", "missing", f"configs/{part}.py does not exist"))
      continue
    sub = os.path.join(workdir, part)
    t0 = time.perf_counter()
    print(f"\n=== {part}:{config.part_variant} -> {sub}", flush=True)
    try:
      cfg = runner.load_config(f"{path}:{config.part_variant}", {"seed": config.seed} if config.seed else {})
      rec = runner.run_config(cfg, sub, command=f"python -m experiments.run --config=configs/{part}.py:"
                              f"{config.part_variant} --workdir={sub}", print_table=False)
    except Exception as e:  # keep touring; fail at the end
      failures.append(part)
      traceback.print_exc()
      res.rows.append(Row(f"[{part}] FAILED", "-", type(e).__name__, "error", str(e)[:200]))
      if not config.keep_going:
        raise
      continue
    wall = time.perf_counter() - t0
    for k, v in rec["metrics"].items():
      res.metrics[f"{part}/{k}"] = v
    res.metrics[f"{part}/wall_time_s"] = wall
    for r in rec["rows"]:
      res.rows.append(Row(f"[{part}] {r['name']}", r["published"], r["measured"], r["verdict"], r["note"]))
    for p in rec["plots"]:
      res.plots.append(os.path.join(part, p))
  res.notes.append("Each part's own table, with its command and machine, is in `<workdir>/<part>/results.md`.")
  if failures:
    raise RuntimeError(f"Tour parts failed: {failures} (see the tracebacks above)")
  return res
