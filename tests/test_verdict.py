"""The shared verdict rule: each outcome forced by numbers chosen for it."""
import math

import numpy as np
import pytest
from scipy import stats

from research import verdict as V
from research.verdict import Verdict


def test_t_interval_matches_scipy():
  x = np.array([0.71, 0.74, 0.69, 0.73, 0.70])
  iv = V.interval(x)
  lo, hi = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
  assert iv.n == 5 and iv.mean == pytest.approx(x.mean())
  assert (iv.lo, iv.hi) == pytest.approx((lo, hi), rel=1e-12)
  assert "± " in iv.format() and "(n=5)" in iv.format()


def test_bootstrap_interval_is_seeded_and_brackets_the_mean():
  x = np.arange(10.0)
  a, b = V.interval(x, method="bootstrap", seed=3), V.interval(x, method="bootstrap", seed=3)
  assert a == b and a.lo < 4.5 < a.hi and a.lo >= 0 and a.hi <= 9


def test_one_seed_has_no_interval():
  iv = V.interval([0.8])
  assert math.isinf(iv.lo) and math.isinf(iv.hi)
  assert "no interval" in iv.format()


def test_bad_input_is_rejected():
  with pytest.raises(ValueError, match="empty"):
    V.interval([])
  with pytest.raises(ValueError, match="non-finite"):
    V.interval([1.0, float("nan"), 2.0])
  with pytest.raises(ValueError, match="one value per seed"):
    V.compare([1, 2, 3], [1, 2], claim="greater")
  with pytest.raises(ValueError, match="claim"):
    V.compare([1, 2, 3], [1, 2, 3], claim="bigger")


def test_greater_claim_agrees_differs_inconclusive():
  base = np.array([0.50, 0.60, 0.70])
  assert V.compare(base + 0.10, base, claim="greater").verdict is Verdict.AGREES
  assert V.compare(base - 0.10, base, claim="greater").verdict is Verdict.DIFFERS
  noisy = base + np.array([0.05, -0.05, 0.01])
  assert V.compare(noisy, base, claim="greater").verdict is Verdict.INCONCLUSIVE
  assert V.compare(base - 0.10, base, claim="less").verdict is Verdict.AGREES


def test_pairing_removes_the_shared_seed_effect():
  # Seed effects of +-0.2 swamp a constant gain of 0.01 unpaired, but the paired differences are exact.
  b = np.array([0.3, 0.5, 0.7, 0.4])
  assert V.compare(b + 0.01, b, claim="greater").verdict is Verdict.AGREES


def test_fewer_than_three_seeds_is_at_most_inconclusive():
  out = V.compare([0.9, 0.91], [0.5, 0.5], claim="greater")
  assert out.verdict is Verdict.INCONCLUSIVE and "seed" in out.reason
  out = V.compare_value([0.785, 0.785], 0.785, tolerance=0.01)
  assert out.verdict is Verdict.INCONCLUSIVE


def test_no_gain_claim_needs_the_interval_inside_the_tolerance():
  b = np.array([0.70, 0.72, 0.74])
  assert V.compare(b + np.array([0.001, -0.001, 0.0]), b, claim="equal", tolerance=0.01).verdict is Verdict.AGREES
  assert V.compare(b + 0.05, b, claim="equal", tolerance=0.01).verdict is Verdict.DIFFERS
  wide = b + np.array([0.02, -0.02, 0.0])
  assert V.compare(wide, b, claim="equal", tolerance=0.01).verdict is Verdict.INCONCLUSIVE


def test_not_learned_blocks_the_comparison():
  chance = 0.5
  at_chance = np.array([0.49, 0.52, 0.50])
  learned = np.array([0.80, 0.82, 0.81])
  out = V.compare(learned, at_chance, claim="greater", chance_a=chance, chance_b=chance)
  assert out.verdict is Verdict.NOT_LEARNED and "arm b" in out.reason
  assert V.learned(learned, chance).verdict is Verdict.AGREES
  assert V.learned(at_chance, chance).verdict is Verdict.NOT_LEARNED
  # one seed above chance cannot show learning, nor refute it
  assert V.learned([0.9], chance).verdict is Verdict.INCONCLUSIVE
  assert V.learned([0.4], chance).verdict is Verdict.NOT_LEARNED
  # a value comparison on an unlearned model is not drawn either
  assert V.compare_value(at_chance, 0.5, tolerance=0.1, chance=chance).verdict is Verdict.NOT_LEARNED


def test_compare_value_band():
  assert V.compare_value([0.780, 0.785, 0.790], 0.785, tolerance=0.02).verdict is Verdict.AGREES
  assert V.compare_value([0.600, 0.610, 0.605], 0.785, tolerance=0.02).verdict is Verdict.DIFFERS
  assert V.compare_value([0.70, 0.80, 0.75], 0.785, tolerance=0.02).verdict is Verdict.INCONCLUSIVE


def test_compare_samples_counts_whole_samples():
  # 36 test samples: 97.22% = 35/36. One sample off (34/36 = 94.44%) agrees at a one-sample tolerance,
  # although the percentages differ by 2.8 points.
  assert V.compare_samples([35, 34, 36], 35 / 36, 36).verdict is Verdict.AGREES
  assert V.compare_samples([30, 31, 32], 35 / 36, 36).verdict is Verdict.DIFFERS
  assert V.compare_samples([35, 30, 35], 35 / 36, 36).verdict is Verdict.INCONCLUSIVE
  with pytest.raises(ValueError, match="whole sample"):
    V.compare_samples([34.5, 35, 35], 35 / 36, 36)
  with pytest.raises(ValueError, match=r"\[0, 36\]"):
    V.compare_samples([37, 35, 35], 35 / 36, 36)


def test_exact_and_measured():
  assert V.exact(True, "max |p_gumbel - softmax| <= 1e-6").verdict is Verdict.AGREES
  assert V.exact(False, "cap").verdict is Verdict.DIFFERS
  m = V.measured([1.0, 2.0, 3.0])
  assert m.verdict is Verdict.MEASURED and "(n=3)" in m.measured
  assert str(Verdict.NOT_LEARNED) == "not learned"


def test_combine_and_row():
  ag, df, nl, inc = (V.exact(True, "t"), V.exact(False, "t"), V.learned([0.1, 0.1, 0.1], 0.5),
                     V.compare([1, 2], [1, 2], claim="greater"))
  assert V.combine([ag, ag]) is Verdict.AGREES
  assert V.combine([ag, df, nl]) is Verdict.DIFFERS
  assert V.combine([nl, nl]) is Verdict.NOT_LEARNED
  assert V.combine([ag, nl]) is Verdict.INCONCLUSIVE and V.combine([ag, inc]) is Verdict.INCONCLUSIVE
  r = V.row("q", "p", V.compare([2, 3, 4], [1, 2, 3], claim="greater"), note="n=8")
  assert r.verdict == "agrees" and r.measured.endswith("(n=3)") and r.note.startswith("n=8; ")


def test_bench_ratio_against_target_on_log_scale():
  """research.benchmark.ratio_vs_target: per-round ratios judged by the shared rule against a target."""
  from research.benchmark import ratio_vs_target
  fast = np.array([0.50, 0.52, 0.48, 0.51, 0.49])
  a, m = ratio_vs_target(fast, 1.0, "less")
  assert a.verdict is V.Verdict.AGREES and m.startswith("0.5") and "n=5" in m
  assert ratio_vs_target(2 * fast, 0.5, "less")[0].verdict is V.Verdict.DIFFERS
  assert ratio_vs_target(np.array([0.5, 2.0, 0.6, 1.8]), 1.0, "less")[0].verdict is V.Verdict.INCONCLUSIVE
  assert ratio_vs_target(fast[:2], 1.0, "less")[0].verdict is V.Verdict.INCONCLUSIVE   # < 3 rounds
