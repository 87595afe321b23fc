"""Figures of kexue 9085 (research.plotting)."""
from __future__ import annotations

import numpy as np

from research.plotting import save_figure, subplots
from research.report import Results


def quadrature_figure(m: dict, workdir: str, res: Results) -> None:
  noises, ks = m["noises"], m["ks"]
  fig, axes = subplots(1, len(noises), figsize=(4 * len(noises), 3.4), squeeze=False)
  for ax, nz in zip(axes[0], noises):
    for (nz2, rule), errs in m["errors"].items():
      if nz2 == nz:
        ax.loglog(ks, np.maximum(errs, 1e-17), "o-", label=rule)
    ax.set_title(f"{nz} noise")
    ax.set_xlabel("K")
    ax.set_ylabel("max |p - p_ref|")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
  save_figure(fig, workdir, "quadrature_error_vs_K.png", res)


def classify_figures(out: dict, workdir: str, res: Results) -> None:
  arms = list(out)
  fig, ax = subplots(figsize=(1.4 * len(arms) + 2, 3.2))
  acc = [100 * out[a]["acc"] for a in arms]
  ax.bar(arms, [v.mean() for v in acc], yerr=[[v.mean() - v.min() for v in acc], [v.max() - v.mean() for v in acc]],
         capsize=4, color=["C0"] + ["C1"] * (len(arms) - 1))
  ax.bar_label(ax.containers[-1], fmt="%.1f", fontsize=8)
  ax.set_ylim(0, 100)
  ax.set_ylabel("test accuracy (%, mean, min-max over seeds)")
  ax.set_title("Fashion-MNIST CNN: softmax vs Perturb-Max heads")
  ax.tick_params(axis="x", labelrotation=20)
  save_figure(fig, workdir, "classify_accuracy.png", res)
  fig, ax = subplots(figsize=(6, 4))
  for a in arms:
    o = out[a]
    if np.size(o["loss"]):
      ax.plot(o["steps"], o["loss"].mean(0), label=a)
      ax.fill_between(o["steps"], o["loss"].min(0), o["loss"].max(0), alpha=0.2)
  ax.set_xlabel("step")
  ax.set_ylabel("training NLL (mean, min-max over seeds)")
  ax.set_xlim(left=0)
  ax.legend()
  ax.set_title("classify: training loss (read back from metrics.jsonl)")
  save_figure(fig, workdir, "classify_loss.png", res)
