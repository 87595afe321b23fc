"""Tests of research.losses.cosent (CoSENT) and research.eval.sts (the evaluation protocol)."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from research.eval import sts
from research.losses import cosent

B = 24


@pytest.fixture(scope="module")
def fns():
  """Compiled once: value and gradient of both implementations at a fixed batch size."""
  def make(impl):
    return jax.jit(jax.value_and_grad(lambda s, y, scale: cosent.cosent_loss(s, y, scale=scale, impl=impl)),
                   static_argnums=2)
  return {"sorted": make("sorted"), "pairwise": make("pairwise")}


def _cases(seed=0):
  r = np.random.default_rng(seed)
  yield r.normal(size=B) * 2, r.integers(0, 2, B).astype(np.float32), 1.0          # binary labels
  yield r.normal(size=B), r.integers(0, 6, B).astype(np.float32), 1.0              # ordinal 0..5 with ties
  yield np.tanh(r.normal(size=B)), r.uniform(0, 5, B), 20.0                        # graded, cosine-like, lambda 20
  yield r.normal(size=B) * 30, np.repeat(np.arange(3.0), B // 3), 1.0              # big logits, 3 groups


def test_matches_brute_force_value_and_gradient(fns):
  """Both implementations equal the double-loop oracle; gradients agree with each other and with
  central finite differences of the float64 oracle."""
  for s, y, scale in _cases():
    s32 = jnp.asarray(s, jnp.float32)
    ref = cosent.cosent_brute_force(np.asarray(s32, np.float64), y, scale)
    (v1, g1), (v2, g2) = fns["sorted"](s32, y, scale), fns["pairwise"](s32, y, scale)
    np.testing.assert_allclose([v1, v2], [ref, ref], rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(g1, g2, atol=1e-5)
    x = np.asarray(s32, np.float64)
    eps = 1e-4
    fd = np.array([(cosent.cosent_brute_force(x + eps * e, y, scale) -
                    cosent.cosent_brute_force(x - eps * e, y, scale)) / (2 * eps) for e in np.eye(B)])
    np.testing.assert_allclose(g1, fd, atol=2e-4)
    assert abs(float(np.sum(g1))) < 1e-4          # shift invariance: sum of gradients is 0


def test_ties_all_equal_and_invariances(fns):
  r = np.random.default_rng(1)
  s = jnp.asarray(r.normal(size=B), jnp.float32)
  for impl in ("sorted", "pairwise"):
    v, g = fns[impl](s, np.full(B, 3.0, np.float32), 1.0)          # all labels equal: log 1 = 0
    assert float(v) == 0.0 and np.all(np.asarray(g) == 0) and np.all(np.isfinite(g))
  y = r.integers(0, 4, B).astype(np.float32)
  v = float(fns["sorted"](s, y, 1.0)[0])
  perm = r.permutation(B)
  assert np.isclose(float(fns["sorted"](s[perm], y[perm], 1.0)[0]), v, rtol=1e-6)    # order of pairs
  assert np.isclose(float(fns["sorted"](s + 7.0, y, 1.0)[0]), v, rtol=1e-5)           # score shift
  assert np.isclose(float(fns["sorted"](s, np.exp(y), 1.0)[0]), v, rtol=1e-6)         # monotone relabel
  # ties contribute nothing: merging the two top label groups equals dropping their cross terms
  terms = [float(s[p] - s[q]) for p, q in itertools.product(range(B), repeat=2) if y[p] < y[q]]
  rank_net = sum(np.log1p(np.exp(t)) for t in terms)
  assert max(0.0, max(terms)) <= v <= rank_net + 1e-5                                  # smooth-max bounds
  # B = 1 and a trivial 2-pair batch
  assert float(cosent.cosent_loss(jnp.ones(1), jnp.ones(1))) == 0.0
  assert np.isclose(float(cosent.cosent_loss(jnp.array([2.0, 0.5]), jnp.array([0, 1]))),
                    np.log1p(np.exp(1.5)), rtol=1e-6)


def test_layouts_scale_clip_and_errors():
  r = np.random.default_rng(2)
  u, v = r.normal(size=(6, 5)), r.normal(size=(6, 5))
  y = np.array([0, 1, 2, 0, 1, 2.0])
  inter = np.stack([u, v], 1).reshape(12, 5)
  a = cosent.cosent_cosine_loss(u, v, y)
  b = cosent.cosent_cosine_loss(inter, None, y, layout="interleaved")
  cos = (u * v).sum(1) / np.linalg.norm(u, axis=1) / np.linalg.norm(v, axis=1)
  assert np.isclose(a, b, rtol=1e-6) and np.isclose(a, cosent.cosent_brute_force(cos, y, 20.0), rtol=1e-5)
  big = jnp.array([1e30, -1e30, 0.0])
  val, g = jax.value_and_grad(lambda s: cosent.cosent_logit_loss(s, jnp.array([0, 1, 1])))(big)
  assert np.isfinite(val) and np.all(np.isfinite(g)) and np.isclose(val, 2e6, rtol=1e-6)
  assert cosent.cosent_logit_loss(jnp.zeros((4, 1)), jnp.array([0, 1, 0, 1])).shape == ()
  with pytest.raises(ValueError, match="3 scores but 4 labels"):
    cosent.cosent_loss(jnp.zeros(3), jnp.zeros(4))
  with pytest.raises(ValueError, match="1-D"):
    cosent.cosent_loss(jnp.zeros((3, 2)), jnp.zeros(3))
  with pytest.raises(ValueError, match="even"):
    cosent.pair_cosines(np.zeros((5, 3)), layout="interleaved")
  with pytest.raises(ValueError, match="labels but"):
    sts.spearman([1, 2, 3], [1, 2])


def test_threshold_search_and_spearman():
  r = np.random.default_rng(3)
  y = r.integers(0, 2, 300)
  s = np.round(y * 0.4 + r.normal(size=300) * 0.5, 2)        # rounded: many tied scores
  thr, acc = sts.threshold_sweep(y, s)
  cands = np.concatenate([[s.min() - 1], np.unique(s), [s.max() + 1]])
  brute = max(np.mean((y > 0.5) == (s > c)) for c in cands)   # accuracy only changes at the scores
  assert np.isclose(acc, brute) and np.isclose(sts.accuracy_at(y, s, thr), acc)
  thr_p, acc_p = sts.threshold_powell(y, np.tanh(s) * 0.99, param="tanh")
  assert acc_p <= sts.threshold_sweep(y, np.tanh(s) * 0.99)[1] + 1e-12
  assert -1 < thr_p < 1
  thr_l, acc_l = sts.threshold_powell(y, s * 5, param="identity")
  assert np.isclose(sts.accuracy_at(y, s * 5, thr_l), acc_l)
  assert np.isclose(sts.spearman(y, s), scipy.stats.spearmanr(y, s).correlation)
  # binary gold: Spearman is an increasing affine function of ROC-AUC for fixed class counts
  pts = []
  for k in range(6):
    sc = y * 0.2 * k + r.normal(size=300)
    pts.append((sts.auc(y, sc), sts.spearman(y, sc)))
  pts = np.array(pts)
  slope, icpt, rv, _, _ = scipy.stats.linregress(pts[:, 0], pts[:, 1])
  assert slope > 0 and rv > 0.999999
  ev = sts.evaluate_split(y, s, y[::-1], s[::-1], param="identity")
  assert ev["valid_acc_sweep"] >= ev["valid_acc"] - 1e-12
  assert sts.select_best([{"valid_acc": 0.5}, {"valid_acc": 0.7}, {"valid_acc": 0.7}, {"valid_acc": 0.6}]) == 1


def test_mlm_mask_and_eval_batches():
  """BERT masking never touches [CLS]/[SEP]/[PAD] and predicts the original tokens; evaluation batches cover
  every row once, cut to a multiple of the padding length, with segment ids per run."""
  from experiments.cosent import data, encoder

  class Tok:
    cls_id, sep_id, pad_id, mask_id, vocab_size = 2, 3, 0, 4, 50
  r = np.random.default_rng(0)
  ids = r.integers(5, 50, (64, 20)).astype(np.int32)
  ids[:, 0], ids[:, 10], ids[:, 15:] = 2, 3, 0
  x, pos, tgt, w = encoder.mlm_mask(ids, r, Tok, 0.15, 4)
  rows = np.repeat(np.arange(64), 4)[w.reshape(-1) > 0]
  p = pos.reshape(-1)[w.reshape(-1) > 0]
  assert not np.isin(ids[rows, p], [2, 3, 0]).any()
  np.testing.assert_array_equal(tgt.reshape(-1)[w.reshape(-1) > 0], ids[rows, p])
  changed = x != ids
  assert changed.any() and np.all(changed[:, [0, 10, 15]] == 0)
  mask = (np.arange(24)[None] < r.integers(1, 21, 50)[:, None]).astype(np.int32)
  arrays = {"ids": np.arange(50)[:, None] * mask, "mask": mask, "seg": np.stack([mask, 0 * mask]), "y": np.zeros(50)}
  seen = []
  for rows, b in data.eval_batches(arrays, 16, 8):
    assert b["ids"].shape[0] == 16 and b["ids"].shape[1] % 8 == 0 and b["seg"].shape[:2] == (2, 16)
    assert b["ids"].shape[1] >= mask[rows].sum(1).max()
    np.testing.assert_array_equal(b["ids"][:len(rows), 0], rows * mask[rows, 0])
    seen += list(rows)
  assert sorted(seen) == list(range(50))
  assert data.cap(3000, 512) == 512 and data.cap(100, 512) == 100 and data.cap(0, 512) == 512
  assert data.cap(3000, 0) == 3000 and data.cap(0, 0) == 0


def test_selection_and_rows_use_the_verdict_rule():
  """The reference keeps the first strictly best epoch; a row with 3 seeds whose paired differences lie within
  the tolerance agrees with "no real improvement", one at chance is "not learned"."""
  from experiments.cosent import tables
  from research.report import Results
  h = [{"valid_acc": 0.6, "valid_acc_sweep": 0.6, "test_spearman": 0.1, "test_acc": 0.5, "test_acc_sweep": 0.5},
       {"valid_acc": 0.6, "valid_acc_sweep": 0.7, "test_spearman": 0.3, "test_acc": 0.6, "test_acc_sweep": 0.7}]
  assert tables.selected([h], "protocol")[0] is h[0] and tables.selected([h], "sweep")[0] is h[1]

  def runs(sp, acc):   # one epoch per seed
    return [[{"valid_acc": 0.6, "valid_acc_sweep": 0.6, "valid_spearman": s, "test_spearman": s,
              "test_acc": a, "test_acc_sweep": a}] for s, a in zip(sp, acc)]
  hist = {"LCQMC": {"ce": runs([0.30, 0.31, 0.32], [0.70, 0.71, 0.72]),
                    "cosent": runs([0.302, 0.311, 0.323], [0.701, 0.712, 0.719])},
          "PAWSX": {"ce": runs([0.01, -0.01, 0.0], [0.5, 0.5, 0.5]), "cosent": runs([0.0, 0.01, -0.01], [0.5, 0.5, 0.5])}}
  tests = {"LCQMC": np.array([0, 1, 1, 0]), "PAWSX": np.array([0, 1, 1, 0])}
  cfg = type("C", (), {"no_gain_tol": 1.0})
  res = Results()
  tables.cross_rows(res, hist, tests, cfg)
  by = {r.name: r for r in res.rows}
  lc = by["LCQMC test Spearman, epoch by valid accuracy (Powell, the reference): CE (b32) | CoSENT (b64)"]
  assert lc.verdict == "agrees" and "(n=3)" in lc.measured
  assert by["PAWSX test Spearman, epoch by valid accuracy (Powell, the reference): CE (b32) | CoSENT (b64)"].verdict \
      == "not learned"
  avg = by["average over tasks, epoch by valid accuracy (Powell, the reference): test Spearman CoSENT - CE"]
  assert avg.verdict == "agrees" and "LCQMC of LCQMC, PAWSX" in avg.note


def test_smoke_end_to_end(tmp_path):
  """configs/cosent.py:smoke through the runner: MLM pretraining, CE vs CoSENT cross-encoders and bi-encoders as
  populations (2 seeds: every verdict is at most 'inconclusive'); a re-run resumes and adds no records."""
  import os
  from research.verdict import Verdict
  from tests.helpers import run_experiment
  rec = run_experiment("cosent.py", "smoke", tmp_path)
  m = rec["metrics"]
  for k in ("BQ_ce_test_spearman", "BQ_cosent_test_spearman", "BQ_ce_test_acc", "BQ_cosent_test_acc",
            "BQ_cosent_minus_ce_mean", "BQ_cosent_minus_sbert_mean", "mlm_final_loss",
            "BQ_cosent_minus_ce_sweepsel_mean", "BQ_cosent_minus_ce_acc_sweepsel_mean"):
    assert k in m and np.isfinite(float(m[k])), k
  assert 0 <= m["BQ_cosent_test_acc"] <= 100
  with open(os.path.join(str(tmp_path), "results.md")) as f:
    md = f.read()
  rows = [line.split(" | ") for line in md.splitlines() if line.startswith("| BQ") or line.startswith("| average")]
  assert len(rows) >= 9
  for r in rows:
    assert r[3] in {v.value for v in Verdict} and r[3] in ("inconclusive", "not learned"), r
    assert "(n=2)" in r[2], r
  for name in ("cross_encoder_arms.png", "valid_curves.png", os.path.join("pretrained", "model.safetensors")):
    assert os.path.exists(os.path.join(str(tmp_path), name)), name
  metrics = os.path.join(str(tmp_path), "metrics.jsonl")
  with open(metrics) as f:
    before = f.read()
  run_experiment("cosent.py", "smoke", tmp_path)
  with open(metrics) as f:
    assert f.read() == before
