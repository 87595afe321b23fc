"""Tests for article 9098: EXACT expected accuracy, accuracy surrogates, gradient normaliser, schedules."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import special as sp_special
from scipy import stats

from research.losses import exact, surrogates
from research.optim import grad_normalizer as gn
from tests.helpers import finite_difference_grad, run_experiment


def ref_orthant(m):
  """float64 oracle: int phi(e) prod_j Phi(m_j + e) de by a fine trapezoid rule."""
  e = np.linspace(-10, 10, 8001)
  m = np.atleast_2d(np.asarray(m, np.float64))
  lp = stats.norm.logpdf(e)[None] + sp_special.log_ndtr(m[:, :, None] + e[None, None]).sum(1)
  return np.trapezoid(np.exp(lp), e, axis=-1)


def ref_exact_prob(logits, labels, sigma, margin=None):
  z = np.asarray(logits, np.float64)
  out = []
  for row, y in zip(z, labels):
    d = row[y] - np.delete(row, y)
    if margin is not None:
      d = np.minimum(d, margin)
    out.append(ref_orthant(d / sigma)[0])
  return np.asarray(out)


RNG = np.random.default_rng(0)
LOGITS = RNG.normal(size=(5, 6)).astype(np.float32) * 1.5
LABELS = RNG.integers(0, 6, 5).astype(np.int32)


def test_two_class_closed_form():
  z = RNG.normal(size=(7, 2)).astype(np.float32) * 2
  y = RNG.integers(0, 2, 7).astype(np.int32)
  sigma = np.linspace(0.3, 2.0, 7).astype(np.float32)                  # per-sample sigma
  closed = stats.norm.cdf((z[np.arange(7), y] - z[np.arange(7), 1 - y]) / (sigma * np.sqrt(2)))
  q = exact.exact_prob(z, y, sigma)
  g = exact.exact_prob(z, y, sigma, method="sampling", key=jax.random.key(0))  # one level: exact
  np.testing.assert_allclose(q, closed, atol=2e-6)
  np.testing.assert_allclose(g, closed, atol=2e-6)
  np.testing.assert_allclose(exact.two_class_prob(z, y, sigma), closed, atol=2e-6)


def test_quadrature_value_and_gradient_match_oracle():
  sigma, margin = 0.8, 1.0
  p = exact.exact_prob(LOGITS, LABELS, sigma, margin=margin, num_nodes=24)
  np.testing.assert_allclose(p, ref_exact_prob(LOGITS, LABELS, sigma, margin), atol=1e-5)
  # Gradient of the loss w.r.t. the logits vs finite differences of the float64 oracle.
  g = jax.grad(lambda z: exact.exact_loss(z, LABELS, sigma, margin=margin, num_nodes=24))(jnp.asarray(LOGITS))
  fd = finite_difference_grad(lambda z: 1 - ref_exact_prob(z, LABELS, sigma, margin).mean(), LOGITS, eps=1e-4)
  np.testing.assert_allclose(g, fd, atol=2e-4)
  # Large sigma: p -> 1/C (the argmax of pure noise); gradient w.r.t. sigma exists (trainable sigma).
  np.testing.assert_allclose(exact.exact_prob(LOGITS, LABELS, 1e4), 1 / 6, atol=1e-3)
  gs = jax.grad(lambda s: exact.exact_loss(LOGITS, LABELS, s))(1.0)
  assert np.isfinite(gs)


def test_genz_estimator_unbiased_with_correct_gradient():
  m = np.array([[0.3, -0.5, 1.0], [1.5, 0.2, 0.8], [-0.2, -0.1, 0.4]], np.float32)
  ref = ref_orthant(m)
  keys = jax.random.split(jax.random.key(1), 64)
  def weighted(mm, k):
    p = exact.orthant_prob_sampling(k, mm, num_samples=16)
    return jnp.sum(p * jnp.arange(1, 4)), p
  fn = jax.jit(jax.vmap(jax.value_and_grad(weighted, has_aux=True), in_axes=(None, 0)))
  (_, p), grads = fn(jnp.asarray(m), keys)
  p = np.asarray(p)
  se = p.std(0) / np.sqrt(len(keys))
  assert np.all(np.abs(p.mean(0) - ref) < 4 * se + 1e-6), (p.mean(0), ref, se)
  assert np.all(p.std(0) > 0)                                           # stochastic (D > 1)
  fd = finite_difference_grad(lambda mm: (ref_orthant(mm) * np.arange(1, 4)).sum(), m, eps=1e-4)
  gm, gse = np.asarray(grads).mean(0), np.asarray(grads).std(0) / np.sqrt(len(keys))
  assert np.all(np.abs(gm - fd) < 4 * gse + 2e-3), (gm, fd)
  # Truncation: only the k smallest deltas are integrated; the others get zero gradient.
  gt = jax.grad(lambda mm: exact.orthant_prob_sampling(jax.random.key(0), mm, max_alternatives=1).sum())(m)
  assert np.count_nonzero(np.asarray(gt)) == 3 and np.all(np.asarray(gt)[np.arange(3), m.argmin(1)] > 0)


def test_fast_paths_equal_the_reference_paths():
  # Genz: the undifferentiated primal runs the value channel only; same estimate as the full channel set.
  m = jnp.asarray(RNG.normal(size=(4, 5)).astype(np.float32))
  u = jax.random.uniform(jax.random.key(3), (8, 4, 5))
  p_full, p_value = jax.jit(lambda m, u: (exact._genz_value_and_grad(m, u)[0],
                                          exact._genz_value_and_grad(m, u, with_grad=False)[0]))(m, u)
  np.testing.assert_allclose(p_value, p_full, rtol=1e-6, atol=1e-7)
  # Quadrature from the logits (margin folded in, analytic VJP) = the orthant integral of the clipped deltas
  # (autodiff through the shared 9085 function), value and gradient.
  sigma = jnp.linspace(0.5, 1.5, 5)

  w = jnp.arange(1.0, 6.0)
  direct = lambda z: jnp.sum(w * exact.exact_log_prob_quadrature(z, LABELS, sigma, margin=0.7, num_nodes=8))
  via_deltas = lambda z: jnp.sum(w * exact.orthant_log_prob_quadrature(
      exact.exact_margins(z, LABELS, sigma, margin=0.7), num_nodes=8))
  z = jnp.asarray(LOGITS)
  (v_direct, g_direct), (v_deltas, g_deltas) = jax.jit(
      lambda z: (jax.value_and_grad(direct)(z), jax.value_and_grad(via_deltas)(z)))(z)
  np.testing.assert_allclose(v_direct, v_deltas, rtol=1e-5)
  np.testing.assert_allclose(g_direct, g_deltas, rtol=1e-4, atol=1e-6)


def test_matches_monte_carlo_argmax_frequency():
  sigma, n = 0.7, 40000
  eps = jax.random.normal(jax.random.key(2), (n,) + LOGITS.shape)
  freq = np.asarray(jnp.mean(jnp.argmax(LOGITS / sigma + eps, -1) == LABELS, axis=0))
  p = np.asarray(exact.exact_prob(LOGITS, LABELS, sigma))
  assert np.all(np.abs(freq - p) < 4 * np.sqrt(p * (1 - p) / n) + 1e-4)


def test_margin_standardize_and_aggregations():
  z = jnp.array([[3.0, 0.0, 2.5, -1.0]])
  y = jnp.array([0])
  g = jax.grad(lambda z: exact.exact_loss(z, y, 1.0, margin=1.0))(z)
  # Deltas 3 and 4 exceed the margin 1 -> those alternatives get no gradient; the 0.5 one does.
  assert float(g[0, 1]) == 0.0 and float(g[0, 3]) == 0.0 and float(g[0, 2]) > 0
  # Standardisation: one scalar mean/unbiased std over the whole tensor; invariant to a z + b, a > 0.
  zs = np.asarray(exact.standardize_logits(LOGITS))
  np.testing.assert_allclose(zs, (LOGITS - LOGITS.mean()) / (LOGITS.std(ddof=1) + 1e-6), rtol=1e-5, atol=1e-6)
  p1 = exact.exact_prob(LOGITS, LABELS, 0.5, standardize=True)
  p2 = exact.exact_prob(3.0 * LOGITS + 7.0, LABELS, 0.5, standardize=True)
  np.testing.assert_allclose(p1, p2, atol=1e-5)
  p = np.asarray(exact.exact_prob(LOGITS, LABELS, 1.0))
  np.testing.assert_allclose(exact.exact_loss(LOGITS, LABELS, 1.0), 1 - p.mean(), atol=1e-6)
  np.testing.assert_allclose(exact.exact_loss(LOGITS, LABELS, 1.0, aggregation="meanlog"),
                             -np.log(p + 1e-6).mean(), rtol=1e-5)


def test_surrogates_match_formulas():
  z, y = LOGITS, LABELS
  d = np.stack([z[i, y[i]] - np.delete(z[i], y[i]) for i in range(len(y))])
  np.testing.assert_allclose(surrogates.label_deltas(jnp.asarray(z), jnp.asarray(y)), d, atol=1e-6)
  ce = optax.softmax_cross_entropy_with_integer_labels(z, y).mean()
  np.testing.assert_allclose(surrogates.cross_entropy(z, y), ce, rtol=1e-6)
  py = np.exp(-optax.softmax_cross_entropy_with_integer_labels(z, y))
  np.testing.assert_allclose(surrogates.smoothed_accuracy_loss(z, y), 1 - py.mean(), rtol=1e-5)
  np.testing.assert_allclose(surrogates.poly1_loss(z, y, 2.0), ce + 2.0 * (1 - py).mean(), rtol=1e-5)
  np.testing.assert_allclose(surrogates.hinge(z, y, 0.5), np.maximum(0, 0.5 - d).mean(), rtol=1e-6)
  sig = lambda x: 1 / (1 + np.exp(-x))
  np.testing.assert_allclose(surrogates.sigmoid_loss(z, y, 2.0), (1 - sig(d / 2)).sum(1).mean(), rtol=1e-5)
  np.testing.assert_allclose(surrogates.beta_bernoulli_loss(z, y, 2.0),
                             (-np.log(0.25 + 0.5 * sig(d / 2))).sum(1).mean(), rtol=1e-5)
  c = np.clip(d / 2, -1, 1)
  np.testing.assert_allclose(surrogates.polynomial_loss(z, y, 2.0),
                             (c ** 3 / 4 - 3 * c / 4 + 0.5).sum(1).mean(), rtol=1e-5, atol=1e-6)


def test_ce_first_order_equals_smoothed_accuracy():
  z = jnp.array([[8.0, 0.0, 0.0], [0.0, 0.0, 0.0], [-5.0, 0.0, 0.0]])
  ce, omp = exact.ce_and_smoothed_accuracy(z, jnp.array([0, 0, 0]))
  assert abs(float(ce[0] / omp[0]) - 1) < 1e-3              # p -> 1: -log p ~ 1 - p
  assert float(ce[2]) > 4 and float(omp[2]) < 1             # wrong sample: unbounded vs bounded
  assert exact.pearson([1, 2, 3], [2, 4, 6.5]) > 0.99


def test_gradient_normalizer_and_schedules():
  tx = gn.gradient_normalizer(momentum=0.9, floor=0.01)
  params = {"w": jnp.ones(3), "b": jnp.zeros(())}
  st = tx.init(params)
  assert isinstance(st, gn.GradientNormalizerState)
  g1 = {"w": jnp.array([3.0, 0.0, 4.0]), "b": jnp.array(0.0)}           # norm 5
  u1, st = jax.jit(tx.update)(g1, st)
  np.testing.assert_allclose(optax.global_norm(u1), 1.0, rtol=1e-6)      # first step: raw norm
  g2 = jax.tree_util.tree_map(lambda g: 3 * g, g1)                       # norm 15 -> EMA 6
  u2, st = tx.update(g2, st)
  np.testing.assert_allclose(st.ema_norm, 6.0, rtol=1e-6)
  np.testing.assert_allclose(optax.global_norm(u2), 15 / 6, rtol=1e-6)
  u0, _ = tx.update(jax.tree_util.tree_map(lambda g: 1e-4 * g, g1), tx.init(params))
  np.testing.assert_allclose(optax.global_norm(u0), 5e-4 / 0.01, rtol=1e-5)   # floor
  chain = optax.chain(gn.gradient_normalizer(), optax.add_decayed_weights(0.1), optax.sgd(0.5, momentum=0.9))
  cs = chain.init(params)
  upd, _ = jax.jit(chain.update)(g1, cs, params)
  np.testing.assert_allclose(upd["w"], -0.5 * (np.array([0.6, 0.0, 0.8]) + 0.1), rtol=1e-6)
  s = gn.sigma_schedule(10.0, 0.01, 16, 5)
  np.testing.assert_allclose([s(0), s(4), s(5), s(79), s(10 ** 6)],
                             [10, 10, 10 * 0.001 ** (1 / 16), 10 * 0.001 ** (15 / 16), 10 * 0.001 ** (15 / 16)],
                             rtol=1e-5)
  lr = gn.epoch_exponential_lr(0.5, 1e-4, 16, 5)
  np.testing.assert_allclose([lr(0), lr(79)], [0.5, 1e-4], rtol=1e-5)
  v = gn.variance_schedule(100.0, 1.0, 10, 3)
  np.testing.assert_allclose([v(0), v(29)], [10.0, 1.0], rtol=1e-5)


@pytest.mark.parametrize("kwargs, match", [
    (dict(labels=np.array([0, 6, 1, 2, 3], np.int32)), "labels must lie"),
    (dict(sigma=0.0), "sigma must be finite and > 0"),
    (dict(sigma=-1.0), "sigma must be finite and > 0"),
    (dict(logits=np.where(np.eye(5, 6, dtype=bool), np.nan, LOGITS).astype(np.float32)), "non-finite"),
    (dict(method="sampling"), "explicit PRNG key"),
    (dict(aggregation="median"), "unknown aggregation"),
    (dict(method="gauss"), "unknown method"),
])
def test_bad_input_raises_clear_errors(kwargs, match):
  args = dict(logits=LOGITS, labels=LABELS, sigma=1.0)
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    exact.exact_loss(args.pop("logits"), args.pop("labels"), args.pop("sigma"), **args)
  with pytest.raises(TypeError, match="integer class indices"):
    surrogates.cross_entropy(LOGITS, LABELS.astype(np.float32))


def test_tabular_rows_compare_in_whole_test_samples():
  """A row exactly one test sample from the published count agrees (the tolerance is one sample); two differ."""
  import ml_collections
  from experiments.exact import tables
  from research.report import Results
  res = Results()
  t = ml_collections.ConfigDict({"num_trials": 1})
  # breast-cancer CE is published as 95.61 % = 109/114; every seed one sample off either way.
  out = {"ce": {"correct": np.array([110, 108, 110]), "describe": "-", "train_ce": np.zeros((3, 0)),
                "train_1mp": np.zeros((3, 0))},
         "hinge": {"correct": np.array([109, 109, 109]), "describe": "-", "train_ce": np.zeros((3, 0)),
                   "train_1mp": np.zeros((3, 0))},
         "exact": {"correct": np.array([108, 108, 108]), "describe": "-", "train_ce": np.zeros((3, 0)),
                   "train_1mp": np.zeros((3, 0))}}
  tables.tabular_rows("breast_cancer", 114, 72, out, t, res)
  verdicts = {r.name.split(": ")[1].split()[0]: r.verdict for r in res.rows}
  # ce: 110 and 108 are one sample from 109 -> agrees; hinge 109 vs published 111 (97.37 %) -> two off: differs;
  # exact 108 vs published 110 (96.49 %) -> two off: differs.
  assert verdicts == {"ce": "agrees", "hinge": "differs", "exact": "differs"}, verdicts
  assert all("(n=3)" in r.measured for r in res.rows)


def test_smoke_end_to_end(tmp_path):
  rec = run_experiment("exact.py", "smoke", tmp_path)
  m = rec["metrics"]
  assert abs(m["toy_ce_b"] - 0.7) < 0.01
  assert abs(m["toy_hinge_b_lo"] - 0.75) < 0.01 and abs(m["toy_hinge_b_hi"] - 1.0) < 0.01
  assert m["toy_scale_ce_acc"] == 1.0
  assert m["wine_sklearn"] > 90
  # Accuracies are whole numbers of the 36 wine test samples (spec 02 §4), and the table judges them with the
  # shared whole-sample rule over the smoke run's 3 seeds.
  from configs.exact import get_config
  assert int(get_config("smoke").tab.seeds) == 3
  assert m["wine_exact_correct_mean"] * 3 == pytest.approx(round(m["wine_exact_correct_mean"] * 3))
  md = open(tmp_path / "results.md").read()
  row = next(line for line in md.splitlines() if line.startswith("| wine: exact test acc"))
  assert "(n=3)" in row and any(v in row for v in ("| agrees |", "| differs |", "| inconclusive |", "| not learned |"))
  assert "sample" in row
  assert m["est_C10_quad_rmse"] < 1e-4 and "est_C10_quad_std" not in m
  # the population trainer wrote per-run records and checkpoints into the workdir
  assert (tmp_path / "metrics.jsonl").exists() and (tmp_path / "checkpoints").exists()
