"""Tests of kexue 9368: kNN graphs, shortest paths, geodesic theme scoring, retrieval/summarisation metrics."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.sparse import csgraph

from research.eval import retrieval as retr
from research.eval import summarization as summ
from research.geometry import geodesic as geo
from research.geometry import graph as G
from research.geometry import shortest_path as SP


def _points(n=120, d=3, seed=0):
  return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def _edge_set(g):
  s, r, m = (np.asarray(a) for a in (g.senders, g.receivers, g.mask))
  return set(zip(s[m].tolist(), r[m].tolist()))


@pytest.fixture(scope="module")
def pts():
  return _points()


def test_solvers_agree_with_scipy_dijkstra(pts):
  """Bellman-Ford (multi-source, nearest-source), Floyd-Warshall, the callback path and components vs scipy."""
  x = jnp.asarray(pts)
  for mode in G.MODES:
    g = G.knn_graph(x, 4, mode=mode)
    ref = csgraph.dijkstra(G.to_scipy(g), directed=True)
    fin = np.isfinite(ref)
    bf = np.asarray(SP.bellman_ford(g, jnp.arange(g.num_nodes)))
    fw = np.asarray(SP.floyd_warshall(g))
    for d in (bf, fw):
      np.testing.assert_array_equal(np.isfinite(d), fin)          # unreachable = inf, never 0
      np.testing.assert_allclose(d[fin], ref[fin], rtol=1e-5, atol=1e-5)
    f = SP.make_sssp(g, "scipy")
    np.testing.assert_allclose(np.asarray(jax.jit(jax.vmap(f))(jnp.array([0, 7]))), ref[[0, 7]], rtol=1e-6)
    srcs = jnp.array([3, 50, 90])
    np.testing.assert_allclose(np.asarray(SP.bellman_ford_nearest(g, srcs)), ref[[3, 50, 90]].min(0), rtol=1e-5)
    n_cc, lab = SP.connected_components(g)
    n_ref, lab_ref = csgraph.connected_components(G.to_scipy(g), directed=True, connection="weak")
    assert int(n_cc) == n_ref
    np.testing.assert_array_equal(np.asarray(lab), lab_ref)
    if mode != "directed":
      np.testing.assert_allclose(np.where(fin, ref, 0), np.where(fin, ref, 0).T, rtol=1e-6)


def test_graph_modes_match_brute_force_sets(pts):
  """directed = kNN relation, union = OR, mutual = AND, each stored once per direction; weights = |a-b|."""
  k = 4
  d = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
  np.fill_diagonal(d, np.inf)
  nn = np.argsort(d, axis=1, kind="stable")[:, :k]
  rel = {(i, int(j)) for i in range(len(pts)) for j in nn[i]}
  sets = {m: _edge_set(G.knn_graph(jnp.asarray(pts), k, mode=m)) for m in G.MODES}
  assert sets["directed"] == rel
  assert sets["union"] == rel | {(j, i) for i, j in rel}
  assert sets["mutual"] == {(i, j) for i, j in rel if (j, i) in rel}
  g = G.knn_graph(jnp.asarray(pts), k, mode="union")
  assert g.num_edges == len(sets["union"])                            # no duplicated edge
  s, r, w, m = (np.asarray(a) for a in (g.senders, g.receivers, g.weights, g.mask))
  np.testing.assert_allclose(w[m], np.linalg.norm(pts[s[m]] - pts[r[m]], axis=-1), rtol=1e-5)
  assert np.all(np.diff(r) >= 0) and g.sorted_receivers
  # the shared chunked kNN path builds the same graph as the dense padded path
  assert _edge_set(G.knn_graph(jnp.asarray(pts), k, mode="union", dense_max=0)) == sets["union"]
  # from a distance matrix, and angular/cosine weights on unit vectors
  assert _edge_set(G.knn_graph_from_distances(jnp.asarray(np.where(np.isinf(d), 0, d)), k, "mutual")) == sets["mutual"]
  u = pts / np.linalg.norm(pts, axis=1, keepdims=True)
  ga, gc, ge = (G.knn_graph(jnp.asarray(u), k, metric=mt) for mt in ("angular", "cosine", "euclidean"))
  wa, wc, we = (np.asarray(gg.weights)[np.asarray(gg.mask)] for gg in (ga, gc, ge))
  np.testing.assert_allclose(wc, we ** 2 / 2, rtol=1e-3, atol=1e-6)  # 1 - cos = |u - v|^2 / 2
  np.testing.assert_allclose(we, 2 * np.sin(wa / 2), rtol=1e-3, atol=1e-5)   # chord = 2 sin(angle / 2)


def _dot_precisions(jaxpr):
  """Precision of every dot_general in a (closed) jaxpr, sub-jaxprs included."""
  out = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "dot_general":
      out.append(eqn.params["precision"])
    for v in eqn.params.values():
      for sub in (v if isinstance(v, (list, tuple)) else [v]):
        if hasattr(sub, "eqns"):
          out += _dot_precisions(sub)
        elif hasattr(sub, "jaxpr") and hasattr(sub.jaxpr, "eqns"):
          out += _dot_precisions(sub.jaxpr)
  return out


def test_dense_and_exact_knn_paths_share_one_precision_and_the_edges():
  """The dense padded path computes its distance products at the exact kNN's precision (HIGHEST), so on a
  TF32-by-default accelerator both paths still agree; on 64-d embeddings they give the same kNN relation (the
  directed graph; union and mutual are functions of it, see above) for every metric."""
  x = jnp.asarray(np.random.default_rng(3).normal(size=(150, 64)).astype(np.float32))
  highest = (jax.lax.Precision.HIGHEST, jax.lax.Precision.HIGHEST)
  for metric in G.METRICS:
    jx = jax.make_jaxpr(lambda a, metric=metric: G.pairwise_distances(a, metric=metric))(x)
    precs = _dot_precisions(jx.jaxpr)
    assert precs and all(p == highest for p in precs), (metric, precs)
    dense = G.knn_graph(x, 5, mode="directed", metric=metric)
    exact = G.knn_graph(x, 5, mode="directed", metric=metric, dense_max=0)
    assert _edge_set(dense) == _edge_set(exact), metric


def test_zero_length_edges_are_edges():
  x = _points(40, 2, seed=1)
  x[7] = x[3]                                                          # exact duplicate
  g = G.knn_graph(jnp.asarray(x), 4, mode="union")
  assert (3, 7) in _edge_set(g) and (7, 3) in _edge_set(g)
  csr = G.to_scipy(g)
  assert csr[3, 7] == 0 and csr.has_canonical_format and 7 in csr.indices[csr.indptr[3]:csr.indptr[4]]
  for d in (SP.bellman_ford(g, 3), SP.floyd_warshall(g)[3], SP.shortest_paths(g, 3, method="scipy")):
    assert float(d[7]) == 0.0
  dense = G.to_dense(g)
  g2 = G.from_dense(dense)
  assert float(SP.bellman_ford(g2, 3)[7]) == 0.0
  eg = G.epsilon_graph(G.pairwise_distances(jnp.asarray(x)), 0.5)
  assert (3, 7) in _edge_set(eg)


def test_disconnected_graph_gives_inf_and_defined_scores():
  rng = np.random.default_rng(2)
  x = np.concatenate([rng.normal(size=(20, 2)), rng.normal(size=(20, 2)) + 100]).astype(np.float32)
  g = G.knn_graph(jnp.asarray(x), 4)
  n_cc, lab = SP.connected_components(g)
  assert int(n_cc) == 2 and len(set(np.asarray(lab)[:20])) == 1
  d = np.asarray(SP.bellman_ford(g, 0))
  assert np.all(np.isfinite(d[:20])) and np.all(np.isinf(d[20:]))
  assert np.all(np.isinf(np.asarray(SP.floyd_warshall(g))[0, 20:]))
  assert SP.unreachable_report(d)["unreachable_pairs"] == 20
  sim = np.asarray(geo.similarity_from_distance(d))
  assert np.all(sim[20:] == 0) and np.all(sim[:20] > 0)
  base = np.linalg.norm(x - x[0], axis=1)
  key = np.asarray(geo.ranking_key(d, base))
  assert np.all(np.isfinite(key)) and key[20:].min() > key[:20].max()
  assert np.array_equal(np.argsort(key[20:]), np.argsort(base[20:]))


def test_bad_input_errors():
  x = _points(10, 2)
  with pytest.raises(ValueError, match="k=10 must be smaller"):
    G.knn_graph(jnp.asarray(x), 10)
  bad = x.copy(); bad[4, 1] = np.nan
  with pytest.raises(ValueError, match="NaN"):
    G.knn_graph(jnp.asarray(bad), 3)
  with pytest.raises(ValueError, match="negative edge weight"):
    G.edges_from_knn(jnp.array([[1], [0]]), jnp.array([[-1.0], [1.0]]))
  g = G.from_dense(np.array([[0, -1.0], [2.0, 0]], np.float32))
  with pytest.raises(ValueError, match="negative edge weight"):
    SP.bellman_ford(g, 0)
  with pytest.raises(ValueError, match="mode"):
    G.knn_graph(jnp.asarray(x), 3, mode="bidirectional")
  with pytest.raises(ValueError, match="source indices"):
    SP.bellman_ford(G.knn_graph(jnp.asarray(x), 4), 10)


def test_sphere_pole_to_pole_tends_to_pi():
  """S^2: the chord is 2, the geodesic pi; a moderate-k graph on dense samples is within a few percent of pi."""
  rng = np.random.default_rng(0)
  v = rng.normal(size=(1500, 3)); v /= np.linalg.norm(v, axis=1, keepdims=True)
  x = np.concatenate([[[0, 0, 1.0], [0, 0, -1.0]], v]).astype(np.float32)
  d = float(SP.shortest_paths(G.knn_graph(jnp.asarray(x), 10), 0)[1])
  assert abs(d - math.pi) / math.pi < 0.05 and d > 2.5


def test_theme_scores_equal_all_pairs_row(pts):
  x = jnp.asarray(pts)
  theme = pts[:30].mean(0)
  g = G.knn_graph(x, 4)
  aug, ids = geo.attach_theme(g, x, theme, 4)
  assert aug.num_nodes == len(pts) + 1 and int(ids[0]) == len(pts)
  fw = np.asarray(SP.floyd_warshall(aug))
  d = np.asarray(geo.geodesic_theme_distances(x, theme, k=4, theme_k=4, graph=g))
  np.testing.assert_allclose(d, fw[len(pts), :len(pts)], rtol=1e-5)
  nearest = np.argsort(np.linalg.norm(pts - theme, axis=1))[:4]
  np.testing.assert_allclose(d[nearest], np.linalg.norm(pts[nearest] - theme, axis=1), rtol=1e-5)
  s = np.asarray(geo.geodesic_scores(x, theme, k=4, theme_k=4))
  np.testing.assert_allclose(s, 1 / (d + 1e-6), rtol=1e-5)
  assert np.array_equal(np.argsort(-s, kind="stable"), np.argsort(d, kind="stable"))   # 1/d and -d: same ranking


def test_epsilon_graph_and_reweighting(pts):
  d = np.asarray(G.pairwise_distances(jnp.asarray(pts)))
  eg = G.epsilon_graph(d, 0.6)
  want = {(i, j) for i in range(len(pts)) for j in range(len(pts)) if i != j and d[i, j] < 0.6}
  assert _edge_set(eg) == want
  k = 4
  kd, idx = G.knn_from_distance_matrix(jnp.asarray(d), k)
  w = G.reweight(kd, idx, kd, "nicdm")
  rbar = np.asarray(kd).mean(1)
  np.testing.assert_allclose(np.asarray(w), np.asarray(kd) / np.sqrt(rbar[:, None] * rbar[np.asarray(idx)]), rtol=1e-5)
  ls = np.asarray(G.reweight(kd, idx, kd, "local_scaling"))
  assert np.all((ls >= 0) & (ls <= 1))


def test_retrieval_metrics_match_sklearn():
  from sklearn.metrics import average_precision_score, roc_auc_score
  rng = np.random.default_rng(0)
  x = rng.normal(size=(50, 2)); y = rng.integers(0, 3, 50)
  d = np.linalg.norm(x[:, None] - x[None], axis=-1)
  m = retr.retrieval_metrics(d, y, bands=((1, 5), (20, 30)))
  aps, p5, pfar = [], [], []
  for i in range(50):
    o = [j for j in np.argsort(d[i], kind="stable") if j != i]
    rel = y[o] == y[i]
    aps.append(average_precision_score(rel, -d[i][o])); p5.append(rel[:5].mean()); pfar.append(rel[19:30].mean())
  np.testing.assert_allclose([m["map"], m["p_1_5"], m["p_20_30"]], [np.mean(aps), np.mean(p5), np.mean(pfar)], rtol=1e-5)
  s = rng.normal(size=50)
  np.testing.assert_allclose(retr.roc_auc(s, y == 1), roc_auc_score(y == 1, s))
  np.testing.assert_allclose(retr.average_precision(s, y == 1), average_precision_score(y == 1, s))


def test_summary_budget_redundancy_and_rouge():
  sents = summ.split_sentences("The battery lasts all day. The battery lasts all day! Screen is sharp and bright."
                               "Shipping was slow but fine. Ok.")
  assert sents == ["The battery lasts all day.", "The battery lasts all day!", "Screen is sharp and bright.",
                   "Shipping was slow but fine.", "Ok."]
  sel = summ.select_summary(sents, [5, 4, 3, 2, 1], word_budget=11, min_words=2)
  assert sel == [0, 2]                        # the duplicate is filtered, the third sentence would overflow
  assert sum(summ.num_words(sents[i]) for i in sel) <= 11
  r = summ.rouge("the battery lasts all day", ["the battery lasts all day", "battery lasts"])
  assert r["rouge1"] == pytest.approx((1 + 2 * 2 / 7) / 2) and r["rouge2"] == pytest.approx((1 + 2 * 1 / 5) / 2)
  assert summ.oracle_summary(sents, ["screen is sharp"], 6, min_words=2) == [2]


def test_query_folds_partition_and_derive_from_seed():
  from experiments.geodesic.retrieval import fold_ids
  f = fold_ids(103, 10, seed=0)
  assert sorted(np.bincount(f).tolist()) == [10] * 7 + [11] * 3          # disjoint, sizes differ by <= 1
  assert np.array_equal(f, fold_ids(103, 10, seed=0)) and not np.array_equal(f, fold_ids(103, 10, seed=1))


def _assert_verdict_rows(rec):
  """Every row's verdict is one of research.verdict's, and comparison rows carry an interval and n."""
  import json
  from research.verdict import Verdict
  rows = rec["rows"]
  assert rows and all(r["verdict"] in {v.value for v in Verdict} for r in rows), json.dumps(rows)[:500]
  for r in rows:
    if " - " in r["name"]:
      assert "(n=" in r["measured"], r


def test_smoke_end_to_end(tmp_path):
  from tests.helpers import run_experiment
  rec = run_experiment("geodesic.py", "smoke", tmp_path,
                       {"parts": ("sanity", "retrieval", "bench")})
  m = rec["metrics"]
  assert abs(m["sphere_pole_to_pole_k10"] - math.pi) < 0.3
  assert m["swissroll_spearman_geo_k10"] > m["swissroll_spearman_euclidean"]
  assert "retrieval_digits_far_precision_euclidean" in m and "retrieval_digits_far_precision_geodesic" in m
  assert m["bench_sssp_callback_max_rel_err"] < 1e-5 and m["bench_apsp_floyd_warshall_max_rel_err"] < 1e-5
  _assert_verdict_rows(rec)
  by = {r["name"]: r for r in rec["rows"]}
  sphere = by["sphere S^2 pole-to-pole graph distance, N=300, k=10"]
  assert sphere["verdict"] == "agrees" and "(n=3)" in sphere["measured"]     # 3 seeds, within pi +- (pi - 2)/2
  far = next(r for r in rec["rows"] if "far-band precision" in r["name"])
  assert far["verdict"] == "agrees" and "(n=10)" in far["measured"]         # 10 query folds, paired


@pytest.mark.slow
def test_smoke_text_parts(tmp_path):
  """MiniLM (STS-B, summarisation) parts of the smoke variant; slow because of BERT compilation."""
  from tests.helpers import run_experiment
  rec = run_experiment("geodesic.py", "smoke", tmp_path, {"parts": ("sts", "summarization")})
  m = rec["metrics"]
  assert -1 <= m["sts_spearman_all_geodesic_k5"] <= 1 and m["summ_copycat_amazon_rouge1_euclidean"] > 0
  _assert_verdict_rows(rec)
  # the k=5 entity graph ranks these 3 entities' sentences as the Euclidean centroid does: a zero paired
  # difference (and 3 seeds' worth of entities) is no gain
  row = next(r for r in rec["rows"] if "geodesic_k5_entity" in r["name"])
  assert row["measured"].startswith("0 ± 0 (n=3)") and row["verdict"] == "inconclusive"
