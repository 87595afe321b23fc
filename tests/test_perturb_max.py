"""Tests for Perturb-Max distributions (kexue.fm 9085): closed forms, properties, MC, gradients, heads."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from research.distributions import perturb_max as pm
from research.nn import heads
from tests.helpers import finite_difference_grad

X = np.array([[1.0, 0.3, -2.0, 0.3, 0.9],
              [5.0, -5.0, 0.0, 2.0, 1.5],
              [0.0, 0.0, 0.0, 0.0, 0.0]], np.float32)
NORMALISED = [("normal", "gauss_hermite", 16, 1e-4), ("logistic", "midpoint", 512, 2e-3),
              ("cauchy", "midpoint", 512, 5e-3), ("gumbel", "midpoint", 512, 2e-3)]


def test_gumbel_closed_form_is_softmax_any_batch_shape():
  x = jax.random.normal(jax.random.key(0), (2, 3, 7)) * 3
  np.testing.assert_array_equal(pm.perturb_max_probs(x, "gumbel"), jax.nn.softmax(x))
  np.testing.assert_allclose(pm.perturb_max_probs(x, "gumbel", scale=2.0), jax.nn.softmax(x / 2), atol=1e-7)


def test_gumbel_quadrature_converges_to_softmax():
  errs = [float(jnp.max(jnp.abs(pm.perturb_max_probs(X, "gumbel", "midpoint", k, closed_form=False)
                                - jax.nn.softmax(X)))) for k in (8, 64, 512)]
  assert errs[0] > errs[1] > errs[2] and errs[2] < 2e-3, errs


@pytest.mark.parametrize("noise,rule,k,tol", [("normal", "gauss_hermite", 32, 2e-6),
                                              ("gumbel", "midpoint", 2048, 5e-4),
                                              ("cauchy", "midpoint", 2048, 5e-4)])
def test_two_class_closed_forms(noise, rule, k, tol):
  deltas = np.array([-4.0, -1.0, -0.2, 0.0, 0.5, 3.0])
  x = np.stack([deltas, np.zeros_like(deltas)], -1).astype(np.float32)
  p = np.asarray(pm.perturb_max_probs(x, noise, rule, k, closed_form=False))[:, 0]
  np.testing.assert_allclose(p, pm.two_class_closed_form(deltas, noise), atol=tol)


@pytest.mark.parametrize("noise,rule,k,tol", NORMALISED)
def test_four_properties(noise, rule, k, tol):
  p = np.asarray(pm.perturb_max_probs(X, noise, rule, k, closed_form=False))
  assert np.all(p >= 0)                                                  # 1. non-negative
  np.testing.assert_allclose(p.sum(-1), 1.0, atol=tol)                   # 2. sums to 1
  for row, prow in zip(X, p):                                            # 3. order-preserving
    o = np.argsort(row, kind="stable")
    assert np.all(np.diff(prow[o]) >= -1e-6)
    ties = row[:, None] == row[None, :]
    assert np.allclose(np.where(ties, prow[:, None] - prow[None, :], 0), 0, atol=1e-6)  # ties -> equal p
  p_shift = np.asarray(pm.perturb_max_probs(X + 7.5, noise, rule, k, closed_form=False))
  np.testing.assert_allclose(p_shift, p, atol=1e-5)                      # 4. shift-invariant


def test_grid_rule_is_biased_and_renormalize_fixes_sum():
  nodes, log_w = pm.quadrature("normal", "grid", 9)
  np.testing.assert_allclose(nodes, stats.norm.ppf(np.arange(1, 10) / 10))
  np.testing.assert_allclose(np.exp(log_w), 1 / 9)
  p = pm.perturb_max_probs(X, "normal", "grid", 9)
  assert np.max(np.abs(np.asarray(p).sum(-1) - 1)) > 1e-3  # the article's rule does not sum to 1
  p = pm.perturb_max_probs(X, "normal", "grid", 9, renormalize=True)
  np.testing.assert_allclose(np.asarray(p).sum(-1), 1, atol=1e-6)


def test_quadrature_weights_and_error_order():
  x, lw = pm.quadrature("normal", "gauss_hermite", 20)
  np.testing.assert_allclose(np.exp(lw).sum(), 1.0, atol=1e-12)
  np.testing.assert_allclose(np.exp(lw) @ x**2, 1.0, atol=1e-10)   # E[eps^2] = 1
  ref = np.asarray(pm.perturb_max_probs(X[:2], "normal", "gauss_hermite", 96))
  err = {r: [np.abs(np.asarray(pm.perturb_max_probs(X[:2], "normal", r, k)) - ref).max() for k in (8, 32)]
         for r in ("grid", "midpoint", "gauss_hermite")}
  assert err["gauss_hermite"][1] < err["midpoint"][1] < err["grid"][1]
  assert err["grid"][0] / err["grid"][1] > 2.5  # ~ 1/K


def test_log_prob_of_matches_full_and_margin_and_mask():
  y = np.array([0, 3, 2])
  lp = pm.perturb_max_log_probs(X, "normal")
  np.testing.assert_allclose(pm.perturb_max_log_prob_of(X, y, "normal"), lp[np.arange(3), y], rtol=1e-5)
  # margin: same as lowering mu_y by margin
  xm = X.copy(); xm[np.arange(3), y] -= 0.7
  np.testing.assert_allclose(pm.perturb_max_log_prob_of(X, y, "normal", margin=0.7),
                             pm.perturb_max_log_probs(xm, "normal")[np.arange(3), y], rtol=1e-5)
  for noise in ("gumbel", "logistic"):
    np.testing.assert_allclose(pm.perturb_max_log_prob_of(X, y, noise, margin=0.3),
                               pm.perturb_max_log_probs(np.where(np.arange(5) == y[:, None], X - .3, X),
                                                        noise)[np.arange(3), y], rtol=1e-5, atol=1e-6)
  # mask == dropping the column
  m = np.array([True, True, False, True, True])
  for noise in ("normal", "gumbel"):
    full = pm.perturb_max_probs(X, noise, mask=m)
    np.testing.assert_allclose(full[:, m], pm.perturb_max_probs(X[:, m], noise), atol=1e-6)
    assert np.all(np.asarray(full[:, 2]) == 0)
  np.testing.assert_allclose(pm.perturb_max_log_prob_of(X, np.array([0, 1, 3]), mask=m),
                             pm.perturb_max_log_probs(X[:, m])[np.arange(3), [0, 1, 2]], rtol=1e-5)


def test_monte_carlo_agrees_within_ci():
  p = np.asarray(pm.perturb_max_probs(X[:2], "logistic", "midpoint", 1024))
  s = 40000
  p_mc = np.asarray(pm.perturb_max_probs_mc(jax.random.key(1), X[:2], "logistic", s, method="argmax"))
  assert np.all(np.abs(p_mc - p) <= 4.5 * np.sqrt(p * (1 - p) / s) + 1e-6)
  pn = np.asarray(pm.perturb_max_probs(X[:2], "normal"))
  pe = np.asarray(pm.perturb_max_probs_mc(jax.random.key(2), X[:2], "normal", 20000))
  np.testing.assert_allclose(pe, pn, atol=0.01)


def test_gradients_match_finite_differences():
  x0 = X[:2, :4].astype(np.float64)
  wts = np.linspace(-1, 1, 8).reshape(2, 4)
  for noise in ("normal", "cauchy"):
    k = 24 if noise == "normal" else None   # Cauchy: its default window rule (K = 224)
    f = jax.jit(lambda z, noise=noise, k=k: jnp.sum(wts * pm.perturb_max_probs(z, noise, num_nodes=k)))
    g = np.asarray(jax.grad(f)(jnp.asarray(x0, jnp.float32)))
    g_fd = finite_difference_grad(lambda z: f(jnp.asarray(z, jnp.float32)), x0, eps=1e-2)
    np.testing.assert_allclose(g, g_fd, atol=2e-3)
  y = np.array([1, 2])
  f = jax.jit(lambda z: jnp.sum(pm.perturb_max_log_prob_of(z, y, margin=0.5)))
  g = np.asarray(jax.grad(f)(jnp.asarray(x0, jnp.float32)))
  np.testing.assert_allclose(g, finite_difference_grad(lambda z: f(jnp.asarray(z, jnp.float32)), x0, 1e-2),
                             atol=2e-3)
  np.testing.assert_allclose(g.sum(-1), 0, atol=1e-5)  # shift invariance => gradient sums to 0


def test_jit_vmap_chunking_and_far_apart_logits():
  f = jax.jit(lambda z: pm.perturb_max_log_probs(z, "normal"))
  ref = pm.perturb_max_log_probs(X, "normal")
  np.testing.assert_allclose(f(X), ref, rtol=1e-6)
  np.testing.assert_allclose(jax.vmap(f)(X[:, None]), ref[:, None], rtol=1e-6)
  np.testing.assert_allclose(pm.perturb_max_log_probs(X, "normal", chunk_size=2), ref, rtol=1e-6)
  g_chunk = jax.grad(lambda z: pm.perturb_max_log_probs(z, chunk_size=2)[:, 1].sum())(X)
  g_full = jax.grad(lambda z: pm.perturb_max_log_probs(z)[:, 1].sum())(X)
  np.testing.assert_allclose(g_chunk, g_full, rtol=1e-5, atol=1e-6)
  far = jnp.array([60.0, -60.0, 0.0])
  lp = pm.perturb_max_log_probs(far, "normal", num_nodes=64)
  assert np.all(np.isfinite(lp)) and lp[1] < -1000 and lp[2] < lp[0]
  assert np.all(np.isfinite(jax.grad(lambda z: pm.perturb_max_log_probs(z)[1])(far)))
  bf = pm.perturb_max_probs(X.astype(jnp.bfloat16), "normal")
  assert bf.dtype == jnp.float32
  np.testing.assert_allclose(bf, pm.perturb_max_probs(X), atol=2e-2)


def test_custom_noise_matches_builtin_and_samples():
  nz = pm.custom_noise(cdf=jax.scipy.special.ndtr, quantile=stats.norm.ppf, name="my_normal")
  np.testing.assert_allclose(pm.perturb_max_probs(X, nz, "midpoint", 64),
                             pm.perturb_max_probs(X, "normal", "midpoint", 64), atol=1e-6)
  nz2 = pm.custom_noise(quantile=jax.scipy.special.ndtri, log_cdf=jax.scipy.special.log_ndtr)
  e = pm.sample_noise(jax.random.key(3), nz2, (20000,))
  assert abs(float(e.mean())) < 0.05 and abs(float(e.std()) - 1) < 0.05


def test_sampling_relaxed_and_straight_through():
  x = jnp.asarray(X[0])
  s = pm.sample(jax.random.key(4), x, "normal", shape=(20000,))
  freq = np.bincount(np.asarray(s), minlength=5) / 20000
  p = np.asarray(pm.perturb_max_probs(x, "normal"))
  assert np.all(np.abs(freq - p) < 4.5 * np.sqrt(p * (1 - p) / 20000) + 1e-6)
  r = pm.relaxed_sample(jax.random.key(5), x, 0.5, "logistic", shape=(3,))
  np.testing.assert_allclose(r.sum(-1), 1, atol=1e-6)
  st = pm.straight_through_sample(jax.random.key(5), x, 0.5, "logistic", shape=(3,))
  assert set(np.unique(np.asarray(st))) <= {0.0, 1.0} and np.all(np.asarray(st).sum(-1) == 1)
  w = jnp.arange(5.0)
  g_st = jax.grad(lambda z: jnp.sum(w * pm.straight_through_sample(jax.random.key(5), z, .5, "logistic")))(x)
  g_rx = jax.grad(lambda z: jnp.sum(w * pm.relaxed_sample(jax.random.key(5), z, .5, "logistic")))(x)
  np.testing.assert_allclose(g_st, g_rx, rtol=1e-5, atol=1e-7)


def test_bad_inputs_raise_clear_errors():
  with pytest.raises(ValueError, match="non-finite"):
    pm.perturb_max_probs(np.array([0.0, np.nan, 1.0], np.float32))
  with pytest.raises(ValueError, match="non-finite"):
    pm.perturb_max_log_prob_of(np.array([[0.0, -np.inf]], np.float32), np.array([0]))
  with pytest.raises(ValueError, match="num_nodes must be >= 1"):
    pm.perturb_max_probs(X, num_nodes=0)
  with pytest.raises(ValueError, match="Unknown noise"):
    pm.perturb_max_probs(X, noise="laplace")
  with pytest.raises(ValueError, match="Unknown quadrature rule"):
    pm.perturb_max_probs(X, rule="simpson")
  with pytest.raises(ValueError, match="only applies to"):
    pm.perturb_max_probs(X, noise="cauchy", rule="gauss_hermite")
  with pytest.raises(TypeError, match="floating dtype"):
    pm.perturb_max_probs(np.array([1, 2, 3]))
  with pytest.raises(TypeError, match="integer"):
    pm.perturb_max_log_prob_of(X, np.array([0.0, 1.0, 2.0]))
  with pytest.raises(ValueError, match="labels must lie"):
    pm.perturb_max_log_prob_of(X, np.array([0, 1, 5]))
  with pytest.raises(ValueError, match="scale"):
    pm.perturb_max_probs(X, scale=0.0)
  with pytest.raises(ValueError, match="quantile"):
    pm.custom_noise(cdf=jax.scipy.special.ndtr)


def test_heads_drop_in_and_nll():
  feats = jax.random.normal(jax.random.key(6), (4, 8))
  labels = jnp.array([0, 1, 2, 1])
  soft = heads.SoftmaxHead(3)
  params = soft.init(jax.random.key(7), feats)
  gum = heads.PerturbMaxHead(3, noise="gumbel")
  np.testing.assert_allclose(gum.apply(params, feats), soft.apply(params, feats), rtol=1e-6)
  head = heads.PerturbMaxHead(3, noise="normal", learn_temperature=True, init_scale=pm.GUMBEL_STD)
  hp = head.init(jax.random.key(7), feats)
  lp = head.apply(hp, feats)
  np.testing.assert_allclose(jnp.exp(lp).sum(-1), 1, atol=1e-5)
  lpy = head.apply(hp, feats, labels, method="log_prob_of")
  np.testing.assert_allclose(lpy, lp[jnp.arange(4), labels], rtol=1e-5)
  loss = lambda p: heads.nll_loss(head.apply(p, feats), labels)
  g = jax.grad(loss)(hp)
  assert np.isfinite(float(g["params"]["log_temperature"])) and float(loss(hp)) > 0
  logits = head.apply(hp, feats, method="logits")
  np.testing.assert_allclose(heads.perturb_max_nll(logits, labels, scale=pm.GUMBEL_STD), loss(hp), rtol=1e-5)


def test_smoke_end_to_end(tmp_path, capsys):
  """The smoke variant end to end: identities, the verdict rule on every row, classify populations that
  checkpoint in the workdir and resume on a re-run without duplicating records or changing the results."""
  import json

  from research.verdict import Verdict
  from tests.helpers import run_experiment
  rec = run_experiment("perturb_max.py", "smoke", tmp_path)
  m = rec["metrics"]
  assert m["gumbel_vs_softmax_max_abs_err"] == 0.0
  assert m["normal_gh16_max_abs_err"] < 1e-5 < m["grid16_max_abs_err"]
  assert m["prop_monotonicity_violations"] == 0 and m["prop_min_p"] >= 0
  assert "classify_acc_softmax" in m and "classify_acc_normal" in m
  assert m["bench_ratio_pm_over_softmax"] > 0 and np.isfinite(m["bench_ratio_mc_equal_error_over_pm"])
  for png in ("quadrature_error_vs_K.png", "classify_accuracy.png", "classify_loss.png"):
    assert (tmp_path / png).exists()
  rows = {r["name"]: r for r in rec["rows"]}
  assert all(r["verdict"] in {v.value for v in Verdict} for r in rec["rows"])
  assert rows["Gumbel PM = softmax (max abs err, float32)"]["verdict"] == "agrees"
  # one seed: the head comparison can be no better than inconclusive, and says n=1
  cmp = rows["Fashion-MNIST test acc (points), head=normal - softmax"]
  assert cmp["verdict"] == "inconclusive" and "(n=1" in cmp["measured"]
  records = (tmp_path / "metrics.jsonl").read_text().splitlines()
  runs = {json.loads(r).get("run") for r in records}
  assert {"classify/softmax/seed0", "classify/normal/seed0"} <= runs
  capsys.readouterr()
  again = run_experiment("perturb_max.py", "smoke", tmp_path, {"parts": ("classify",)})
  assert "resumed from step 4" in capsys.readouterr().err
  assert (tmp_path / "metrics.jsonl").read_text().splitlines() == records
  assert again["metrics"]["classify_acc_normal"] == m["classify_acc_normal"]


# ----------------------------------------------------------------------------------------------------------
# method="max_quantile": the O(n K) full distribution over the quantiles of the max
# ----------------------------------------------------------------------------------------------------------
def _hard_cases(rng, n=100):
  """Hard logit vectors padded to n classes, with the mask of the real classes."""
  cases = {"n2": [0.3, -0.5], "far": [60.0, -60.0, 0.0], "ties": np.zeros(50), "n1": [1.5],
           "ties+far": np.r_[np.zeros(10), -30.0 * np.ones(5)], "n100": rng.normal(size=n) * 2,
           "n100_wide": rng.normal(size=n) * 6, "top2": np.r_[3.0, 3.0, rng.normal(size=n - 2)]}
  x = np.zeros((len(cases), n)); m = np.zeros((len(cases), n), bool)
  for r, v in enumerate(cases.values()):
    x[r, :len(v)] = v; m[r, :len(v)] = True
  return list(cases), x, m


def test_max_quantile_matches_pairwise_on_hard_cases():
  names, x, m = _hard_cases(np.random.default_rng(0))
  with jax.enable_x64(True):
    x, m = jnp.asarray(x), jnp.asarray(m)
    ref = np.asarray(pm.perturb_max_probs(x, "normal", num_nodes=64, mask=m, method="pairwise"))
    ps = {k: np.asarray(pm.perturb_max_probs(x, "normal", "gauss_hermite", k, mask=m, method="max_quantile"))
          for k in (4, 16, 40)}
    e_pair16 = np.abs(np.asarray(pm.perturb_max_probs(x, "normal", "gauss_hermite", 16, mask=m, method="pairwise"))
                      - ps[40]).max(-1)
  for r, name in enumerate(names):
    if name != "ties":  # the pairwise formula converges slowly for many ties; they are checked exactly below
      np.testing.assert_allclose(ps[16][r], ref[r], atol=2e-7, err_msg=name)
    np.testing.assert_allclose(ps[16][r].sum(), 1.0, atol=1e-12, err_msg=name)   # exactly normalised
  np.testing.assert_allclose(ps[16][0, 0], pm.two_class_closed_form(0.8, "normal"), atol=1e-8)
  for k in (4, 16):
    np.testing.assert_allclose(ps[k][2, :50], 1 / 50, rtol=1e-12)   # ties are exact for any K
  # error falls fast with K, and is far below the pairwise formula's at equal K (n = 100 rows)
  e4, e16 = (np.abs(ps[k] - ps[40]).max(-1)[5:] for k in (4, 16))
  assert np.all(e4 > 10 * e16) and np.all(e16 < 1e-7) and np.all(e_pair16[5:] > 100 * e16), (e4, e16, e_pair16)


@pytest.mark.parametrize("noise,rule,k,tol", [("logistic", "midpoint", 256, 2e-4), ("cauchy", "midpoint", 256, 1e-3),
                                              ("gumbel", "midpoint", 8, 1e-6)])
def test_max_quantile_other_noises(noise, rule, k, tol):
  x = np.concatenate([X, np.random.default_rng(1).normal(size=(3, 5)) * 2]).astype(np.float32)
  ref = (jax.nn.softmax(x) if noise == "gumbel" else
         pm.perturb_max_probs(x, noise, "midpoint", 2048, closed_form=False, method="pairwise"))
  p = pm.perturb_max_probs(x, noise, rule, k, closed_form=False, method="max_quantile")
  np.testing.assert_allclose(p, ref, atol=tol)
  np.testing.assert_allclose(np.asarray(p).sum(-1), 1, atol=1e-6)
  # a user-given noise (autodiff reverse hazard, no jax quantile: Newton from the lower bracket)
  nz = pm.custom_noise(quantile=stats.logistic.ppf, log_cdf=lambda v: -jax.nn.softplus(-v))
  if noise == "logistic":
    np.testing.assert_allclose(pm.perturb_max_probs(x, nz, rule, 64, method="max_quantile"),
                               pm.perturb_max_probs(x, noise, rule, 64, method="max_quantile"), atol=1e-6)


def test_max_quantile_properties_float32():
  rng = np.random.default_rng(2)
  x = (rng.normal(size=(4, 1000)) * np.array([[0.3], [2], [5], [20]])).astype(np.float32)
  for k, rule in ((1, None), (16, None), (9, "grid")):
    p = np.asarray(pm.perturb_max_probs(x, "normal", rule, k, method="max_quantile"))
    assert np.all(p >= 0) and np.all(np.isfinite(p))
    np.testing.assert_allclose(p.sum(-1), 1, atol=2e-6)                          # exactly normalised (any K)
    for row, prow in zip(x, p):
      o = np.argsort(row)
      assert np.all(np.diff(prow[o]) >= -1e-7)                                    # order-preserving
  np.testing.assert_allclose(pm.perturb_max_probs(x + 7.5, "normal"), p_auto := pm.perturb_max_probs(x, "normal"),
                             atol=2e-6)                                           # shift-invariant
  with jax.enable_x64(True):
    ref = np.asarray(pm.perturb_max_probs(jnp.asarray(x, jnp.float64), "normal", method="max_quantile"))
  np.testing.assert_allclose(p_auto, ref, atol=1e-6)   # float32 vs float64 (auto method for n >= 16)
  lp = pm.perturb_max_log_probs(jnp.asarray([[80.0, -80.0] + [0.0] * 30]), "normal")   # far apart: no underflow
  assert np.all(np.isfinite(lp)) and float(lp[0, 1]) < -1000


def test_max_quantile_gradients_match_finite_differences():
  rng = np.random.default_rng(3)
  with jax.enable_x64(True):
    for noise, rule in (("normal", None), ("cauchy", "midpoint")):
      mu = np.stack([rng.normal(size=6) * 2, [3.0, 3.0, 0.0, -20.0, 1.0, 3.0]])   # random; ties + far apart
      for w in (rng.normal(size=mu.shape),):
        f = jax.jit(lambda z, w=w, noise=noise, rule=rule: jnp.sum(
            w * pm.perturb_max_log_probs(z, noise, rule, 16, method="max_quantile")))
        g = np.asarray(jax.grad(f)(jnp.asarray(mu)))
        np.testing.assert_allclose(g, finite_difference_grad(lambda z: f(jnp.asarray(z)), mu, eps=1e-5),
                                   atol=1e-7)
        np.testing.assert_allclose(g.sum(-1), 0, atol=1e-10)   # shift invariance
  # float32, masked classes, through value_and_grad + vmap
  m = np.array([True, True, False, True, True])
  f = lambda z: jnp.sum(jnp.where(m, pm.perturb_max_probs(z, mask=m, method="max_quantile"), 0.0) * jnp.arange(5.0))
  g = np.asarray(jax.grad(f)(X[0]))
  np.testing.assert_allclose(g, finite_difference_grad(lambda z: f(jnp.asarray(z, jnp.float32)),
                                                       X[0].astype(np.float64), eps=1e-2), atol=2e-3)
  assert g[2] == 0


def test_max_quantile_jit_vmap_mask_bfloat16_and_method_choice():
  rng = np.random.default_rng(4)
  x = (rng.normal(size=(3, 40)) * 2).astype(np.float32)
  f = jax.jit(lambda z: pm.perturb_max_log_probs(z, method="max_quantile"))
  ref = f(x)
  np.testing.assert_allclose(jax.vmap(f)(x[:, None]), ref[:, None], rtol=1e-5, atol=1e-6)
  m = np.ones(40, bool); m[[3, 17]] = False
  pmask = pm.perturb_max_probs(x, mask=m, method="max_quantile")
  np.testing.assert_allclose(pmask[:, m], pm.perturb_max_probs(x[:, m], method="max_quantile"), atol=1e-6)
  assert np.all(np.asarray(pmask)[:, ~m] == 0)
  bf = pm.perturb_max_probs(x.astype(jnp.bfloat16), method="max_quantile")
  assert bf.dtype == jnp.float32
  np.testing.assert_allclose(bf, jnp.exp(ref), atol=2e-2)
  # method=None: pairwise for n < 16 and for the article's grid rule, max_quantile otherwise
  np.testing.assert_array_equal(pm.perturb_max_probs(X), pm.perturb_max_probs(X, method="pairwise"))
  np.testing.assert_array_equal(pm.perturb_max_log_probs(x), ref)
  assert pm._resolve_method(None, "grid", 1000) == "pairwise" and pm._resolve_method(None, None, 16) == "max_quantile"
  with pytest.raises(ValueError, match="Unknown method"):
    pm.perturb_max_probs(X, method="fast")


def test_max_quantile_monte_carlo_agrees():
  x = (np.random.default_rng(5).normal(size=(2, 30)) * 2).astype(np.float32)
  p = np.asarray(pm.perturb_max_probs(x, method="max_quantile"))
  p_mc = np.asarray(pm.perturb_max_probs_mc(jax.random.key(7), x, "normal", 4000, method="max_quantile"))
  np.testing.assert_allclose(p_mc.sum(-1), 1, atol=1e-5)
  np.testing.assert_allclose(p_mc, p, atol=0.01)
  s = 40000
  p_am = np.asarray(pm.perturb_max_probs_mc(jax.random.key(8), x, "normal", s, method="argmax"))
  assert np.all(np.abs(p_am - p) <= 4.5 * np.sqrt(p * (1 - p) / s) + 1e-6)


@pytest.mark.parametrize("noise,n", [("normal", 6), ("normal", 40), ("logistic", 6), ("cauchy", 5)])
def test_default_settings_are_what_the_calls_use(noise, n):
  """default_settings names the (method, rule, K) that a call with every argument at None runs."""
  x = jnp.asarray(np.random.default_rng(n).normal(size=(3, n)), jnp.float32)
  d = pm.default_settings(noise, n)
  np.testing.assert_array_equal(pm.perturb_max_log_probs(x, noise),
                                pm.perturb_max_log_probs(x, noise, d.rule, d.num_nodes, method=d.method))
  y = jnp.arange(3) % n
  dl = pm.default_settings(noise, n, label_only=True)
  assert dl.method == "pairwise"
  np.testing.assert_array_equal(pm.perturb_max_log_prob_of(x, y, noise),
                                pm.perturb_max_log_prob_of(x, y, noise, dl.rule, dl.num_nodes))
  assert pm.default_settings("normal", 1000) == ("max_quantile", "tail_trapezoid", pm.TAIL_TRAPEZOID_NODES)
  with pytest.raises(ValueError, match="label_only"):
    pm.default_settings("normal", 10, label_only=True, method="max_quantile")
  with pytest.raises(ValueError, match="num_classes"):
    pm.default_settings("normal", 0)
