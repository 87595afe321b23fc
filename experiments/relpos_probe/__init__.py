"""Driver for kexue 9105: the zeros -> positions probe, l2-vs-softmax MLM pretraining, attention benchmark.

Parts (``config.parts``): ``probe`` (the PE x normalizer x mask table: :mod:`.probe` trains, :mod:`.tables`
judges), ``pretrain`` (char-level MLM on tiny-shakespeare: :mod:`.pretrain`), ``bench`` (fwd+bwd throughput:
:mod:`.bench`). The grid and models are in :mod:`.grid`. See configs/relpos_probe.py for the variants.
"""
from __future__ import annotations


from experiments.relpos_probe import bench, grid, pretrain, probe, tables
from research.report import Results

PARTS = ("probe", "pretrain", "bench")
PROBE_ROWS = grid.PROBE_ROWS


def run(config, workdir: str) -> Results:
  res = Results(title="kexue 9105: relative position encodings and the zeros->positions probe")
  unknown = [p for p in config.parts if p not in PARTS]
  if unknown:
    raise ValueError(f"Unknown part(s) {unknown}; valid: {PARTS}")
  if "probe" in config.parts:
    pc = config.probe
    rows, ns = grid.probe_rows(pc.rows), [int(n) for n in pc.ns]
    table = {}
    for r in rows:
      table[r] = {}
      for n in ns:
        out = probe.train_row(pc, r, n, seed=config.seed, workdir=workdir, boundary=grid.PROBE_ROWS[r].boundary)
        print(probe.describe(r, n, out), flush=True)
        table[r][n] = out
    tables.probe_rows(pc, table, res)
    tables.probe_figures(table, ns, workdir, res)
  if "pretrain" in config.parts:
    curves, majority = pretrain.train_arms(config.pretrain, seed=config.seed, workdir=workdir,
                                           data_dir=config.data_dir, fsdp=config.mesh.fsdp)
    tables.pretrain_rows(config.pretrain, curves, majority, res)
    tables.pretrain_figure(curves, workdir, res)
  if "bench" in config.parts:
    bench.bench_rows(config.bench, bench.time_layers(config.bench, config.seed), res)
  return res
