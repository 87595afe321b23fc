"""Exact chunked/sharded kNN (research.geometry.knn): brute-force oracle, ties, self, invariants."""
import jax
import numpy as np
import pytest
from jax.sharding import Mesh

from research.geometry import knn as K

RNG = np.random.default_rng(0)
X = RNG.normal(size=(97, 6)).astype(np.float32)        # 97: not a multiple of chunks or devices


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("metric", ["sqeuclidean", "cosine"])
def test_chunked_equals_brute_force(metric, symmetric):
  # chunk 16 -> 7 blocks over 8 devices (padding of queries and of block pairs exercised)
  d, i = K.knn(X, 5, metric=metric, chunk_size=16, symmetric=symmetric)
  dr, ir = K.brute_force_knn_numpy(X, 5, metric=metric)
  np.testing.assert_array_equal(np.asarray(i), ir)
  np.testing.assert_allclose(np.asarray(d), dr, rtol=1e-5, atol=1e-6)


def test_euclidean_and_query_against_other_refs():
  q = RNG.normal(size=(13, 6)).astype(np.float32)
  d, i = K.knn_query(q, X, 4, metric="euclidean", chunk_size=4)
  full = np.sqrt(((q[:, None].astype(np.float64) - X[None]) ** 2).sum(-1))
  ir = np.argsort(full, axis=1, kind="stable")[:, :4]
  np.testing.assert_array_equal(np.asarray(i), ir)
  np.testing.assert_allclose(np.asarray(d), np.take_along_axis(full, ir, 1), rtol=1e-5)


def test_ties_broken_by_lower_index_and_self_masked_explicitly():
  # heavily quantised points: many exact duplicates and equal distances
  xq = RNG.integers(0, 3, size=(40, 2)).astype(np.float32)
  for ex, sym in ((True, True), (False, False)):
    _, i = K.knn(xq, 6, chunk_size=8, exclude_self=ex, symmetric=sym)
    _, ir = K.brute_force_knn_numpy(xq, 6, exclude_self=ex)
    np.testing.assert_array_equal(np.asarray(i), ir)
    if ex:   # self never listed although its exact duplicates are
      assert not np.any(np.asarray(i) == np.arange(40)[:, None])


def test_k_occurrence_invariants_and_self_rule():
  x = RNG.normal(size=(120, 40)).astype(np.float32)
  _, idx = K.knn(x, 5, chunk_size=32)
  nk = np.asarray(K.k_occurrence(idx, 120))
  assert nk.sum() == 120 * 5 and nk.mean() == 5.0
  np.testing.assert_array_equal(nk, np.bincount(np.asarray(idx).ravel(), minlength=120))
  # official rule: self-included count == 1 + N_{k-1}; and it equals the count from a list that
  # contains the query (exclude_self=False) when there are no duplicates
  h_self = np.asarray(K.hub_values(x, 5, include_self=True, chunk_size=32))
  n4 = np.asarray(K.hub_values(x, 4, chunk_size=32))
  np.testing.assert_array_equal(h_self, 1 + n4)
  _, idx_in = K.knn(x, 5, exclude_self=False, chunk_size=32)
  np.testing.assert_array_equal(np.asarray(idx_in)[:, 0], np.arange(120))
  np.testing.assert_array_equal(np.asarray(K.k_occurrence(idx_in, 120)), h_self)


def test_custom_mesh_and_padding_ignored():
  mesh = Mesh(np.array(jax.devices()[:2]), ("q",))
  d, i = K.knn(X, 3, chunk_size=10, mesh=mesh, axis_name="q", symmetric=False)
  _, ir = K.brute_force_knn_numpy(X, 3)
  np.testing.assert_array_equal(np.asarray(i), ir)
  assert np.asarray(K.k_occurrence(np.array([[0, -1], [1, 1]]), 3)).tolist() == [1, 2, 0]


def test_bad_input_errors():
  with pytest.raises(ValueError, match="too large"):
    K.knn(X[:5], 5)                                  # k >= N with self excluded
  with pytest.raises(ValueError, match="non-finite"):
    K.knn(np.array([[0.0, 1.0], [np.nan, 0.0], [1.0, 1.0]]), 1)
  with pytest.raises(ValueError, match="metric"):
    K.knn(X, 2, metric="manhattan")
  with pytest.raises(ValueError, match="2-D"):
    K.knn(X[0], 1)
  with pytest.raises(ValueError, match="dim"):
    K.knn_query(X[:, :3], X, 1)
  with pytest.raises(ValueError, match="zero vectors"):
    K.knn(np.zeros((4, 3), np.float32), 1, metric="cosine")


def test_group_prefilter_selection_is_exact_with_ties():
  # the half-circle path's top-kc selection (group minima, then gathered candidates) must equal a
  # lexicographic (value, position) selection, also with many exact ties
  d = RNG.integers(0, 6, size=(24, 256)).astype(np.float32)
  d[3, :] = 1.0                                        # a row of ties only
  kc = 7
  ref = np.argsort(d, axis=1, kind="stable")[:, :kc]
  v, p = K._smallest_along_rows(jax.numpy.asarray(d), kc, 16)
  np.testing.assert_array_equal(np.asarray(p), ref)
  np.testing.assert_array_equal(np.asarray(v), np.take_along_axis(d, ref, 1))
  v, p = K._smallest_along_cols(jax.numpy.asarray(d.T), kc, 16)
  np.testing.assert_array_equal(np.asarray(p), ref)


def test_half_circle_with_prefilter_equals_brute_force_on_quantized_data():
  xq = RNG.integers(0, 4, size=(700, 3)).astype(np.float32)     # duplicates, tied distances
  assert K._half_circle_layout(700, 256)[2] > 1                  # the group prefilter is exercised
  _, i = K.knn(xq, 5, chunk_size=256, symmetric=True)
  _, ir = K.brute_force_knn_numpy(xq, 5)
  np.testing.assert_array_equal(np.asarray(i), ir)


def test_block_pair_fallback_when_buffer_is_large(monkeypatch):
  monkeypatch.setattr(K, "HALF_CIRCLE_MAX_BUFFER", 0)         # force the O(N k)-memory block-pair scan
  _, i = K.knn(X, 5, chunk_size=16, symmetric=True)
  _, ir = K.brute_force_knn_numpy(X, 5)
  np.testing.assert_array_equal(np.asarray(i), ir)


# the three kNN paths; "block-pairs" is the half-circle call with HALF_CIRCLE_MAX_BUFFER patched to 0
PATH_KW = {"half-circle": dict(symmetric=True), "query": dict(symmetric=False),
           "block-pairs": dict(symmetric=True)}


@pytest.mark.parametrize("margin", [0, K.DEFAULT_REFINE_MARGIN])
@pytest.mark.parametrize("path", ["half-circle", "query", "block-pairs"])
def test_certified_rerank_is_exact_where_the_expansion_cancels(path, margin, monkeypatch):
  # a large common offset: ||q||^2 + ||r||^2 - 2 q.r loses every digit of the small differences in
  # float32, so the expansion's candidates are wrong; the certificate (error bound gamma_{D+2} (|q| +
  # max|r|)^2) must reject those rows and the fallback recompute them exactly, on every path, under jit
  x = (300.0 + 0.01 * RNG.normal(size=(300, 16))).astype(np.float32)
  if path == "block-pairs":
    monkeypatch.setattr(K, "HALF_CIRCLE_MAX_BUFFER", 0)
  kw = PATH_KW[path]
  dr, ir = K.brute_force_knn_numpy(x, 4)
  fn = jax.jit(lambda a: K.knn(a, 4, chunk_size=64, refine_margin=margin, **kw))
  d, i = fn(x)
  np.testing.assert_array_equal(np.asarray(i), ir)
  np.testing.assert_allclose(np.asarray(d), dr, rtol=1e-3)


def test_expansion_error_bound_holds():
  # |fl(expansion) - exact| <= gamma_{D+2} (|q| + |r|)^2 on adversarial (offset) and generic data
  for x in ((1e3 + RNG.normal(size=(64, 256))).astype(np.float32), RNG.normal(size=(64, 256)).astype(np.float32)):
    approx = np.asarray(K.pairwise_sqeuclidean(jax.numpy.asarray(x), jax.numpy.asarray(x)), np.float64)
    x64 = x.astype(np.float64)
    exact = ((x64[:, None] - x64[None]) ** 2).sum(-1)
    nrm = np.linalg.norm(x64, axis=1)
    bound = K._expansion_error_factor(256, np.float32) * (nrm[:, None] + nrm[None]) ** 2
    assert np.all(np.abs(approx - exact) <= bound)


def test_half_circle_rows_sharded_same_on_1_2_8_devices():
  # every device takes chunk / n_dev rows of every block; the column candidates meet in an all_to_all
  x = RNG.normal(size=(500, 24)).astype(np.float32)
  _, ir = K.brute_force_knn_numpy(x, 5)
  for n_dev in (1, 2, 8):
    mesh = Mesh(np.array(jax.devices()[:n_dev]), ("data",))
    d, i = K.knn(x, 5, chunk_size=96, symmetric=True, mesh=mesh)
    np.testing.assert_array_equal(np.asarray(i), ir)
    if n_dev == 1:
      d1 = np.asarray(d)
    np.testing.assert_allclose(np.asarray(d), d1, rtol=1e-6)


@pytest.mark.parametrize("path", ["half-circle", "query", "block-pairs"])
def test_gradient_of_neighbour_distances(path, monkeypatch):
  # L = sum_i sum_{j in kNN(i)} ||x_i - x_j||^2 with the neighbour sets held fixed:
  # dL/dx_i = 2 sum_{j in kNN(i)} (x_i - x_j) + 2 sum_{l : i in kNN(l)} (x_i - x_l)
  x = RNG.normal(size=(90, 7)).astype(np.float32)
  if path == "block-pairs":
    monkeypatch.setattr(K, "HALF_CIRCLE_MAX_BUFFER", 0)
  kw = PATH_KW[path]
  g = np.asarray(jax.grad(lambda a: K.knn(a, 4, chunk_size=16, **kw)[0].sum())(x))
  _, ir = K.brute_force_knn_numpy(x, 4)
  ref = np.zeros_like(x, dtype=np.float64)
  for i in range(90):
    for j in ir[i]:
      ref[i] += 2 * (x[i] - x[j])
      ref[j] += 2 * (x[j] - x[i])
  np.testing.assert_allclose(g, ref, rtol=1e-4, atol=1e-4)
