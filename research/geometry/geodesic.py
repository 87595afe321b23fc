"""Approximate geodesic distances and geodesic theme scoring (kexue 9368 "from local to global").

Recipe (spec 05 section 3.1): keep only local distances, i.e. a kNN graph weighted by the base distance,
and take shortest-path lengths as the geodesic ``d_geo``. For scoring against a theme ``c`` (a centroid,
an aspect query, ...), which is usually not one of the points, ``c`` is added as an extra node linked (both
ways) to its ``k`` nearest points with base-distance weights; one single-source run from ``c`` then scores
every point (section 3.4):

    s_geo(t, c) = 1 / (d_geo(t, c) + eps)      ranking: by -d_geo (the same order).

**Unreachable points** (in another connected component than the theme's neighbours) have ``d_geo = inf``:
their inverse score is 0 and they rank after every reachable point; among themselves they are ordered by
the base distance to the theme (:func:`ranking_key`), so a ranking is always a full, deterministic order.

**Transductivity.** The geodesic depends on the pool of points in the graph: adding points changes scores.
The drivers state which pool they use (per entity, or per entity plus a background pool).

The sentence path: texts -> all-MiniLM-L6-v2 in the project's Flax BERT (:mod:`research.nn.bert`, mean
pooling + L2 normalisation) -> embeddings -> geodesic similarity (:func:`text_geodesic_scores`).
"""
from __future__ import annotations

from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from research.geometry import graph as graph_lib
from research.geometry import shortest_path as sp
from research.geometry.graph import Graph


# --------------------------------------------------------------------------------------------------
# Similarity transforms
# --------------------------------------------------------------------------------------------------

def similarity_from_distance(d, kind: str = "inverse", eps: float = 1e-6):
  """``inverse``: ``1/(d+eps)`` with ``inf -> 0``; ``negative``: ``-d`` (``inf -> -inf``)."""
  d = jnp.asarray(d)
  if kind == "inverse":
    return jnp.where(jnp.isfinite(d), 1.0 / (d + eps), 0.0)
  if kind == "negative":
    return -d
  raise ValueError(f"Unknown similarity kind {kind!r}; choose 'inverse' or 'negative'.")


def ranking_key(d_geo, d_base):
  """A finite sort key (ascending = more similar) equal in order to ``d_geo`` on reachable points.

  Unreachable points (``d_geo = inf``) are placed after all reachable ones, ordered among themselves by
  ``d_base``: key = ``max_finite(d_geo) + 1 + d_base`` (row-wise for 2-D input).
  """
  d_geo = jnp.asarray(d_geo)
  d_base = jnp.asarray(d_base, d_geo.dtype)
  fin = jnp.isfinite(d_geo)
  top = jnp.max(jnp.where(fin, d_geo, 0.0), axis=-1, keepdims=True)
  return jnp.where(fin, d_geo, top + 1.0 + d_base)


# --------------------------------------------------------------------------------------------------
# Theme node
# --------------------------------------------------------------------------------------------------

def _as_2d(x, name):
  x = jnp.asarray(x)
  if x.ndim == 1:
    x = x[None]
  if x.ndim != 2:
    raise ValueError(f"{name} must be [d] or [T, d], got shape {tuple(x.shape)}.")
  return x


def attach_theme(graph: Graph, x, themes, k: int, metric: str = "euclidean"):
  """Adds each theme as a node ``N + t`` linked both ways to its ``k`` nearest points of ``x``.

  Themes are not linked to each other. Edge lengths are the base ``metric`` distances, recomputed directly.
  Returns ``(augmented_graph, theme_node_ids [T])``.
  """
  x = jnp.asarray(x)
  themes = _as_2d(themes, "themes")
  graph_lib.validate_embeddings(x)
  graph_lib.validate_embeddings(themes, "themes")
  if themes.shape[1] != x.shape[1]:
    raise ValueError(f"theme dim {themes.shape[1]} != embedding dim {x.shape[1]}.")
  n = x.shape[0]
  if graph.num_nodes != n:
    raise ValueError(f"graph has {graph.num_nodes} nodes but x has {n} points; build the graph over x.")
  if not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
    raise ValueError(f"theme k must be an integer in [1, N={n}], got {k!r}.")
  d_all = graph_lib.pairwise_distances(themes, x, metric=metric)          # [T, N]; T is small
  _, nbr = jax.lax.top_k(-d_all, k)                                        # ties -> lower index
  w = graph_lib.pair_distance(themes[:, None, :], x[nbr], metric)          # recomputed directly
  t_ids = n + jnp.arange(themes.shape[0], dtype=jnp.int32)
  t_rep = jnp.repeat(t_ids, k)
  s = jnp.concatenate([t_rep, nbr.reshape(-1)])
  r = jnp.concatenate([nbr.reshape(-1), t_rep])
  ww = jnp.concatenate([w.reshape(-1), w.reshape(-1)])
  g = graph_lib.add_edges(graph, s, r, ww, num_nodes=n + themes.shape[0])
  return g, t_ids


def geodesic_theme_distances(x, themes, k: int = 10, theme_k: Optional[int] = None, mode: str = "union",
                             metric: str = "euclidean", method: str = "auto", graph: Optional[Graph] = None,
                             return_graph: bool = False):
  """``d_geo(theme_t, x_i)`` for every theme and point: ``[T, N]`` (``[N]`` for a single ``[d]`` theme).

  The point graph is the ``mode`` kNN graph over ``x`` with ``k`` neighbours (or the given ``graph``); each
  theme is attached to its ``theme_k`` (default ``k``) nearest points. Unreachable = inf.
  """
  x = jnp.asarray(x)
  single = jnp.ndim(themes) == 1
  if graph is None:
    graph = graph_lib.knn_graph(x, k, mode=mode, metric=metric)
  aug, t_ids = attach_theme(graph, x, themes, theme_k or k, metric=metric)
  d = sp.shortest_paths(aug, t_ids, method=method)[:, : x.shape[0]]
  d = d[0] if single else d
  return (d, aug) if return_graph else d


def geodesic_scores(x, themes, k: int = 10, theme_k: Optional[int] = None, mode: str = "union",
                    metric: str = "euclidean", method: str = "auto", kind: str = "inverse", eps: float = 1e-6):
  """Geodesic similarity of every point to the theme(s): ``1/(d_geo + eps)`` (0 if unreachable)."""
  d = geodesic_theme_distances(x, themes, k, theme_k, mode, metric, method)
  return similarity_from_distance(d, kind, eps)


def base_theme_distances(x, themes, metric: str = "euclidean"):
  """The plain base distance to the theme(s) (the baseline the geodesic is compared against)."""
  single = jnp.ndim(themes) == 1
  d = graph_lib.pairwise_distances(_as_2d(themes, "themes"), jnp.asarray(x), metric=metric)
  return d[0] if single else d


def geodesic_distance_matrix(x, k: int = 10, mode: str = "union", metric: str = "euclidean",
                             method: str = "auto", graph: Optional[Graph] = None):
  """All-pairs approximate geodesic distances ``[N, N]`` over the kNN graph of ``x`` (unreachable = inf)."""
  if graph is None:
    graph = graph_lib.knn_graph(jnp.asarray(x), k, mode=mode, metric=metric)
  return sp.all_pairs(graph, method=method)


def graph_summary(graph: Graph) -> dict:
  """Number of nodes, edges and weakly connected components of a graph (for reports)."""
  ncc, _ = sp.connected_components(graph)
  return {"nodes": graph.num_nodes, "edges": graph.num_edges, "components": int(ncc)}


# --------------------------------------------------------------------------------------------------
# Sentence path
# --------------------------------------------------------------------------------------------------

_ENCODER = None


def sentence_encoder():
  """The all-MiniLM-L6-v2 encoder in Flax (:func:`research.nn.bert.load_minilm`), loaded once."""
  global _ENCODER
  if _ENCODER is None:
    from research.nn import bert
    _ENCODER = bert.load_minilm()
  return _ENCODER


def encode_texts(texts: Sequence[str], batch_size: int = 64, max_len: int = 256, encoder=None) -> np.ndarray:
  """Unit-norm MiniLM embeddings ``[len(texts), 384]`` of a list of texts."""
  if isinstance(texts, str):
    raise TypeError("encode_texts expects a list of texts, not a single string.")
  texts = list(texts)
  if not texts:
    raise ValueError("encode_texts got an empty list of texts.")
  enc = encoder or sentence_encoder()
  return enc.encode(texts, batch_size=batch_size, max_len=max_len)


def text_geodesic_scores(texts: Sequence[str], theme: Optional[str] = None, k: int = 10,
                         mode: str = "union", kind: str = "inverse", encoder=None, embeddings=None):
  """Texts -> MiniLM -> geodesic similarity to a theme (a text, or by default the embedding centroid).

  Returns ``(scores [N], d_geo [N], d_base [N])`` with Euclidean base distance on unit vectors.
  """
  e = encode_texts(texts, encoder=encoder) if embeddings is None else np.asarray(embeddings)
  if theme is None:
    c = e.mean(0)
  else:
    c = encode_texts([theme], encoder=encoder)[0]
  k = min(k, e.shape[0] - 1)
  d_geo = geodesic_theme_distances(e, c, k=k, mode=mode)
  d_base = base_theme_distances(e, c)
  return similarity_from_distance(d_geo, kind), d_geo, d_base
