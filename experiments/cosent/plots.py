"""Figures of the cross-encoder arms: test scores per task (mean and 95% interval over seeds), valid
Spearman per epoch and the training loss (the whole curve, read back from metrics.jsonl)."""
from __future__ import annotations

import os

import numpy as np

from experiments.cosent.tables import selected
from research import verdict as V
from research.plotting import save_figure, subplots
from research.report import Results
from research.train.records import curves, read_records


def cross_figures(hist: dict, workdir: str, res: Results, selection: str = "protocol") -> None:
  tasks = list(hist)
  arms = sorted({a for t in tasks for a in hist[t]})
  fig, axes = subplots(1, 2, figsize=(11, 4))
  w = 0.8 / max(len(arms), 1)
  for i, arm in enumerate(arms):
    for ax, key in zip(axes, ("test_spearman", "test_acc")):
      ivs = [V.interval([100 * r[key] for r in selected(hist[t][arm], selection)]) if arm in hist[t] else None
             for t in tasks]
      ys = [iv.mean if iv else np.nan for iv in ivs]
      es = [iv.half_width if iv and np.isfinite(iv.half_width) else 0.0 for iv in ivs]
      ax.bar(np.arange(len(tasks)) + i * w, ys, w, yerr=es, label=arm, capsize=2)
      ax.set_xticks(np.arange(len(tasks)) + w * (len(arms) - 1) / 2)
      ax.set_xticklabels(tasks)
      ax.set_title(f"{key.replace('_', ' ')} x100 (mean, 95% interval)")
  axes[0].legend(fontsize=8)
  save_figure(fig, workdir, "cross_encoder_arms.png", res)
  fig, (ax, bx) = subplots(1, 2, figsize=(12, 4))
  recs = read_records(os.path.join(workdir, "metrics.jsonl"))
  for task in tasks:
    for arm, runs in hist[task].items():
      c = np.mean([[100 * r["valid_spearman"] for r in h] for h in runs], 0)
      ax.plot(np.arange(1, len(c) + 1), c, marker="o", label=f"{task}/{arm}")
      cv = curves([r for r in recs if r.get("run", "").startswith(f"{task}/{arm}/seed")], "loss")
      if cv:
        steps = next(iter(cv.values()))[0]
        bx.plot(steps, np.mean([v for _, v in cv.values()], 0), label=f"{task}/{arm}")
  ax.set_xlabel("epoch")
  ax.set_ylabel("valid Spearman x100 (mean over seeds)")
  bx.set_xlabel("step")
  bx.set_ylabel("training loss (mean over seeds)")
  ax.legend(fontsize=7)
  save_figure(fig, workdir, "valid_curves.png", res)
