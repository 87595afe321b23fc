"""Figures of kexue 9368's tests (research.plotting)."""
from __future__ import annotations

import math

import numpy as np

from research.plotting import save_figure, subplots
from research.report import Results


def sanity_figures(c, sphere: dict, swiss: dict, workdir: str, res: Results) -> None:
  sc = swiss.get("scatter")
  if sc is not None:
    j = list(c.ks).index(sc["k"])
    fig, ax = subplots(1, 2, figsize=(8, 3.4))
    ax[0].scatter(sc["intrinsic"], sc["euclidean"], s=2, alpha=0.4)
    ax[0].set_title(f"Euclidean (Spearman {swiss['euclidean'][0]:.3f})")
    ax[1].scatter(sc["intrinsic"], sc["geodesic"], s=2, alpha=0.4, color="C1")
    ax[1].set_title(f"geodesic k={sc['k']} (Spearman {swiss['geodesic'][0, j]:.3f})")
    for a in ax:
      a.set_xlabel("intrinsic distance")
    ax[0].set_ylabel("estimated distance (seed 0)")
    save_figure(fig, workdir, "swissroll.png", res)
  fig, ax = subplots(figsize=(5, 3.4))
  for i, n in enumerate(c.sphere_ns):
    p = sphere["pole"][:, i, :]
    ax.errorbar(list(c.ks), p.mean(0), yerr=[p.mean(0) - p.min(0), p.max(0) - p.mean(0)], marker="o", capsize=3,
                label=f"N={n}")
  ax.axhline(math.pi, color="k", ls="--", label="pi (geodesic)")
  ax.axhline(2.0, color="r", ls=":", label="2 (chord)")
  ax.set_xlabel("k")
  ax.set_ylabel(f"pole-to-pole graph distance ({c.seeds} seeds, min-max)")
  ax.legend(fontsize=8)
  ax.set_title("S^2: kNN-graph geodesic between the poles")
  save_figure(fig, workdir, "sphere_pole_to_pole.png", res)


def retrieval_figure(found: dict, workdir: str, res: Results) -> None:
  fig, axes = subplots(1, len(found), figsize=(4.2 * len(found), 3.4), squeeze=False)
  for ax, (name, m) in zip(axes[0], found.items()):
    for arm, curve in m["curves"].items():
      ax.plot(np.arange(1, len(curve) + 1), curve, label=arm if arm == "euclidean" else f"geodesic k={arm}", lw=1)
    ax.axvspan(m["far"][0], m["far"][1], color="grey", alpha=0.2)
    ax.set_xscale("log")
    ax.set_xlabel("rank")
    ax.set_ylabel("precision at rank (same class)")
    ax.set_title(name, fontsize=9)
    ax.legend(fontsize=7)
  save_figure(fig, workdir, "retrieval_precision_by_rank.png", res)


def summarization_figure(found: dict, workdir: str, res: Results) -> None:
  fig, axes = subplots(1, len(found), figsize=(4.5 * len(found), 3.6), squeeze=False)
  for ax, (name, m) in zip(axes[0], found.items()):
    arms = list(m["rouge"])
    r1 = [100 * m["rouge"][a]["rouge1"] for a in arms]
    ax.bar(np.arange(len(arms)), [v.mean() for v in r1], color="C0",
           yerr=[1.96 * v.std(ddof=1) / math.sqrt(len(v)) if len(v) > 1 else 0 for v in r1], capsize=2)
    ax.set_xticks(np.arange(len(arms)))
    ax.set_xticklabels(arms, rotation=70, fontsize=6)
    ax.set_ylabel("ROUGE-1 F1 (mean ± 1.96 s.e. over entities)")
    ax.set_title(f"{name} ({m['split']})", fontsize=9)
  save_figure(fig, workdir, "summarization_rouge1.png", res)
