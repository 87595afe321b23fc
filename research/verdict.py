"""The one verdict rule every results table uses.

A reproduction row compares what was measured here with what an article claims. The rule is the same
for every table, so that "agrees" means the same thing everywhere:

* **Seeds.** A measured quantity is a sample over seeds ``x_1..x_n``; it is summarised by its mean and a
  two-sided ``level`` (default 95%) confidence interval, ``mean +- t_{n-1, (1+level)/2} * s / sqrt(n)``
  (Student t), or a percentile bootstrap of the mean. With fewer than ``MIN_SEEDS = 3`` seeds no verdict
  can be better than :attr:`Verdict.INCONCLUSIVE`.
* **Learned first.** Before two arms are compared, each must have beaten chance (or the majority class):
  the lower end of its score interval must lie above the chance level. A model that did not is
  :attr:`Verdict.NOT_LEARNED`, and nothing is concluded from it.
* **Paired comparisons.** Arms that share seeds are compared by the per-seed differences
  ``d_s = a_s - b_s`` and the interval of their mean. For a claim "a > b" the verdict is *agrees* when the
  whole interval is above 0, *differs* when it is wholly below 0, else *inconclusive*. For a "no gain"
  claim (``a == b`` within ``tolerance``) it *agrees* when the whole interval lies inside
  ``[-tolerance, tolerance]`` and *differs* when it lies wholly outside it.
* **Published values.** A measured interval agrees with a published number when it lies inside
  ``published +- tolerance`` (the tolerance is the published precision, or the stated one), and differs
  when it misses that band entirely. A tolerance given in test samples is compared in whole samples
  (:func:`compare_samples`).
* **Exact statements** (identities, caps, theorems) state their exact test and pass or fail it
  (:func:`exact`): no interval is involved.
* Quantities with no published counterpart are :attr:`Verdict.MEASURED`.

Every function returns an :class:`Assessment` whose ``measured`` string is what a table prints:
``mean +- half-width (n=seeds)``.
"""
from __future__ import annotations

import dataclasses
import enum
import math
from typing import Literal, Sequence

import numpy as np

MIN_SEEDS = 3
LEVEL = 0.95


class Verdict(str, enum.Enum):
  """The outcome of comparing a measurement with an article's claim."""
  AGREES = "agrees"
  DIFFERS = "differs"
  INCONCLUSIVE = "inconclusive"
  NOT_LEARNED = "not learned"
  MEASURED = "measured"

  def __str__(self) -> str:
    return self.value


@dataclasses.dataclass(frozen=True)
class Interval:
  """Mean of ``n`` per-seed values with a two-sided confidence interval ``[lo, hi]`` at ``level``."""
  mean: float
  lo: float
  hi: float
  n: int
  level: float = LEVEL

  @property
  def half_width(self) -> float:
    return 0.5 * (self.hi - self.lo)

  def format(self, digits: int = 3) -> str:
    """``mean +- half (n=N)``; one seed has no interval and says so."""
    if self.n < 2 or not math.isfinite(self.half_width):
      return f"{self.mean:.{digits}g} (n={self.n}, no interval)"
    return f"{self.mean:.{digits}g} ± {self.half_width:.2g} (n={self.n})"

  def __str__(self) -> str:
    return self.format()


@dataclasses.dataclass(frozen=True)
class Assessment:
  """A verdict with the interval it rests on and the reason, ready for a table row."""
  verdict: Verdict
  interval: Interval | None
  reason: str

  @property
  def measured(self) -> str:
    return self.interval.format() if self.interval is not None else "-"


def _as_samples(x: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
  a = np.asarray(x, dtype=np.float64).reshape(-1)
  if a.size == 0:
    raise ValueError(f"{name} is empty: pass one value per seed (at least {MIN_SEEDS} for a verdict).")
  if not np.all(np.isfinite(a)):
    raise ValueError(f"{name} has non-finite values {a.tolist()}: a diverged seed must be reported, not "
                     "averaged; drop it explicitly and say so in the row's note.")
  return a


def interval(samples: Sequence[float] | np.ndarray, *, level: float = LEVEL,
             method: Literal["t", "bootstrap"] = "t", num_resamples: int = 10_000,
             seed: int = 0) -> Interval:
  """Mean and ``level`` confidence interval of per-seed values.

  ``method="t"``: ``mean +- t_{n-1,(1+level)/2} s / sqrt(n)`` with ``s`` the sample standard deviation.
  ``method="bootstrap"``: the ``(1-level)/2`` and ``(1+level)/2`` percentiles of the means of
  ``num_resamples`` resamples (with replacement; ``seed`` fixes them). One value gives an infinite interval.
  """
  if not 0.0 < level < 1.0:
    raise ValueError(f"level must be in (0, 1), got {level}")
  x = _as_samples(samples, "samples")
  n = x.size
  mean = float(x.mean())
  if n < 2:
    return Interval(mean, -math.inf, math.inf, n, level)
  if method == "t":
    from scipy import stats
    half = float(stats.t.ppf(0.5 * (1.0 + level), n - 1) * x.std(ddof=1) / math.sqrt(n))
    return Interval(mean, mean - half, mean + half, n, level)
  if method == "bootstrap":
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, n, size=(num_resamples, n))].mean(axis=1)
    lo, hi = np.quantile(means, [0.5 * (1.0 - level), 0.5 * (1.0 + level)])
    return Interval(mean, float(lo), float(hi), n, level)
  raise ValueError(f"method must be 't' or 'bootstrap', got {method!r}")


def learned(scores: Sequence[float] | np.ndarray, chance: float, *, level: float = LEVEL,
            method: Literal["t", "bootstrap"] = "t", min_seeds: int = MIN_SEEDS) -> Assessment:
  """Whether a model beat ``chance`` (or the majority-class score): the interval's lower end is above it.

  Returns :attr:`Verdict.AGREES` ("learned") or :attr:`Verdict.NOT_LEARNED`; with fewer than ``min_seeds``
  seeds whose mean is above chance (too few to show it), :attr:`Verdict.INCONCLUSIVE`.
  """
  iv = interval(scores, level=level, method=method)
  if iv.lo > chance:
    return Assessment(Verdict.AGREES, iv, f"above chance {chance:.4g}")
  if iv.n < min_seeds and iv.mean > chance:
    return Assessment(Verdict.INCONCLUSIVE, iv, f"mean above chance {chance:.4g} but {iv.n} seed(s) < {min_seeds}")
  return Assessment(Verdict.NOT_LEARNED, iv, f"interval does not clear chance {chance:.4g}")


def _against_band(iv: Interval, lo: float, hi: float, band: str, what: str = "") -> Assessment:
  """Agrees when the interval lies inside ``[lo, hi]``, differs when it misses it entirely, else inconclusive."""
  if lo <= iv.lo and iv.hi <= hi:
    return Assessment(Verdict.AGREES, iv, f"{what}within {band}")
  if iv.lo > hi or iv.hi < lo:
    return Assessment(Verdict.DIFFERS, iv, f"{what}outside {band}")
  return Assessment(Verdict.INCONCLUSIVE, iv, f"interval straddles {band}")


def compare(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, *,
            claim: Literal["greater", "less", "equal"], tolerance: float = 0.0,
            chance_a: float | None = None, chance_b: float | None = None, level: float = LEVEL,
            method: Literal["t", "bootstrap"] = "t", min_seeds: int = MIN_SEEDS) -> Assessment:
  """Paired comparison of arm ``a`` with arm ``b`` (value ``s`` of each is from seed ``s``) against a claim.

  ``claim="greater"``: the article says a > b; ``"less"``: a < b; ``"equal"``: no gain, |a - b| <= tolerance.
  ``chance_a``/``chance_b``: the chance (or majority) score of each arm; an arm that did not beat it makes
  the verdict :attr:`Verdict.NOT_LEARNED`. The returned interval is that of the differences ``a - b``.
  """
  a_ = _as_samples(a, "a")
  b_ = _as_samples(b, "b")
  if a_.shape != b_.shape:
    raise ValueError(f"paired comparison needs one value per seed in both arms, got {a_.size} and {b_.size}")
  if claim not in ("greater", "less", "equal"):
    raise ValueError(f"claim must be 'greater', 'less' or 'equal', got {claim!r}")
  if tolerance < 0:
    raise ValueError(f"tolerance must be >= 0, got {tolerance}")
  for arm, scores, chance in (("a", a_, chance_a), ("b", b_, chance_b)):
    if chance is not None:
      lrn = learned(scores, chance, level=level, method=method, min_seeds=min_seeds)
      if lrn.verdict is not Verdict.AGREES:
        return Assessment(lrn.verdict, lrn.interval, f"arm {arm}: {lrn.reason}")
  d = interval(a_ - b_, level=level, method=method)
  if d.n < min_seeds:
    return Assessment(Verdict.INCONCLUSIVE, d, f"{d.n} seed(s) < {min_seeds}")
  if claim == "equal":
    return _against_band(d, -tolerance, tolerance, f"+-{tolerance:.3g}", "difference ")
  sign = 1.0 if claim == "greater" else -1.0
  lo, hi = sorted((sign * d.lo, sign * d.hi))
  if lo > 0:
    return Assessment(Verdict.AGREES, d, f"interval on the published side ({claim})")
  if hi < 0:
    return Assessment(Verdict.DIFFERS, d, f"interval on the opposite side of the claim ({claim})")
  return Assessment(Verdict.INCONCLUSIVE, d, "interval contains 0")


def compare_value(samples: Sequence[float] | np.ndarray, published: float, *, tolerance: float,
                  chance: float | None = None, level: float = LEVEL, method: Literal["t", "bootstrap"] = "t",
                  min_seeds: int = MIN_SEEDS) -> Assessment:
  """A measured quantity (per seed) against a published number known to ``+- tolerance``.

  Agrees when the interval lies inside ``[published - tolerance, published + tolerance]``; differs when it
  lies wholly outside; inconclusive otherwise or with fewer than ``min_seeds`` seeds.
  """
  if tolerance < 0:
    raise ValueError(f"tolerance must be >= 0, got {tolerance}")
  if chance is not None:
    lrn = learned(samples, chance, level=level, method=method, min_seeds=min_seeds)
    if lrn.verdict is not Verdict.AGREES:
      return lrn
  iv = interval(samples, level=level, method=method)
  if iv.n < min_seeds:
    return Assessment(Verdict.INCONCLUSIVE, iv, f"{iv.n} seed(s) < {min_seeds}")
  return _against_band(iv, published - tolerance, published + tolerance, f"{published:.4g} +- {tolerance:.3g}")


def compare_samples(measured_correct: Sequence[int] | np.ndarray, published_accuracy: float, num_test: int, *,
                    tolerance_samples: int = 1, min_seeds: int = MIN_SEEDS) -> Assessment:
  """Accuracy on a test set of ``num_test`` samples against a published accuracy, in whole samples.

  The published accuracy (a fraction) is turned into its nearest sample count ``round(p * num_test)``.
  Every seed's count of correct samples must lie within ``tolerance_samples`` of it to agree; all of them
  outside it differ; a mix is inconclusive. (With whole samples an interval adds nothing: each seed is
  tested exactly.)
  """
  counts = np.asarray(measured_correct)
  if counts.size == 0:
    raise ValueError("measured_correct is empty: pass one count of correct test samples per seed")
  if not np.issubdtype(counts.dtype, np.integer) and not np.all(counts == np.round(counts)):
    raise ValueError(f"measured_correct must be whole sample counts, got {counts.tolist()}")
  if np.any(counts < 0) or np.any(counts > num_test):
    raise ValueError(f"measured_correct must lie in [0, {num_test}], got {counts.tolist()}")
  target = int(round(published_accuracy * num_test))
  off = np.abs(counts.astype(np.int64) - target)
  iv = interval(counts / num_test)
  if counts.size < min_seeds:
    return Assessment(Verdict.INCONCLUSIVE, iv, f"{counts.size} seed(s) < {min_seeds}")
  if np.all(off <= tolerance_samples):
    return Assessment(Verdict.AGREES, iv, f"every seed within {tolerance_samples} sample(s) of {target}/{num_test}")
  if np.all(off > tolerance_samples):
    return Assessment(Verdict.DIFFERS, iv, f"every seed more than {tolerance_samples} sample(s) from "
                      f"{target}/{num_test}")
  return Assessment(Verdict.INCONCLUSIVE, iv, f"seeds on both sides of {tolerance_samples} sample(s)")


def exact(passed: bool, test: str) -> Assessment:
  """An identity, cap or theorem checked by its exact test (``test`` says what was checked)."""
  return Assessment(Verdict.AGREES if bool(passed) else Verdict.DIFFERS, None, test)


def measured(samples: Sequence[float] | np.ndarray | None = None, reason: str = "no published value") -> Assessment:
  """A quantity reported without a published counterpart."""
  iv = interval(samples) if samples is not None else None
  return Assessment(Verdict.MEASURED, iv, reason)


def row(name: str, published: str, assessment: Assessment, *, measured: str | None = None, note: str = ""):
  """A :class:`research.report.Row` for an assessment: its verdict, its interval (or ``measured``), its reason."""
  from research.report import Row
  reason = assessment.reason if not note else f"{note}; {assessment.reason}"
  return Row(name=name, published=published, measured=measured if measured is not None else assessment.measured,
             verdict=str(assessment.verdict), note=reason)


def combine(assessments: Sequence[Assessment]) -> Verdict:
  """One verdict for several settings of one claim (e.g. several sequence lengths).

  Differs if any setting differs; agrees if all agree; not learned if none learned; else inconclusive.
  """
  vs = [a.verdict for a in assessments]
  if not vs:
    raise ValueError("combine needs at least one assessment")
  if Verdict.DIFFERS in vs:
    return Verdict.DIFFERS
  if all(v is Verdict.AGREES for v in vs):
    return Verdict.AGREES
  if all(v is Verdict.NOT_LEARNED for v in vs):
    return Verdict.NOT_LEARNED
  if all(v is Verdict.MEASURED for v in vs):
    return Verdict.MEASURED
  return Verdict.INCONCLUSIVE
