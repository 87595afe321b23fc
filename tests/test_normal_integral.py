"""Issue 20: one accurate 1-D integral for Perturb-Max (9085) and EXACT (9098), and its normal log-CDF.

Oracles: ``scipy.special.log_ndtr`` (float64), ``scipy.integrate.quad`` of the integral in float64, the n = 2
closed form log Phi(-gap / sqrt 2), softmax for Gumbel noise, and finite differences in float64.
"""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats
from scipy import special as sp_special

from research import special
from research.distributions import perturb_max as pm
from research.losses import exact, surrogates
from research.nn import heads

_DIST = {"normal": stats.norm, "logistic": stats.logistic, "cauchy": stats.cauchy, "gumbel": stats.gumbel_r,
         "laplace": stats.laplace}


def ref_log_integral(d, noise):
  """float64 log int f(e) prod_j F(d_j + e) de by scipy.integrate.quad, split at the integrand's mode."""
  dist = _DIST[noise]
  d = np.asarray(d, np.float64)
  log_g = lambda e: dist.logpdf(e) + np.sum(dist.logcdf(d + e))
  grid = np.linspace(-80.0, 120.0, 20001)
  lg = dist.logpdf(grid) + dist.logcdf(d[:, None] + grid[None]).sum(0)
  top, mode = lg.max(), grid[lg.argmax()]
  f = lambda e: np.exp(log_g(e) - top)
  lo = integrate.quad(f, -np.inf, mode, limit=500, epsabs=0, epsrel=1e-12)[0]
  hi = integrate.quad(f, mode, np.inf, limit=500, epsabs=0, epsrel=1e-12)[0]
  return float(np.log(lo + hi) + top)


def ref_probs(mu, noise):
  mu = np.asarray(mu, np.float64)
  return np.exp([ref_log_integral(np.delete(mu[i] - mu, i), noise) for i in range(len(mu))])


def laplace_noise():
  cdf = lambda x: jnp.where(x < 0, 0.5 * jnp.exp(jnp.minimum(x, 0.0)), 1.0 - 0.5 * jnp.exp(-jnp.maximum(x, 0.0)))
  quantile = lambda u: jnp.where(u < 0.5, jnp.log(2.0 * u), -jnp.log(2.0 * (1.0 - u)))
  return pm.custom_noise(cdf=cdf, quantile=quantile, name="laplace")


MU6 = np.array([2.0, 1.0, 0.5, 0.0, -1.0, -3.0])


# ----------------------------------------------------------------------------------------------------------
# research.special.log_ndtr
# ----------------------------------------------------------------------------------------------------------
def test_log_ndtr_float32_within_a_few_ulps_of_scipy():
  x = np.concatenate([np.linspace(-40.0, 10.0, 200001), -np.logspace(-8, 1.6, 500),
                      np.logspace(-8, 1, 500)]).astype(np.float32)
  ref = sp_special.log_ndtr(x.astype(np.float64))
  got = np.asarray(special.log_ndtr(jnp.asarray(x)), np.float64)
  ulps = np.abs(got - ref) / np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)
  assert ulps.max() <= 16, (ulps.max(), x[ulps.argmax()])   # "a few ulps", also in the upper tail
  # the hazard from the same intermediate, relative 1e-6
  r = np.asarray(jax.vmap(jax.grad(special.log_ndtr))(jnp.asarray(x)), np.float64)
  r_ref = np.exp(stats.norm.logpdf(x.astype(np.float64)) - ref)
  np.testing.assert_allclose(r, r_ref, rtol=1e-6)


def test_log_ndtr_float64_full_precision_and_tails():
  with jax.enable_x64(True):
    x = np.concatenate([np.linspace(-60.0, 10.0, 100001), [-1e3, -300.0, 1e-300, -1e-300, 0.0]])
    got = np.asarray(special.log_ndtr(jnp.asarray(x)))
    np.testing.assert_allclose(got, sp_special.log_ndtr(x), rtol=5e-14, atol=0)
    np.testing.assert_array_equal(np.asarray(special.log_ndtr(jnp.asarray([-np.inf, np.inf]))), [-np.inf, 0.0])
    assert np.isnan(float(special.log_ndtr(jnp.asarray(np.nan))))


def test_log_ndtr_custom_jvp_matches_finite_differences_float64():
  with jax.enable_x64(True):
    x = jnp.asarray([-35.0, -8.0, -1.3, -1e-3, 0.0, 0.7, 4.0, 9.0])
    h = 1e-6 * jnp.maximum(1.0, jnp.abs(x))
    fd = (special.log_ndtr(x + h) - special.log_ndtr(x - h)) / (2 * h)
    g = jax.vmap(jax.grad(special.log_ndtr))(x)
    np.testing.assert_allclose(g, fd, rtol=1e-7, atol=1e-20)
    # second derivative r' = -r (x + r) (used by the mode search) through the hazard
    _, r = special.log_ndtr_and_hazard(x)
    g2 = jax.vmap(jax.grad(jax.grad(special.log_ndtr)))(x)
    np.testing.assert_allclose(g2, -r * (x + r), rtol=1e-6, atol=1e-12)


class LogNdtrVariants(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_transforms_and_dtypes(self):
    f = self.variant(lambda x: special.log_ndtr(x))
    x = jnp.linspace(-6.0, 6.0, 13)
    np.testing.assert_allclose(f(x), sp_special.log_ndtr(np.asarray(x, np.float64)), rtol=2e-6)
    np.testing.assert_allclose(jax.vmap(f)(x[:, None])[:, 0], f(x), rtol=0)
    xb = x.astype(jnp.bfloat16)
    yb = f(xb)
    assert yb.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(yb, np.float32), sp_special.log_ndtr(np.asarray(xb, np.float64)),
                               rtol=1e-2, atol=1e-2)
    g = self.variant(jax.grad(lambda x: jnp.sum(special.log_ndtr(x))))(x)
    np.testing.assert_allclose(g, np.exp(stats.norm.logpdf(np.asarray(x)) - sp_special.log_ndtr(np.asarray(x))),
                               rtol=1e-5)


# ----------------------------------------------------------------------------------------------------------
# The three reproductions of the issue (defaults in float32 against scipy.integrate.quad in float64)
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("noise", ["normal", "logistic", "cauchy", "laplace"])
def test_default_probabilities_within_1e5_of_quad(noise):
  nz = laplace_noise() if noise == "laplace" else noise
  p = np.asarray(pm.perturb_max_probs(jnp.asarray(MU6, jnp.float32), nz))
  np.testing.assert_allclose(p, ref_probs(MU6, noise), atol=1e-5, rtol=0)


def test_logistic_small_n_tail_class_is_right():
  # defect 1: the old default (pairwise midpoint) gave 0.00095 for the last class; the truth is 0.00543
  p = np.asarray(pm.perturb_max_probs(jnp.asarray(MU6, jnp.float32), "logistic"))
  assert abs(p[-1] - 0.00543) < 1e-5


def test_far_losing_log_probs():
  # defect 2: normal noise, gap 30: log p = log Phi(-30/sqrt 2) (n = 2 closed form), old K=16 gave -299.8
  lp = pm.perturb_max_log_probs(jnp.asarray([30.0, 0.0]), "normal")
  exact_lp = sp_special.log_ndtr(-30.0 / np.sqrt(2.0))
  np.testing.assert_allclose(float(lp[1]), exact_lp, rtol=1e-3)
  # Gumbel through the quadrature equals log-softmax (old: off by 692 nats)
  lg = np.asarray(pm.perturb_max_log_probs(jnp.asarray([5.0, -5.0]), "gumbel", closed_form=False))
  ls = np.asarray(jax.nn.log_softmax(jnp.asarray([5.0, -5.0])))
  np.testing.assert_allclose(lg[1], ls[1], rtol=1e-3)                  # the far-losing class, relative
  np.testing.assert_allclose(np.exp(lg), np.exp(ls), atol=1e-5)       # probabilities
  # up to 40 noise scales behind, three classes, normal and logistic; label-only path too
  mu = np.array([40.0, 0.0, -1.0])
  for noise in ("normal", "logistic"):
    ref = np.log(ref_probs(mu, noise))
    got = np.asarray(pm.perturb_max_log_probs(jnp.asarray(mu, jnp.float32), noise))
    np.testing.assert_allclose(got[1:], ref[1:], rtol=1e-3)
    got_of = pm.perturb_max_log_prob_of(jnp.asarray(mu, jnp.float32), jnp.asarray(2), noise)
    np.testing.assert_allclose(float(got_of), ref[2], rtol=1e-3)


def _orthant_ref(m):
  """float64 p = int phi(e) prod_j Phi(m_j + e) de and dp/dm_j on a fine trapezoid grid (log space)."""
  e = np.linspace(-12.0, 12.0, 24001)
  lcdf = sp_special.log_ndtr(m[:, None] + e[None])
  base = stats.norm.logpdf(e) + lcdf.sum(0)
  p = np.trapezoid(np.exp(base), e)
  hazard = np.exp(stats.norm.logpdf(m[:, None] + e[None]) - lcdf)
  grad = np.trapezoid(np.exp(base)[None] * hazard, e, axis=-1)
  return p, grad


def test_exact_default_value_and_gradient_relative_1e4():
  # defect 3: EXACT's old default (GH K=16 at 0) was ~2% off at C=100
  rng = np.random.default_rng(3)
  for C in (100, 1000):
    z = (rng.normal(size=(3, C)) * 2.0).astype(np.float32)
    y = rng.integers(0, C, 3).astype(np.int32)
    z[np.arange(3), y] = z.max(1) + rng.normal(size=3)                    # a competitive label class
    p = np.asarray(exact.exact_prob(z, y, 1.0))
    g = np.asarray(jax.grad(lambda v: jnp.sum(exact.exact_prob(v, y, 1.0)))(jnp.asarray(z)))
    for b in range(3):
      d = np.delete(z[b, y[b]] - z[b], y[b]).astype(np.float64)
      p_ref, dp_dd = _orthant_ref(d)
      g_ref = -np.insert(dp_dd, y[b], 0.0)
      g_ref[y[b]] = dp_dd.sum()
      np.testing.assert_allclose(p[b], p_ref, rtol=1e-4)
      assert np.max(np.abs(g[b] - g_ref)) <= 1e-4 * np.max(np.abs(g_ref)), C


# ----------------------------------------------------------------------------------------------------------
# The shared integral itself
# ----------------------------------------------------------------------------------------------------------
def test_log_integral_adaptive_vs_fixed_and_user_forced_rules():
  d = jnp.asarray([[-3.0, -1.0, 2.0], [-30.0, 5.0, 6.0]])
  ref = [ref_log_integral(np.asarray(r), "normal") for r in np.asarray(d)]
  with jax.enable_x64(True):
    got = np.asarray(pm.log_integral(jnp.asarray(d, jnp.float64), "normal", 12))
    np.testing.assert_allclose(got, ref, rtol=1e-8)
    fixed = np.asarray(pm.log_integral(jnp.asarray(d, jnp.float64), "normal", 12, adaptive=False))
    assert abs(fixed[1] - ref[1]) > 1.0          # centred at 0 the far-behind row is off by nats
  # the article's grid and any K can still be forced
  p_grid = pm.perturb_max_probs(jnp.asarray(MU6, jnp.float32), "normal", "grid", 16)
  assert abs(float(jnp.sum(p_grid)) - 1.0) > 1e-3   # the grid rule's bias (weights 1/K on a 1/(K+1) grid)
  p8 = pm.perturb_max_probs(jnp.asarray(MU6, jnp.float32), "normal", "adaptive", 3)
  assert p8.shape == (6,)


def _trapezoid_log_integral(d):
  """float64 log int phi(t) prod_j Phi(d_j + t) dt on a fine grid around the mode (many factors: quad is slow)."""
  t = np.linspace(-15.0, 45.0, 60001)
  lg = stats.norm.logpdf(t) + sp_special.log_ndtr(d[:, None] + t[None]).sum(0)
  top = lg.max()
  return float(np.log(np.trapezoid(np.exp(lg - top), t)) + top)


def test_skewed_adaptive_rule_default_k_on_products_of_many_factors():
  # the product of many factors is Gumbel-like (skewed); the skewed node map keeps the default K = 10 within
  # 1e-5 relative, where the unskewed mode-centred rule at K = 12 was 1e-4 to 1e-3 off (float64)
  rng = np.random.default_rng(7)
  x = rng.normal(size=1000) * 2.0
  rows = [np.full(999, -3.0), np.delete(x[0] - x, 0), np.delete(x.max() - x, x.argmax()),
          np.delete(x.min() - x, x.argmin())]
  ref = np.array([_trapezoid_log_integral(r) for r in rows])
  k = pm.default_settings("normal", 1000, label_only=True).num_nodes
  with jax.enable_x64(True):
    d = jnp.asarray(np.stack(rows))
    got = np.asarray(pm.log_integral(d, "normal", k))
  np.testing.assert_allclose(np.exp(got - ref), 1.0, atol=1e-5)
  assert k == 10


class LossVariants(chex.TestCase):
  """Bad inputs: eager calls raise; under jit invalid labels give NaN (the training loop's guard stops)."""

  @chex.variants(with_jit=True, without_jit=True)
  def test_out_of_range_labels(self):
    z = jnp.asarray(np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32))
    bad = jnp.asarray([0, 1, 7], jnp.int32)
    lp = jax.nn.log_softmax(z)
    fns = {"exact": lambda z, y: exact.exact_loss(z, y), "hinge": lambda z, y: surrogates.hinge(z, y),
           "nll": lambda z, y: heads.nll_loss(jax.nn.log_softmax(z), y)}
    for name, fn in fns.items():
      f = self.variant(fn)
      if self.variant.type == chex.ChexVariantType.WITH_JIT:
        assert np.isnan(float(f(z, bad))), name
      else:
        with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
          f(z, bad)
    good = jnp.asarray([0, 1, 3], jnp.int32)
    assert np.isfinite(float(self.variant(lambda z, y: exact.exact_loss(z, y))(z, good)))
    np.testing.assert_allclose(self.variant(heads.nll_loss)(lp, good),
                               -np.mean(np.asarray(lp)[np.arange(3), np.asarray(good)]), rtol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_empty_batch_raises(self):
    f = self.variant(lambda z, y: exact.exact_loss(z, y))
    with pytest.raises(ValueError, match="empty batch"):
      f(jnp.zeros((0, 4), jnp.float32), jnp.zeros((0,), jnp.int32))

  @chex.variants(with_jit=True, without_jit=True)
  def test_distribution_transforms(self):
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 5)).astype(np.float32))
    f = self.variant(lambda x: pm.perturb_max_log_probs(x, "normal"))
    np.testing.assert_allclose(jnp.sum(jnp.exp(f(x)), -1), 1.0, atol=1e-5)
    g = self.variant(jax.grad(lambda x: jnp.sum(pm.perturb_max_log_prob_of(x, jnp.asarray([0, 3])))))(x)
    assert np.all(np.isfinite(np.asarray(g)))
    np.testing.assert_allclose(jnp.sum(g, -1), 0.0, atol=1e-5)   # shift invariance
    fb = pm.perturb_max_log_probs(x.astype(jnp.bfloat16), "normal")
    assert fb.dtype == jnp.float32 and np.all(np.isfinite(np.asarray(fb)))



def test_default_max_quantile_agrees_with_adaptive_pairwise_for_every_noise():
  # n >= 16: the default method is max-quantile (Gauss-Hermite levels; Gauss-Legendre for Cauchy)
  x = jnp.asarray(np.random.default_rng(4).normal(size=(2, 20)).astype(np.float32))
  for noise in ("logistic", "cauchy", "gumbel"):
    p = np.asarray(pm.perturb_max_probs(x, noise, closed_form=False))
    pp = np.asarray(pm.perturb_max_probs(x, noise, closed_form=False, method="pairwise"))
    np.testing.assert_allclose(p, pp, atol=1e-5, err_msg=noise)


def test_default_max_quantile_far_behind_classes_relative_1e3():
  # n >= 16 uses max-quantile; its Gauss-Hermite levels (|t| <= 6.6) missed classes far behind the winner
  # (gap 40: log p = -578 for -402). Reference: scipy quad per class in float64.
  rng = np.random.default_rng(0)
  mu = np.concatenate([[40.0], rng.normal(size=15)])
  ref = np.array([ref_log_integral(np.delete(mu[i] - mu, i), "normal") for i in range(len(mu))])
  got = np.asarray(pm.perturb_max_log_probs(jnp.asarray(mu, jnp.float32), "normal"))
  np.testing.assert_allclose(got[1:], ref[1:], rtol=1e-3)
  np.testing.assert_allclose(np.exp(got), np.exp(ref), atol=1e-5, rtol=0)
  # a wide spread of logits: every gap from 0 to 40 at once
  mu = np.linspace(20.0, -20.0, 16) + rng.normal(size=16) * 0.3
  ref = np.array([ref_log_integral(np.delete(mu[i] - mu, i), "normal") for i in range(len(mu))])
  got = np.asarray(pm.perturb_max_log_probs(jnp.asarray(mu, jnp.float32), "normal"))
  np.testing.assert_allclose(got[1:], ref[1:], rtol=1e-3)
  np.testing.assert_allclose(np.exp(got), np.exp(ref), atol=1e-5, rtol=0)


@pytest.mark.parametrize("mu", [[10.0, 0.0, -1.0], [40.0, 0.0, -1.0]])
def test_default_cauchy_far_behind_classes(mu):
  # Cauchy noise: a class 40 scales behind still has p ~ 0.012 (heavy tails); the old default (Gauss-Legendre
  # in u, K = 64) was off by 1.1e-3 in p (4e-2 relative on log p) at a gap of 40
  mu = np.asarray(mu)
  ref = np.log(ref_probs(mu, "cauchy"))
  got = np.asarray(pm.perturb_max_log_probs(jnp.asarray(mu, jnp.float32), "cauchy"))
  np.testing.assert_allclose(got[1:], ref[1:], rtol=1e-3)
  np.testing.assert_allclose(np.exp(got), np.exp(ref), atol=1e-5, rtol=0)


def test_default_cauchy_max_quantile_far_and_transforms():
  # n >= 16: Cauchy's full distribution over the max with the shared window nodes (was Gauss-Legendre levels
  # K = 64: 4e-4 off in p for a class 40 scales behind); agrees with the per-class window, jit/vmap/grad/bf16
  mu = np.concatenate([[40.0], np.random.default_rng(0).normal(size=15)])
  ref = np.array([ref_log_integral(np.delete(mu[i] - mu, i), "cauchy") for i in (0, 1, 15)])
  got = np.asarray(pm.perturb_max_log_probs(jnp.asarray(mu, jnp.float32), "cauchy"))[[0, 1, 15]]
  np.testing.assert_allclose(got[1:], ref[1:], rtol=1e-3)
  np.testing.assert_allclose(np.exp(got), np.exp(ref), atol=1e-5, rtol=0)
  x = jnp.asarray(np.random.default_rng(1).uniform(-20, 20, (2, 18)).astype(np.float32))
  f = jax.jit(jax.vmap(lambda v: pm.perturb_max_log_probs(v, "cauchy")))
  np.testing.assert_allclose(f(x), pm.perturb_max_log_probs(x, "cauchy", method="pairwise"), atol=2e-5)
  g = jax.grad(lambda v: pm.perturb_max_log_probs(v, "cauchy")[0, 3])(x)
  gp = jax.grad(lambda v: pm.perturb_max_log_probs(v, "cauchy", method="pairwise")[0, 3])(x)
  np.testing.assert_allclose(g, gp, atol=1e-5)
  lb = pm.perturb_max_log_probs(x.astype(jnp.bfloat16), "cauchy")
  assert lb.dtype == jnp.float32 and np.all(np.isfinite(np.asarray(lb)))
  # normal max-quantile with the tail levels under bfloat16 and vmap
  lb = pm.perturb_max_log_probs(x.astype(jnp.bfloat16), "normal")
  assert np.all(np.isfinite(np.asarray(lb)))
  np.testing.assert_allclose(jax.vmap(lambda v: pm.perturb_max_log_probs(v, "normal"))(x),
                             pm.perturb_max_log_probs(x, "normal"), rtol=1e-5, atol=1e-6)
