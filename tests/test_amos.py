"""Tests for Amos (jestimator oracle, invariants, convergence), the rule builders, Su's rules and memory."""
from __future__ import annotations

import importlib.util
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from research.optim import amos as A
from research.optim import amos_oracle
from research.optim import memory
from research.optim import rules
from research.optim import su_rules as S


# ------------------------------------------------------------------------------------------------ oracle
@pytest.fixture(scope="module")
def oracle():
  mod = amos_oracle.load_oracle()  # only imports flax, jax, optax (the package __init__ fails on new JAX)
  if mod is None:
    pytest.skip("jestimator 0.3.3 not available (pip install jestimator==0.3.3 --no-deps)")
  return mod


def test_oracle_identity_float64(oracle):
  """>= 200 steps in float64: scalar / factored / full slots, schedules, momentum, clipping, extra_l2,
  non-default d/c coefficients and a non-trivial eta_fn agree with jestimator to 1e-12 (in fact bitwise)."""
  found = amos_oracle.oracle_diffs(list(amos_oracle.ORACLE_CASES), steps=200, oracle=oracle)
  for name, r in found.items():
    assert r["float64"] == 1.0, name
    assert r["moved"] > 1e-2, name  # the trajectory is non-trivial
    assert r["max_abs_diff"] <= 1e-12, (name, r)


def _scan_updates(tx, params, grads):
  """Applies ``tx`` over the stacked ``grads`` (leading step axis); returns the final params and state."""
  def step(carry, g):
    p, s = carry
    u, s = tx.update(g, s, p)
    return (optax.apply_updates(p, u), s), None
  return jax.jit(lambda p, gs: jax.lax.scan(step, (p, tx.init(p)), gs)[0])(params, grads)


def test_fused_clip_momentum_is_the_official_chain_bitwise_without_full_size_temporaries():
  """``amos`` fuses the element-wise clipping into the Amos step; it must equal the official wrapper
  ``chain(clip, scale_by_amos, ema)`` bit for bit (float32 and bfloat16 gradients, injected hyperparameters),
  with the same state tree, and its compiled step must not write a clipped copy of the gradient."""
  eta = lambda n, s: 0.5 if n[-1] == "b" else 0.1
  shape_fn = lambda n, s: {"k": (1, s[-1]), "e": (s[0], 1), "b": ()}[n[-1]]
  params = {"k": 0.1 * jax.random.normal(jax.random.key(0), (64, 48)),
            "e": jax.random.normal(jax.random.key(1), (40, 16)), "b": jnp.zeros(48)}
  c = 32 ** 0.5  # the README's clip; not a "round" float32 value
  kw = dict(learning_rate=optax.linear_schedule(0.0, 0.05, 4), eta_fn=eta, shape_fn=shape_fn, beta=0.98)
  chain = optax.chain(optax.clip(c), A.scale_by_amos(**kw), optax.ema(0.9, debias=False))
  fused = A.amos(momentum=0.9, clip_value=c, **kw)
  assert jax.tree_util.tree_structure(fused.init(params)) == jax.tree_util.tree_structure(chain.init(params))
  for dtype in (jnp.bfloat16,):
    grads = jax.tree_util.tree_map(  # about a third of the entries beyond the clip, some exactly at it
        lambda x: (6.0 * jax.random.normal(jax.random.key(x.size), (6,) + x.shape)).at[:, 0].set(c).astype(dtype),
        params)
    got, want = _scan_updates(fused, params, grads), _scan_updates(chain, params, grads)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # float32 gradients, with injected (traced float32) clip and momentum (and a constant xi: inject_hyperparams
  # would evaluate a schedule at its own 0-based count).
  grads = jax.tree_util.tree_map(lambda x: x.astype(jnp.float32), grads)
  kw["learning_rate"] = 0.05
  inj = optax.inject_hyperparams(A.amos, static_args=("eta_fn", "shape_fn"))(momentum=0.9, clip_value=c, **kw)
  got = _scan_updates(inj, params, grads)
  want = _scan_updates(optax.chain(optax.clip(c), A.scale_by_amos(**kw), optax.ema(0.9, debias=False)),
                       params, grads)
  for a, b in zip(jax.tree_util.tree_leaves(got[0]), jax.tree_util.tree_leaves(want[0])):
    # (traced 1 - momentum rounds differently from the constant-folded one)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-7)
  # No full-size temporaries: the reduction reads the gradient, the update is one fused loop (per leaf).
  big = {"k": jax.ShapeDtypeStruct((512, 1024), jnp.float32)}

  def one_step(p, s, g):
    u, s = fused.update(g, s, p)
    return optax.apply_updates(p, u), s
  compiled = jax.jit(one_step, donate_argnums=(0, 1)).lower(
      big, jax.eval_shape(fused.init, big), big).compile()
  analysis = compiled.memory_analysis()
  if analysis is None:
    pytest.skip("no memory analysis on this backend")
  assert analysis.temp_size_in_bytes < 512 * 1024 * 4 // 8, analysis.temp_size_in_bytes


# ----------------------------------------------------------------------------------------- invariants
def _np_amos_reference(grads, theta, xi, eta, beta=0.999, d_coef=0.25, c_coef=0.25, eps=2.0**-125):
  """Float64 numpy transcription of spec section 3.7 for one tensor with scalar slots."""
  v = b = 0.0
  gammas, bs, deltas = [], [], []
  for t, g in enumerate(grads, start=1):
    g2 = float(np.mean(g * g))
    v = beta * v + (1 - beta) * g2
    r = (1 - beta**t) / max(v, eps)
    gamma = xi**2 * r * g2 / math.sqrt(1 + c_coef * math.sqrt(xi) * b)
    d = 1 / (1 + d_coef * math.sqrt(xi * eta) * b)
    delta = -d * (xi * eta * math.sqrt(r) * g + 0.5 * gamma * theta)
    theta = theta + delta
    b = b + gamma * (1 + b)
    gammas.append(gamma); bs.append(b); deltas.append(delta)
  return np.array(gammas), np.array(bs), deltas


def test_invariants_first_step_product_monotone_zero_grad_scale():
  xi, eta = 0.05, 0.7
  rng = np.random.default_rng(0)
  theta0 = rng.normal(size=(6, 5)).astype(np.float32)
  grads = [rng.normal(size=(6, 5)).astype(np.float32) * (1 + 3 * (t % 7)) for t in range(60)]
  tx = A.scale_by_amos(xi, lambda n, s: eta, shape_fn=lambda n, s: (1, 5))
  p = {"w": jnp.asarray(theta0)}
  state = tx.init(p)
  upd = jax.jit(tx.update)
  # Step 1: gamma_1 = b_1 = xi^2, delta_1 = -xi eta g / sqrt(mean_col g^2) - xi^2/2 theta_0.
  u1, s1 = upd({"w": jnp.asarray(grads[0])}, state, p)
  col_rms = np.sqrt(np.mean(grads[0] ** 2, axis=0, keepdims=True))
  np.testing.assert_allclose(np.asarray(s1.b["w"]), xi**2, rtol=1e-4)  # float32 (1 - beta^1)
  expect = -xi * eta * grads[0] / col_rms - 0.5 * xi**2 * theta0
  np.testing.assert_allclose(np.asarray(u1["w"]), expect, rtol=1e-4, atol=1e-7)
  grad_part = np.asarray(u1["w"]) + 0.5 * xi**2 * theta0
  np.testing.assert_allclose(np.sqrt(np.mean(grad_part**2, axis=0)), xi * eta, rtol=1e-4)
  # 1 + b_t = prod(1 + gamma_i), b non-decreasing, and the numbers match the numpy transcription.
  p, state, bs = {"w": jnp.asarray(theta0)}, tx.init(p), []
  tx_s = A.scale_by_amos(xi, lambda n, s: eta, shape_fn=lambda n, s: ())
  state = tx_s.init(p)
  upd_s = jax.jit(tx_s.update)
  for g in grads:
    u, state = upd_s({"w": jnp.asarray(g)}, state, p)
    p = optax.apply_updates(p, u)
    bs.append(float(state.b["w"]))
  gammas, bs_ref, _ = _np_amos_reference([g.astype(np.float64) for g in grads], theta0.astype(np.float64), xi, eta)
  np.testing.assert_allclose(1 + bs_ref, np.cumprod(1 + gammas), rtol=1e-12)
  np.testing.assert_allclose(bs, bs_ref, rtol=1e-4)
  assert np.all(np.diff(bs) >= 0)
  # Zero gradient: delta = -d * extra_l2 * theta, and v keeps decaying.
  tx_l2 = A.scale_by_amos(xi, lambda n, s: eta, extra_l2=0.01, beta=0.9)
  st = tx_l2.init(p)
  _, st = tx_l2.update({"w": jnp.asarray(grads[1])}, st, p)
  u0, st2 = tx_l2.update({"w": jnp.zeros((6, 5))}, st, p)
  d = 1 / (1 + 0.25 * np.sqrt(xi * eta) * np.asarray(st.b["w"]))
  np.testing.assert_allclose(np.asarray(u0["w"]), -d * 0.01 * np.asarray(p["w"]), rtol=1e-5)
  np.testing.assert_allclose(np.asarray(st2.v["w"]), 0.9 * np.asarray(st.v["w"]), rtol=1e-6)
  # Scale invariance: multiplying the loss by 1000 leaves updates unchanged (no clipping).
  st_a, st_b = tx.init(p), tx.init(p)
  for g in grads[:5]:
    ua, st_a = upd({"w": jnp.asarray(g)}, st_a, p)
    ub, st_b = upd({"w": jnp.asarray(1000 * g)}, st_b, p)
    np.testing.assert_allclose(np.asarray(ua["w"]), np.asarray(ub["w"]), rtol=1e-5, atol=1e-8)


def _minimize(loss, x0, tx, steps=10_000):
  def step(carry, _):
    x, s = carry
    u, s = tx.update(jax.grad(loss)(x), s, x)
    return (optax.apply_updates(x, u), s), None
  (x, _), _ = jax.lax.scan(step, (x0, tx.init(x0)), None, length=steps)
  return x


def test_official_convergence_parabola_and_rosenbrock():
  """jestimator's own tests: both reach the target to 7 decimals after 10k steps."""
  target = jnp.array([1.0, -1.0, 1.0])
  tx = A.amos(1.0, lambda n, s: 1.0, shape_fn=lambda n, s: ())
  x = jax.jit(lambda: _minimize(lambda x: jnp.sum(jnp.square(x - target)), jnp.array([-1.0, 10.0, 1.0]), tx))()
  np.testing.assert_array_almost_equal(np.asarray(x), np.asarray(target), decimal=7)

  def rosenbrock(x):
    return jnp.square(1 - x[0]) + 100.0 * jnp.square(x[1] - jnp.square(x[0]))
  tx = A.amos(0.5, lambda n, s: 1.0, shape_fn=lambda n, s: (), beta=0.5, clip_value=1.0, momentum=0.9)
  x = jax.jit(lambda: _minimize(rosenbrock, jnp.array([0.0, 0.0]), tx))()
  np.testing.assert_array_almost_equal(np.asarray(x), np.ones(2), decimal=7)


# --------------------------------------------------------------------------------------- composition
def test_any_pytree_chain_inject_multisteps_and_bf16():
  eta = lambda n, s: 0.5
  # Any pytree: lists / tuples; paths are ('0',), ('1', '0'), ...
  seen = []
  tx = A.amos(0.1, lambda n, s: seen.append(n) or 0.5, shape_fn=lambda n, s: ())
  p = [jnp.ones((2, 3)), (jnp.zeros(3), {"a": jnp.ones(1)})]
  u, _ = tx.update(jax.tree_util.tree_map(jnp.ones_like, p), tx.init(p), p)
  assert jax.tree_util.tree_structure(u) == jax.tree_util.tree_structure(p)
  assert ("1", "1", "a") in seen
  g = {"w": jnp.array([[0.5, -2.0], [1.0, 3.0]])}
  params = {"w": jnp.array([[1.0, 2.0], [3.0, 4.0]])}
  base = A.amos(0.1, eta, beta=0.9, momentum=0.8)
  ub, _ = base.update(g, base.init(params), params)
  # chain with an identity stage
  ch = optax.chain(optax.identity(), base)
  uc, _ = ch.update(g, ch.init(params), params)
  np.testing.assert_allclose(uc["w"], ub["w"], rtol=1e-6)
  # inject_hyperparams (eta_fn / shape_fn static)
  inj = optax.inject_hyperparams(A.amos, static_args=("eta_fn", "shape_fn"))(
      learning_rate=0.1, eta_fn=eta, beta=0.9, momentum=0.8)
  ui, si = jax.jit(inj.update)(g, inj.init(params), params)
  np.testing.assert_allclose(ui["w"], ub["w"], rtol=1e-6)
  assert float(si.hyperparams["learning_rate"]) == pytest.approx(0.1)
  # MultiSteps(k=2): one update equal to Amos on the mean gradient
  ms = optax.MultiSteps(base, every_k_schedule=2)
  st = ms.init(params)
  u0, st = ms.update(g, st, params)
  assert float(jnp.max(jnp.abs(u0["w"]))) == 0.0
  g2 = {"w": -g["w"] + 1.0}
  u1, st = ms.update(g2, st, params)
  um, _ = base.update({"w": (g["w"] + g2["w"]) / 2}, base.init(params), params)
  np.testing.assert_allclose(u1["w"], um["w"], rtol=1e-5)
  # bf16 params: slots in float32, update in bf16
  pb = {"w": params["w"].astype(jnp.bfloat16)}
  sb = base.init(pb)
  assert jax.tree_util.tree_leaves(sb[0].v)[0].dtype == jnp.float32
  ubf, _ = base.update(jax.tree_util.tree_map(lambda x: x.astype(jnp.bfloat16), g), sb, pb)
  assert ubf["w"].dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(ubf["w"])))


def test_bad_inputs_name_the_parameter():
  params = {"enc": {"kernel": jnp.ones((4, 3))}}
  with pytest.raises(ValueError, match="learning_rate"):
    A.amos(0.0, lambda n, s: 1.0)
  with pytest.raises(ValueError, match="learning_rate"):
    A.amos(-1e-3, lambda n, s: 1.0)
  tx = A.amos(0.1, lambda n, s: -1.0)
  with pytest.raises(ValueError, match="enc/kernel"):
    tx.update(params, tx.init(params), params)
  tx = A.amos(0.1, lambda n, s: 1.0, shape_fn=lambda n, s: (3, 1))
  with pytest.raises(ValueError, match=r"enc/kernel.*does not broadcast"):
    tx.init(params)
  tx = A.amos(0.1, lambda n, s: 1.0, shape_fn=lambda n, s: (1, 3, 1))
  with pytest.raises(ValueError, match="enc/kernel"):
    tx.init(params)
  tx = A.amos(0.1, rules.eta_fn([(r".*bias$", 0.5)]))
  with pytest.raises(ValueError, match=r"No eta rule matches parameter 'enc/kernel' of shape \(4, 3\).*catch-all"):
    tx.update(params, tx.init(params), params)
  tx = A.amos(0.1, lambda n, s: 1.0)
  with pytest.raises(ValueError, match="params"):
    tx.update(params, tx.init(params))
  with pytest.raises(ValueError, match="beta"):
    A.amos(0.1, lambda n, s: 1.0, beta=1.0)
  with pytest.raises(ValueError, match="half_life"):
    S.su_rules(1e-3, 0.5, schedule="r3")
  with pytest.raises(ValueError, match="alpha0"):
    S.su_rules(0.0, 0.5, schedule="constant")


# ---------------------------------------------------------------------------------------------- rules
def test_rules_first_match_anchored_expressions_and_ready_made_sets():
  fn = rules.params_fn([(r".*bias$", 0.5), (r"Dense_0/.*", "sqrt(2 / SHAPE[0])"), (r".*", 1.0)])
  assert fn(("params", "Dense_0", "bias"), (3,)) == 0.5                    # first match wins
  assert fn(("params", "Dense_0", "kernel"), (8, 3)) == 1.0                 # anchored at the start
  assert fn(("Dense_0", "kernel"), (8, 3)) == pytest.approx(0.5)
  assert rules.evaluate("(1,) * (len(SHAPE) - 1) + (SHAPE[-1],)", (3, 3, 2, 8)) == (1, 1, 1, 8)
  assert rules.evaluate("prod(SHAPE[:-1])", (3, 3, 2, 8)) == 18
  with pytest.raises(ValueError, match="Cannot evaluate"):
    rules.evaluate("__import__('os')", (1,))
  # jestimator README MNIST CNN recipe
  eta = rules.eta_fn(rules.mnist_cnn_eta_rules())
  shp = rules.shape_fn(rules.mnist_cnn_shape_rules())
  assert eta(("Conv_0", "kernel"), (3, 3, 1, 32)) == pytest.approx(math.sqrt(8 / 9))
  assert eta(("Conv_1", "kernel"), (3, 3, 32, 64)) == pytest.approx(math.sqrt(2 / 288))
  assert eta(("Dense_0", "kernel"), (3136, 256)) == pytest.approx(math.sqrt(2 / 3136))
  assert eta(("Dense_1", "kernel"), (256, 10)) == pytest.approx(math.sqrt(1 / 256))
  assert eta(("Dense_1", "bias"), (10,)) == 0.5
  assert shp(("Conv_1", "kernel"), (3, 3, 32, 64)) == (1, 1, 1, 64)
  assert shp(("Dense_0", "kernel"), (3136, 256)) == (1, 256)
  assert shp(("Dense_1", "kernel"), (256, 10)) == ()
  # BERT rules
  be = rules.eta_fn(rules.bert_eta_rules(768, 3072))
  bs = rules.shape_fn(rules.bert_shape_rules())
  assert be(("params", "layer_0", "attention_norm", "scale"), (768,)) == 1.0
  assert be(("params", "layer_0", "mlp", "wo", "bias"), (768,)) == 0.5
  assert be(("params", "token_embed", "embedding"), (30522, 768)) == pytest.approx(math.sqrt(2 / 768))
  assert be(("params", "layer_0", "mlp", "wo", "kernel"), (3072, 768)) == pytest.approx(math.sqrt(2 / 3072))
  assert be(("params", "layer_0", "attn", "query", "kernel"), (768, 12, 64)) == pytest.approx(math.sqrt(1 / 768))
  assert bs(("params", "layer_0", "attn", "query", "kernel"), (768, 12, 64)) == (1, 1, 64)
  assert bs(("params", "token_embed", "embedding"), (30522, 768)) == (30522, 1)
  assert bs(("params", "ln", "scale"), (768,)) == ()
  fe = rules.eta_fn(rules.flax_eta_rules())
  assert fe(("Conv_0", "kernel"), (3, 3, 4, 8)) == pytest.approx(math.sqrt(1 / 36))


# ------------------------------------------------------------------------------------------ Su's rules
def test_su_rules_closed_forms_half_life_rms_decay_and_lion_numbers():
  # R2: S_{t+1} = S_t + a e^{-S_t} -> ln(a t + 1); R3: S_{t+1} = S_t + a e^{-2 S_t} -> ln(2 a t + 1)/2.
  for a in (1e-2, 2e-3):
    t = np.arange(int(20 / a) + 1)
    s2 = np.zeros(len(t)); s3 = np.zeros(len(t))
    for i in range(1, len(t)):
      s2[i] = s2[i - 1] + a * math.exp(-s2[i - 1])
      s3[i] = s3[i - 1] + a * math.exp(-2 * s3[i - 1])
    err2 = np.max(np.abs(s2 - np.log(a * t + 1)))
    err3 = np.max(np.abs(s3 - 0.5 * np.log(2 * a * t + 1)))
    assert err2 < 2 * a and err3 < 2 * a  # O(alpha0 p): vanishes as alpha0 p -> 0
    # The schedules are exp(-2 S_t) of the closed forms.
    np.testing.assert_allclose(np.asarray(S.r2_schedule(a)(t)), np.exp(-2 * np.log(a * t + 1)), rtol=1e-5)
  # Half-life: the factor is exactly 1/2 at T.
  for T in (100, 12345):
    assert float(S.r2_schedule(S.r2_alpha0_p_from_half_life(T))(float(T))) == pytest.approx(0.5, rel=1e-6)
    assert float(S.r3_schedule(S.r3_kappa_from_half_life(T))(float(T))) == pytest.approx(0.5, rel=1e-6)
  # Initial update RMS alpha0 sigma per tensor; decay alpha0^2/(2q) theta, independent of sigma and the lr.
  a0, q = 2e-3, 1.5
  sig = rules.sigma_fn([(r".*bias$", 0.5), (r".*", "sqrt(1 / SHAPE[0])")])
  tx = S.su_rules(a0, sig, q=q, schedule="r3", half_life=10)
  params = {"k": jnp.zeros((16, 4)), "bias": jnp.zeros(4)}
  u = {"k": jax.random.normal(jax.random.key(0), (16, 4)), "bias": jnp.array([1.0, -3.0, 0.5, 2.0])}
  d, st = tx.update(u, tx.init(params), params)
  assert float(jnp.sqrt(jnp.mean(d["k"] ** 2))) == pytest.approx(a0 * 0.25, rel=1e-6)
  assert float(jnp.sqrt(jnp.mean(d["bias"] ** 2))) == pytest.approx(a0 * 0.5, rel=1e-6)
  theta = {"k": jnp.ones((16, 4)), "bias": 2 * jnp.ones(4)}
  zero = jax.tree_util.tree_map(jnp.zeros_like, theta)
  st = st._replace(count=jnp.asarray(10, jnp.int32))  # at the half-life
  d, _ = tx.update(zero, st, theta)
  np.testing.assert_allclose(np.asarray(d["bias"]), -0.5 * a0**2 / (2 * q) * 2.0, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(d["k"]), -0.5 * a0**2 / (2 * q), rtol=1e-6)
  # 9473: Lion + R3 for BERT-base, sigma = sqrt(1/768), alpha0 = 1.11e-3 -> lr ~ 4e-5, weight decay ~ 0.015.
  lr, wd = S.lion_equivalent(1.11e-3, math.sqrt(1 / 768))
  assert lr == pytest.approx(4.0e-5, rel=0.01) and wd == pytest.approx(0.015, rel=0.03)
  # With sign directions (Lion) the per-tensor RMS is 1, so the step is exactly lr * sign(.) + lr * wd * theta.
  tl = S.lion_su(1.11e-3, math.sqrt(1 / 768), schedule="constant")
  th = {"w": 0.1 * jnp.ones((8, 8))}
  g = {"w": jax.random.normal(jax.random.key(1), (8, 8))}
  dl, _ = tl.update(g, tl.init(th), th)
  np.testing.assert_allclose(np.asarray(dl["w"]), -lr * np.sign(np.asarray(g["w"])) - lr * wd * 0.1, rtol=1e-5)


# ------------------------------------------------------------------------------------------- memory
def test_state_bytes_exact_and_half_of_adamw_with_momentum():
  params = {"emb": {"embedding": jnp.zeros((100, 16))},
            "mlp": {"kernel": jnp.zeros((16, 64)), "bias": jnp.zeros(64)},
            "out": {"kernel": jnp.zeros((64, 16)), "bias": jnp.zeros(16)}}
  n = sum(x.size for x in jax.tree_util.tree_leaves(params))
  eta = rules.eta_fn(rules.flax_eta_rules())
  shp = rules.shape_fn(rules.flax_shape_rules())
  adam = memory.state_bytes(optax.adamw(1e-3), params, include_scalars=False)
  assert adam == 2 * 4 * n
  amos_full = memory.state_bytes(A.amos(0.1, eta), params, include_scalars=False)
  assert amos_full == 2 * 4 * n
  amos_fact = memory.state_bytes(A.amos(0.1, eta, shp), params, include_scalars=False)
  # v and b of shapes (V,1), (1,d_out), (1,d_out), plus the scalar () v and b of each of the two biases: scalar
  # slots are slot variables (only the step counter is left out).
  assert amos_fact == 2 * 4 * (100 + 64 + 16 + 2)
  amos_mom = memory.state_bytes(A.amos(0.1, eta, shp, momentum=0.9), params, include_scalars=False)
  assert amos_mom == amos_fact + 4 * n and amos_mom / adam <= 0.51 + 1e-9 + (amos_fact / adam)
  # The same on a concrete state, with the slots found by the params' structure or by dtype.
  st = A.amos(0.1, eta, shp, momentum=0.9).init(params)
  assert memory.optimizer_state_bytes(st, include_scalars=False, params=params) == amos_mom
  assert memory.optimizer_state_bytes(st, include_scalars=False) == amos_mom
  # Only scalar slots: every leaf of v and b is (), and all of them count; the counter is the only extra leaf.
  biases = {"b1": jnp.zeros(64), "b2": jnp.zeros(16)}
  st_b = A.amos(0.1, eta, shp).init(biases)
  slots = memory.slot_leaves(st_b, biases)
  assert len(slots) == 4 and all(np.shape(x) == () for x in slots)
  assert memory.optimizer_state_bytes(st_b, include_scalars=False, params=biases) == 4 * 4
  assert memory.optimizer_state_bytes(st_b) == 4 * 4 + np.asarray(st_b.count).nbytes


def test_smoke_experiment(tmp_path):
  helpers = pytest.importorskip("tests.helpers")
  if importlib.util.find_spec("experiments.run") is None:
    pytest.skip("experiments.run (foundation runner) not available yet")
  rec = helpers.run_experiment("amos.py", "smoke", tmp_path)
  m = rec["metrics"]
  assert m["oracle_max_abs_diff"] <= 1e-12
  assert np.isfinite(m["fashion_cnn_amos_final_val_loss"])
  assert m["fashion_cnn_amos_state_bytes"] < m["fashion_cnn_adamw_state_bytes"]
