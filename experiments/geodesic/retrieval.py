"""G3 near vs far retrieval and G4 centroid themes (spec 05 section 6.3), measured per query fold.

Every query ranks all other points by the base (Euclidean) distance and by the geodesic of a kNN graph.
The queries are split into ``c.folds`` disjoint groups (a permutation drawn from ``config.seed``); each
metric is computed per group, so the two arms are compared by paired per-fold differences.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from research import data
from research.eval import retrieval as retr
from research.geometry import geodesic as geo
from research.geometry import graph as graph_lib
from research.geometry import shortest_path as sp


def load(name: str, c, data_dir, seed: int):
  """``(x [N, D] float32, y [N])`` of a retrieval dataset; subsets are drawn from ``seed``."""
  if name == "digits":
    x, y = data.load_sklearn("digits")
    x, y = np.asarray(x, np.float32), np.asarray(y)
    if c.digits_n:
      idx = np.random.default_rng([seed, 3]).permutation(len(x))[: c.digits_n]
      x, y = x[idx], y[idx]
    return x, y
  if name.startswith("fashion_mnist"):
    imgs, y = data.load_fashion_mnist("test", data_dir=data_dir)
    idx = np.random.default_rng([seed, 4]).permutation(len(imgs))[: c.fashion_n]
    x = imgs[idx].reshape(len(idx), -1).astype(np.float32) / 255.0
    y = np.asarray(y)[idx]
    if name.endswith("pca"):
      xc = x - x.mean(0)
      _, _, vt = np.linalg.svd(xc, full_matrices=False)
      x = (xc @ vt[: c.pca_dim].T).astype(np.float32)
    return x, y
  raise ValueError(f"unknown retrieval dataset {name!r}; valid: digits, fashion_mnist_pixels, fashion_mnist_pca")


def fold_ids(n: int, folds: int, seed: int, salt: int = 5) -> np.ndarray:
  """The fold (0..folds-1) of each of ``n`` items: a permutation from ``seed``, dealt round-robin."""
  out = np.empty(n, int)
  out[np.random.default_rng([seed, salt]).permutation(n)] = np.arange(n) % folds
  return out


def per_fold(key, y, folds: np.ndarray, bands) -> dict:
  """``{"map": [F], "p_a_b": [F], ...}``: the retrieval metrics of each fold's queries."""
  out = {}
  for f in range(int(folds.max()) + 1):
    rows = np.flatnonzero(folds == f)
    m = retr.retrieval_metrics(np.asarray(key)[rows], y[rows], bands=bands, labels_ref=y, query_ids=rows)
    for name, v in m.items():
      out.setdefault(name, []).append(v)
  return {k: np.asarray(v) for k, v in out.items()}


def precision_curve(key, y) -> np.ndarray:
  """Mean over queries of same-class relevance at each rank (self excluded), smoothed over 5 ranks."""
  key = np.asarray(key).copy()
  np.fill_diagonal(key, -np.inf)
  order = np.argsort(key, axis=1, kind="stable")[:, 1:]
  rel = (y[order] == y[:, None]).mean(0)
  w = np.ones(5)
  return np.convolve(rel, w, mode="same") / np.convolve(np.ones_like(rel), w, mode="same")   # edge-corrected


def theme_scores(score, y) -> tuple[np.ndarray, np.ndarray]:
  """Per-class ROC AUC and AP of class membership for theme scores ``[classes, N]``."""
  score = np.asarray(score)
  classes = np.unique(y)
  return (np.array([retr.roc_auc(score[i], y == c) for i, c in enumerate(classes)]),
          np.array([retr.average_precision(score[i], y == c) for i, c in enumerate(classes)]))


def measure(name: str, c, graph, data_dir, seed: int) -> dict:
  """Per-fold metrics, per-class theme scores and precision curves of the Euclidean and geodesic arms."""
  x, y = load(name, c, data_dir, seed)
  n = len(x)
  counts = np.unique(y, return_counts=True)[1]
  m = n / len(counts)
  near = tuple(int(v) for v in c.near_band)
  far = (int(round(c.far_band_fraction[0] * m)) + 1, int(round(c.far_band_fraction[1] * m)))
  folds = fold_ids(n, int(c.folds), seed)
  d_base = np.asarray(graph_lib.pairwise_distances(jnp.asarray(x)))
  themes = np.stack([x[y == k].mean(0) for k in np.unique(y)])
  base_theme = geo.base_theme_distances(x, themes)
  out = {"n": n, "near": near, "far": far, "folds": int(c.folds),
         "chance": float(np.sum(counts * (counts - 1)) / (n * (n - 1))),   # same-class rate of a random rank
         "arms": {"euclidean": per_fold(d_base, y, folds, (near, far))},
         "theme": {"euclidean": theme_scores(-np.asarray(base_theme), y)},
         "curves": {"euclidean": precision_curve(d_base, y)}, "components": {}}
  for k in c.ks:
    g = graph_lib.knn_graph(jnp.asarray(x), k, mode=graph.mode)
    key = np.asarray(geo.ranking_key(np.asarray(sp.all_pairs(g, method=graph.method)), d_base))
    out["arms"][k] = per_fold(key, y, folds, (near, far))
    out["curves"][k] = precision_curve(key, y)
    out["components"][k] = int(sp.connected_components(g)[0])
    d_theme = geo.geodesic_theme_distances(x, themes, k=k, theme_k=c.theme_k, mode=graph.mode,
                                           method=graph.method, graph=g)
    out["theme"][k] = theme_scores(-np.asarray(geo.ranking_key(d_theme, base_theme)), y)
  return out
