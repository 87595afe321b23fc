"""Exact k-nearest neighbours in JAX: chunked, sharded over devices, deterministic ties (kexue 9147).

API (the kNN graph builders of 9368 use this module):

``knn(x, k, metric="sqeuclidean", exclude_self=True, chunk_size=1024, mesh=None) -> (dists, idx)``
    The ``k`` nearest points of ``x`` ([N, D]) to every point of ``x``. ``dists``/``idx`` are [N, k],
    sorted by increasing distance; with ``exclude_self`` the point itself is masked out explicitly (its
    index, not "rank 0", so duplicates and round-off cannot leak it in).
``knn_query(queries, refs, k, metric=..., chunk_size=..., mesh=None, query_ids=None) -> (dists, idx)``
    The ``k`` nearest ``refs`` ([M, D]) of every query ([Q, D]). ``query_ids`` (int [Q]) optionally
    names, for every query, a reference index that must be excluded (e.g. the query itself); -1 = none.
``k_occurrence(idx, n) -> int32 [n]``
    N_k(x_i) = #{j : i in kNN_k(x_j)}: scatter-add of the neighbour indices (Radovanovic et al. 2010).
``hub_values(x, k, include_self=False, ...) -> int32 [N]``
    N_k of every point of ``x`` against ``x``. ``include_self=True`` is the official hubness-GAN code's
    rule (the query is its own first neighbour): the count is exactly ``1 + N_{k-1}``.

Metrics: ``"sqeuclidean"`` d(a, b) = ||a - b||^2 and ``"cosine"`` d(a, b) = 1 - <a, b>/(|a||b|)
(``"euclidean"`` returns sqrt of the former; the neighbour order is the same).

Algorithm. Queries are split into chunks of ``chunk_size`` rows; for each chunk the [chunk, M] matrix
of distances is formed by the expansion ||q||^2 + ||r||^2 - 2 q.r (clamped at 0), the excluded indices
are set to +inf, and ``lax.top_k`` on the negated distances keeps ``k + refine_margin`` candidates.
The candidates' distances are then recomputed exactly as sum_i (q_i - r_i)^2 (no cancellation) and sorted
lexicographically by (distance, index). A rounding-error certificate makes this exact for any data: the
expansion errs by at most gamma_{D+2} (||q|| + max ||r||)^2 (gamma_m = m u / (1 - m u), u = eps / 2), so a row
whose k-th recomputed distance lies below the smallest possible distance of every non-candidate is
certified; the rows that are not (near-ties at the candidate boundary, or data with a large common offset
where the expansion cancels) are recomputed against all points inside a ``lax.while_loop`` that runs zero
times when all rows are certified. So the returned distances are exact in float32 and **ties are
broken by the lower reference index** (deterministic; unlike scikit-hubness's ``shuffle_equal`` which
permutes ties randomly). Memory is O(chunk_size * M) per device. (``knn`` of a set against itself
can instead use the symmetry of the distance matrix: see ``knn(symmetric=...)``.) The query axis is sharded over the
``axis_name`` axis of a ``jax.sharding.Mesh`` with ``jax.shard_map`` (refs replicated); by default a 1-D
mesh over all devices. Everything is computed in float32 (bfloat16/float16 inputs are upcast because
low-precision distances reorder neighbours); float64 is kept when x64 is enabled.
"""
from __future__ import annotations

import functools
import math
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, PartitionSpec as P

METRICS = ("sqeuclidean", "euclidean", "cosine")
DEFAULT_CHUNK = 1024
DEFAULT_REFINE_MARGIN = 3
RERANK_BATCH = 64                 # rows per step of the exact re-ranking
FALLBACK_BATCH = 8                # rows per step of the (rare) uncertified-row recomputation


# ----------------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------------
def _is_concrete(x) -> bool:
  return not isinstance(x, jax.core.Tracer)


def _check_points(x, name: str) -> jnp.ndarray:
  if not hasattr(x, "shape"):
    x = np.asarray(x)
  if x.ndim != 2:
    raise ValueError(f"{name} must be a 2-D array [num_points, dim]; got shape {tuple(x.shape)}. "
                     "Reshape your data to (N, D).")
  if x.shape[0] == 0 or x.shape[1] == 0:
    raise ValueError(f"{name} is empty (shape {tuple(x.shape)}); need at least one point of dim >= 1.")
  if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer)
          or x.dtype == bool):
    raise TypeError(f"{name} must be a real numeric array; got dtype {x.dtype}.")
  if _is_concrete(x):
    xn = np.asarray(x)
    if np.issubdtype(xn.dtype, np.floating) and not np.all(np.isfinite(xn)):
      bad = np.argwhere(~np.isfinite(xn))[:3].tolist()
      raise ValueError(f"{name} contains non-finite values (NaN/inf), e.g. at [row, col] {bad}; "
                       "kNN distances would be undefined. Remove or impute these points first.")
  dtype = jnp.float64 if (x.dtype == jnp.float64 and jax.config.jax_enable_x64) else jnp.float32
  return jnp.asarray(x, dtype)


def _check_k(k, n_refs: int, exclude_self: bool):
  if not isinstance(k, (int, np.integer)) or isinstance(k, bool):
    raise TypeError(f"k must be a Python int; got {type(k).__name__}.")
  k = int(k)
  avail = n_refs - 1 if exclude_self else n_refs
  if k < 1:
    raise ValueError(f"k must be >= 1; got k={k}.")
  if k > avail:
    what = (f"N - 1 = {avail} (N = {n_refs} points, self excluded)" if exclude_self
            else f"the number of reference points ({n_refs})")
    raise ValueError(f"k={k} is too large: at most {what} neighbours exist. Use k < N "
                     "(k >= N is impossible) or provide more points.")
  return k


def _check_metric(metric: str) -> str:
  if metric not in METRICS:
    raise ValueError(f"Unknown metric {metric!r}; valid metrics: {METRICS}.")
  return metric


def _normalize_rows(x, name):
  norms = jnp.linalg.norm(x, axis=-1, keepdims=True)
  if _is_concrete(norms) and bool(np.any(np.asarray(norms) == 0)):
    raise ValueError(f"cosine distance is undefined for zero vectors in {name} "
                     f"(rows {np.flatnonzero(np.asarray(norms)[:, 0] == 0)[:5].tolist()}...); "
                     "drop them or use metric='sqeuclidean'.")
  return x / norms


# ----------------------------------------------------------------------------------------------
# dense distance matrices (small problems, tests, metrics)
# ----------------------------------------------------------------------------------------------
def pairwise_sqeuclidean(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
  """||a_i - b_j||^2 via the expansion ||a||^2 + ||b||^2 - 2 a.b, clamped at 0. [n, m]."""
  a_sq = jnp.sum(a * a, axis=-1)
  b_sq = jnp.sum(b * b, axis=-1)
  d = a_sq[:, None] + b_sq[None, :] - 2.0 * jnp.matmul(a, b.T, precision=lax.Precision.HIGHEST)
  return jnp.maximum(d, 0.0)


def pairwise_cosine(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
  """1 - cos(a_i, b_j). [n, m]."""
  an = a / jnp.linalg.norm(a, axis=-1, keepdims=True)
  bn = b / jnp.linalg.norm(b, axis=-1, keepdims=True)
  return 1.0 - jnp.matmul(an, bn.T, precision=lax.Precision.HIGHEST)


# ----------------------------------------------------------------------------------------------
# the chunked, sharded kernel
# ----------------------------------------------------------------------------------------------
def _block(q, q_ids, refs, r_sq, r_max, *, k, k_cand, cosine):
  """kNN of one query chunk against all refs. q [c, D], q_ids [c] (-1 = exclude nothing)."""
  q_sq = jnp.sum(q * q, axis=-1)
  d = q_sq[:, None] + r_sq[None, :] - 2.0 * jnp.matmul(q, refs.T, precision=lax.Precision.HIGHEST)
  d = jnp.maximum(d, 0.0)
  ref_ids = jnp.arange(refs.shape[0], dtype=jnp.int32)
  d = jnp.where(ref_ids[None, :] == q_ids[:, None], jnp.inf, d)
  v, cand = lax.top_k(-d, k_cand)                              # lower index first on ties
  return _rerank_exact(q, refs, q_ids, -v, cand, k, k_cand, cosine, refs.shape[0], r_max)


@functools.lru_cache(maxsize=64)
def _compiled(mesh: Mesh, axis_name: str, chunk: int, k: int, k_cand: int, cosine: bool):
  def per_device(q, q_ids, refs):
    r_sq = jnp.sum(refs * refs, axis=-1)
    r_max = jnp.sqrt(jnp.max(r_sq))
    n_local, dim = q.shape
    qc = q.reshape(n_local // chunk, chunk, dim)
    ic = q_ids.reshape(n_local // chunk, chunk)
    fn = functools.partial(_block, refs=refs, r_sq=r_sq, r_max=r_max, k=k, k_cand=k_cand, cosine=cosine)
    dists, idx = lax.map(lambda a: fn(a[0], a[1]), (qc, ic))
    return dists.reshape(n_local, k), idx.reshape(n_local, k)

  sharded = jax.shard_map(per_device, mesh=mesh,
                          in_specs=(P(axis_name), P(axis_name), P()),
                          out_specs=(P(axis_name), P(axis_name)), check_vma=False)
  return jax.jit(sharded)


@functools.lru_cache(maxsize=8)
def default_mesh(axis_name: str = "data") -> Mesh:
  """A 1-D mesh over all devices (the same layout as ``research.train.make_mesh``)."""
  return Mesh(np.array(jax.devices()), (axis_name,))


def _resolve_mesh(mesh: Optional[Mesh], axis_name: str) -> Mesh:
  """``mesh`` (default: ``default_mesh(axis_name)``), checked to have an axis named ``axis_name``."""
  mesh = default_mesh(axis_name) if mesh is None else mesh
  if axis_name not in mesh.axis_names:
    raise ValueError(f"mesh has axes {mesh.axis_names}; no axis named {axis_name!r} to shard the points "
                     "over. Pass axis_name=<one of them>.")
  return mesh


def _num_candidates(k: int, refine_margin: int, excluded: bool, n: int) -> int:
  """Candidates per row before the exact re-ranking: k + margin (+ 1 for an excluded index), <= n."""
  return int(min(k + max(int(refine_margin), 0) + (1 if excluded else 0), n))


def knn_query(queries, refs, k: int, metric: str = "sqeuclidean", *,
              chunk_size: int = DEFAULT_CHUNK, mesh: Optional[Mesh] = None, axis_name: str = "data",
              query_ids=None, refine_margin: int = DEFAULT_REFINE_MARGIN):
  """Exact kNN of ``queries`` [Q, D] among ``refs`` [M, D].

  Args:
    queries, refs: finite real arrays with the same feature dimension.
    k: number of neighbours, 1 <= k <= M (M - 1 when ``query_ids`` excludes one ref per query).
    metric: "sqeuclidean" (default), "euclidean" or "cosine".
    chunk_size: query rows per block; peak memory per device is ~ chunk_size * M floats.
    mesh: ``jax.sharding.Mesh`` whose ``axis_name`` axis shards the queries (default: all devices).
    query_ids: optional int [Q]; ``query_ids[i] = j >= 0`` excludes ref ``j`` from query ``i``'s list.
    refine_margin: extra top-k candidates whose distances are recomputed exactly before the final sort.
      The result is exact for any margin (rows the rounding-error certificate cannot vouch for are
      recomputed against all refs); a larger margin makes that fallback rarer, a smaller one makes the
      candidate selection cheaper.

  Returns:
    (dists [Q, k] float32, idx [Q, k] int32), sorted by (distance, index) ascending.
  """
  metric = _check_metric(metric)
  queries = _check_points(queries, "queries")
  refs = _check_points(refs, "refs")
  if queries.shape[1] != refs.shape[1]:
    raise ValueError(f"queries have dim {queries.shape[1]} but refs have dim {refs.shape[1]}; "
                     "both must live in the same space.")
  if not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
    raise ValueError(f"chunk_size must be a positive int; got {chunk_size!r}.")
  n_q, n_r = queries.shape[0], refs.shape[0]
  exclude = query_ids is not None
  k = _check_k(k, n_r, exclude)
  if query_ids is None:
    query_ids = jnp.full((n_q,), -1, jnp.int32)
  else:
    query_ids = jnp.asarray(query_ids, jnp.int32)
    if query_ids.shape != (n_q,):
      raise ValueError(f"query_ids must have shape ({n_q},); got {tuple(query_ids.shape)}.")
  cosine = metric == "cosine"
  if cosine:
    queries = _normalize_rows(queries, "queries")
    refs = _normalize_rows(refs, "refs")
  mesh = _resolve_mesh(mesh, axis_name)
  n_dev = mesh.shape[axis_name]
  chunk = int(min(chunk_size, max(1, math.ceil(n_q / n_dev))))
  n_pad = math.ceil(n_q / (n_dev * chunk)) * n_dev * chunk
  if n_pad != n_q:
    queries = jnp.concatenate([queries, jnp.zeros((n_pad - n_q, queries.shape[1]), queries.dtype)])
    query_ids = jnp.concatenate([query_ids, jnp.full((n_pad - n_q,), -1, jnp.int32)])
  k_cand = _num_candidates(k, refine_margin, exclude, n_r)
  fn = _compiled(mesh, axis_name, chunk, k, k_cand, cosine)
  dists, idx = fn(queries, query_ids, refs)
  dists, idx = dists[:n_q], idx[:n_q]
  if metric == "euclidean":
    dists = jnp.sqrt(dists)
  return dists, idx


def _merge(vals, idx, new_vals, new_idx, kc):
  """Keeps the kc smallest (distance, index) pairs of two candidate lists [c, kc] (lexicographic)."""
  v = jnp.concatenate([vals, new_vals], axis=-1)
  i = jnp.concatenate([idx, new_idx], axis=-1)
  v, i = lax.sort((v, i), dimension=-1, num_keys=2)
  return v[:, :kc], i[:, :kc]


@functools.lru_cache(maxsize=64)
def _compiled_symmetric(mesh: Mesh, axis_name: str, n: int, n_blocks: int, chunk: int, k: int,
                        kc: int, exclude_self: bool, cosine: bool):
  """Self-kNN over block pairs (I <= J) only: each distance block is formed once and used for the
  rows of I (top-k along J) and the rows of J (top-k along I of its transpose): half the FLOPs."""
  def per_device(xb, pairs):
    sq = jnp.sum(xb * xb, axis=-1)                                   # [B, c]
    gid = jnp.arange(n_blocks * chunk, dtype=jnp.int32).reshape(n_blocks, chunk)
    init = (jnp.full((n_blocks, chunk, kc), jnp.inf, xb.dtype),
            jnp.full((n_blocks, chunk, kc), n_blocks * chunk, jnp.int32))

    def body(state, pair):
      vals, idx = state
      bi, bj, ok = pair[0], pair[1], pair[2] > 0
      xi, xj = xb[bi], xb[bj]
      gi, gj = gid[bi], gid[bj]
      d = sq[bi][:, None] + sq[bj][None, :] - 2.0 * jnp.matmul(
          xi, xj.T, precision=lax.Precision.HIGHEST)
      d = jnp.maximum(d, 0.0)
      bad = (gi[:, None] >= n) | (gj[None, :] >= n) | ~ok
      if exclude_self:
        bad = bad | (gi[:, None] == gj[None, :])
      d = jnp.where(bad, jnp.inf, d)
      rv, ri = lax.top_k(-d, min(kc, chunk))
      mv, mi = _merge(vals[bi], idx[bi], -rv, gj[ri], kc)
      vals, idx = vals.at[bi].set(mv), idx.at[bi].set(mi)
      dt = jnp.where(bi == bj, jnp.inf, d.T)                         # diagonal block: rows only
      cv, ci = lax.top_k(-dt, min(kc, chunk))
      mv, mi = _merge(vals[bj], idx[bj], -cv, gi[ci], kc)
      vals, idx = vals.at[bj].set(mv), idx.at[bj].set(mi)
      return (vals, idx), None

    (vals, idx), _ = lax.scan(body, init, pairs)
    return vals[None], idx[None]

  sharded = jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(axis_name)),
                          out_specs=(P(axis_name), P(axis_name)), check_vma=False)

  def run(xb, pairs):
    vals, idx = sharded(xb, pairs)                                  # [n_dev, B, c, kc]
    n_dev = vals.shape[0]
    vals = jnp.moveaxis(vals, 0, -2).reshape(n_blocks * chunk, n_dev * kc)
    idx = jnp.moveaxis(idx, 0, -2).reshape(n_blocks * chunk, n_dev * kc)
    vals, idx = lax.sort((vals, idx), dimension=-1, num_keys=2)
    x = xb.reshape(n_blocks * chunk, -1)[:n]
    qid = jnp.arange(n, dtype=jnp.int32) if exclude_self else jnp.full((n,), -1, jnp.int32)
    r_max = jnp.sqrt(jnp.max(jnp.sum(x * x, axis=-1)))
    return _rerank_exact(x, x, qid, vals[:n], idx[:n], k, kc, cosine, n, r_max)

  return jax.jit(run)


def _expansion_error_factor(dim: int, dtype) -> float:
  """gamma with |fl(||q||^2 + ||r||^2 - 2 q.r) - ||q - r||^2| <= gamma (||q|| + ||r||)^2 for any summation
  order: each of the three inner products of length D errs by at most gamma_D times its absolute
  terms, and the two additions add two roundings, so gamma = gamma_{D+2} = (D+2) u / (1 - (D+2) u),
  u = eps / 2 (Higham, Accuracy and Stability of Numerical Algorithms, sec. 3.1)."""
  u = float(np.finfo(np.dtype(dtype)).eps) / 2
  m = (dim + 2) * u
  if m >= 0.5:
    return math.inf
  return m / (1 - m)


def _exact_rows_topk(xq, qid, xr, n, k):
  """Exact k nearest of the rows ``xq`` [b, D] among ``xr[:n]`` by direct sums of squared differences
  (no expansion), ties -> lower index; ``qid`` [b] is excluded (-1: nothing). The [M, D] differences of a
  row are one fused reduction; the b rows are vectorised."""
  ids = jnp.arange(xr.shape[0], dtype=jnp.int32)

  def one(xi, qi):
    d = jnp.sum(jnp.square(xr - xi[None]), axis=-1)
    d = jnp.where((ids >= n) | (ids == qi), jnp.inf, d)
    v, i = lax.top_k(-d, k)                                     # equal values: lower index first
    return -v, i.astype(jnp.int32)

  return jax.vmap(one)(xq, qid)


@jax.custom_jvp
def _with_sqdist_grad(dist, xq, xr, idx):
  """Returns ``dist`` (the squared distances ||xr[idx] - xq||^2 [q, k], computed elsewhere without
  gradient) with the derivative of that expression: d dist = 2 <xr[idx] - xq, dxr[idx] - dxq>. So the
  selection (loops, certificate, fallback) stays out of autodiff and the [q, k, D] gather happens only
  when differentiating."""
  return dist


@_with_sqdist_grad.defjvp
def _with_sqdist_grad_jvp(primals, tangents):
  dist, xq, xr, idx = primals
  _, dxq, dxr, _ = tangents
  diff = xr[idx] - xq[:, None]
  return dist, 2.0 * jnp.sum(diff * (dxr[idx] - dxq[:, None]), axis=-1)


def _rerank_exact(xq, xr, qid, vals, idx, k, kc, cosine, n, r_max):
  """Exact k nearest of the query rows ``xq`` [q, D] from their approximate candidates, certified.

  ``vals``/``idx`` [q, m >= kc] are approximate distances (the expansion ||q||^2 + ||r||^2 - 2 q.r) and
  indices into ``xr`` (the first ``n`` rows are real), sorted by (value, index), such that every point
  outside the first ``kc`` has an approximate distance >= vals[:, kc-1]. ``qid`` [q] is the index to
  exclude per row (-1: none); ``r_max`` the largest norm among ``xr[:n]``.

  1. The first ``kc`` candidates get their distances recomputed directly, d = sum_i (x_i - q_i)^2, are
     sorted by (d, index) and the first ``k`` kept.
  2. Certificate: with e_k the k-th recomputed distance, T = vals[:, kc-1] and the expansion error
     bound b = gamma (||q|| + r_max)^2 (see ``_expansion_error_factor``), every non-candidate j has
     d_j >= T - b; so if e_k < (T - b)(1 - 2 gamma) no non-candidate can enter the k nearest (nor tie
     with the k-th) and the row is exact. Rows with fewer than kc finite candidates are certified.
  3. The rows that fail (near-ties within rounding of the candidate boundary: duplicates, quantised
     data) are recomputed exactly against all points (``_exact_rows_topk``) in a ``lax.while_loop``
     over batches of the failing rows; it runs zero times when every row is certified.

  So the result is the exact (distance, lower index) order for any ``refine_margin``; the margin only
  trades candidate work against how often step 3 runs. Cosine distances are halved at the end (rows are
  unit-normalised: 1 - cos = ||a - b||^2 / 2). Differentiable in ``xq`` and ``xr`` through the returned
  distances (``_with_sqdist_grad``); the neighbour choice itself is piecewise constant."""
  xq_in, xr_in = xq, xr
  xq, xr = lax.stop_gradient(xq), lax.stop_gradient(xr)
  q, dim = xq.shape
  cand = jnp.minimum(idx[:, :kc], n - 1)

  bs = min(RERANK_BATCH, q)

  def rows(i, out):                   # a batch of rows' candidates, so the [q, kc, d] gathered
    start = jnp.minimum(i * bs, q - bs)   # candidates are never materialised (4.8x faster than one
    xi = lax.dynamic_slice_in_dim(xq, start, bs)   # gather at n = 10^4, d = 512 on CPU); the last batch
    ci = lax.dynamic_slice_in_dim(cand, start, bs)  # overlaps the one before (same values rewritten)
    diff = xr[ci] - xi[:, None]
    return lax.dynamic_update_slice_in_dim(out, jnp.sum(diff * diff, axis=-1), start, 0)

  exact = lax.fori_loop(0, -(-q // bs), rows, jnp.zeros((q, kc), xq.dtype))
  invalid = ~jnp.isfinite(vals[:, :kc]) | (cand == qid[:, None])
  exact = jnp.where(invalid, jnp.inf, exact)
  exact, cand = lax.sort((exact, cand), dimension=-1, num_keys=2)
  exact, cand = exact[:, :k], cand[:, :k]
  gamma = _expansion_error_factor(dim, xq.dtype)
  thresh = vals[:, kc - 1]
  bound = gamma * jnp.square(jnp.linalg.norm(xq, axis=-1) + r_max)
  certified = ~jnp.isfinite(thresh) | (exact[:, k - 1] < (thresh - bound) * (1 - 2 * gamma))
  if kc >= n:                         # every point is a candidate
    certified = jnp.ones_like(certified)
  fail_rows = jnp.nonzero(~certified, size=q, fill_value=0)[0].astype(jnp.int32)
  n_fail = jnp.sum(~certified)
  fb = min(FALLBACK_BATCH, q)

  def cond(state):
    return state[0] * fb < n_fail

  def body(state):
    it, ex, ca = state
    pos = it * fb + jnp.arange(fb, dtype=jnp.int32)
    keep = pos < n_fail
    r = fail_rows[jnp.minimum(pos, q - 1)]
    v, i = _exact_rows_topk(xq[r], qid[r], xr, n, k)
    dst = jnp.where(keep, r, q)                                   # past the failing rows: dropped
    ex = ex.at[dst].set(v, mode="drop")
    ca = ca.at[dst].set(i, mode="drop")
    return it + 1, ex, ca

  _, exact, cand = lax.while_loop(cond, body, (jnp.int32(0), exact, cand))
  exact = _with_sqdist_grad(exact, xq_in, xr_in, cand)
  if cosine:
    exact = 0.5 * exact
  return exact, cand


def _knn_blockpairs(x, k, metric, exclude_self, chunk_size, mesh, axis_name, refine_margin):
  """The block-pair scan (fallback of the half-circle path when its candidate buffer would be large)."""
  n, dim = x.shape
  cosine = metric == "cosine"
  if cosine:
    x = _normalize_rows(x, "x")
  mesh = _resolve_mesh(mesh, axis_name)
  n_dev = mesh.shape[axis_name]
  chunk = int(min(chunk_size, n))
  n_blocks = math.ceil(n / chunk)
  x_pad = jnp.concatenate([x, jnp.zeros((n_blocks * chunk - n, dim), x.dtype)]) \
      if n_blocks * chunk != n else x
  xb = x_pad.reshape(n_blocks, chunk, dim)
  pairs = [(i, j, 1) for i in range(n_blocks) for j in range(i, n_blocks)]
  # longest-first isn't needed (all blocks cost the same); pad to a multiple of the device count
  pairs += [(0, 0, 0)] * ((-len(pairs)) % n_dev)
  pairs = np.asarray(pairs, np.int32)
  kc = _num_candidates(k, refine_margin, exclude_self, n)
  fn = _compiled_symmetric(mesh, axis_name, n, n_blocks, chunk, k, kc, exclude_self, cosine)
  dists, idx = fn(xb, jnp.asarray(pairs))
  if metric == "euclidean":
    dists = jnp.sqrt(dists)
  return dists, idx


# ----------------------------------------------------------------------------------------------
# half-circle strips with a group-minimum prefilter (the default symmetric path)
# ----------------------------------------------------------------------------------------------
GROUP = 16                       # prefilter group size (columns per group)
HALF_CIRCLE_MAX_BUFFER = 1 << 29  # bytes of per-row candidate buffer before falling back to block pairs


def _pad_cols(v, p, kc, fill):
  short = kc - v.shape[-1]
  if short <= 0:
    return v, p
  v = jnp.concatenate([v, jnp.full(v.shape[:-1] + (short,), fill, v.dtype)], -1)
  p = jnp.concatenate([p, jnp.zeros(p.shape[:-1] + (short,), p.dtype)], -1)
  return v, p


def _gather_flat(d, rows, cols):
  """d[rows, cols] (broadcast index arrays) as one gather from the flattened matrix: on XLA's CPU backend
  a scalar gather with precomputed flat offsets runs ~2x faster than the equivalent multi-dimensional
  gather (take_along_axis / advanced indexing). Offsets are int32 while they fit, else int64."""
  r, w = d.shape
  if r * w >= 2 ** 31:
    if not jax.config.jax_enable_x64:
      return d[rows, cols]
    rows, cols = rows.astype(jnp.int64), cols.astype(jnp.int64)
  return d.reshape(-1)[rows * w + cols]


def _smallest_along_rows(d, kc, group):
  """The kc smallest entries of every row of d [R, W], in (value, position) order (exact).

  Prefilter: the row is cut into W / group contiguous groups; the kc groups with the smallest minima
  (ties -> lower group) contain the kc smallest entries (each such entry lies in a group whose minimum
  is <= it, and at most kc groups have a minimum <= the kc-th smallest entry), so ``lax.top_k`` runs on
  W / group minima and kc * group gathered candidates instead of W entries. On CPU ``lax.top_k`` costs
  ~0.6 us per row plus ~4 ns per entry; the group minima are one vectorised reduction.
  """
  r, w = d.shape
  if group <= 1 or w % group or w // group <= kc:
    v, p = lax.top_k(-d, min(kc, w))
    return _pad_cols(-v, p, kc, jnp.inf)
  ng = w // group
  dg = d.reshape(r, ng, group)
  _, gi = lax.top_k(-jnp.min(dg, axis=2), kc)
  gi = jnp.sort(gi, axis=1)                                     # candidates in position order
  pos = gi[:, :, None] * group + jnp.arange(group, dtype=gi.dtype)          # [R, kc, group] columns
  cand = _gather_flat(d, jnp.arange(r, dtype=gi.dtype)[:, None, None], pos).reshape(r, kc * group)
  v, p = lax.top_k(-cand, kc)
  return -v, jnp.take_along_axis(gi, p // group, axis=1) * group + p % group


def _smallest_along_cols(d, kc, group, col_start=0):
  """The kc smallest entries of every column of d[:, col_start:] (d [R, W]): (values [W', kc], row
  positions [W', kc]). Same group prefilter along the rows; no transpose or copy of d (group minima are
  a reduction over axis 0 of the column range, the candidates one flat gather)."""
  r, w = d.shape
  w_out = w - col_start
  if group <= 1 or r % group or r // group <= kc:
    v, p = lax.top_k(-d[:, col_start:].T, min(kc, r))
    return _pad_cols(-v, p, kc, jnp.inf)
  ng = r // group
  gmin = jnp.min(d.reshape(ng, group, w), axis=1)[:, col_start:]   # reduce all, then slice: a slice of d
  _, gi = lax.top_k(-gmin.T, kc)                                   # would be copied first; [W', kc]
  gi = jnp.sort(gi, axis=1)
  pos = gi[:, :, None] * group + jnp.arange(group, dtype=gi.dtype)          # [W', kc, group] rows
  cols = col_start + jnp.arange(w_out, dtype=gi.dtype)[:, None, None]
  cand = _gather_flat(d, pos, cols).reshape(w_out, kc * group)
  v, p = lax.top_k(-cand, kc)
  return -v, jnp.take_along_axis(gi, p // group, axis=1) * group + p % group


@functools.lru_cache(maxsize=64)
def _compiled_half_circle(mesh: Mesh, axis_name: str, n: int, n_blocks: int, chunk: int, k: int,
                          kc: int, group_rows: int, group_cols: int, exclude_self: bool, cosine: bool):
  """Self-kNN over half-circle strips: with an odd number B of blocks, strip I is block I against the
  blocks I, I+1, ..., I+(B-1)/2 (mod B), so every unordered block pair is formed exactly once (about
  half the matmul FLOPs of the full N x N matrix) and every strip has the same static shape.

  The rows of every block are sharded over the mesh: device p forms, for every strip, the distances of
  its r = chunk / n_dev rows of block I to the whole strip. A strip row gets its kc best over the strip
  (its "row" candidates); a strip column of block I + o (o = 1..(B-1)/2) gets its kc best over this
  device's rows of block I (slot o - 1 of the column buffer; the columns of block I itself are rows of
  the strip, already covered). After the scan one ``all_to_all`` hands every device the column
  candidates of its own rows from all devices; ``lax.top_k`` keeps the kc smallest of them and of the
  row candidates, and the certified exact re-ranking runs, all on the local rows (so the merge and
  re-ranking are parallel too). Every point outside a row's kc kept candidates has an approximate
  distance >= the kc-th kept one (it lost either in its own source list or in the merge), which is what
  the re-ranking's certificate needs; so ties need no particular order before it."""
  B, c = n_blocks, chunk
  nb = B // 2 + 1                                                  # blocks per strip (B odd)
  width = nb * c
  n_dev = mesh.shape[axis_name]
  r = c // n_dev

  def per_device(xb, xr):                                          # xb [B, c, D] (all); xr [B, r, D] (own rows)
    dim = xb.shape[-1]
    dev = lax.axis_index(axis_name)
    gid = jnp.arange(B * c, dtype=jnp.int32).reshape(B, c)
    sq = jnp.where(gid < n, jnp.sum(xb * xb, axis=-1), jnp.inf)  # [B, c]; padding points: d = +inf
    rid = lax.dynamic_slice_in_dim(gid, dev * r, r, axis=1)      # [B, r] global ids of the own rows
    rsq = lax.dynamic_slice_in_dim(sq, dev * r, r, axis=1)
    init = (jnp.full((B, r, kc), jnp.inf, xb.dtype), jnp.full((B, r, kc), B * c, jnp.int32),
            jnp.full((B, c, nb - 1, kc), jnp.inf, xb.dtype),
            jnp.full((B, c, nb - 1, kc), B * c, jnp.int32))

    def body(state, blk):
      rv, ri, cv, ci = state
      sblk = (blk + jnp.arange(nb, dtype=jnp.int32)) % B           # own block first, then offsets 1..
      s = xb[sblk].reshape(width, dim)
      sid = gid[sblk].reshape(width)
      rows = rid[blk]
      d = rsq[blk][:, None] + sq[sblk].reshape(width)[None, :] + jnp.matmul(
          -2.0 * xr[blk], s.T, precision=lax.Precision.HIGHEST)    # (-2q).s == -2 (q.s) exactly
      d = jnp.maximum(d, 0.0)
      if exclude_self:
        d = jnp.where(rows[:, None] == sid[None, :], jnp.inf, d)   # one fused pass with the line above
      # (the candidate lists need not follow the index order on ties: see _rerank_exact's certificate)
      v, p = _smallest_along_rows(d, kc, group_rows)
      rv = rv.at[blk].set(v)
      ri = ri.at[blk].set(jnp.where(jnp.isfinite(v), sid[p], B * c))
      if nb > 1:           # the columns of the other blocks (block blk's own are rows of this strip)
        v, p = _smallest_along_cols(d, kc, group_cols, col_start=c)
        v = v.reshape(nb - 1, c, kc)
        i = jnp.where(jnp.isfinite(v), rows[p].reshape(nb - 1, c, kc), B * c)
        slots = jnp.arange(nb - 1, dtype=jnp.int32)
        cv = cv.at[sblk[1:], :, slots].set(v)
        ci = ci.at[sblk[1:], :, slots].set(i)
      return (rv, ri, cv, ci), None

    (rv, ri, cv, ci), _ = lax.scan(body, init, jnp.arange(B, dtype=jnp.int32))
    # column candidates of the own rows, from every device: [B, c, ...] -> [B, n_dev (source), r, ...]
    cv = cv.reshape(B, n_dev, r, (nb - 1) * kc)
    ci = ci.reshape(B, n_dev, r, (nb - 1) * kc)
    if n_dev > 1:
      cv = lax.all_to_all(cv, axis_name, 1, 1, tiled=True)
      ci = lax.all_to_all(ci, axis_name, 1, 1, tiled=True)
    vals = jnp.concatenate([rv, jnp.moveaxis(cv, 1, 2).reshape(B, r, -1)], -1).reshape(B * r, -1)
    idx = jnp.concatenate([ri, jnp.moveaxis(ci, 1, 2).reshape(B, r, -1)], -1).reshape(B * r, -1)
    # the kc smallest of the merged lists (top_k, ~4x cheaper than a 2-key sort of every row): the
    # re-ranking sorts them by (exact distance, index), and its certificate sends any row with ties
    # at the candidate boundary to the exact fallback, so ties still go to the lower index
    v, p = lax.top_k(-vals, kc)
    vals, idx = -v, jnp.take_along_axis(idx, p, axis=-1)
    qid = rid.reshape(B * r) if exclude_self else jnp.full((B * r,), -1, jnp.int32)
    r_max = jnp.sqrt(jnp.max(jnp.where(gid < n, sq, 0.0)))
    d, i = _rerank_exact(xr.reshape(B * r, dim), xb.reshape(B * c, dim), qid, vals, idx, k, kc, cosine, n,
                         r_max)
    return d.reshape(B, r, k), i.reshape(B, r, k)

  sharded = jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(None, axis_name)),
                          out_specs=(P(None, axis_name), P(None, axis_name)), check_vma=False)

  def run(xb):
    d, i = sharded(xb, xb)                                         # [B, c, k]
    return d.reshape(B * c, k)[:n], i.reshape(B * c, k)[:n]

  return jax.jit(run)


def _half_circle_layout(n: int, chunk_size: int, n_dev: int = 1):
  """(B, chunk, group_rows, group_cols): B = ceil(n / chunk_size) rounded up to odd; chunk ~ n / B rows
  per block, made a multiple of ``n_dev`` (every device takes chunk / n_dev rows of every block) and of
  GROUP when the blocks are large enough for the prefilter to pay off (along the strip rows: chunk >=
  8 GROUP; along the strip columns, over one device's rows: chunk / n_dev >= 8 GROUP)."""
  n_blocks = math.ceil(n / min(chunk_size, n))
  if n_blocks % 2 == 0:
    n_blocks += 1
  r = math.ceil(math.ceil(n / n_blocks) / n_dev)                  # rows per device per block
  if r >= 8 * GROUP:
    r = math.ceil(r / GROUP) * GROUP
  elif r * n_dev >= 8 * GROUP:
    step = GROUP // math.gcd(GROUP, n_dev)
    r = math.ceil(r / step) * step
  chunk = r * n_dev
  group_rows = GROUP if chunk >= 8 * GROUP and chunk % GROUP == 0 else 1
  group_cols = GROUP if r >= 8 * GROUP and r % GROUP == 0 else 1
  return n_blocks, chunk, group_rows, group_cols


def _knn_symmetric(x, k, metric, exclude_self, chunk_size, mesh, axis_name, refine_margin):
  n, dim = x.shape
  kc = _num_candidates(k, refine_margin, exclude_self, n)
  mesh = _resolve_mesh(mesh, axis_name)
  n_dev = mesh.shape[axis_name]
  n_blocks, chunk, group_rows, group_cols = _half_circle_layout(n, chunk_size, n_dev)
  buffer_bytes = 8 * n_blocks * chunk * (n_blocks // 2) * kc      # column candidates, per device
  if buffer_bytes > HALF_CIRCLE_MAX_BUFFER:       # O(N^2 kc / chunk) candidates: use the O(N kc) scan
    return _knn_blockpairs(x, k, metric, exclude_self, chunk_size, mesh, axis_name, refine_margin)
  cosine = metric == "cosine"
  if cosine:
    x = _normalize_rows(x, "x")
  pad = n_blocks * chunk - n
  x_pad = jnp.concatenate([x, jnp.zeros((pad, dim), x.dtype)]) if pad else x
  fn = _compiled_half_circle(mesh, axis_name, n, n_blocks, chunk, k, kc, group_rows, group_cols,
                             exclude_self, cosine)
  dists, idx = fn(x_pad.reshape(n_blocks, chunk, dim))
  if metric == "euclidean":
    dists = jnp.sqrt(dists)
  return dists, idx


def knn(x, k: int, metric: str = "sqeuclidean", exclude_self: bool = True, *,
        chunk_size: int = DEFAULT_CHUNK, mesh: Optional[Mesh] = None, axis_name: str = "data",
        refine_margin: int = DEFAULT_REFINE_MARGIN, symmetric="auto"):
  """Exact kNN of every point of ``x`` [N, D] among the points of ``x``.

  With ``exclude_self`` (default) point i is masked out of its own list by index (k <= N - 1);
  without it, point i competes like any other point (distance 0, so it is first unless an exact
  duplicate with a lower index exists). Returns (dists [N, k], idx [N, k] int32); see ``knn_query``.

  ``symmetric=True`` uses the symmetry of the distance matrix ("half-circle" strips): the points are
  cut into an odd number B ~ N / chunk_size of blocks, and strip I is block I against blocks I..I+(B-1)/2
  (mod B), so every unordered block pair is formed once (about half the matmul FLOPs) with one static
  strip shape. Each strip's rows and columns get their ``k + refine_margin`` best candidates through a
  group-minimum prefilter plus ``lax.top_k`` (exact, ties by lower index), stored per source slot and
  merged once at the end, followed by the certified exact re-ranking. The rows of every block are
  sharded over the mesh (each device takes chunk_size / n_dev rows of every strip; one ``all_to_all``
  brings every point's column candidates to the device of its row, which merges and re-ranks them).
  Memory per device: O(chunk_size / n_dev * N / 2) for a strip plus a candidate buffer of
  N * (B - 1) / 2 * (k + refine_margin) entries; when that buffer
  would exceed ``HALF_CIRCLE_MAX_BUFFER`` bytes the older block-pair scan (O(chunk_size^2 + N k)) runs
  instead. ``symmetric=False`` runs ``knn_query(x, x)`` (query chunks against all points,
  O(chunk_size * N)). All paths return the same result.
  ``"auto"`` (default) picks the symmetric path for D >= 64 and N >= 4096 (matmul-bound; its compile
  costs a few seconds more) and the query path otherwise.
  """
  metric = _check_metric(metric)
  x = _check_points(x, "x")
  k = _check_k(k, x.shape[0], exclude_self)
  if not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
    raise ValueError(f"chunk_size must be a positive int; got {chunk_size!r}.")
  if symmetric == "auto":
    symmetric = x.shape[1] >= 64 and x.shape[0] >= 4096
  if symmetric:
    return _knn_symmetric(x, k, metric, exclude_self, int(chunk_size), mesh, axis_name, refine_margin)
  ids = jnp.arange(x.shape[0], dtype=jnp.int32) if exclude_self else None
  return knn_query(x, x, k, metric, chunk_size=chunk_size, mesh=mesh, axis_name=axis_name,
                   query_ids=ids, refine_margin=refine_margin)


def k_occurrence(idx, n: int) -> jnp.ndarray:
  """N_k: how often each of the ``n`` reference points occurs in the neighbour lists ``idx`` [Q, k].

  Entries < 0 are ignored (padding). sum(N_k) = Q * k for valid lists. Indices must be integers < n:
  concrete (eager) input with an index >= n raises ``ValueError``; under ``jit`` such an index cannot be
  reported and is dropped like padding (check ``N_k.sum() == Q * k`` when that matters).
  """
  idx = jnp.asarray(idx)
  if idx.ndim != 2:
    raise ValueError(f"idx must be [num_queries, k]; got shape {tuple(idx.shape)}.")
  if not jnp.issubdtype(idx.dtype, jnp.integer):
    raise TypeError(f"idx must hold integer neighbour indices, got dtype {idx.dtype}.")
  if not isinstance(idx, jax.core.Tracer) and idx.size and int(idx.max()) >= n:
    raise ValueError(f"idx holds index {int(idx.max())} >= n = {n}: pass n = the number of reference points the "
                     "neighbour lists index into.")
  flat = idx.reshape(-1)
  valid = (flat >= 0) & (flat < n)
  return jnp.zeros((n,), jnp.int32).at[jnp.where(valid, flat, 0)].add(valid.astype(jnp.int32))


def hub_values(x, k: int, include_self: bool = False, metric: str = "sqeuclidean", **kw) -> jnp.ndarray:
  """k-occurrence of every point of ``x`` within ``x``.

  ``include_self=False``: N_k(x_i) = #{j != i : x_i in kNN_k(x_j)} (Su's article code; scikit-hubness).
  ``include_self=True``: the query counts as its own first neighbour (the official hubness-GAN code,
  which queries a fitted index with its own points): the count is 1 + N_{k-1}(x_i), computed exactly
  that way (so self is first even if float round-off or duplicates would reorder it).
  """
  x = _check_points(x, "x")
  n = x.shape[0]
  if include_self:
    _check_k(k, n + 1, True)   # k <= n
    if k == 1:
      return jnp.ones((n,), jnp.int32)
    _, idx = knn(x, k - 1, metric, exclude_self=True, **kw)
    return 1 + k_occurrence(idx, n)
  _, idx = knn(x, k, metric, exclude_self=True, **kw)
  return k_occurrence(idx, n)


def brute_force_knn_numpy(x, k: int, exclude_self: bool = True, refs=None, metric: str = "sqeuclidean"):
  """float64 numpy reference (O(N M) memory): stable argsort, ties -> lower index. For tests/benchmarks."""
  q = np.asarray(x, np.float64)
  r = q if refs is None else np.asarray(refs, np.float64)
  if metric == "cosine":
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    r = r / np.linalg.norm(r, axis=1, keepdims=True)
    d = 1.0 - q @ r.T
  else:
    d = ((q[:, None, :] - r[None, :, :]) ** 2).sum(-1)
  if exclude_self:
    np.fill_diagonal(d, np.inf)
  idx = np.argsort(d, axis=1, kind="stable")[:, :k]
  dd = np.take_along_axis(d, idx, 1)
  if metric == "euclidean":
    dd = np.sqrt(dd)
  return dd, idx
