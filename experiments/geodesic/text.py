"""G5 STS-B and G6 opinion summarisation with MiniLM sentence embeddings (spec 05 section 6.3).

STS: Spearman with the gold scores of cosine and of -d_geo over the pool of all test sentences
(transductive), per gold band and per fold of pairs (``c.folds`` disjoint groups drawn from
``config.seed``). Summarisation: extractive summaries that rank each entity's sentences by distance to the
entity centroid, Euclidean vs geodesic, scored per entity with ROUGE-1/2/L F1.
"""
from __future__ import annotations

import time

import jax.numpy as jnp
import numpy as np

from experiments.geodesic.retrieval import fold_ids
from experiments.geodesic.sanity import spearman
from research import data
from research.eval import summarization as summ
from research.geometry import geodesic as geo
from research.geometry import graph as graph_lib
from research.geometry import shortest_path as sp

BANDS = {"all": (0.0, 5.0), "low_0_2": (0.0, 2.0), "high_3_5": (3.0, 5.0)}


def sts(c, enc, graph, data_dir, seed: int) -> dict:
  """Per band: Spearman of the whole split and per fold, for cosine and each k (``arms``)."""
  s1, s2, gold = data.load_stsb_en(c.split, data_dir=data_dir)
  if c.pairs_limit:
    s1, s2, gold = s1[: c.pairs_limit], s2[: c.pairs_limit], gold[: c.pairs_limit]
  gold = np.asarray(gold, np.float64)
  pool = list(dict.fromkeys(list(s1) + list(s2)))
  if c.background_limit:
    b1, b2, _ = data.load_stsb_en("train", data_dir=data_dir)
    seen = set(pool)
    pool += [s for s in dict.fromkeys(list(b1) + list(b2)) if s not in seen][: c.background_limit]
  pos = {s: i for i, s in enumerate(pool)}
  i1, i2 = np.array([pos[s] for s in s1]), np.array([pos[s] for s in s2])
  t0 = time.perf_counter()
  e = geo.encode_texts(pool, batch_size=enc.batch_size, max_len=enc.max_len)
  out = {"pairs": len(gold), "pool": len(pool), "encode_seconds": time.perf_counter() - t0,
         "components": {}, "unreachable": {}}
  sims = {"cosine": np.sum(e[i1] * e[i2], -1)}
  d_base = np.linalg.norm(e[i1] - e[i2], axis=-1)
  src, inv = np.unique(i1, return_inverse=True)
  for k in c.ks:
    g = graph_lib.knn_graph(jnp.asarray(e), min(k, len(pool) - 1), mode=graph.mode)
    dg = np.asarray(sp.shortest_paths(g, jnp.asarray(src), method=graph.method))[inv, i2]
    unreach = ~np.isfinite(dg)
    key = np.where(unreach, np.nanmax(np.where(unreach, np.nan, dg)) + 1 + d_base, dg)
    sims[k] = -key
    out["components"][k] = int(sp.connected_components(g)[0])
    out["unreachable"][k] = int(unreach.sum())
  folds = fold_ids(len(gold), int(c.folds), seed, salt=6)
  out["bands"] = {}
  for band, (lo, hi) in BANDS.items():
    m = (gold >= lo) & (gold <= hi)
    out["bands"][band] = {arm: {"all": spearman(v[m], gold[m]),
                                "folds": np.array([spearman(v[m & (folds == f)], gold[m & (folds == f)])
                                                   for f in range(int(c.folds))])}
                          for arm, v in sims.items()}
  return out


def entities(name: str, c, data_dir) -> list[dict]:
  rows = data.load_opinion_summ(name, c.split, data_dir=data_dir)
  if c.entities_limit:
    rows = rows[: c.entities_limit]
  return [{"id": r["id"], "sentences": [s for rev in r["reviews"] for s in summ.split_sentences(rev)],
           "refs": list(r["summaries"])} for r in rows]


def arm_name(k: int, pool: str, c, graph) -> str:
  return "geodesic" if (k == graph.headline_k and pool == c.headline_pool) else f"geodesic_k{k}_{pool}"


def _geodesic_scores(emb, offs, cents, k, pool, graph) -> tuple[list, list]:
  """Per-entity ranking scores (-key) and graph components of one geodesic arm."""
  per, comps = [], []
  if pool == "background":     # one graph over every sentence of the split
    g = graph_lib.knn_graph(jnp.asarray(emb), k, mode=graph.mode)
    comps.append(int(sp.connected_components(g)[0]))
    d = np.asarray(geo.geodesic_theme_distances(emb, np.stack(cents), k=k, mode=graph.mode,
                                                method=graph.method, graph=g))
    for i in range(len(cents)):
      sl = slice(offs[i], offs[i + 1])
      per.append(-np.asarray(geo.ranking_key(d[i, sl], np.linalg.norm(emb[sl] - cents[i], axis=-1))))
    return per, comps
  for i in range(len(cents)):  # one graph per entity
    e = emb[offs[i]:offs[i + 1]]
    kk = min(k, len(e) - 1)
    g = graph_lib.knn_graph(jnp.asarray(e), kk, mode=graph.mode)
    comps.append(int(sp.connected_components(g)[0]))
    d = np.asarray(geo.geodesic_theme_distances(e, cents[i], k=kk, mode=graph.mode, method=graph.method, graph=g))
    per.append(-np.asarray(geo.ranking_key(d, np.linalg.norm(e - cents[i], axis=-1))))
  return per, comps


def summarization(name: str, c, enc, graph, data_dir, seed: int) -> dict:
  """Per arm: ROUGE-1/2/L F1 per entity (``{"rouge1": [E], ...}``), the word budget and graph components."""
  ents = entities(name, c, data_dir)
  budget = c.word_budget or int(round(np.mean([summ.num_words(s) for e in ents for s in e["refs"]])))
  emb = geo.encode_texts([s for e in ents for s in e["sentences"]], batch_size=enc.batch_size, max_len=enc.max_len)
  offs = np.cumsum([0] + [len(e["sentences"]) for e in ents])
  cents = [emb[offs[i]:offs[i + 1]].mean(0) for i in range(len(ents))]
  rng = np.random.default_rng([seed, 7])
  scores = {"random": [rng.random(len(e["sentences"])) for e in ents],
            "lead": [-np.arange(len(e["sentences"]), dtype=float) for e in ents],
            "euclidean": [-np.linalg.norm(emb[offs[i]:offs[i + 1]] - cents[i], axis=-1) for i in range(len(ents))]}
  comps = {}
  for pool in c.pools:
    for k in c.ks:
      arm = arm_name(k, pool, c, graph)
      scores[arm], comps[arm] = _geodesic_scores(emb, offs, cents, k, pool, graph)
  picks = {arm: [summ.select_summary(e["sentences"], sc, budget, c.redundancy, c.min_words)
                 for e, sc in zip(ents, per)] for arm, per in scores.items()}
  if c.oracle:
    picks["oracle"] = [summ.oracle_summary(e["sentences"], e["refs"], budget, c.min_words) for e in ents]
  rouge = {}
  for arm, sel in picks.items():
    rs = [summ.rouge(" ".join(e["sentences"][j] for j in s), e["refs"]) for e, s in zip(ents, sel)]
    rouge[arm] = {t: np.array([r[t] for r in rs]) for t in summ.ROUGE_TYPES}
  return {"entities": len(ents), "budget": budget, "rouge": rouge,
          "components": {a: float(np.mean(v)) for a, v in comps.items()}}
