"""Shortest-path solvers vs scipy's Dijkstra on swiss-roll kNN graphs: per-round time ratios and errors.

All timings come from :func:`research.benchmark.time_interleaved` (arms interleaved round-robin, after
compilation); round ``r`` of every single-source arm uses the same source, so the per-round ratios are paired.
"""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from scipy.sparse import csgraph

from experiments.geodesic.sanity import swiss_roll
from research.benchmark import time_interleaved
from research.geometry import graph as graph_lib
from research.geometry import shortest_path as sp


def rel_err(a, b) -> float:
  """Max relative error on the finite entries; inf when the finite patterns differ."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  fa, fb = np.isfinite(a), np.isfinite(b)
  if not np.array_equal(fa, fb):
    return float("inf")
  return float(np.max(np.abs(a[fa] - b[fa]) / np.maximum(1.0, np.abs(b[fa])))) if fa.any() else 0.0


def _rounds(calls: dict, rounds: int) -> dict:
  return {k: np.asarray(v) for k, v in time_interleaved(calls, rounds).items()}


def measure(c, seed: int) -> dict:
  rng = np.random.default_rng([seed, 8])
  x, _ = swiss_roll(int(c.n), rng)
  t0 = time.perf_counter()
  g = graph_lib.knn_graph(jnp.asarray(x), int(c.k), mode="union")
  jax.block_until_ready(g.weights)
  out = {"graph_seconds": time.perf_counter() - t0, "edges": int(g.num_edges), "backend": jax.default_backend(),
         "devices": len(jax.devices())}
  csr = graph_lib.to_scipy(g)
  srcs = rng.choice(int(c.n), size=int(c.repeats), replace=False)
  bf, cb = sp.make_sssp(g, "bellman_ford"), sp.make_sssp(g, "scipy")
  ref = csgraph.dijkstra(csr, directed=True, indices=srcs)
  out["bellman_ford_err"] = rel_err(np.stack([np.asarray(bf(int(s))) for s in srcs]), ref)   # also compiles
  out["callback_err"] = rel_err(np.stack([np.asarray(cb(int(s))) for s in srcs]), ref)
  out["rounds"] = int(sp.bellman_ford(g, int(srcs[0]), return_rounds=True)[1])
  its = {name: iter(srcs) for name in ("scipy", "bellman_ford", "callback")}   # round r: source srcs[r] for all
  out["sssp"] = _rounds({
      "scipy": lambda: csgraph.dijkstra(csr, directed=True, indices=int(next(its["scipy"]))),
      "bellman_ford": lambda: bf(int(next(its["bellman_ford"]))).block_until_ready(),
      "callback": lambda: cb(int(next(its["callback"]))).block_until_ready()}, int(c.repeats))
  out["auto"] = "callback" if sp.default_method() == "scipy" else "bellman_ford"
  ms = jnp.asarray(rng.choice(int(c.n), size=int(c.sources), replace=False), jnp.int32)
  bf(ms).block_until_ready()
  out["multisource"] = _rounds({"bellman_ford": lambda: bf(ms).block_until_ready(),
                                "scipy": lambda: csgraph.dijkstra(csr, directed=True, indices=np.asarray(ms))},
                               int(c.slow_repeats))
  xa, _ = swiss_roll(int(c.apsp_n), rng)
  ga = graph_lib.knn_graph(jnp.asarray(xa), int(c.k), mode="union")
  csra = graph_lib.to_scipy(ga)
  dense = graph_lib.to_dense(ga)
  fw = sp.floyd_warshall_dense(dense).block_until_ready()
  out["apsp_err"] = rel_err(fw, csgraph.dijkstra(csra, directed=True))
  out["apsp"] = _rounds({"floyd_warshall": lambda: sp.floyd_warshall_dense(dense).block_until_ready(),
                         "scipy": lambda: csgraph.dijkstra(csra, directed=True)}, int(c.slow_repeats))
  return out
