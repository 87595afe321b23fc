"""Hubness measures, volume collapse, hub sampler, GAN metrics, and the hubness config's smoke run."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from research.geometry import hub_sampler as S
from research.geometry import hubness as H


# ---- volume ratio: exact table of the spec (closed form), log space, Monte Carlo -------------------
RHO = {1: 1.0, 2: 0.78540, 3: 0.52360, 4: 0.30843, 5: 0.16449, 6: 0.080746, 8: 0.015854,
       10: 2.4904e-3, 12: 3.2599e-4, 16: 3.5909e-6, 20: 2.4611e-8, 32: 1.0019e-15}


def test_volume_ratio_table_and_log_space():
  n = np.array(list(RHO))
  np.testing.assert_allclose(H.volume_ratio(n), list(RHO.values()), rtol=1e-4)
  np.testing.assert_allclose(H.log10_volume_ratio([64, 128, 512]), [-38.78, -95.82, -533.79], atol=6e-3)
  assert np.isfinite(H.log_volume_ratio(10_000)) and H.volume_ratio(2000) == 0.0   # underflow handled
  # recursion V_n = 2 pi / n V_{n-2}, and Stirling's approximation becomes relatively exact
  m = np.arange(3, 200)
  np.testing.assert_allclose(H.log_ball_volume(m) - H.log_ball_volume(m - 2), np.log(2 * np.pi / m))
  assert abs(H.log_ball_volume_stirling(1000) - H.log_ball_volume(1000)) < 1e-3


@pytest.mark.parametrize("n", [2, 5, 10])
def test_monte_carlo_acceptance(n):
  p, se = H.monte_carlo_ball_in_cube(n, 200_000, seed=n)
  assert abs(p - H.volume_ratio(n)) < 4.5 * math.sqrt(H.volume_ratio(n) * (1 - H.volume_ratio(n)) / 2e5)


# ---- hubness measures vs hand-computed toys and scipy -----------------------------------------------
def test_measures_on_toy_occurrence():
  nk = np.array([0, 0, 1, 2, 2, 3, 12])          # n = 7, sum = 20
  k = 2
  assert H.k_skewness(nk) == pytest.approx(stats.skew(nk))
  s = nk.std(ddof=1)
  assert H.k_skewness_truncnorm(nk) == pytest.approx(stats.truncnorm(-nk.mean() / s, np.inf).moment(3))
  assert H.robinhood_index(nk) == pytest.approx(0.5 * np.abs(nk - nk.mean()).sum() / nk.sum())
  brute_gini = np.abs(nk[:, None] - nk[None]).sum() / (2 * 7 * nk.sum())
  assert H.gini_index(nk) == pytest.approx(brute_gini)
  assert H.atkinson_index(nk) == pytest.approx(1 - np.mean(np.sqrt(nk)) ** 2 / nk.mean())
  assert H.antihub_occurrence(nk) == pytest.approx(2 / 7)
  assert H.hub_occurrence(nk, k) == pytest.approx(12 / (2 * 7))        # hubs: N >= 2k = 4
  assert H.hub_occurrence(nk, 1) == pytest.approx((12 + 3 + 2 + 2) / 7)  # N >= 2 (>=, as the code)
  assert H.groupie_ratio(nk, k) == pytest.approx(12 / 14)


def test_measures_uniform_occurrence_is_zero_inequality():
  nk = np.full(50, 5)
  m = H.hubness_measures(nk, 5)
  assert m["robinhood"] == 0 and m["gini"] == 0 and abs(m["atkinson"]) < 1e-12
  assert m["antihub_occurrence"] == 0 and m["hub_occurrence"] == 0
  with pytest.raises(ValueError):
    H.hubness_measures(np.array([1, -1]), 1)


# ---- hub sampler ---------------------------------------------------------------------------------
def test_threshold_rules_and_calibration():
  v = np.array([0, 1, 2, 50, 50, 51, 70])
  su = S.HubRule(n_ref=100, k=5, threshold=50, strict=True)
  off = S.HubRule(n_ref=100, k=5, threshold=50, strict=False, include_self=True)
  assert S.HubRule.passes(su, v).sum() == 2 and off.passes(v).sum() == 4
  t = S.calibrate_threshold(v, 3 / 7, strict=True)
  assert np.mean(v > t) <= 3 / 7 and np.mean(v > t - 1) > 3 / 7
  with pytest.raises(ValueError, match="No latent can pass"):
    S.HubRule(n_ref=100, k=5, threshold=99, strict=True).validate()     # max N_k = 99
  S.HubRule(n_ref=100, k=5, threshold=100, strict=False, include_self=True).validate()
  with pytest.raises(ValueError, match="k"):
    S.HubRule(n_ref=10, k=10).validate()


def test_sampler_collects_equal_counts_and_errors_instead_of_looping():
  rule = S.HubRule(n_ref=300, k=5, threshold=12, strict=True, space="z")
  out = S.select_with_controls(jax.random.key(0), 20, 40, rule, max_batches=20,
                               knn_kw={"chunk_size": 64})
  assert out["z_hub"].shape == (20, 40) and out["z_minnorm"].shape == (20, 40)
  assert np.all(out["hub_values"] > 12) and 0 < out["acceptance"] < 0.2
  # hubs are central: smaller norms than random latents on average (Sec. 3.4)
  assert np.linalg.norm(out["z_hub"], axis=1).mean() < np.linalg.norm(out["z_random"], axis=1).mean()
  # a passable-in-principle but practically unreachable threshold stops with an error
  with pytest.raises(RuntimeError, match="acceptance"):
    S.select_with_controls(jax.random.key(1), 5, 40, S.HubRule(n_ref=300, k=5, threshold=250),
                           max_batches=2, knn_kw={"chunk_size": 64}, controls=False)
  with pytest.raises(ValueError, match="mapping"):
    S.select_with_controls(jax.random.key(1), 5, 4, S.HubRule(n_ref=30, k=3, threshold=3, space="w"))
  np.testing.assert_allclose(S.truncate(jnp.ones(3), 0.5, center=jnp.zeros(3) + 1.0), 1.0)


# ---- GAN evaluation metrics ------------------------------------------------------------------------
def test_precision_recall_fd_self_and_shift():
  from research.eval import generative as G
  rng = np.random.default_rng(0)
  a = rng.normal(size=(300, 8)).astype(np.float32)
  pr = G.precision_recall(a, a, k=3)
  assert pr["precision"] == 1.0 and pr["recall"] == 1.0
  dc = G.density_coverage(a, a, k=3)
  assert dc["coverage"] == 1.0
  assert abs(G.frechet_distance(a, a)) < 1e-6
  # FD of two Gaussians: ||mu||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2}) with S = diag
  b = a * 2.0 + 1.0
  mu_a, mu_b = a.mean(0), b.mean(0)
  ca, cb = np.cov(a.T.astype(np.float64)), np.cov(b.T.astype(np.float64))
  import scipy.linalg
  ref = ((mu_a - mu_b) ** 2).sum() + np.trace(ca + cb - 2 * np.real(scipy.linalg.sqrtm(ca @ cb)))
  assert G.frechet_distance(a, b) == pytest.approx(ref, rel=1e-6)
  far = G.precision_recall(a, a + 100.0, k=3)
  assert far["precision"] == 0.0 and far["recall"] == 0.0


def test_smoke_config_end_to_end(tmp_path):
  from research.verdict import Verdict
  from tests.helpers import run_experiment
  rec = run_experiment("hubness.py", "smoke", tmp_path)
  m = rec["metrics"]
  assert m["volume_log10_rho_512"] == pytest.approx(-533.79, abs=0.01)
  # hubness emerges with the dimension and hubs lie near the centre (spec 04, Radovanovic et al.; tested on
  # the correlation, not the seed-noisy skewness, as spec 04 section 4 advises): Spearman(N_k, -|x|) grows
  assert m["emergence_d64_spearman_nk_negnorm"] > m["emergence_d2_spearman_nk_negnorm"]
  # the exact JAX k-occurrence equals every reference implementation's, count for count
  agree = {k: v for k, v in m.items() if k.startswith("bench_nk_agreement_")}
  assert agree and all(v == 1.0 for v in agree.values()), agree
  # precision / recall / coverage are fractions of samples (improved precision-recall, Kynkaanniemi et al.)
  frac = {k: v for k, v in m.items() if k.startswith("gan_") and k.endswith(("_precision", "_recall", "_coverage"))}
  assert frac and all(0.0 <= v <= 1.0 for v in frac.values()), frac
  # every row carries a verdict of the shared rule; seed rows show mean +- interval and n
  rows = rec["rows"]
  assert {r["verdict"] for r in rows} <= {v.value for v in Verdict}
  gan = [r for r in rows if r["name"].startswith("digits:")]
  assert gan and all("(n=3)" in r["measured"] for r in gan if "precision" in r["name"] and "truncation" not in r["name"])
  # a generator that did not learn (20 steps) makes every sampler comparison "not learned", never "agrees"
  health = next(r for r in gan if "GAN learned" in r["name"])
  if health["verdict"] == "not learned":
    assert all(r["verdict"] == "not learned" for r in gan if "vs random" in r["name"] or "below random" in r["name"])
  # a re-run resumes the classifier and the GAN population: no duplicate records, the same numbers
  before = (tmp_path / "metrics.jsonl").read_text()
  again = run_experiment("hubness.py", "smoke", tmp_path, {"parts": ("gan",)})
  assert (tmp_path / "metrics.jsonl").read_text() == before
  assert again["metrics"]["gan_digits_random_precision"] == m["gan_digits_random_precision"]
  assert again["metrics"]["gan_digits_hub_su_z_fd"] == pytest.approx(m["gan_digits_hub_su_z_fd"], rel=1e-6)


def _rows(per_seed: dict, seeds: int = 3):
  """gan_rows of fabricated per-seed metrics (every condition gets per_seed['random'] unless given)."""
  import ml_collections

  from experiments.hubness import gan_tables
  from research.report import Results
  conds = ("random", "hub_su_z", "minnorm_z", "antihub_z", "hub_official_w", "minnorm_w", "antihub_w",
           "trunc0.7_mean", "trunc0.7_ema")
  base = {"precision": [0.40, 0.45, 0.50][:seeds], "recall": [0.6, 0.6, 0.6][:seeds],
          "fd": [9.0, 9.0, 9.0][:seeds], "density": [1.0] * seeds, "coverage": [0.5] * seeds,
          "confidence": [0.9] * seeds}
  per = {c: {**base, **per_seed.get(c, {})} for c in conds}
  info = {"acc_su_z": 0.01, "t_su_z": 50, "acc_official_w": 0.01, "t_official_w": 15}
  g = ml_collections.ConfigDict({"health_recall": 0.05, "mapping": True})
  res = Results()
  gan_tables.gan_rows(ml_collections.ConfigDict({"name": "toy"}), g, per, [info] * seeds, res)
  return {r.name.split(",")[0]: r for r in res.rows}


def test_gan_rows_antihub_needs_a_margin_beyond_seed_noise():
  # issue 16: anti-hubs "agreed" whenever below random. Now the paired per-seed interval must lie below 0.
  rows = _rows({"antihub_w": {"precision": [0.39, 0.46, 0.49]}})          # below random by 0.003 on average
  assert rows["toy: anti-hubs (W) below random"].verdict == "inconclusive"
  rows = _rows({"antihub_w": {"precision": [0.30, 0.36, 0.39]}})          # below random by 0.10 +- 0.01
  assert rows["toy: anti-hubs (W) below random"].verdict == "agrees"
  rows = _rows({"hub_official_w": {"precision": [0.50, 0.56, 0.59]}})
  assert rows["toy: hubs (official rule in W) vs random"].verdict == "agrees"
  assert "(n=3)" in rows["toy: hubs (official rule in W) vs random"].measured
  # two seeds: at most inconclusive
  rows = _rows({"antihub_w": {"precision": [0.30, 0.36]}}, seeds=2)
  assert rows["toy: anti-hubs (W) below random"].verdict == "inconclusive"
  # a mode-collapsed generator (recall ~0): nothing is compared
  rows = _rows({"random": {"recall": [0.0, 0.01, 0.0]}, "antihub_w": {"precision": [0.30, 0.36, 0.39]}})
  assert rows["toy: GAN learned (recall of random samples)"].verdict == "not learned"
  assert rows["toy: anti-hubs (W) below random"].verdict == "not learned"


def test_mapping_network_keeps_latent_scale_at_init():
  # regression: without the He gain sqrt(2) an 8-layer leaky-ReLU mapping shrank w to ~0.04 of its
  # input scale, so every z gave nearly the same image (mode collapse of the hubness GANs)
  from research.nn import gan as gan_lib
  gen = gan_lib.Generator(image_shape=(8, 8, 1), kind="mlp", hidden=32, mapping=True, w_dim=64,
                          mapping_depth=8)
  params = gen.init(jax.random.key(0), jnp.zeros((2, 64)))["params"]
  z = jax.random.normal(jax.random.key(1), (512, 64))
  w = np.asarray(gen.apply({"params": params}, z, method=gan_lib.Generator.map))
  assert w.std(axis=0).mean() > 0.3


def test_plain_z_arm_selects_hubs_in_z():
  # the article's "hubs in z" setting: no mapping network, z fed straight into the generator; the
  # conditions must then be the sampler's selections in z itself (W = z)
  from ml_collections import ConfigDict

  from experiments.hubness import conditions
  from research.nn import gan as gan_lib
  gen = gan_lib.Generator(image_shape=(8, 8, 1), kind="mlp", hidden=16, mapping=False)
  params = gen.init(jax.random.key(0), jnp.zeros((2, 16)))["params"]
  map_fn = jax.jit(lambda z: gen.apply({"params": params}, z, method=gan_lib.Generator.map))
  z = jax.random.normal(jax.random.key(1), (5, 16))
  np.testing.assert_array_equal(np.asarray(map_fn(z)), np.asarray(z))
  g = ConfigDict({"z_dim": 16, "num_samples": 12, "n_ref": 300, "k": 5, "threshold": 12,
                  "max_batches": 20, "fallback_acceptance": 0.05, "psis": (0.7,), "mapping": False})
  key = jax.random.key(3)
  conds, info = conditions.condition_latents(map_fn, jnp.zeros(16), g, key, [], "toy")
  su = S.HubRule(n_ref=300, k=5, threshold=12, strict=True, include_self=False, space="z")
  ref = S.select_with_controls(jax.random.fold_in(key, 1), 12, 16, su, max_batches=20)
  np.testing.assert_allclose(conds["hub_su_z"], ref["z_hub"])          # Su's rule selected z itself
  assert np.all(ref["hub_values"] > 12) and info["acc_su_z"] == ref["acceptance"]
  # the "official rule in W" of this arm ranks z too (1 + N_4 in z >= t, t recalibrated if needed)
  assert conds["hub_official_w"].shape == (12, 16) and info["acc_official_w"] > 0
  imgs = gen.apply({"params": params}, jnp.asarray(conds["hub_su_z"]))
  assert imgs.shape == (12, 8, 8, 1)


def _toy_gan(r1_every=1, r1_gamma=0.1):
  import optax

  from research.nn import gan as gan_lib
  gen = gan_lib.Generator(image_shape=(4, 4, 1), kind="mlp", hidden=8)
  disc = gan_lib.Discriminator(kind="mlp", hidden=8)
  tx = optax.adam(1e-2, b1=0.5)
  step = gan_lib.make_gan_step(gen, disc, 4, r1_gamma=r1_gamma, r1_every=r1_every)
  init = lambda s: gan_lib.init_gan_state(gen, disc, 4, jax.random.key(s), tx)
  return init, step, tx, gen, disc


def test_gan_step_one_adam_state_per_player_and_fit_equals_population(tmp_path):
  """Each player's Adam state advances once per GAN iteration (not twice, as a multi_transform with the other
  player's gradient zeroed would); one D update equals optax on D alone; fit and fit_population agree."""
  import optax

  from research import train
  from research.nn import gan as gan_lib
  init, step, tx, gen, disc = _toy_gan(r1_every=2)
  batches = lambda s: (lambda t: np.asarray(jax.random.normal(jax.random.key(100 * s + t), (8, 2, 4, 4, 1))))
  st, _ = train.fit(None, init(0), batches(0), num_steps=3, train_step=step, progress=False, log_every=3)
  assert int(st.step) == 3
  for p in ("g", "d"):
    counts = [int(x) for x in jax.tree.leaves(st.opt_state[p]) if np.ndim(x) == 0]
    assert counts and all(c == 6 for c in counts), (p, counts)          # 3 steps x 2 iterations
  pop = train.fit_population(None, [init(0), init(1)], [batches(0), batches(1)], num_steps=3, train_step=step,
                             progress=False, log_every=3, workdir=str(tmp_path))
  for a, b in zip(jax.tree.leaves(pop.run(0).params), jax.tree.leaves(st.params)):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
  # player_update on D = optax.adam on D's parameters alone
  from research.train.players import player_update
  s0 = init(0)
  grads = jax.tree.map(jnp.ones_like, s0.params["d"])
  upd, _ = tx.update(grads, tx.init(s0.params["d"]), s0.params["d"])
  moved = player_update(s0, "d", grads)
  for a, b in zip(jax.tree.leaves(moved.params["d"]), jax.tree.leaves(optax.apply_updates(s0.params["d"], upd))):
    np.testing.assert_allclose(a, b)
  assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(moved.params["g"]),
                                                  jax.tree.leaves(s0.params["g"])))
  assert gan_lib.Generator is not None


def test_conv_gan_options_minibatch_std_and_lazy_r1():
  from research.nn import gan as gan_lib
  h = jax.random.normal(jax.random.key(0), (8, 3, 3, 2))
  out = gan_lib.minibatch_stddev(h, group=4)
  assert out.shape == (8, 3, 3, 3)
  # every sample: its features unchanged, and a constant extra map = the mean std over its group (i % 2)
  o, hn = np.asarray(out), np.asarray(h)
  np.testing.assert_array_equal(o[..., :2], hn)
  for i in range(8):
    np.testing.assert_allclose(o[i, :, :, 2], np.full((3, 3), np.sqrt(hn[i % 2::2].var(0) + 1e-8).mean()),
                               rtol=1e-5)
  # conv G with pixel norm, conv D with minibatch std: shapes
  gen = gan_lib.Generator(image_shape=(28, 28, 1), kind="conv", hidden=8, feature_norm=True)
  disc = gan_lib.Discriminator(kind="conv", hidden=8, mbstd=True)

  @jax.jit
  def conv_shapes(z):
    x = gen.apply(gen.init(jax.random.key(0), z), z)
    return x, disc.apply(disc.init(jax.random.key(2), x), x)
  x, logit = conv_shapes(jax.random.normal(jax.random.key(1), (4, 64)))
  assert x.shape == (4, 28, 28, 1) and logit.shape == (4,)
  # lazy R1: the penalty (scaled by r1_every) is on the first iteration of a step; off with gamma 0
  real = jax.random.normal(jax.random.key(3), (4, 4, 4, 4, 1))
  init, step, *_ = _toy_gan(r1_every=4, r1_gamma=0.1)
  _, m = jax.jit(step)(init(0), real)
  init0, step0, *_ = _toy_gan(r1_every=4, r1_gamma=0.0)
  _, m0 = jax.jit(step0)(init0(0), real)
  assert bool(m["finite"]) and float(m["r1"]) > 0 and float(m0["r1"]) == 0
