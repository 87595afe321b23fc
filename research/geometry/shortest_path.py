"""Shortest paths on edge-list graphs (:class:`research.geometry.graph.Graph`): the geodesic step of 9368.

Solvers (spec 05 section 3.5):

* :func:`bellman_ford`: single- or multi-source (vmap) Bellman-Ford relaxation over the whole edge list,
  ``d_new[v] = min(d[v], min_{(u->v)} d[u] + w_uv)`` with ``jax.ops.segment_min`` inside a
  ``lax.while_loop`` that stops when nothing changes (or after ``N`` rounds). The number of rounds is the
  largest hop count of a shortest path from the source, plus one to detect convergence.
* :func:`bellman_ford_nearest`: one run from a *set* of sources, the distance to the nearest of them.
* :func:`floyd_warshall`: all pairs for small N, ``D <- min(D, D[:, m] + D[m, :])`` for each pivot m.
* :func:`dijkstra_scipy`: the oracle, ``scipy.sparse.csgraph.dijkstra`` on the host; :func:`make_sssp`
  wraps it in ``jax.pure_callback`` so that on the CPU backend the best tool is used from jitted code
  ("best tool per backend"; Bellman-Ford is the accelerator path).
* :func:`connected_components`: min-label propagation with pointer jumping over the undirected closure
  (weak components), all in JAX.

Conventions: unreachable nodes have distance ``+inf`` (never 0); the source has distance 0; all edge
lengths must be non-negative (a concrete graph with a negative weight raises ``ValueError``; inside ``jit``
the check cannot run, so call :func:`research.geometry.graph.validate_graph` first).
"""
from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from research.geometry import graph as graph_lib
from research.geometry.graph import Graph

METHODS = ("auto", "bellman_ford", "scipy", "floyd_warshall")


def default_method() -> str:
  """``scipy`` (host Dijkstra via callback) on the CPU backend, ``bellman_ford`` on GPU/TPU."""
  return "scipy" if jax.default_backend() == "cpu" else "bellman_ford"


def _check_sources(sources, n: int):
  src = jnp.asarray(sources)
  if not jnp.issubdtype(src.dtype, jnp.integer):
    raise TypeError(f"sources must be integer node indices, got dtype {src.dtype}.")
  if src.ndim > 1:
    raise ValueError(f"sources must be a scalar or a 1-D array, got shape {tuple(src.shape)}.")
  if graph_lib._is_concrete(src):
    s = np.asarray(src)
    if s.size and (s.min() < 0 or s.max() >= n):
      raise ValueError(f"source indices must lie in [0, {n}); got range [{s.min()}, {s.max()}].")
  return src.astype(jnp.int32)


# --------------------------------------------------------------------------------------------------
# Bellman-Ford
# --------------------------------------------------------------------------------------------------

def _relax_loop(d0, senders, receivers, w, n, max_iters, sorted_receivers):
  """Relaxes all edges until no distance decreases; returns (distances, rounds)."""
  def cond(state):
    _, changed, it = state
    return changed & (it < max_iters)

  def body(state):
    d, _, it = state
    cand = d[senders] + w
    best = jax.ops.segment_min(cand, receivers, num_segments=n, indices_are_sorted=sorted_receivers)
    new = jnp.minimum(d, best)
    return new, jnp.any(new < d), it + 1

  d, _, it = jax.lax.while_loop(cond, body, (d0, jnp.array(True), jnp.array(0, jnp.int32)))
  return d, it


@functools.partial(jax.jit, static_argnames=("num_nodes", "max_iters", "sorted_receivers"))
def _bf_jit(senders, receivers, weights, mask, sources, *, num_nodes, max_iters, sorted_receivers):
  w = jnp.where(mask, weights, jnp.inf)
  dtype = w.dtype

  def single(s):
    d0 = jnp.full((num_nodes,), jnp.inf, dtype).at[s].set(0)
    return _relax_loop(d0, senders, receivers, w, num_nodes, max_iters, sorted_receivers)

  if sources.ndim == 0:
    return single(sources)
  return jax.vmap(single)(sources)


def bellman_ford(graph: Graph, sources, max_iters: Optional[int] = None, sorted_receivers: Optional[bool] = None,
                 return_rounds: bool = False):
  """Shortest-path lengths from ``sources`` (scalar -> ``[N]``, ``[S]`` -> ``[S, N]``), JAX only.

  ``sorted_receivers`` (default: ``graph.sorted_receivers``; kNN graphs and
  :func:`research.geometry.graph.compact` sort edges by receiver) makes the segment-min ~10x faster on CPU. ``max_iters`` defaults to N
  (enough for any graph with non-negative weights). With ``return_rounds`` also returns the number of
  relaxation rounds (per source).
  """
  graph_lib.validate_graph(graph)
  n = graph.num_nodes
  src = _check_sources(sources, n)
  max_iters = n if max_iters is None else int(max_iters)
  sorted_receivers = graph.sorted_receivers if sorted_receivers is None else sorted_receivers
  d, rounds = _bf_jit(graph.senders, graph.receivers, graph.weights, graph.mask, src,
                      num_nodes=n, max_iters=max_iters, sorted_receivers=sorted_receivers)
  return (d, rounds) if return_rounds else d


@functools.partial(jax.jit, static_argnames=("num_nodes", "max_iters", "sorted_receivers"))
def _bf_nearest_jit(senders, receivers, weights, mask, sources, *, num_nodes, max_iters, sorted_receivers):
  w = jnp.where(mask, weights, jnp.inf)
  d0 = jnp.full((num_nodes,), jnp.inf, w.dtype).at[sources].set(0)
  return _relax_loop(d0, senders, receivers, w, num_nodes, max_iters, sorted_receivers)[0]


def bellman_ford_nearest(graph: Graph, sources, max_iters: Optional[int] = None) -> jax.Array:
  """Multi-source shortest paths in one run: ``d[v] = min_s d(s, v)`` over the source set ``[N]``."""
  graph_lib.validate_graph(graph)
  n = graph.num_nodes
  src = jnp.atleast_1d(_check_sources(sources, n))
  return _bf_nearest_jit(graph.senders, graph.receivers, graph.weights, graph.mask, src,
                         num_nodes=n, max_iters=n if max_iters is None else int(max_iters),
                         sorted_receivers=graph.sorted_receivers)


# --------------------------------------------------------------------------------------------------
# Floyd-Warshall (dense, small N)
# --------------------------------------------------------------------------------------------------

@jax.jit
def floyd_warshall_dense(dense: jax.Array) -> jax.Array:
  """All-pairs shortest paths of a dense weight matrix (``inf`` = no edge) by min-plus Floyd-Warshall.

  ``D <- min(D, D[:, m, None] + D[None, m, :])`` for ``m = 0..N-1``; the diagonal is set to 0. O(N^3).
  """
  n = dense.shape[0]
  d = jnp.where(jnp.eye(n, dtype=bool), jnp.zeros((), dense.dtype), dense)

  def body(m, d):
    col = jax.lax.dynamic_slice_in_dim(d, m, 1, axis=1)     # [N, 1]
    row = jax.lax.dynamic_slice_in_dim(d, m, 1, axis=0)     # [1, N]
    return jnp.minimum(d, col + row)

  return jax.lax.fori_loop(0, n, body, d)


def floyd_warshall(graph: Graph, max_nodes: int = 8192) -> jax.Array:
  """All-pairs ``[N, N]`` shortest-path lengths of an edge-list graph (unreachable = inf)."""
  graph_lib.validate_graph(graph)
  if graph.num_nodes > max_nodes:
    raise ValueError(f"Floyd-Warshall is O(N^3) with an N x N matrix; N={graph.num_nodes} > max_nodes="
                     f"{max_nodes}. Use all_pairs(..., method='bellman_ford'|'scipy') or raise max_nodes.")
  return floyd_warshall_dense(graph_lib.to_dense(graph))


# --------------------------------------------------------------------------------------------------
# scipy Dijkstra (oracle; the CPU path through a host callback)
# --------------------------------------------------------------------------------------------------

def dijkstra_scipy(graph_or_csr, sources=None) -> np.ndarray:
  """``scipy.sparse.csgraph.dijkstra`` (directed, float64 sums) cast to float32; unreachable = inf."""
  from scipy.sparse import csgraph
  csr = graph_or_csr
  if isinstance(graph_or_csr, Graph):
    graph_lib.validate_graph(graph_or_csr)
    csr = graph_lib.to_scipy(graph_or_csr)
  idx = None if sources is None else np.asarray(sources)
  out = csgraph.dijkstra(csr, directed=True, indices=idx)
  return out.astype(np.float32)


def make_sssp(graph: Graph, method: str = "auto"):
  """Returns a jitted ``sources -> distances`` function for a fixed graph, with setup done once.

  ``auto`` picks :func:`default_method`: on the CPU backend the host Dijkstra (CSR built once here, called
  through ``jax.pure_callback``), elsewhere Bellman-Ford. The returned function accepts a scalar source
  (``[N]``) or ``[S]`` sources (``[S, N]``) and is vmappable.
  """
  if method not in METHODS or method == "floyd_warshall":
    raise ValueError(f"make_sssp method must be 'auto', 'bellman_ford' or 'scipy', got {method!r}.")
  graph_lib.validate_graph(graph)
  method = default_method() if method == "auto" else method
  n = graph.num_nodes
  if method == "bellman_ford":
    if not graph.sorted_receivers and graph_lib._is_concrete(graph.senders):
      graph = graph_lib.compact(graph)               # receiver-sorted, duplicates merged
    s, r, w, m = graph.senders, graph.receivers, graph.weights, graph.mask
    sorted_receivers = graph.sorted_receivers

    @jax.jit
    def bf(sources):
      return _bf_jit(s, r, w, m, jnp.asarray(sources, jnp.int32), num_nodes=n, max_iters=n,
                     sorted_receivers=sorted_receivers)[0]
    return bf

  from scipy.sparse import csgraph
  csr = graph_lib.to_scipy(graph)

  def host(sources):
    src = np.asarray(sources)
    flat = src.reshape(-1)
    out = csgraph.dijkstra(csr, directed=True, indices=flat).astype(np.float32)
    return out.reshape(src.shape + (n,))

  @jax.jit
  def via_callback(sources):
    sources = jnp.asarray(sources, jnp.int32)
    shape = jax.ShapeDtypeStruct(sources.shape + (n,), jnp.float32)
    return jax.pure_callback(host, shape, sources, vmap_method="expand_dims")
  return via_callback


def shortest_paths(graph: Graph, sources, method: str = "auto") -> jax.Array:
  """Shortest-path lengths from ``sources`` with the chosen solver (``auto``: best per backend)."""
  if method not in METHODS:
    raise ValueError(f"Unknown method {method!r}; choose one of {list(METHODS)}.")
  if method == "floyd_warshall":
    d = floyd_warshall(graph)
    return d[_check_sources(sources, graph.num_nodes)]
  src = _check_sources(sources, graph.num_nodes)
  method = default_method() if method == "auto" else method
  if method == "scipy" and graph_lib._is_concrete(src, graph.senders):
    return jnp.asarray(dijkstra_scipy(graph, np.asarray(src)))     # eager: no callback to compile
  return make_sssp(graph, method)(sources)


def all_pairs(graph: Graph, method: str = "auto", chunk_size: int = 256) -> jax.Array:
  """All-pairs ``[N, N]`` shortest paths: Floyd-Warshall, chunked multi-source Bellman-Ford or scipy.

  ``auto``: scipy on the CPU backend; Floyd-Warshall on accelerators for N <= 4096, else Bellman-Ford.
  """
  if method not in METHODS:
    raise ValueError(f"Unknown method {method!r}; choose one of {list(METHODS)}.")
  n = graph.num_nodes
  if method == "auto":
    method = "scipy" if jax.default_backend() == "cpu" else ("floyd_warshall" if n <= 4096 else "bellman_ford")
  if method == "floyd_warshall":
    return floyd_warshall(graph)
  if method == "scipy":
    return jnp.asarray(dijkstra_scipy(graph))
  f = make_sssp(graph, "bellman_ford")
  rows = [f(jnp.arange(i, min(i + chunk_size, n), dtype=jnp.int32)) for i in range(0, n, chunk_size)]
  return jnp.concatenate(rows, axis=0)


# --------------------------------------------------------------------------------------------------
# Connectivity
# --------------------------------------------------------------------------------------------------

@functools.partial(jax.jit, static_argnames=("num_nodes",))
def _components_jit(senders, receivers, mask, *, num_nodes):
  n = num_nodes
  big = jnp.int32(n)
  s = jnp.where(mask, senders, 0)
  r = jnp.where(mask, receivers, 0)

  def cond(state):
    return state[1]

  def body(state):
    lab, _ = state
    a = jax.ops.segment_min(jnp.where(mask, lab[s], big), r, num_segments=n)
    b = jax.ops.segment_min(jnp.where(mask, lab[r], big), s, num_segments=n)
    new = jnp.minimum(lab, jnp.minimum(a, b))
    new = jnp.minimum(new, new[new])                          # pointer jumping
    return new, jnp.any(new != lab)

  lab, _ = jax.lax.while_loop(cond, body, (jnp.arange(n, dtype=jnp.int32), jnp.array(True)))
  is_root = lab == jnp.arange(n, dtype=jnp.int32)
  rank = jnp.cumsum(is_root.astype(jnp.int32)) - 1
  return jnp.sum(is_root), rank[lab]


def connected_components(graph: Graph, method: str = "jax"):
  """Weakly connected components: ``(num_components, labels [N])``; labels are 0..C-1 ordered by the
  smallest node index of each component (scipy's convention).

  ``method``: ``jax`` (label propagation, jittable) or ``scipy`` (host; concrete graphs only).
  """
  if method == "scipy":
    from scipy.sparse import csgraph
    n, labels = csgraph.connected_components(graph_lib.to_scipy(graph), directed=True, connection="weak")
    return n, jnp.asarray(labels, jnp.int32)
  if method != "jax":
    raise ValueError(f"connected_components method must be 'jax' or 'scipy', got {method!r}.")
  n, labels = _components_jit(graph.senders, graph.receivers, graph.mask, num_nodes=graph.num_nodes)
  return n, labels


def unreachable_report(dist) -> dict:
  """Counts of unreachable (inf) entries of a distance matrix/vector, excluding nothing."""
  d = np.asarray(dist)
  inf = ~np.isfinite(d)
  return {"unreachable_pairs": int(inf.sum()), "unreachable_fraction": float(inf.mean()) if d.size else 0.0}
