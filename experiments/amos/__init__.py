"""Driver for configs/amos.py (kexue 9344): Amos vs the jestimator oracle, Fashion-MNIST CNN, char-LM, bench.

Parts (``config.parts``): ``oracle`` (numerical identity with jestimator), ``fashion_cnn`` and ``lm`` (the
arms of :mod:`.arms` trained on the tasks of :mod:`.tasks` by :mod:`.train`, judged by :mod:`.tables`),
``bench`` (:mod:`.bench`).
"""
from __future__ import annotations

import os
import sys

from experiments.amos import bench, tables, tasks
from experiments.amos import train as train_arms
from research.optim import amos_oracle
from research.report import Results

PARTS = ("oracle", "fashion_cnn", "lm", "bench")


def run(config, workdir: str) -> Results:
  res = Results(title=f"Amos and Su's rules (kexue.fm 9344): {config.variant}")
  os.makedirs(workdir, exist_ok=True)
  unknown = [p for p in config.parts if p not in PARTS]
  if unknown:
    raise ValueError(f"Unknown part(s) {unknown} in config.parts; valid: {PARTS}")
  if "oracle" in config.parts:
    cases = list(config.oracle.cases)
    bad = set(cases) - set(amos_oracle.ORACLE_CASES)
    if bad:
      raise ValueError(f"Unknown oracle case(s) {sorted(bad)}; valid: {sorted(amos_oracle.ORACLE_CASES)}")
    print(f"[amos] oracle: {len(cases)} case(s) x {config.oracle.steps} steps against jestimator 0.3.3 (float64)",
          file=sys.stderr, flush=True)
    tables.oracle_rows(amos_oracle.oracle_diffs(cases, config.oracle.steps), cases, config.oracle.steps, res)
  if "fashion_cnn" in config.parts:
    c = config.fashion
    task = tasks.fashion(c, config.data_dir, config.seed)
    out = train_arms.train_arms(task, c, seed=config.seed, workdir=workdir, fsdp=config.mesh.fsdp)
    tables.test_accuracy_rows(task, c, out, res, c.num_steps / task.steps_per_epoch)
    tables.comparison_rows(task, c, out, res, "paper, BERT/T5")
    tables.curves_figure(task, c, out, workdir, res)
  if "lm" in config.parts:
    c = config.lm
    task = tasks.char_lm(c, config.data_dir, config.seed)
    out = train_arms.train_arms(task, c, seed=config.seed, workdir=workdir, fsdp=config.mesh.fsdp)
    tables.comparison_rows(task, c, out, res, "paper, BERT/T5 pre-training", unit=" nats/char")
    tables.curves_figure(task, c, out, workdir, res)
  if "bench" in config.parts:
    bench.run_bench(config.bench, config.seed, res)
  if "fashion_cnn" in config.parts or "lm" in config.parts:
    res.notes.append(tables.ARMS_NOTE)
  return res
