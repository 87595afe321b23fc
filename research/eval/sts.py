"""Evaluation protocol of the CoSENT articles (kexue.fm 8847, 8860, 9341).

* ``spearman(gold, score)``: scipy.stats.spearmanr over a whole split.
* Accuracy with a threshold tuned on the validation split. Gold positives are labels > 0.5; the
  prediction is score > thr.
  - ``threshold_powell``: the reference's ``scipy.optimize.minimize(-acc, x0=1, method="Powell")`` over a
    parameter t, with thr = tanh(t) for cosines/probabilities (``param="tanh"``) and thr = t for raw
    logits (``param="identity"``; tanh(s) > tanh(t) iff s > t). Accuracy is piecewise constant in t,
    so Powell can stop on a plateau.
  - ``threshold_sweep``: the exact optimum, sweeping the midpoints of the sorted distinct scores
    (plus one threshold below and one above all scores) in O(n log n).
  - ``accuracy_at(labels, scores, thr)`` applies a stored validation threshold to test.
* ``select_best(history, key)``: per-epoch model selection (strictly better, from 0, as the
  reference's ``if acc > best``).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import scipy.optimize
import scipy.stats

__all__ = ["spearman", "accuracy_at", "threshold_powell", "threshold_sweep", "evaluate_split",
           "select_best", "auc", "binary_labels"]


def _check(labels, scores):
  y = np.asarray(labels, np.float64).reshape(-1)
  s = np.asarray(scores, np.float64).reshape(-1)
  if y.shape != s.shape:
    raise ValueError(f"{y.size} labels but {s.size} scores; pass one score per labelled pair")
  if y.size == 0:
    raise ValueError("empty split: no labels/scores")
  if not np.all(np.isfinite(s)):
    raise ValueError(f"{int((~np.isfinite(s)).sum())} non-finite scores (NaN/inf); the model diverged?")
  return y, s


def binary_labels(labels) -> np.ndarray:
  """Gold positives: label > 0.5 (the reference's rule; for STS-B 0-5 scores everything >= 1 counts)."""
  return np.asarray(labels, np.float64) > 0.5


def spearman(gold, score) -> float:
  """Spearman rank correlation over the split (scipy.stats.spearmanr); nan if either side is constant."""
  y, s = _check(gold, score)
  if np.all(y == y[0]) or np.all(s == s[0]):
    return float("nan")
  return float(scipy.stats.spearmanr(y, s).correlation)


def auc(labels, scores) -> float:
  """ROC-AUC with ties counted 1/2 (Mann-Whitney)."""
  y, s = _check(labels, scores)
  pos = binary_labels(y)
  r = scipy.stats.rankdata(s)
  n1, n0 = pos.sum(), (~pos).sum()
  if n1 == 0 or n0 == 0:
    return float("nan")
  return float((r[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def accuracy_at(labels, scores, threshold: float) -> float:
  """mean[(y > 0.5) == (s > threshold)]."""
  y, s = _check(labels, scores)
  return float(np.mean(binary_labels(y) == (s > threshold)))


def threshold_powell(labels, scores, param: str = "tanh", x0: float = 1.0) -> tuple[float, float]:
  """The reference's threshold search. Returns (threshold, valid accuracy at it).

  ``param="tanh"``: thr = tanh(t) (cosine or probability scores); ``"identity"``: thr = t (logits).
  """
  y, s = _check(labels, scores)
  if param not in ("tanh", "identity"):
    raise ValueError(f"param must be 'tanh' (cosines, probabilities) or 'identity' (logits), got {param!r}")
  pos = binary_labels(y)
  f = np.tanh if param == "tanh" else (lambda t: t)

  def neg_acc(t):
    return -float(np.mean(pos == (s > f(float(np.ravel(t)[0])))))

  res = scipy.optimize.minimize(neg_acc, x0=np.array([x0]), method="Powell")
  thr = float(f(float(np.ravel(res.x)[0])))
  return thr, accuracy_at(y, s, thr)


def threshold_sweep(labels, scores) -> tuple[float, float]:
  """The exact accuracy-maximising threshold: (threshold, accuracy). Ties broken toward the median score."""
  y, s = _check(labels, scores)
  pos = binary_labels(y)
  order = np.argsort(s, kind="stable")
  ss, pp = s[order], pos[order]
  uniq, first = np.unique(ss, return_index=True)
  # predicting "positive" for s > thr; thr between uniq[k-1] and uniq[k] -> the first `first[k]` items are negative
  cut = np.concatenate([first, [len(ss)]])                         # number of items predicted negative
  neg_below = np.concatenate([[0], np.cumsum(~pp)])[cut]           # true negatives
  pos_above = pos.sum() - np.concatenate([[0], np.cumsum(pp)])[cut]  # true positives
  acc = (neg_below + pos_above) / len(ss)
  cands = np.concatenate([[uniq[0] - 1.0], (uniq[:-1] + uniq[1:]) / 2, [uniq[-1] + 1.0]])
  best = np.flatnonzero(acc == acc.max())
  k = best[len(best) // 2]
  return float(cands[k]), float(acc[k])


def evaluate_split(valid_labels, valid_scores, test_labels, test_scores, param: str = "tanh") -> dict:
  """Spearman on both splits, thresholds from valid (Powell and sweep), test accuracies at them."""
  thr_p, vacc_p = threshold_powell(valid_labels, valid_scores, param=param)
  thr_s, vacc_s = threshold_sweep(valid_labels, valid_scores)
  return {
      "valid_spearman": spearman(valid_labels, valid_scores),
      "test_spearman": spearman(test_labels, test_scores),
      "valid_acc": vacc_p, "threshold": thr_p, "test_acc": accuracy_at(test_labels, test_scores, thr_p),
      "valid_acc_sweep": vacc_s, "threshold_sweep": thr_s,
      "test_acc_sweep": accuracy_at(test_labels, test_scores, thr_s),
  }


def select_best(history: Sequence[dict[str, Any]], key: str = "valid_acc", start: float = 0.0) -> int:
  """Index of the epoch kept by the reference: the first one whose ``key`` is strictly above all before it
  (and above ``start``); -1 if none is. NaN never wins."""
  best, idx = start, -1
  for i, rec in enumerate(history):
    if key not in rec:
      raise KeyError(f"history entry {i} has no {key!r}; available: {sorted(rec)}")
    v = rec[key]
    if v is not None and not (isinstance(v, float) and math.isnan(v)) and v > best:
      best, idx = v, i
  return idx
