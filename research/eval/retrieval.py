"""Ranking metrics for near-vs-far retrieval (kexue 9368 / spec 05 G3, G4).

Every query ranks all *other* points by ascending distance (the query itself is removed); relevance is
"same label". Ties are broken by the lower index (stable sort). For geodesic distances pass a finite key
(:func:`research.geometry.geodesic.ranking_key`) so unreachable points rank last in a defined order.

* AP (average precision) = mean over the relevant items of precision at their rank; mAP = mean over queries.
* precision in a band of ranks ``[a, b]`` (1-based, inclusive) = fraction of relevant items among ranks
  a..b: ``P@10`` is the band [1, 10] ("near"), e.g. [101, 150] is a "far" band.
* theme scoring: ROC AUC and AP of a score against binary membership labels.
"""
from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np


@functools.partial(jax.jit, static_argnames=("remove_self",))
def _ranked_relevance(dist, labels_q, labels_ref, query_ids, remove_self):
  """[Q, N(-1)] relevance in rank order; with ``remove_self`` the query's own column is dropped."""
  if remove_self:
    cols = jnp.arange(dist.shape[1])
    dist = jnp.where(cols[None, :] == query_ids[:, None], -jnp.inf, dist)   # self ranks first, dropped
  order = jnp.argsort(dist, axis=1, stable=True)
  rel = (labels_ref[order] == labels_q[:, None]).astype(jnp.float32)
  return rel[:, 1:] if remove_self else rel


@jax.jit
def _ap(rel, n_rel):
  hits = jnp.cumsum(rel, axis=1)
  ranks = jnp.arange(1, rel.shape[1] + 1, dtype=jnp.float32)
  return jnp.sum(rel * hits / ranks, axis=1) / jnp.maximum(n_rel, 1.0)


def retrieval_metrics(dist, labels, bands: Sequence[tuple[int, int]] = ((1, 10),), labels_ref=None,
                      query_ids=None, chunk_size: int = 512) -> dict:
  """mAP and precision in rank bands for a square (self-retrieval) or [Q, N] distance matrix.

  Args:
    dist: ``[Q, N]`` distances (ascending = more similar); must not contain NaN (inf is allowed but ties
      among infs are broken by index, so prefer a finite ranking key).
    labels: ``[Q]`` query labels (and reference labels if ``labels_ref`` is None and Q == N).
    bands: 1-based inclusive rank bands, e.g. ``((1, 10), (101, 150))``.
    query_ids: ``[Q]`` index of each query among the references (removed from its ranking); default
      ``arange(Q)`` for square input, else no removal (all queries or none).
  Returns dict with ``map`` and ``p_<a>_<b>`` per band, means over queries.
  """
  dist = np.asarray(dist)
  labels = np.asarray(labels)
  labels_ref = labels if labels_ref is None else np.asarray(labels_ref)
  q, n = dist.shape
  if labels.shape != (q,) or labels_ref.shape != (n,):
    raise ValueError(f"labels must be [Q]={q} and reference labels [N]={n}; got {labels.shape}, "
                     f"{labels_ref.shape}.")
  if np.isnan(dist).any():
    raise ValueError("distance matrix contains NaN; rankings would be undefined.")
  if query_ids is None and q == n:
    query_ids = np.arange(q)
  remove_self = query_ids is not None
  query_ids = np.asarray(query_ids) if remove_self else -np.ones(q, int)
  if remove_self and ((query_ids < 0) | (query_ids >= n)).any():
    raise ValueError(f"query_ids must lie in [0, {n}).")
  n_ranked = n - 1 if remove_self else n
  for a, b in bands:
    if not 1 <= a <= b <= n_ranked:
      raise ValueError(f"rank band ({a}, {b}) must satisfy 1 <= a <= b <= {n_ranked} (ranked items).")
  counts = {lab: int(c) for lab, c in zip(*np.unique(labels_ref, return_counts=True))}
  aps, prec = [], {f"p_{a}_{b}": [] for a, b in bands}
  for i in range(0, q, chunk_size):
    sl = slice(i, min(i + chunk_size, q))
    rel = _ranked_relevance(jnp.asarray(dist[sl], jnp.float32), jnp.asarray(labels[sl]),
                            jnp.asarray(labels_ref), jnp.asarray(query_ids[sl]), remove_self)
    n_rel = np.array([counts.get(lab, 0) for lab in labels[sl]], np.float32)
    if remove_self:                             # the query is not its own relevant item
      n_rel = n_rel - (labels_ref[query_ids[sl]] == labels[sl])
    aps.append(np.asarray(_ap(rel, jnp.asarray(n_rel))))
    rel = np.asarray(rel)
    for a, b in bands:
      prec[f"p_{a}_{b}"].append(rel[:, a - 1:b].mean(1))
  out = {"map": float(np.concatenate(aps).mean())}
  out.update({key: float(np.concatenate(v).mean()) for key, v in prec.items()})
  return out


def roc_auc(scores, labels) -> float:
  """ROC AUC of ``scores`` (higher = positive) for binary ``labels`` via the Mann-Whitney rank statistic."""
  from scipy.stats import rankdata
  s = np.asarray(scores, np.float64)
  y = np.asarray(labels).astype(bool)
  npos, nneg = y.sum(), (~y).sum()
  if npos == 0 or nneg == 0:
    raise ValueError("roc_auc needs both positive and negative labels.")
  r = rankdata(s)
  return float((r[y].sum() - npos * (npos + 1) / 2) / (npos * nneg))


def average_precision(scores, labels) -> float:
  """AP of ``scores`` (higher = positive) for binary ``labels``; ties broken by index."""
  s = np.asarray(scores, np.float64)
  y = np.asarray(labels).astype(bool)
  if y.sum() == 0:
    raise ValueError("average_precision needs at least one positive label.")
  order = np.argsort(-s, kind="stable")
  rel = y[order].astype(np.float64)
  hits = np.cumsum(rel)
  return float(np.sum(rel * hits / np.arange(1, len(rel) + 1)) / rel.sum())
