"""chex.variants (with and without jit) for the accuracy surrogates and the optax transforms of 9098 / 9344.

Each surrogate is checked against a numpy transcription of its equation on a batch of any shape; invalid
labels raise eagerly and give NaN (never a finite wrong value) under jit. The transforms are checked
against their update equations over a few steps.
"""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.losses import surrogates as S
from research.optim import grad_normalizer as GN
from research.optim import su_rules as SR


def _deltas(z, y):
  zy = np.take_along_axis(z, y[..., None], -1)
  d = zy - z
  keep = np.arange(z.shape[-1]) != y[..., None]
  return d[keep].reshape(z.shape[:-1] + (z.shape[-1] - 1,))


def _sig(x):
  return 1.0 / (1.0 + np.exp(-x))


def _logp(z):
  m = z.max(-1, keepdims=True)
  return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


REF = {  # numpy transcriptions of the module docstring's table (per sample, then the mean)
    "ce": lambda z, y: -np.take_along_axis(_logp(z), y[..., None], -1).mean(),
    "hinge": lambda z, y: np.maximum(0, 1.0 - _deltas(z, y)).mean(),
    "sigmoid": lambda z, y: (1 - _sig(_deltas(z, y))).sum(-1).mean(),
    "beta_bernoulli": lambda z, y: (-np.log(0.25 + 0.5 * _sig(_deltas(z, y)))).sum(-1).mean(),
    "polynomial": lambda z, y: (lambda d: (d ** 3 / 4 - 3 * d / 4 + 0.5).sum(-1).mean())(
        np.clip(_deltas(z, y), -1, 1)),
    "polyloss": lambda z, y: (lambda lp: (-lp + (1 - np.exp(lp))).mean())(
        np.take_along_axis(_logp(z), y[..., None], -1)),
    "smoothed_accuracy": lambda z, y: 1 - np.exp(np.take_along_axis(_logp(z), y[..., None], -1)).mean(),
}


class SurrogateTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_equations_any_batch_shape(self):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(2, 3, 5)).astype(np.float32) * 2
    y = rng.integers(0, 5, size=(2, 3))
    for name, fn in S.SURROGATES.items():
      got = self.variant(fn)(jnp.asarray(z), jnp.asarray(y))
      chex.assert_shape(got, ())
      np.testing.assert_allclose(float(got), REF[name](z.astype(np.float64), y), rtol=2e-5, err_msg=name)

  @chex.variants(with_jit=True, without_jit=True)
  def test_gradients_are_finite(self):
    z = jnp.linspace(-2.0, 2.0, 12).reshape(3, 4)
    y = jnp.array([0, 3, 1])
    for name, fn in S.SURROGATES.items():
      g = self.variant(jax.grad(fn))(z, y)
      chex.assert_shape(g, z.shape)
      chex.assert_tree_all_finite(g)

  def test_out_of_range_labels_raise_eagerly_and_give_nan_under_jit(self):
    z = jnp.zeros((2, 4))
    bad = jnp.array([1, 4])
    for name, fn in S.SURROGATES.items():
      with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
        fn(z, bad)
      assert np.isnan(float(jax.jit(fn)(z, bad))), name

  def test_empty_batch_raises(self):
    for name, fn in S.SURROGATES.items():
      with pytest.raises(ValueError, match="batch is empty"):
        fn(jnp.zeros((0, 3)), jnp.zeros((0,), jnp.int32))

  def test_nan_logits_raise_eagerly_and_give_nan_under_jit(self):
    z = jnp.array([[0.0, jnp.nan, 1.0]])
    y = jnp.array([0])
    for name, fn in S.SURROGATES.items():
      with pytest.raises(ValueError, match="non-finite"):
        fn(z, y)
      assert np.isnan(float(jax.jit(fn)(z, y))), name


class TransformTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_gradient_normalizer_equation(self):
    tx = GN.gradient_normalizer(momentum=0.9, floor=0.01)
    params = {"w": jnp.ones((3,)), "b": jnp.ones(())}
    state = tx.init(params)
    update = self.variant(tx.update)
    ema = None
    for t, scale in enumerate([2.0, 0.5, 1e-4]):
      g = {"w": scale * jnp.array([1.0, 2.0, 2.0]), "b": jnp.asarray(0.0)}
      out, state = update(g, state, params)
      norm = 3.0 * scale
      ema = norm if t == 0 else 0.9 * ema + 0.1 * norm          # ema_1 = ||g_1||, then the EMA
      np.testing.assert_allclose(out["w"], np.array([1.0, 2.0, 2.0]) * scale / max(ema, 0.01), rtol=1e-5)
      np.testing.assert_allclose(float(state.ema_norm), ema, rtol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_su_rules_equation(self):
    alpha0, sigma, half_life = 0.01, 0.5, 10.0
    tx = SR.su_rules(alpha0, sigma, schedule="r3", half_life=half_life)
    theta = {"w": jnp.array([[1.0, -2.0], [0.5, 3.0]])}
    state = tx.init(theta)
    update = self.variant(tx.update)
    kappa = 1.0 / half_life
    for t in range(3):
      u = {"w": jnp.array([[1.0, 2.0], [-3.0, 4.0]]) * (t + 1)}
      out, state = update(u, state, theta)
      uw = np.asarray(u["w"])
      rms = np.sqrt(np.mean(uw ** 2))
      s = 1.0 / (kappa * t + 1.0)                               # R3 factor at the 0-based step t
      want = -s * (alpha0 * sigma * uw / rms + alpha0 ** 2 / 2 * np.asarray(theta["w"]))
      np.testing.assert_allclose(out["w"], want, rtol=1e-5)
      # the update's direction part has RMS alpha0 * sigma * s(t), whatever the scale of u
      np.testing.assert_allclose(np.sqrt(np.mean((want + s * alpha0 ** 2 / 2 * np.asarray(theta["w"])) ** 2)),
                                 alpha0 * sigma * s, rtol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_adam_su_and_lion_su_update_rms(self):
    params = {"w": jnp.linspace(-1.0, 1.0, 8).reshape(2, 4)}
    g = {"w": jnp.arange(8.0).reshape(2, 4) - 3.5}
    for make in (SR.adam_su, SR.lion_su):
      tx = make(1e-2, 0.5, schedule="constant", q=1e6)           # tiny decay: the RMS is alpha0 * sigma
      state = tx.init(params)
      out, _ = self.variant(tx.update)(g, state, params)
      np.testing.assert_allclose(float(jnp.sqrt(jnp.mean(out["w"] ** 2))), 1e-2 * 0.5, rtol=1e-3)
      chex.assert_trees_all_equal_shapes_and_dtypes(out, params)
