"""Position samplers, log-n, randomized PEs (kexue 9444) and the config's smoke run."""
import math
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.nn import attention as attn_lib
from research.nn import position as pos_lib
from research.nn import position_sampling as ps
from tests.helpers import run_experiment


def test_rpe_random_sorted_distinct_in_range_and_uniform():
  p = np.asarray(ps.rpe_random(jax.random.key(0), 16, 64, (2000,)))
  assert p.shape == (2000, 16) and p.dtype == np.int32
  assert np.all(np.diff(p, axis=1) > 0)                # sorted and distinct
  assert p.min() >= 0 and p.max() < 64
  # Marginal inclusion probability of every position is n/L = 1/4 (uniform subsets): Monte Carlo, 5 sigma.
  freq = np.bincount(p.ravel(), minlength=64) / 2000
  assert np.all(np.abs(freq - 0.25) < 5 * math.sqrt(0.25 * 0.75 / 2000))
  # The k-th order statistic of a uniform n-subset of {0..L-1} has mean (k+1)(L+1)/(n+1) - 1.
  k = np.arange(16)
  np.testing.assert_allclose(p.mean(0), (k + 1) * 65 / 17 - 1, atol=0.6)
  # Per-example draws differ; a batch shape of () gives one shared draw.
  assert not np.array_equal(p[0], p[1])
  assert ps.rpe_random(jax.random.key(0), 5, 10).shape == (5,)


def test_rpe_random_with_traced_length_is_a_uniform_prefix():
  f = jax.jit(lambda k, n: ps.rpe_random(k, 8, 32, (4000,), length=n))
  p = np.asarray(f(jax.random.key(1), 3))
  real = p[:, :3]
  assert np.all(np.diff(real, axis=1) > 0) and real.max() < 32
  assert np.all(p[:, 3:] == 31)                       # padding slots
  freq = np.bincount(real.ravel(), minlength=32) / 4000
  assert np.all(np.abs(freq - 3 / 32) < 5 * math.sqrt((3 / 32) * (29 / 32) / 4000))


def test_grid_positions_and_support():
  g = np.asarray(ps.rpe_grid(512, 2048, 512))
  np.testing.assert_array_equal(g, 4 * np.arange(512))       # 0, 4, ..., 2044 (spec §3.3)
  assert g.max() < 2048 and g.dtype == np.int32
  # Prefix property with spacing L/M; per-length spacing L/n spans the range instead.
  np.testing.assert_array_equal(np.asarray(ps.rpe_grid(64, 2048, 512)), g[:64])
  np.testing.assert_array_equal(np.asarray(ps.rpe_grid(64, 2048, spacing="per_length")), 32 * np.arange(64))
  f = np.asarray(ps.rpe_grid(3, 10, 4))                      # non-integer spacing -> float positions
  np.testing.assert_allclose(f, [0.0, 2.5, 5.0])


def test_equal_mean_spans_have_mean_n_and_evenly_spaced_positions():
  n = 64
  key = jax.random.key(2)
  s = np.asarray(ps.sample_span(key, n, "exponential", (50_000,)))
  assert abs(s.mean() / n - 1) < 0.02
  assert abs((s < n).mean() - (1 - math.exp(-1))) < 0.01    # P(s < N) = 1 - 1/e
  assert abs((s > 4 * n).mean() - math.exp(-4)) < 0.003     # P(s > 4N) = e^-4
  sb = np.asarray(ps.sample_span(key, n, "beta", (20_000,), max_test_len=512, kappa=8.0))
  assert abs(sb.mean() / n - 1) < 0.03 and sb.max() <= 512
  sp = np.asarray(ps.sample_span(key, n, "poisson", (20_000,)))
  assert abs(sp.mean() / n - 1) < 0.01 and abs(sp.std() / math.sqrt(n) - 1) < 0.03
  p = np.asarray(ps.equal_mean(key, n, "exponential", (20_000,)))
  assert p.dtype == np.float32 and np.all(p[:, 0] == 0)
  d = np.diff(p, axis=1)
  np.testing.assert_allclose(d, d[:, :1] * np.ones_like(d), rtol=1e-4, atol=1e-5)  # evenly spaced
  np.testing.assert_allclose(p.mean(0)[1:] / (np.arange(1, n) * n / (n - 1)), 1.0, atol=0.03, rtol=0)
  # Traced length: spacing from the real length m, E[s] = m.
  q = np.asarray(jax.jit(lambda k, m: ps.equal_mean(k, 8, "exponential", (20_000,), length=m))(key, 5))
  assert abs(q[:, 4].mean() / 5 - 1) < 0.03


def test_rpe_distances_and_relative_matrix():
  d = np.asarray(ps.rpe_distances(jax.random.key(3), 6, 20, (100,)))
  assert np.all(d[:, 0] == 0) and np.all(np.diff(d, axis=1) > 0) and d.max() < 20
  r = np.asarray(ps.distances_to_relative(jnp.asarray(d[0])))
  for i in range(6):
    for j in range(6):
      assert r[i, j] == (d[0, j - i] if j >= i else -d[0, i - j])


def test_bad_inputs_raise_clear_errors():
  with pytest.raises(ValueError, match="L >= M"):
    ps.check_support(256, 512)
  with pytest.raises(ValueError, match="L >= M"):
    ps.PositionConfig(train_mode="random", max_len=100, max_test_len=500)
  with pytest.raises(ValueError, match="must be <= L"):
    ps.rpe_random(jax.random.key(0), 10, 8)
  with pytest.raises(TypeError, match="integer positions"):
    ps.check_learned_positions(jnp.arange(4, dtype=jnp.float32))
  with pytest.raises(ValueError, match="rows"):
    ps.check_learned_positions(jnp.arange(10), table_size=8)
  lp = pos_lib.LearnedPositions(max_len=8, dim=4)
  with pytest.raises(TypeError, match="integer positions"):
    lp.init(jax.random.key(0), ps.equal_mean(jax.random.key(0), 4))
  with pytest.raises(ValueError, match="test length"):
    ps.sample_positions(ps.PositionConfig("random", "grid", 64, 16), jax.random.key(0), 20, train=False)
  with pytest.raises(ValueError, match="train_mode"):
    ps.PositionConfig(train_mode="grid")


def test_sample_positions_granularity():
  cfg = ps.PositionConfig("random", "grid", max_len=128, max_test_len=32, per_example=True, per_layer=True)
  p = np.asarray(ps.sample_positions(cfg, jax.random.key(0), 10, batch_size=3, num_layers=2))
  assert p.shape == (2, 3, 10)
  assert not np.array_equal(p[0], p[1]) and not np.array_equal(p[0, 0], p[0, 1])
  shared = ps.PositionConfig("random", "grid", max_len=128, max_test_len=32)
  assert ps.sample_positions(shared, jax.random.key(0), 10, batch_size=3, num_layers=2).shape == (1, 10)
  np.testing.assert_array_equal(ps.sample_positions(shared, jax.random.key(0), 5, train=False)[0],
                                [0, 4, 8, 12, 16])
  em = ps.PositionConfig("equal_mean", "sequential")
  assert ps.sample_positions(em, jax.random.key(0), 5).dtype == jnp.float32
  np.testing.assert_array_equal(ps.sample_positions(em, jax.random.key(0), 5, train=False)[0], np.arange(5))


def test_rope_relative_invariance_with_float_positions():
  """Equal-mean positions are real: RoPE logits depend only on p_j - p_i, also for non-integer shifts."""
  q = jax.random.normal(jax.random.key(0), (1, 5, 2, 8))
  k = jax.random.normal(jax.random.key(1), (1, 5, 2, 8))
  p = ps.equal_mean(jax.random.key(2), 5)
  logits = lambda pp: jnp.einsum("bqhd,bkhd->bhqk", pos_lib.apply_rope(q, pp), pos_lib.apply_rope(k, pp))
  np.testing.assert_allclose(logits(p), logits(p + 3.7), atol=2e-4)


def _rope_reference(x, positions, layout="interleaved"):
  """apply_rope as first written (cos/sin computed inline), the oracle for the materialised version."""
  d = x.shape[-1]
  theta = 10000.0 ** (-jnp.arange(0, d, 2, dtype=jnp.float32) / d)
  ang = jnp.asarray(positions, jnp.float32)[..., :, None, None] * theta
  cos, sin = jnp.cos(ang), jnp.sin(ang)
  if layout == "interleaved":
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return jnp.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1).reshape(x.shape)
  x1, x2 = x[..., : d // 2], x[..., d // 2:]
  return jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)


def test_rope_with_sampled_positions_equals_inline_formula():
  """The cheap randomized path (cos/sin materialised once per call) gives the same values and gradients."""
  x = np.random.default_rng(0).normal(size=(2, 24, 2, 8)).astype(np.float32)
  p_int = np.sort(np.random.default_rng(1).choice(2048, 24, replace=False))[None].astype(np.int32)
  p_float = np.cumsum(np.random.default_rng(2).exponential(size=(2, 24)), -1).astype(np.float32)
  w = jnp.arange(8.0)

  @jax.jit
  def both(x, p_int, p_float):
    out = []
    for f in (pos_lib.apply_rope, _rope_reference):
      out += [f(x, p, layout=lay) for lay in ("interleaved", "halves") for p in (p_int, p_float)]
      out.append(jax.grad(lambda xx: (f(xx, p_int, layout="interleaved") ** 2 * w).sum())(x))
    return out[:5], out[5:]

  new, ref = both(x, p_int, p_float)
  for a, b in zip(new, ref):
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-5)


def test_noisy_relative_table_fixed_vs_as_released():
  offs = jnp.arange(-3, 4)
  fixed = np.asarray(pos_lib.relative_sinusoid(offs, 16))
  assert len({tuple(np.round(r, 6)) for r in fixed}) == 7       # distinct offsets -> distinct rows
  bug = np.asarray(pos_lib.relative_sinusoid(offs, 16, relative_index_bug=True, table_len=32))
  # offset + L clamped to L-1: offsets -1, 0, 1, 2, 3 all read row L-1 (spec §4).
  for i in range(2, 7):
    np.testing.assert_allclose(bug[i], bug[2])
  assert not np.allclose(bug[0], bug[1])


def _official_noisy_relative_rows(dist, table_len):
  """Table rows read by the released noisy-relative PE (google-deepmind/randomized_positional_encodings,
  models/positional_encodings.py), rebuilt from its description: index array [0, -d_{T-1}, .., -d_1, 0, d_1,
  .., d_{T-1}] + L over relative offsets -T..T-1, logit (i, j) reads entry T + (j - i) (its relative shift),
  and the gather into the L-row table is clamped."""
  t = len(dist) + 1
  idx = np.concatenate([[0], -dist[::-1], [0], dist]) + table_len
  i, j = np.meshgrid(np.arange(t), np.arange(t), indexing="ij")
  return np.clip(idx[t + j - i], 0, table_len - 1)


def test_noisy_relative_as_released_has_the_official_orientation():
  """relative_index_bug=True reads the official rows: keys at and right of the query (j >= i - 1) collapse
  onto row L-1; keys further left keep distinct rows (not the mirror image)."""
  t, L, R, h, d = 6, 32, 8, 2, 4
  qw = jax.random.normal(jax.random.key(0), (1, t, h, d))
  w_r = jax.random.normal(jax.random.key(1), (R, h, d))
  rng = np.random.default_rng(0)
  for dist in (np.arange(1, t), np.sort(rng.choice(np.arange(1, L), t - 1, replace=False))):
    signed = np.zeros((t, t), np.int32)                       # signed distance of key j from query i (j - i side)
    for a in range(t):
      for b in range(t):
        signed[a, b] = 0 if a == b else (dist[b - a - 1] if b > a else -dist[a - b - 1])
    rows = _official_noisy_relative_rows(dist, L)
    r = np.asarray(pos_lib.sinusoidal(jnp.asarray(rows), R, 10000.0, "interleaved"))      # [t, t, R]
    want = np.einsum("bqhd,qkr,rhd->bhqk", np.asarray(qw), r, np.asarray(w_r))
    got = pos_lib.txl_position_logits_from_offsets(qw, jnp.asarray(-signed), w_r, relative_index_bug=True,
                                                   table_len=L)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-4)
  # Through the attention layer (content logits zero: k = 0, u = 0): with plain positions every key j >= i - 1
  # gets the same weight, and keys j < i - 1 get distinct ones.
  cfg = attn_lib.AttentionConfig(pe="transformer_xl", relative_index_bug=True, relative_table_len=L)
  core = attn_lib.AttentionCore(cfg)
  q = jax.random.normal(jax.random.key(2), (1, t, h, d))
  z = jnp.zeros((1, t, h, d))
  params = core.init(jax.random.key(3), q, z, z, q_positions=jnp.arange(t), k_positions=jnp.arange(t))
  _, a = core.apply(params, q, z, z, q_positions=jnp.arange(t), k_positions=jnp.arange(t))
  a = np.asarray(a)[0]
  for i in range(t):
    right = a[:, i, max(i - 1, 0):]
    np.testing.assert_allclose(right, np.broadcast_to(right[:, :1], right.shape), rtol=1e-5)
    if i >= 3:
      assert len({round(float(v), 6) for v in a[0, i, :i - 1]}) == i - 1


def test_logn_scaling_factor_in_attention():
  assert float(ps.logn_factor(512, 64)) == pytest.approx(1.5)
  assert float(ps.logn_factor(32, 64)) < 1 and float(ps.logn_factor(32, 64, clamp=True)) == 1.0
  # Attention with logn_train_len=m at length n equals plain attention with logits x log n / log m: with q
  # scaled by that factor (softmax input linear in q), outputs agree.
  x = jax.random.normal(jax.random.key(0), (1, 16, 8))
  cfg = attn_lib.AttentionConfig(pe="rope", use_bias=False)
  mha = attn_lib.MultiHeadAttention(2, cfg)
  params = mha.init(jax.random.key(1), x)
  _, a_log = attn_lib.MultiHeadAttention(2, cfg.replace(logn_train_len=4)).apply(params, x, return_weights=True)
  f = math.log(16) / math.log(4)
  params2 = jax.tree_util.tree_map_with_path(
      lambda path, v: v * f if "query" in jax.tree_util.keystr(path) else v, params)
  _, a_ref = mha.apply(params2, x, return_weights=True)
  np.testing.assert_allclose(a_log, a_ref, atol=1e-5)


def test_no_test_length_is_dropped_silently():
  """Test lengths are evaluated as asked, except where a task does not exist; those moves are reported."""
  from experiments.position_robustness import che_train as drv
  from research.tasks import che
  lengths, n_train = (40, 41, 100, 200, 500), 40
  for name, task in che.TASKS.items():
    if name != "modular_arithmetic":
      assert drv.eval_lengths(task, lengths) == list(lengths), name
      assert drv.length_remaps(task, lengths, n_train) == ""
  ma = che.get_task("modular_arithmetic")
  assert drv.eval_lengths(ma, lengths) == [39, 41, 99, 199, 499]
  note = drv.length_remaps(ma, lengths, n_train)
  assert "100 evaluated at 99" in note and "drop out" not in note
  assert "drop out" in drv.length_remaps(ma, (41, 42), 41)              # 42 -> 41 lands in the training range


def test_che_logn_m_is_the_training_sequence_length_in_tokens():
  """Spec 07 §3.2: m = the training length in the tokens the model sees (task tokens + one empty token per
  output), so the factor is 1 at the longest training sequence: Reverse String N = 40 -> m = 80 (not 40, which
  gave log 80 / log 40 = 1.19 there); Parity (one output) -> m = 41."""
  from configs.position_robustness import arm, get_config
  from experiments.position_robustness.che_train import Group
  from research.tasks import che
  c = get_config("che").che
  for name, m in (("reverse_string", 80), ("parity_check", 41)):
    g = Group(che.get_task(name), "rope", [arm("plain+logn", logn=True)], c, 1)
    assert g.total == m and g.model.attention.logn_train_len == m
    assert float(attn_lib.logn_factor(None, m, "length", m)[0, 0, 0, 0]) == pytest.approx(1.0)
  with pytest.raises(ValueError, match="agree on log n"):
    Group(che.get_task("parity_check"), "rope", [arm("a"), arm("b", logn=True)], c, 1)


def _che_table(plain, rand, tasks=("bucket_sort", "even_pairs"), pes=("rope", "alibi")):
  """Records with the given per-seed scores at the one test length 41 (and 0.5 at N = 40)."""
  table = {}
  for t in tasks:
    for pe in pes:
      for a, v in (("plain", plain), ("randomized", rand)):
        v = np.asarray(v, float)
        table[(t, pe, a)] = {"lengths": [40, 41], "acc": np.stack([np.full_like(v, 0.5), v]), "steps": 10,
                             "train_acc": v.tolist()}
  return table


def test_che_rows_follow_the_verdict_rule():
  """Three seeds with randomized clearly above plain agree; one seed is never more than inconclusive; an arm at
  chance (1/classes averaged over the tasks: (0.2 + 0.5) / 2) has not learned and nothing is compared."""
  import ml_collections

  from configs.position_robustness import get_config
  from experiments.position_robustness import che_tables
  from research.report import Results
  c = ml_collections.ConfigDict(get_config("che").che)
  c.tasks, c.pes, c.train_max_length = ("bucket_sort", "even_pairs"), ("rope", "alibi"), 40

  def verdicts(plain, rand):
    res = Results()
    che_tables.che_rows(c, _che_table(plain, rand), ["plain", "randomized"], res)
    return {r.name.split(":")[0].split(" (")[0]: r.verdict for r in res.rows}

  v = verdicts([0.40, 0.41, 0.42], [0.80, 0.82, 0.81])
  assert v["CHE avg score rope"] == v["CHE average gain of randomization"] == "agrees"
  assert v["Bucket Sort, randomized rope"] == "differs"             # 81% is below the 95% band
  assert verdicts([0.40, 0.41, 0.42], [0.98, 0.99, 0.985])["Bucket Sort, randomized rope"] == "agrees"
  assert verdicts([0.4], [0.8])["CHE avg score rope"] == "inconclusive"
  assert verdicts([0.30, 0.31, 0.32], [0.80, 0.82, 0.81])["CHE avg score rope"] == "not learned"   # chance 0.35


def test_mlm_rows_follow_the_verdict_rule():
  from configs.position_robustness import get_config
  from experiments.position_robustness import mlm_tables
  from research.report import Results
  m = get_config("mlm_extrapolation").mlm
  base = np.array([0.30, 0.31, 0.32])
  acc = {a.name: {64: base + 0.2, 512: base + (0.05 if a.name == "7" else 0.0)} for a in m.arms}
  acc["9"][512] = np.array([0.05, 0.06, 0.05])                           # below the majority class
  res = Results()
  mlm_tables.mlm_rows(m, acc, {64: 0.15, 512: 0.15}, res, 1.0, 1.0)
  rows = {r.name: r for r in res.rows}
  assert rows[next(n for n in rows if "arm 7 - the best other" in n)].verdict == "agrees"
  assert rows[next(n for n in rows if "(equal-mean)" in n)].verdict == "agrees"
  assert rows[next(n for n in rows if "(baseline)" in n)].verdict == "inconclusive"      # identical arms
  assert rows[next(n for n in rows if "super-baseline" in n)].verdict == "not learned"
  assert all("(n=3)" in r.measured for r in res.rows)


def test_che_fingerprint_changes_with_what_the_records_depend_on():
  """A changed budget or seed gives a new fingerprint (its groups train anew); the task and PE lists do not
  (every group's data and test batches are keyed by its own task, so a longer list reuses the finished ones)."""
  from configs.position_robustness import get_config
  from experiments.position_robustness import che_tables
  c = get_config("che").che
  fp = che_tables.fingerprint(c, 0)
  longer = c.copy_and_resolve_references()
  longer.tasks = tuple(c.tasks) + ("odds_first",)
  longer.pes = ("rope",)
  assert che_tables.fingerprint(longer, 0) == fp
  steps = c.copy_and_resolve_references()
  steps.train_steps = int(c.train_steps) + 1
  assert che_tables.fingerprint(steps, 0) != fp
  assert che_tables.fingerprint(c, 1) != fp


def test_che_rerender_from_the_committed_raw_table(tmp_path):
  """The che variant re-renders results/position_robustness/che/che_raw.json (load_raw, no training): one seed,
  so every comparison is inconclusive."""
  rec = run_experiment("position_robustness.py", "che", tmp_path,
                       {"che.load_raw": ("results/position_robustness/che",)})
  comp = [r for r in rec["rows"] if "per seed" in r["name"]]
  assert len(comp) == 6 and all(r["verdict"] == "inconclusive" for r in comp)
  assert rec["metrics"]["che/avg_gain_randomized"] == pytest.approx(0.0996, abs=5e-4)


def test_smoke_end_to_end(tmp_path):
  rec = run_experiment("position_robustness.py", "smoke", tmp_path)
  m = rec["metrics"]
  # CHE score = mean per-token accuracy over the test lengths > N (smoke: N = 6, only length 12), max and mean
  # over seeds (one seed): all three equal, and a mean over 8 examples of k/12 correct tokens is j/96.
  for arm in ("plain", "randomized", "equal_mean"):
    v = m[f"che/reverse_string/rope/{arm}/mean_acc"]
    assert v == m[f"che/reverse_string/rope/{arm}/max_acc"] == pytest.approx(m[f"che/reverse_string/rope/{arm}/acc_at_12"])
    assert 96 * v == pytest.approx(round(96 * v), abs=1e-4)
  # log n / log m is 1 at the training length (spec 07 §3.2): each "+ log n" arm equals its plain twin at
  # n = m = 8 (same weights, same positions); at 32 the factor is log 32 / log 8 = 5/3.
  for plain, logn in (("1", "2"), ("4", "5"), ("6", "7")):
    assert m[f"mlm/{logn}/acc_8"] == pytest.approx(m[f"mlm/{plain}/acc_8"], abs=1e-6)
  rows = {r["name"]: r for r in rec["rows"]}
  row = next(r for n, r in rows.items() if "randomized - plain" in n)
  assert row["verdict"] in ("inconclusive", "not learned") and "(n=1" in row["measured"]   # one seed: no more
  assert all(r["verdict"] in ("inconclusive", "not learned", "measured") for r in rec["rows"])
  # a re-run resumes every population from its checkpoint: same records, same numbers
  before = (tmp_path / "metrics.jsonl").read_text()
  again = run_experiment("position_robustness.py", "smoke", tmp_path)
  assert (tmp_path / "metrics.jsonl").read_text() == before
  assert again["metrics"]["che/reverse_string/rope/randomized/mean_acc"] == m["che/reverse_string/rope/randomized/mean_acc"]
  assert again["metrics"]["mlm/7/acc_32"] == m["mlm/7/acc_32"]
  # a new machine holds only the committed results/: the CHE groups come back from che_raw.json (matched by the
  # config fingerprint), untrained
  shutil.rmtree(tmp_path / "checkpoints")
  fresh = run_experiment("position_robustness.py", "smoke", tmp_path, {"parts": ("che",)})
  assert fresh["metrics"]["che/reverse_string/rope/randomized/mean_acc"] == m["che/reverse_string/rope/randomized/mean_acc"]
  assert "read back from che_raw.json" in (tmp_path / "results.md").read_text()
  assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow   # two CHE model compiles; not timed on an idle CPU (measured only under heavy shared load)
def test_randomized_variant_of_every_pe_runs_in_the_che_model():
  """Randomized learned (L rows, integer positions) and relative (resampled per layer) PEs give finite logits
  in the CHE model; equal-mean (real) positions are refused by the learned table."""
  from configs.position_robustness import EQUAL_MEAN, get_config
  from experiments.position_robustness import che_train, models
  from research.tasks import che

  c = get_config("smoke").che
  task = che.get_task("reverse_string")
  raw = che.sample("reverse_string", jax.random.key(0), 2, 4)
  for pe in ("learned", "relative"):   # rope (smoke), sin/cos and ALiBi run in the che / quick variants
    model = models.che_model(task, pe, c)
    dtype = models.pe_dtype(pe)

    @jax.jit
    def fwd(key, raw, model=model, pe=pe, dtype=dtype):
      mb = che.to_model_batch(task, raw, 8)
      pos = models.positions("random", key, 8, jnp.int32(8), c, pe, 8)
      params = models.init_params(model, task, jax.random.key(2), 8, pe)
      return pos, models.apply(model, params, task, mb.tokens, pos, mb.padding_mask, c, pe)

    pos, logits = fwd(jax.random.key(1), raw)
    assert pos.dtype == dtype and pos.shape == ((int(c.num_layers),) if models.per_layer(c, pe) else ()) + (1, 8)
    assert logits.shape == (2, 8, task.output_vocab) and bool(jnp.all(jnp.isfinite(logits))), pe
  with pytest.raises(TypeError, match="learned"):
    che_train.Group(task, "learned", [EQUAL_MEAN], c, 1)
