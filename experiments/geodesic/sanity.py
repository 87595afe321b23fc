"""G1 sphere and G2 swiss roll (spec 05 section 6.3): graph distances against known geodesics, per seed."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from scipy import stats

from research.geometry import graph as graph_lib
from research.geometry import shortest_path as sp


def spearman(a, b) -> float:
  return float(stats.spearmanr(np.asarray(a).ravel(), np.asarray(b).ravel()).correlation)


def sphere_points(n: int, rng: np.random.Generator) -> np.ndarray:
  """Both poles (rows 0 and 1) and ``n`` uniform points on S^2."""
  v = rng.normal(size=(n, 3))
  v /= np.linalg.norm(v, axis=1, keepdims=True)
  return np.concatenate([np.array([[0, 0, 1.0], [0, 0, -1.0]]), v]).astype(np.float32)


def swiss_roll(n: int, rng: np.random.Generator, noise: float = 0.0):
  """Swiss roll (sklearn's parametrisation) and its intrinsic coordinates (arc length, height)."""
  t = 1.5 * np.pi * (1 + 2 * rng.random(n))
  h = 21 * rng.random(n)
  x = np.stack([t * np.cos(t), h, t * np.sin(t)], 1) + noise * rng.normal(size=(n, 3))
  arc = 0.5 * (t * np.sqrt(1 + t * t) + np.arcsinh(t))
  return x.astype(np.float32), np.stack([arc, h], 1)


def sphere(c, graph, seed: int) -> dict:
  """Pole-to-pole graph distance and Spearman(graph, arccos), arrays ``[seeds, len(ns), len(ks)]``."""
  shape = (int(c.seeds), len(c.sphere_ns), len(c.ks))
  pole, rho = np.zeros(shape), np.zeros(shape)
  for s in range(int(c.seeds)):
    rng = np.random.default_rng([seed, s, 1])
    for i, n in enumerate(c.sphere_ns):
      x = sphere_points(n, rng)
      src = np.arange(min(int(c.spearman_sources), n))
      true = np.arccos(np.clip(x[src] @ x.T, -1, 1))
      for j, k in enumerate(c.ks):
        g = graph_lib.knn_graph(jnp.asarray(x), k, mode=graph.mode)
        d = np.asarray(sp.shortest_paths(g, jnp.asarray(src), method=graph.method))
        fin = np.isfinite(d)
        pole[s, i, j], rho[s, i, j] = d[0, 1], spearman(d[fin], true[fin])
  return {"pole": pole, "spearman": rho}


def swiss(c, graph, seed: int) -> dict:
  """Spearman of Euclidean ``[seeds]`` and geodesic ``[seeds, len(ks)]`` distance with the intrinsic one;
  components and unreachable fractions; a scatter sample of seed 0 at the headline k for the figure."""
  S, K = int(c.seeds), len(c.ks)
  out = {"euclidean": np.zeros(S), "geodesic": np.zeros((S, K)), "components": np.zeros((S, K), int),
         "unreachable": np.zeros((S, K))}
  iu = np.triu_indices(int(c.swiss_n), 1)
  for s in range(S):
    rng = np.random.default_rng([seed, s, 2])
    x, intr = swiss_roll(int(c.swiss_n), rng, float(c.swiss_noise))
    d_int = np.linalg.norm(intr[:, None] - intr[None], axis=-1)[iu]
    d_euc = np.linalg.norm(x[:, None] - x[None], axis=-1)[iu]
    out["euclidean"][s] = spearman(d_euc, d_int)
    for j, k in enumerate(c.ks):
      g = graph_lib.knn_graph(jnp.asarray(x), k, mode=graph.mode)
      D = np.asarray(sp.all_pairs(g, method=graph.method))[iu]
      fin = np.isfinite(D)
      out["geodesic"][s, j] = spearman(D[fin], d_int[fin])
      out["components"][s, j] = int(sp.connected_components(g)[0])
      out["unreachable"][s, j] = 1 - fin.mean()
      if s == 0 and k == graph.headline_k:
        pick = rng.choice(len(d_int), size=min(4000, len(d_int)), replace=False)
        out["scatter"] = {"k": k, "intrinsic": d_int[pick], "euclidean": d_euc[pick],
                          "geodesic": np.where(fin, D, np.nan)[pick]}
  return out
