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
The candidates' distances are then recomputed exactly as ||q - r||^2 (no cancellation) and sorted
lexicographically by (distance, index), so the returned distances are exact in float32 and **ties are
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
DEFAULT_REFINE_MARGIN = 8
RERANK_BATCH = 64                 # rows per step of the exact re-ranking


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
def _block(q, q_ids, refs, r_sq, *, k, k_cand, cosine):
  """kNN of one query chunk against all refs. q [c, D], q_ids [c] (-1 = exclude nothing)."""
  q_sq = jnp.sum(q * q, axis=-1)
  d = q_sq[:, None] + r_sq[None, :] - 2.0 * jnp.matmul(q, refs.T, precision=lax.Precision.HIGHEST)
  d = jnp.maximum(d, 0.0)
  ref_ids = jnp.arange(refs.shape[0], dtype=jnp.int32)
  d = jnp.where(ref_ids[None, :] == q_ids[:, None], jnp.inf, d)
  _, cand = lax.top_k(-d, k_cand)                              # lower index first on ties
  # exact re-evaluation of the candidates' distances (no cancellation), then lexicographic sort
  diff = q[:, None, :] - refs[cand]                            # [c, k_cand, D]
  exact = jnp.sum(diff * diff, axis=-1)
  if cosine:  # rows are unit-normalised: 1 - cos = ||a - b||^2 / 2
    exact = 0.5 * exact
  exact = jnp.where(cand == q_ids[:, None], jnp.inf, exact)
  exact, cand = lax.sort((exact, cand), dimension=-1, num_keys=2)
  return exact[:, :k], cand[:, :k]


@functools.lru_cache(maxsize=64)
def _compiled(mesh: Mesh, axis_name: str, chunk: int, k: int, k_cand: int, cosine: bool):
  def per_device(q, q_ids, refs):
    r_sq = jnp.sum(refs * refs, axis=-1)
    n_local, dim = q.shape
    qc = q.reshape(n_local // chunk, chunk, dim)
    ic = q_ids.reshape(n_local // chunk, chunk)
    fn = functools.partial(_block, refs=refs, r_sq=r_sq, k=k, k_cand=k_cand, cosine=cosine)
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
  mesh = default_mesh(axis_name) if mesh is None else mesh
  if axis_name not in mesh.axis_names:
    raise ValueError(f"mesh has axes {mesh.axis_names}; no axis named {axis_name!r} to shard queries "
                     "over. Pass axis_name=<one of them>.")
  n_dev = mesh.shape[axis_name]
  chunk = int(min(chunk_size, max(1, math.ceil(n_q / n_dev))))
  n_pad = math.ceil(n_q / (n_dev * chunk)) * n_dev * chunk
  if n_pad != n_q:
    queries = jnp.concatenate([queries, jnp.zeros((n_pad - n_q, queries.shape[1]), queries.dtype)])
    query_ids = jnp.concatenate([query_ids, jnp.full((n_pad - n_q,), -1, jnp.int32)])
  k_cand = int(min(k + max(int(refine_margin), 0) + (1 if exclude else 0), n_r))
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
    return _rerank_exact(xb.reshape(n_blocks * chunk, -1)[:n], vals[:n], idx[:n], k, kc, cosine, exclude_self)

  return jax.jit(run)


def _rerank_exact(x, vals, idx, k, kc, cosine, exclude_self):
  """Exact k nearest among the first ``kc`` sorted candidates of each row: recompute the squared
  distances (halved for cosine), drop non-finite candidates (and self when excluded), re-sort by
  (distance, index) and keep ``k``. ``x`` is [n, d]; ``vals``/``idx`` are [n, m >= kc], sorted."""
  n = x.shape[0]
  cand = jnp.minimum(idx[:, :kc], n - 1)

  def rows(a):                        # one row's candidates; mapped in cache-sized batches of rows, so
    xi, ci = a                        # the [n, kc, d] gathered candidates are never materialised (4.8x
    diff = x[ci] - xi[None]           # faster than one gather at n = 10^4, d = 512 on CPU)
    return jnp.sum(diff * diff, axis=-1)

  exact = lax.map(rows, (x, cand), batch_size=RERANK_BATCH)
  if cosine:
    exact = 0.5 * exact
  invalid = ~jnp.isfinite(vals[:, :kc])
  if exclude_self:
    invalid = invalid | (cand == jnp.arange(n, dtype=jnp.int32)[:, None])
  exact = jnp.where(invalid, jnp.inf, exact)
  exact, cand = lax.sort((exact, cand), dimension=-1, num_keys=2)
  return exact[:, :k], cand[:, :k]


def _knn_blockpairs(x, k, metric, exclude_self, chunk_size, mesh, axis_name, refine_margin):
  """The block-pair scan (fallback of the half-circle path when its candidate buffer would be large)."""
  n, dim = x.shape
  cosine = metric == "cosine"
  if cosine:
    x = _normalize_rows(x, "x")
  mesh = default_mesh(axis_name) if mesh is None else mesh
  if axis_name not in mesh.axis_names:
    raise ValueError(f"mesh has axes {mesh.axis_names}; no axis named {axis_name!r} to shard over.")
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
  kc = int(min(k + max(int(refine_margin), 0) + (1 if exclude_self else 0), n))
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


def _smallest_along_cols(d, kc, group):
  """The kc smallest entries of every column of d [R, W]: (values [W, kc], row positions [W, kc]).
  Same group prefilter along the rows; no transpose of d (group minima are a reduction over axis 0)."""
  r, w = d.shape
  if group <= 1 or r % group or r // group <= kc:
    v, p = lax.top_k(-d.T, min(kc, r))
    return _pad_cols(-v, p, kc, jnp.inf)
  ng = r // group
  dg = d.reshape(ng, group, w)
  _, gi = lax.top_k(-jnp.min(dg, axis=1).T, kc)                  # [W, kc]
  gi = jnp.sort(gi, axis=1)
  pos = gi[:, :, None] * group + jnp.arange(group, dtype=gi.dtype)          # [W, kc, group] rows
  cand = _gather_flat(d, pos, jnp.arange(w, dtype=gi.dtype)[:, None, None]).reshape(w, kc * group)
  v, p = lax.top_k(-cand, kc)
  return -v, jnp.take_along_axis(gi, p // group, axis=1) * group + p % group


@functools.lru_cache(maxsize=64)
def _compiled_half_circle(mesh: Mesh, axis_name: str, n: int, n_blocks: int, chunk: int, k: int,
                          kc: int, group: int, exclude_self: bool, cosine: bool):
  """Self-kNN over half-circle strips: with an odd number B of blocks, strip I is block I against the
  blocks I, I+1, ..., I+(B-1)/2 (mod B), so every unordered block pair is formed exactly once (about
  half the matmul FLOPs of the full N x N matrix) and every strip has the same static shape. The
  strip's rows get their kc best over the strip (slot 0 of their candidate buffer); its columns get
  their kc best over the rows of block I (slot = circular offset of their block). A final
  lexicographic sort merges the (B+1)/2 slots of every row."""
  B, c = n_blocks, chunk
  nb = B // 2 + 1                                                  # blocks per strip (B odd)
  width = nb * c

  def per_device(xb, strips):
    dim = xb.shape[-1]
    gid = jnp.arange(B * c, dtype=jnp.int32).reshape(B, c)
    sq = jnp.where(gid < n, jnp.sum(xb * xb, axis=-1), jnp.inf)  # [B, c]; padding points: d = +inf
    init = (jnp.full((B, c, nb, kc), jnp.inf, xb.dtype), jnp.full((B, c, nb, kc), B * c, jnp.int32))

    def body(state, strip):
      bv, bi = state
      blk, ok = strip[0], strip[1] > 0
      offs = jnp.arange(nb, dtype=jnp.int32)
      order = jnp.argsort((blk + offs) % B)                       # the strip's blocks in global order
      sblk, soff = ((blk + offs) % B)[order], offs[order]
      s = xb[sblk].reshape(width, dim)
      sid = gid[sblk].reshape(width)
      rows = gid[blk]
      q = xb[blk]
      d = sq[blk][:, None] + sq[sblk].reshape(width)[None, :] + jnp.matmul(
          -2.0 * q, s.T, precision=lax.Precision.HIGHEST)          # (-2q).s == -2 (q.s) exactly
      d = jnp.maximum(d, 0.0)
      if exclude_self:
        d = jnp.where(rows[:, None] == sid[None, :], jnp.inf, d)   # one fused pass with the line above
      drop = jnp.where(ok, 0, B)                                   # padding strips write nowhere
      rv, rp = _smallest_along_rows(d, kc, group)
      bv = bv.at[blk + drop, :, 0].set(rv, mode="drop")
      bi = bi.at[blk + drop, :, 0].set(jnp.where(jnp.isfinite(rv), sid[rp], B * c), mode="drop")
      # The columns of blk itself (soff == 0) are rows of this strip, already done: their results go to
      # slot nb, which is dropped (no masking pass over d needed).
      cv, cp = _smallest_along_cols(d, kc, group)
      cv = cv.reshape(nb, c, kc)
      ci = jnp.where(jnp.isfinite(cv), rows[cp].reshape(nb, c, kc), B * c)
      slot = jnp.where((soff == 0) | ~ok, nb, soff)                # out of range -> dropped
      bv = bv.at[sblk, :, slot].set(cv, mode="drop")
      bi = bi.at[sblk, :, slot].set(ci, mode="drop")
      return (bv, bi), None

    (bv, bi), _ = lax.scan(body, init, strips)
    return bv[None], bi[None]

  sharded = jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(axis_name)),
                          out_specs=(P(axis_name), P(axis_name)), check_vma=False)

  def run(xb, strips):
    bv, bi = sharded(xb, strips)                                   # [n_dev, B, c, nb, kc]
    if bv.shape[0] > 1:                                            # each slot is written by one device
      src = jnp.argmin(bv, axis=0)
      bv = jnp.take_along_axis(bv, src[None], 0)[0]
      bi = jnp.take_along_axis(bi, src[None], 0)[0]
    else:
      bv, bi = bv[0], bi[0]
    vals = bv.reshape(B * c, nb * kc)[:n]
    idx = bi.reshape(B * c, nb * kc)[:n]
    vals, idx = lax.sort((vals, idx), dimension=-1, num_keys=2)    # ties -> lower index, as everywhere
    return _rerank_exact(xb.reshape(B * c, -1)[:n], vals, idx, k, kc, cosine, exclude_self)

  return jax.jit(run)


def _half_circle_layout(n: int, chunk_size: int):
  """(B odd, chunk, group): B = ceil(n / chunk_size) rounded up to odd; chunk = ceil(n / B), rounded up
  to a multiple of GROUP when it is large enough for the prefilter to pay off."""
  n_blocks = math.ceil(n / min(chunk_size, n))
  if n_blocks % 2 == 0:
    n_blocks += 1
  chunk = math.ceil(n / n_blocks)
  group = GROUP if chunk >= 8 * GROUP else 1
  if group > 1:
    chunk = math.ceil(chunk / group) * group
  return n_blocks, chunk, group


def _knn_symmetric(x, k, metric, exclude_self, chunk_size, mesh, axis_name, refine_margin):
  n, dim = x.shape
  kc = int(min(k + max(int(refine_margin), 0) + (1 if exclude_self else 0), n))
  n_blocks, chunk, group = _half_circle_layout(n, chunk_size)
  buffer_bytes = 8 * n_blocks * chunk * (n_blocks // 2 + 1) * kc
  if buffer_bytes > HALF_CIRCLE_MAX_BUFFER:       # O(N^2 kc / chunk) candidates: use the O(N kc) scan
    return _knn_blockpairs(x, k, metric, exclude_self, chunk_size, mesh, axis_name, refine_margin)
  cosine = metric == "cosine"
  if cosine:
    x = _normalize_rows(x, "x")
  mesh = default_mesh(axis_name) if mesh is None else mesh
  if axis_name not in mesh.axis_names:
    raise ValueError(f"mesh has axes {mesh.axis_names}; no axis named {axis_name!r} to shard over.")
  n_dev = mesh.shape[axis_name]
  pad = n_blocks * chunk - n
  x_pad = jnp.concatenate([x, jnp.zeros((pad, dim), x.dtype)]) if pad else x
  xb = x_pad.reshape(n_blocks, chunk, dim)
  strips = [(i, 1) for i in range(n_blocks)] + [(0, 0)] * ((-n_blocks) % n_dev)
  fn = _compiled_half_circle(mesh, axis_name, n, n_blocks, chunk, k, kc, group, exclude_self, cosine)
  dists, idx = fn(xb, jnp.asarray(np.asarray(strips, np.int32)))
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
  merged once at the end; strips are sharded over the mesh. Memory per device: O(chunk_size * N / 2)
  for a strip plus a candidate buffer of N * (B + 1) / 2 * (k + refine_margin) entries; when that buffer
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

  Entries < 0 are ignored (padding). sum(N_k) = Q * k for valid lists.
  """
  idx = jnp.asarray(idx)
  if idx.ndim != 2:
    raise ValueError(f"idx must be [num_queries, k]; got shape {tuple(idx.shape)}.")
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
