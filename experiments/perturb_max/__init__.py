"""Driver of configs/perturb_max.py (kexue 9085): Perturb-Max identities, heads on Fashion-MNIST, bench.

Parts (``config.parts``): ``table`` (identities and quadrature errors: :mod:`.table` measures, :mod:`.tables`
judges), ``classify`` (softmax vs Perturb-Max heads, each arm's seeds a population: :mod:`.classify`),
``bench`` (fwd+bwd time vs softmax and Monte Carlo: :mod:`.bench`, rows in :mod:`.bench_table`). Figures
are in :mod:`.figures`.
"""
from __future__ import annotations

import os
import sys

from experiments.perturb_max import bench, bench_table, classify, figures, table, tables
from research import train
from research.report import Results

PARTS = ("table", "classify", "bench")


def run(config, workdir: str) -> Results:
  os.makedirs(workdir, exist_ok=True)
  res = Results(title=f"Perturb-Max distributions (kexue.fm 9085) - {config.variant}")
  unknown = [p for p in config.parts if p not in PARTS]
  if unknown:
    raise ValueError(f"Unknown part(s) {unknown} in config.parts; valid: {PARTS}")
  if "table" in config.parts:
    print("[perturb_max] table ...", file=sys.stderr, flush=True)
    m = table.measure(config.table, config.seed)
    tables.table_rows(m, res)
    figures.quadrature_figure(m, workdir, res)
  if "classify" in config.parts:
    c = config.classify
    d = classify.load(c, config.data_dir, config.seed)
    mesh = train.make_mesh()
    out = {arm.name: classify.train_arm(arm, c, d, seed=config.seed, workdir=workdir, mesh=mesh) for arm in c.arms}
    tables.classify_rows(c, out, res, len(d["x"]), len(d["x_test"]))
    figures.classify_figures(out, workdir, res)
  if "bench" in config.parts:
    print("[perturb_max] bench ...", file=sys.stderr, flush=True)
    bench_table.bench_rows(config.bench, bench.measure(config.bench, config.seed), res)
  return res
