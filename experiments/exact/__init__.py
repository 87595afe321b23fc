"""Driver for configs/exact.py (kexue 9098): EXACT / smoothed accuracy.

Parts (``config.parts``): ``toy`` (:mod:`.toy`), ``tabular`` (the paper's Table 1 protocol: :mod:`.tabular`
trains, :mod:`.tables` judges), ``fashion`` (from-scratch CNN: :mod:`.fashion`, :mod:`.tables`), ``estimator``
(quadrature vs Genz: :mod:`.estimator`), ``bench`` (:mod:`.bench`).
"""
from __future__ import annotations

import os
import time

import numpy as np

from experiments.exact import bench, estimator, fashion, tables, tabular, toy
from research.report import Results

PARTS = ("toy", "tabular", "fashion", "estimator", "bench")


def run_tabular(config, workdir: str, res: Results) -> None:
  t = config.tab
  summary = {}
  for di, name in enumerate(t.datasets):
    d = tabular.load(name, t)
    test_y = d["test"].y
    majority = int(np.sum(test_y == np.bincount(d["train"].y).argmax()))
    out = {}
    for mi, method in enumerate(t.methods):
      t0 = time.time()
      if method == "sklearn":
        o = tabular.sklearn_baseline(d)
      else:
        o = tabular.search_and_train(method, d, t, seed=config.seed, rng=np.random.default_rng([config.seed, di, mi]),
                                     workdir=workdir, prefix=f"tabular/{name}/{method}")
      o["describe"] = tabular.describe(method, o["best"])
      out[method] = o
      res.add(f"time_tabular_{name}_{method}_s", time.time() - t0)
      print(f"[exact/tabular] {name} {method}: correct {o['correct'].tolist()} of {len(test_y)} "
            f"({time.time() - t0:.0f} s)", flush=True)
    tables.tabular_rows(name, len(test_y), majority, out, t, res)
    summary[name] = {m: 100.0 * o["correct"] / len(test_y) for m, o in out.items()}
  res.notes.append(tables.tabular_note(t))
  tables.tabular_figure(summary, workdir, res)


def run_fashion(config, workdir: str, res: Results) -> None:
  f = config.fm
  data = fashion.load(config)
  out = fashion.train_arms(config, data, workdir)
  steps = int(f.num_epochs) * int(f.steps_per_epoch)
  note = (f"Fashion-MNIST from scratch: CNN {tuple(f.channels)} channels ({f.pool} downsampling), dense {f.hidden}; "
          f"{f.seeds} seeds (run s of every arm: same initialisation and data order), {steps} steps of batch "
          f"{f.batch_size} on {len(data[0])} train images, {len(data[2])} test images; optimizers "
          f"{', '.join(f.optimizers)}. CE / 1-p: SGD momentum 0.9, lr {f.lr_ce}, clip {f.clip_ce}; EXACT: lr "
          f"{f.lr_exact}, gradient normaliser, variance {f.initial_variance} -> {f.min_variance}, margin {f.margin}, "
          f"logit standardisation, {f.estimator} estimator ({f.num_samples} samples); weight decay "
          f"{f.weight_decay}; LR decays per epoch of {f.steps_per_epoch} steps to {f.final_lr}. No hyperparameter "
          "search (the paper's selected MNIST settings for EXACT, a common CE setting). The paper's vision protocol "
          "(WRN / M3, 150-500 epochs, tuned lr / clip / min-variance, augmentation) is far beyond this CPU: compare "
          "directions only.")
  tables.fashion_rows(f, out, res, note)
  tables.fashion_figure(out, workdir, res)


RUNNERS = {"toy": toy.run_toy, "tabular": run_tabular, "fashion": run_fashion,
           "estimator": estimator.run_estimator, "bench": bench.run_bench}


def run(config, workdir: str) -> Results:
  os.makedirs(workdir, exist_ok=True)
  unknown = [p for p in config.parts if p not in PARTS]
  if unknown:
    raise ValueError(f"exact: unknown part(s) {unknown}; valid parts: {PARTS}")
  res = Results(title=f"Article 9098: training accuracy directly (EXACT) — {config.variant}")
  for part in config.parts:
    t0 = time.time()
    RUNNERS[part](config, workdir, res)
    res.add(f"time_{part}_s", time.time() - t0)
  return res
