"""k-nearest-neighbour and epsilon graphs for approximate geodesic distances (kexue 9368, Isomap stage 1).

A graph is an explicit **edge list** ``(senders, receivers, weights, mask)`` of fixed length, so that the
construction and the shortest-path solvers can be jitted: an edge ``s -> r`` with weight ``w >= 0`` may be
traversed from ``s`` to ``r``. Undirected graphs store both directions. ``mask`` marks which slots are real
edges; a masked-out slot has weight ``+inf``. Because existence is carried by ``mask`` and never by
``weight != 0``, **zero-length edges** (duplicate points, ``d = 0``) stay edges (spec 05 section 4, the
classic "0 means no edge" pitfall of dense and scipy-sparse graph code). :func:`to_scipy` keeps them as
explicit zeros.

Constructions (spec 05 section 3.2), from kNN indices ``idx[i] = kNN_k(i)``:

* ``directed``: ``i -> j`` iff ``j in kNN_k(i)``  (N*k edges; distances may be asymmetric);
* ``union``:    ``i - j`` iff ``j in kNN_k(i)`` or ``i in kNN_k(j)`` (default; connected more often);
* ``mutual``:   ``i - j`` iff ``j in kNN_k(i)`` and ``i in kNN_k(j)`` (no hub shortcuts, fragments easily);
* ``epsilon``:  ``i - j`` iff ``d_ij < eps`` (the article's "threshold" option; built on the host because
  the number of edges depends on the data).

Duplicated edges: in ``union`` an edge ``i - j`` with ``j in kNN(i)`` and ``i in kNN(j)`` would appear
twice; the reverse copy is masked out, so every undirected edge is stored exactly once per direction.

Edge weights (spec 05 section 3.3), recomputed directly for the kept edges (never from the
``|a|^2 + |b|^2 - 2ab`` expansion):

* ``euclidean``: ``|u - v|`` (a metric; the recommended choice on L2-normalised embeddings);
* ``angular``:   ``arccos(cos(u, v))`` (a metric on the sphere);
* ``cosine``:    ``1 - cos(u, v)``: non-negative, so shortest paths are well defined, but NOT a metric:
  on unit vectors it equals ``|u - v|^2 / 2``, so paths of many short hops are favoured and geodesics come
  out shorter than intended. Offered, but documented as such.

Optional hubness-reduced re-weighting (spec 05 section 3.2, linking to spec 04): local scaling
``1 - exp(-d^2 / (r_i r_j))`` and NICDM ``d / sqrt(rbar_i rbar_j)``.

Ties in the kNN selection are broken by the lower index (``lax.top_k`` is stable); self-hits are excluded
by masking the diagonal explicitly.
"""
from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

# One precision policy for every distance computed from a matrix product, the one of the shared exact kNN
# (research.geometry.knn): full float32 products. A GPU/TPU default (TF32 / bf16 passes) would perturb the
# distances by ~1e-3 relative and reorder near neighbours, so the dense path's kNN graphs (and everything
# built on them) would differ from the exact kNN path's.
DISTANCE_PRECISION = jax.lax.Precision.HIGHEST

MODES = ("directed", "union", "mutual")
METRICS = ("euclidean", "angular", "cosine")
REWEIGHTS = (None, "none", "local_scaling", "nicdm")


@struct.dataclass
class Graph:
  """A weighted graph as a fixed-length edge list; edge ``e`` goes ``senders[e] -> receivers[e]``.

  Attributes:
    senders, receivers: int32 ``[E]`` node indices in ``[0, num_nodes)``.
    weights: float ``[E]`` non-negative lengths; ``+inf`` where ``mask`` is False.
    mask: bool ``[E]``: which slots are real edges (zero-length edges are real edges).
    num_nodes: number of nodes (static).
    symmetric: True when every edge is stored in both directions with the same weight (static).
    sorted_receivers: True when ``receivers`` is non-decreasing (a faster segment-min; static).
  """
  senders: jax.Array
  receivers: jax.Array
  weights: jax.Array
  mask: jax.Array
  num_nodes: int = struct.field(pytree_node=False)
  symmetric: bool = struct.field(pytree_node=False, default=True)
  sorted_receivers: bool = struct.field(pytree_node=False, default=False)

  @property
  def num_edges(self) -> int:
    """Number of real (unmasked) directed edges; concrete graphs only."""
    return int(np.asarray(self.mask).sum())


def _is_concrete(*xs) -> bool:
  return not any(isinstance(x, jax.core.Tracer) for x in xs)


def validate_embeddings(x, name: str = "embeddings") -> None:
  """Eager checks of an embedding matrix: 2-D, floating, finite. Raises ``ValueError``."""
  if x.ndim != 2:
    raise ValueError(f"{name} must be a 2-D array [num_points, dim], got shape {tuple(x.shape)}.")
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(f"{name} must be floating point, got {x.dtype}; cast with x.astype(jnp.float32).")
  if _is_concrete(x):
    bad = ~np.isfinite(np.asarray(x))
    if bad.any():
      rows = np.unique(np.nonzero(bad)[0])
      raise ValueError(
          f"{name} contain NaN/inf in {rows.size} row(s) (first: {rows[:5].tolist()}); a kNN graph over "
          "non-finite points is meaningless. Drop or repair those rows (e.g. empty texts) before building "
          "the graph.")


def _check_k(k: int, n: int) -> None:
  if not isinstance(k, (int, np.integer)) or k < 1:
    raise ValueError(f"k must be a positive integer, got {k!r}.")
  if k >= n:
    raise ValueError(
        f"k={k} must be smaller than the number of points N={n} (each point has at most N-1 neighbours "
        "once itself is excluded). Use k <= N-1, or an all-pairs graph for tiny N.")


def _check_choice(value, allowed, what):
  if value not in allowed:
    raise ValueError(f"Unknown {what} {value!r}; choose one of {list(a for a in allowed if a)}.")


# --------------------------------------------------------------------------------------------------
# Pairwise distances and kNN from a distance matrix
# --------------------------------------------------------------------------------------------------

def pair_distance(a: jax.Array, b: jax.Array, metric: str = "euclidean") -> jax.Array:
  """Distance between rows of ``a`` and ``b`` (same shape ``[..., d]``), computed directly.

  euclidean ``|a-b|``; angular ``arccos(clip(cos))``; cosine ``1 - cos``. The cosine of zero vectors is
  taken as 0 (a zero row is orthogonal to everything).
  """
  _check_choice(metric, METRICS, "metric")
  if metric == "euclidean":
    return jnp.sqrt(jnp.maximum(jnp.sum((a - b) ** 2, axis=-1), 0.0))
  na = jnp.linalg.norm(a, axis=-1)
  nb = jnp.linalg.norm(b, axis=-1)
  cos = jnp.sum(a * b, axis=-1) / jnp.maximum(na * nb, jnp.finfo(a.dtype).tiny)
  cos = jnp.clip(cos, -1.0, 1.0)
  if metric == "angular":
    return jnp.arccos(cos)
  return jnp.maximum(1.0 - cos, 0.0)


def pairwise_distances(x: jax.Array, y: Optional[jax.Array] = None, metric: str = "euclidean") -> jax.Array:
  """Dense ``[N, M]`` distance matrix (small N only). Euclidean uses the expansion clamped at 0,
  ``|x|^2 + |y|^2 - 2 x.y``; products at :data:`DISTANCE_PRECISION` (the shared kNN's policy)."""
  _check_choice(metric, METRICS, "metric")
  y = x if y is None else y
  if metric == "euclidean":
    xy = jnp.matmul(x, y.T, precision=DISTANCE_PRECISION)
    sq = (jnp.sum(x * x, -1)[:, None] + jnp.sum(y * y, -1)[None, :] - 2.0 * xy)
    return jnp.sqrt(jnp.maximum(sq, 0.0))
  xn = x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), jnp.finfo(x.dtype).tiny)
  yn = y / jnp.maximum(jnp.linalg.norm(y, axis=-1, keepdims=True), jnp.finfo(y.dtype).tiny)
  cos = jnp.clip(jnp.matmul(xn, yn.T, precision=DISTANCE_PRECISION), -1.0, 1.0)
  return jnp.arccos(cos) if metric == "angular" else jnp.maximum(1.0 - cos, 0.0)


def knn_from_distance_matrix(dist: jax.Array, k: int, exclude_self: bool = True):
  """kNN of every row of a square distance matrix: ``(dists [N,k], idx [N,k])``, nearest first.

  The diagonal is masked explicitly (self-distance need not be the smallest in float32); ties are broken
  by the lower index. NaN entries raise (concrete input) because they would silently reorder neighbours.
  """
  if dist.ndim != 2 or dist.shape[0] != dist.shape[1]:
    raise ValueError(f"distance matrix must be square [N, N], got shape {tuple(dist.shape)}.")
  n = dist.shape[0]
  _check_k(k, n if exclude_self else n + 1)
  if _is_concrete(dist):
    d_np = np.asarray(dist)
    if np.isnan(d_np).any():
      raise ValueError("distance matrix contains NaN; fix the distances before building a kNN graph.")
    if (d_np < 0).any():
      raise ValueError(f"distance matrix has negative entries (min {d_np.min():.3g}); distances must be >= 0.")
  d = dist
  if exclude_self:
    d = jnp.where(jnp.eye(n, dtype=bool), jnp.inf, d)
  neg, idx = jax.lax.top_k(-d, k)
  return -neg, idx.astype(jnp.int32)


def knn_of_embeddings(x: jax.Array, k: int, metric: str = "euclidean", chunk_size: int = 1024):
  """kNN of every row of ``x`` (self excluded) via the shared exact kNN (:mod:`research.geometry.knn`).

  The kNN *order* for ``angular`` and ``cosine`` is the cosine order, so those use the shared kNN's cosine
  metric. Returns ``(dists [N, k], idx [N, k])``; the distances are in the shared kNN's convention and
  are recomputed for graph weights by :func:`edge_weights`.
  """
  from research.geometry import knn as knn_lib  # shared module (hubness engineer)
  knn_metric = "euclidean" if metric == "euclidean" else "cosine"
  dists, idx = knn_lib.knn(x, k, metric=knn_metric, exclude_self=True, chunk_size=chunk_size)
  return dists, jnp.asarray(idx, jnp.int32)


# --------------------------------------------------------------------------------------------------
# Edge lists
# --------------------------------------------------------------------------------------------------

def _mutual_flags(idx: jax.Array) -> jax.Array:
  """``flags[i, a]`` = True iff ``i in kNN(idx[i, a])``; O(N k^2) memory-free comparison."""
  n = idx.shape[0]
  back = idx[idx]                                    # [N, k, k]: neighbours of each neighbour
  return jnp.any(back == jnp.arange(n, dtype=idx.dtype)[:, None, None], axis=-1)


def edges_from_knn(idx: jax.Array, weights: jax.Array, mode: str = "union") -> Graph:
  """Edge list of a kNN graph from neighbour indices ``idx [N, k]`` and edge lengths ``weights [N, k]``.

  ``weights[i, a]`` is the length of ``i -> idx[i, a]``; for ``union``/``mutual`` the reverse direction
  gets the same length (pass symmetric base distances). Fixed size: ``N*k`` slots for directed/mutual,
  ``2*N*k`` for union; duplicates are masked out, never summed. Edges are sorted by receiver.
  """
  _check_choice(mode, MODES, "mode")
  if idx.ndim != 2 or weights.shape != idx.shape:
    raise ValueError(f"idx and weights must both be [N, k]; got {tuple(idx.shape)} and {tuple(weights.shape)}.")
  _check_weights(weights)
  n = idx.shape[0]
  s, r, w, m = _edges_core(jnp.asarray(idx, jnp.int32), weights, n, mode=mode)
  return Graph(s, r, w, m, num_nodes=n, symmetric=mode != "directed", sorted_receivers=True)


def _check_weights(weights):
  if _is_concrete(weights):
    w_np = np.asarray(weights)
    if np.isnan(w_np).any():
      raise ValueError("edge weights contain NaN; check the embeddings/distances for NaN.")
    if (w_np < 0).any():
      raise ValueError(
          f"negative edge weight ({w_np.min():.3g}): shortest paths need non-negative lengths. Use a "
          "distance (euclidean/angular/1-cos), not a similarity.")


@functools.partial(jax.jit, static_argnames=("mode",))
def _edges_core(idx, w, n_valid, *, mode):
  """(senders, receivers, weights, mask) sorted by receiver; rows >= n_valid are padding (masked)."""
  b, k = idx.shape
  n_valid = jnp.asarray(n_valid, jnp.int32)
  src = jnp.repeat(jnp.arange(b, dtype=jnp.int32), k)
  dst = idx.reshape(-1)
  w = w.reshape(-1)
  valid = (dst != src) & (src < n_valid) & (dst < n_valid)   # never a self-loop; padding excluded
  if mode == "directed":
    s, r, m = src, dst, valid
  else:
    mutual = _mutual_flags(idx).reshape(-1)
    if mode == "mutual":
      # the reverse of a mutual edge is itself a kNN edge of the other node, so it is already listed
      s, r, m = src, dst, valid & mutual
    else:
      # union: forward edges plus the reverse of every non-mutual edge (mutual ones exist reversed)
      s, r = jnp.concatenate([src, dst]), jnp.concatenate([dst, src])
      m = jnp.concatenate([valid, valid & ~mutual])
      w = jnp.concatenate([w, w])
  s = jnp.where(m, s, 0)
  r = jnp.where(m, r, n_valid - 1)                  # masked slots: in range, sorted last
  order = jnp.argsort(r, stable=True)
  return s[order], r[order], jnp.where(m, w, jnp.inf)[order], m[order]


def edge_weights(x: jax.Array, idx: jax.Array, metric: str = "euclidean") -> jax.Array:
  """Lengths of the edges ``i -> idx[i, a]`` recomputed directly from the embeddings, ``[N, k]``."""
  return pair_distance(x[:, None, :], x[idx], metric)


def reweight(dists: jax.Array, idx: jax.Array, weights: jax.Array, method: Optional[str]) -> jax.Array:
  """Hubness-reduced edge lengths from the kNN distances ``dists [N, k]`` (nearest first).

  local_scaling: ``1 - exp(-d_ij^2 / (r_i r_j))``, r = distance to the k-th neighbour;
  nicdm: ``d_ij / sqrt(rbar_i rbar_j)``, rbar = mean kNN distance. Both are symmetric in (i, j).
  """
  _check_choice(method, REWEIGHTS, "reweight method")
  if method in (None, "none"):
    return weights
  tiny = jnp.finfo(weights.dtype).tiny
  if method == "local_scaling":
    r = dists[:, -1]
    return 1.0 - jnp.exp(-weights ** 2 / jnp.maximum(r[:, None] * r[idx], tiny))
  rbar = jnp.mean(dists, axis=-1)
  return weights / jnp.sqrt(jnp.maximum(rbar[:, None] * rbar[idx], tiny))


DENSE_MAX = 4096   # up to this many points, kNN comes from one padded dense jitted call (see knn_graph)


def _bucket(n: int) -> int:
  return max(64, 1 << (int(n) - 1).bit_length())


@functools.partial(jax.jit, static_argnames=("k", "metric", "mode", "reweight_method"))
def _dense_graph_core(xp, n_valid, eps_weight, *, k, metric, mode, reweight_method):
  """kNN graph of the first ``n_valid`` rows of the padded ``xp [B, d]`` in one compiled call."""
  b = xp.shape[0]
  d = pairwise_distances(xp, metric=metric)
  cols = jnp.arange(b)
  bad = (cols[None, :] >= n_valid) | (cols[None, :] == cols[:, None])
  _, idx = jax.lax.top_k(-jnp.where(bad, jnp.inf, d), k)         # ties -> lower index; self masked
  w = edge_weights(xp, idx, metric)                              # recomputed directly, nearest first
  w = reweight(w, idx, w, reweight_method) + eps_weight
  return _edges_core(idx.astype(jnp.int32), w, n_valid, mode=mode)


@functools.partial(jax.jit, static_argnames=("metric", "mode", "reweight_method"))
def _idx_graph_core(x, idx, eps_weight, *, metric, mode, reweight_method):
  w = edge_weights(x, idx, metric)
  w = reweight(w, idx, w, reweight_method) + eps_weight
  return _edges_core(idx, w, x.shape[0], mode=mode)


def knn_graph(x: jax.Array, k: int, mode: str = "union", metric: str = "euclidean",
              eps_weight: float = 0.0, reweight_method: Optional[str] = None,
              knn: Optional[tuple] = None, chunk_size: int = 1024, dense_max: int = DENSE_MAX) -> Graph:
  """kNN graph over the rows of ``x [N, d]`` with directly recomputed ``metric`` edge lengths.

  Args:
    x: embeddings (finite; validated eagerly).
    k: neighbours per point, ``1 <= k < N``.
    mode: ``directed`` | ``union`` | ``mutual``.
    metric: ``euclidean`` | ``angular`` | ``cosine`` (1 - cos, not a metric: see module doc).
    eps_weight: added to every edge length (e.g. 1e-6 to make duplicates strictly positive for
      code that treats 0 as "no edge"; the edge list here does not need it).
    reweight_method: None | ``local_scaling`` | ``nicdm`` (hubness reduction).
    knn: optional precomputed ``(dists, idx)`` from :mod:`research.geometry.knn` (self excluded).
    dense_max: for ``N <= dense_max`` (and no ``knn`` given) the neighbours come from a dense distance
      matrix padded to a power-of-two bucket inside one jitted call, so pools of many different sizes
      (one per product, ...) compile once per bucket; larger N uses the shared exact chunked, sharded
      kNN (:func:`research.geometry.knn.knn`). Both mask the diagonal and break ties by lower index.
      The dense path's edge list keeps the padding slots (masked, weight inf): ``bucket(N) * k`` slots.
  """
  x = jnp.asarray(x)
  validate_embeddings(x)
  _check_choice(mode, MODES, "mode")
  _check_choice(metric, METRICS, "metric")
  _check_choice(reweight_method, REWEIGHTS, "reweight method")
  n = x.shape[0]
  _check_k(k, n)
  rw = None if reweight_method in (None, "none") else reweight_method
  if knn is None and n <= dense_max:
    b = _bucket(n)
    xp = jnp.pad(x.astype(jnp.float32), ((0, b - n), (0, 0)))
    s, r, w, m = _dense_graph_core(xp, jnp.int32(n), jnp.float32(eps_weight), k=int(k), metric=metric,
                                   mode=mode, reweight_method=rw)
    # the padding rows' slots stay in the list, masked (weight inf); `compact` drops them
  else:
    if knn is None:
      _, idx = knn_of_embeddings(x, k, metric, chunk_size=chunk_size)
    else:
      idx = knn[1]
    idx = jnp.asarray(idx[:, :k], jnp.int32)
    s, r, w, m = _idx_graph_core(x, idx, jnp.float32(eps_weight), metric=metric, mode=mode, reweight_method=rw)
  return Graph(s, r, w, m, num_nodes=n, symmetric=mode != "directed", sorted_receivers=True)


def knn_graph_from_distances(dist: jax.Array, k: int, mode: str = "union", eps_weight: float = 0.0,
                             reweight_method: Optional[str] = None) -> Graph:
  """kNN graph from a square distance matrix (weights are the matrix entries)."""
  kd, idx = knn_from_distance_matrix(dist, k)
  w = kd
  if reweight_method not in (None, "none"):
    w = reweight(kd, idx, kd, reweight_method)
  return edges_from_knn(idx, w + eps_weight, mode)


def epsilon_graph(dist, eps: float, eps_weight: float = 0.0) -> Graph:
  """Undirected epsilon graph from a square distance matrix: ``i - j`` iff ``i != j`` and ``d_ij < eps``.

  Built on the host (numpy): the number of edges depends on the data. Zero distances are edges.
  """
  d = np.asarray(dist)
  if d.ndim != 2 or d.shape[0] != d.shape[1]:
    raise ValueError(f"distance matrix must be square [N, N], got shape {d.shape}.")
  if not eps > 0:
    raise ValueError(f"eps must be > 0, got {eps!r}.")
  if np.isnan(d).any():
    raise ValueError("distance matrix contains NaN.")
  if (d < 0).any():
    raise ValueError(f"distance matrix has negative entries (min {d.min():.3g}).")
  if not np.allclose(d, d.T, equal_nan=True):
    raise ValueError("epsilon_graph needs a symmetric distance matrix (got an asymmetric one).")
  n = d.shape[0]
  keep = (d < eps) & ~np.eye(n, dtype=bool)
  r, s = np.nonzero(keep.T)                         # receiver-major order
  w = d[s, r].astype(np.float32) + eps_weight
  return Graph(jnp.asarray(s, jnp.int32), jnp.asarray(r, jnp.int32), jnp.asarray(w),
               jnp.ones(s.shape, bool), num_nodes=n, symmetric=True, sorted_receivers=True)


def epsilon_graph_from_embeddings(x, eps: float, metric: str = "euclidean", eps_weight: float = 0.0) -> Graph:
  """Epsilon graph over embeddings (dense distances; small N)."""
  validate_embeddings(x)
  return epsilon_graph(pairwise_distances(jnp.asarray(x), metric=metric), eps, eps_weight)


# --------------------------------------------------------------------------------------------------
# Conversions and utilities
# --------------------------------------------------------------------------------------------------

def add_edges(graph: Graph, senders, receivers, weights, num_nodes: Optional[int] = None,
              symmetric: Optional[bool] = None) -> Graph:
  """Appends edges (all real) and optionally grows the node count."""
  senders = jnp.asarray(senders, jnp.int32).reshape(-1)
  receivers = jnp.asarray(receivers, jnp.int32).reshape(-1)
  weights = jnp.asarray(weights, graph.weights.dtype).reshape(-1)
  return Graph(jnp.concatenate([graph.senders, senders]), jnp.concatenate([graph.receivers, receivers]),
               jnp.concatenate([graph.weights, weights]),
               jnp.concatenate([graph.mask, jnp.ones(senders.shape, bool)]),
               num_nodes=graph.num_nodes if num_nodes is None else num_nodes,
               symmetric=graph.symmetric if symmetric is None else symmetric, sorted_receivers=False)


def compact(graph: Graph) -> Graph:
  """Drops masked-out slots and merges duplicate (s, r) pairs keeping the minimum weight (host)."""
  s, r, w, m = (np.asarray(a) for a in (graph.senders, graph.receivers, graph.weights, graph.mask))
  s, r, w = s[m], r[m], w[m]
  order = np.lexsort((w, r, s))                     # by (s, r), then the smallest weight first
  s, r, w = s[order], r[order], w[order]
  first = np.ones(s.shape, bool)
  first[1:] = (s[1:] != s[:-1]) | (r[1:] != r[:-1])
  s, r, w = s[first], r[first], w[first]
  order = np.argsort(r, kind="stable")              # receivers sorted: faster segment_min
  return Graph(jnp.asarray(s[order]), jnp.asarray(r[order]), jnp.asarray(w[order]),
               jnp.ones(s.size, bool), num_nodes=graph.num_nodes, symmetric=graph.symmetric,
               sorted_receivers=True)


def to_scipy(graph: Graph):
  """``scipy.sparse.csr_matrix`` with ``M[s, r] = w``; duplicates keep the minimum and zero-length edges
  are stored as explicit zeros (scipy.sparse.csgraph treats explicit zeros of a sparse matrix as edges)."""
  import scipy.sparse as sp
  g = compact(graph)
  s, r, w = (np.asarray(a) for a in (g.senders, g.receivers, g.weights))
  n = graph.num_nodes
  # build CSR directly so explicit zeros are not eliminated and duplicates (none left) are not summed
  order = np.lexsort((r, s))
  s, r, w = s[order], r[order], w[order].astype(np.float64)
  indptr = np.zeros(n + 1, np.int64)
  np.add.at(indptr, s + 1, 1)
  indptr = np.cumsum(indptr)
  return sp.csr_matrix((w, r.astype(np.int32), indptr), shape=(n, n))


def to_dense(graph: Graph) -> jax.Array:
  """Dense ``[N, N]`` weight matrix: ``W[s, r] = min`` edge length, ``inf`` where no edge, 0 on the diagonal.

  Works under jit (scatter-min over the edge list).
  """
  n = graph.num_nodes
  w = jnp.where(graph.mask, graph.weights, jnp.inf)
  dense = jnp.full((n, n), jnp.inf, w.dtype).at[graph.senders, graph.receivers].min(w)
  return jnp.where(jnp.eye(n, dtype=bool), jnp.zeros((), w.dtype), dense)


def from_dense(weights) -> Graph:
  """Edge list from a dense weight matrix where ``inf`` means "no edge" (0 is an edge; diagonal ignored)."""
  w = np.asarray(weights)
  n = w.shape[0]
  keep = np.isfinite(w) & ~np.eye(n, dtype=bool)
  r, s = np.nonzero(keep.T)                         # receiver-major order
  return Graph(jnp.asarray(s, jnp.int32), jnp.asarray(r, jnp.int32), jnp.asarray(w[s, r]),
               jnp.ones(s.shape, bool), num_nodes=n, symmetric=bool(np.array_equal(w, w.T)),
               sorted_receivers=True)


def validate_graph(graph: Graph) -> None:
  """Eager checks on a concrete graph: indices in range, weights non-negative and not NaN."""
  if not _is_concrete(graph.senders, graph.receivers, graph.weights, graph.mask):
    return
  s, r, w, m = (np.asarray(a) for a in (graph.senders, graph.receivers, graph.weights, graph.mask))
  n = graph.num_nodes
  if s.size and (min(s.min(), r.min()) < 0 or max(s.max(), r.max()) >= n):
    raise ValueError(f"edge endpoints must lie in [0, {n}); got range [{min(s.min(), r.min())}, "
                     f"{max(s.max(), r.max())}].")
  wm = w[m]
  if np.isnan(wm).any():
    raise ValueError("graph has NaN edge weights; check the embeddings for NaN.")
  if (wm < 0).any():
    raise ValueError(
        f"graph has {int((wm < 0).sum())} negative edge weight(s) (min {wm.min():.3g}); shortest paths here "
        "require non-negative lengths (Dijkstra/Bellman-Ford without negative cycles). Use distances, not "
        "similarities, or shift/clip the weights.")
