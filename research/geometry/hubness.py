"""Hubness measures (scikit-hubness definitions) and the ball/cube volume collapse (kexue 9147).

Everything here acts on the k-occurrence vector N_k (``research.geometry.knn.k_occurrence``), in float64
numpy on the host (the measures are O(n) or O(n log n); the kNN is the expensive part).
Definitions (identical to scikit-hubness' ``Hubness``/``hubness_score``; N_i = N_k(x_i)):

=====================  ==============================================================================
k_skewness             m3 / m2^{3/2}, population central moments (scipy.stats.skew, bias=True)
k_skewness_truncnorm   third *raw* moment of a standard normal truncated to [(0 - mean)/s, inf),
                       s = std(N, ddof=1) (``scipy.stats.truncnorm(a, b).moment(3)``)
robinhood              0.5 * sum|N_i - mean(N)| / sum N_i
gini                   sum_{i,j} |N_i - N_j| / (2 n sum N_i)   (computed exactly in O(n log n))
atkinson (eps=0.5)     1 - mean(N^{1-eps})^{1/(1-eps)} / mean(N)   (eps=1: geometric mean)
antihub_occurrence     #{i : N_i = 0} / n
hub_occurrence         sum_{i: N_i >= hub_size*k} N_i / (k * n_query)   (>=, as the library code does)
groupie_ratio          max_i N_i / (k * n_query)
=====================  ==============================================================================
Library defaults: k = 10, hub_size = 2. scikit-hubness breaks distance ties randomly (shuffle_equal);
``research.geometry.knn`` breaks them by the lower index (deterministic).

Volume: V_n = pi^{n/2} / Gamma(n/2 + 1) and rho_n = V_n / 2^n (unit ball over its circumscribed cube),
computed in log space with ``gammaln`` because rho_n underflows float64 for n >~ 1000 (log10 rho_512 =
-533.79 is already below float64's normal range).
"""
from __future__ import annotations

import math

import numpy as np
from scipy import special, stats

MEASURES = ("k_skewness", "k_skewness_truncnorm", "robinhood", "gini", "atkinson",
            "antihub_occurrence", "hub_occurrence", "groupie_ratio")


def _as_occurrence(n_k) -> np.ndarray:
  n_k = np.asarray(n_k)
  if n_k.ndim != 1 or n_k.size == 0:
    raise ValueError(f"k-occurrence must be a non-empty 1-D array; got shape {n_k.shape}.")
  if not np.all(np.isfinite(n_k)) or np.any(n_k < 0):
    raise ValueError("k-occurrence must be finite and non-negative (it counts neighbour-list hits).")
  return n_k.astype(np.float64)


def k_skewness(n_k) -> float:
  """Skewness of the k-occurrence distribution, m3 / m2^{3/2} (population moments)."""
  n = _as_occurrence(n_k)
  c = n - n.mean()
  m2 = np.mean(c ** 2)
  if m2 == 0:
    return 0.0
  return float(np.mean(c ** 3) / m2 ** 1.5)


def k_skewness_truncnorm(n_k) -> float:
  """Third raw moment of N(0,1) truncated to [-mean/s, inf), s = sample std (ddof=1) of N_k."""
  n = _as_occurrence(n_k)
  s = n.std(ddof=1) if n.size > 1 else 0.0
  if s == 0:
    return float("nan")
  a = (0.0 - n.mean()) / s
  b = (np.iinfo(np.int64).max - n.mean()) / s
  return float(stats.truncnorm(a, b).moment(3))


def robinhood_index(n_k) -> float:
  """Robin Hood (Hoover) index: share of occurrences to redistribute for perfect equality."""
  n = _as_occurrence(n_k)
  return float(0.5 * np.sum(np.abs(n - n.mean())) / np.sum(n))


def gini_index(n_k) -> float:
  """sum_{i,j}|N_i - N_j| / (2 n sum N); the O(n^2) double sum is evaluated exactly via sorting:
  sum_{i,j}|x_i - x_j| = 2 sum_i (2i - n + 1) x_(i) (0-based order statistics)."""
  n = _as_occurrence(n_k)
  x = np.sort(n)
  m = x.size
  coef = 2.0 * np.arange(m) - m + 1.0
  numerator = 2.0 * np.sum(coef * x)
  return float(numerator / (2.0 * m * np.sum(x)))


def atkinson_index(n_k, eps: float = 0.5) -> float:
  """1 - (mean N^{1-eps})^{1/(1-eps)} / mean N (eps = 1: geometric mean)."""
  n = _as_occurrence(n_k)
  if eps == 1:
    term = np.exp(np.mean(np.log(n))) if np.all(n > 0) else 0.0
  else:
    term = np.mean(n ** (1.0 - eps)) ** (1.0 / (1.0 - eps))
  return float(1.0 - term / n.mean())


def antihub_occurrence(n_k) -> float:
  """Fraction of points that are nobody's k-nearest neighbour."""
  n = _as_occurrence(n_k)
  return float(np.mean(n == 0))


def hub_occurrence(n_k, k: int, n_query: int | None = None, hub_size: float = 2.0) -> float:
  """Share of all k * n_query neighbour slots taken by hubs (N_i >= hub_size * k)."""
  n = _as_occurrence(n_k)
  n_query = n.size if n_query is None else int(n_query)
  return float(n[n >= hub_size * k].sum() / k / n_query)


def groupie_ratio(n_k, k: int, n_query: int | None = None) -> float:
  """Largest hub's share of the neighbour slots: max N / (k * n_query)."""
  n = _as_occurrence(n_k)
  n_query = n.size if n_query is None else int(n_query)
  return float(n.max() / n_query / k)


def hubness_measures(n_k, k: int, n_query: int | None = None, hub_size: float = 2.0,
                     include_gini: bool = True) -> dict:
  """All measures of the table above as a dict of floats (plus ``max_k_occurrence``)."""
  if not isinstance(k, (int, np.integer)) or k < 1:
    raise ValueError(f"k must be a positive int; got {k!r}.")
  out = {
      "k_skewness": k_skewness(n_k),
      "k_skewness_truncnorm": k_skewness_truncnorm(n_k),
      "robinhood": robinhood_index(n_k),
      "atkinson": atkinson_index(n_k),
      "antihub_occurrence": antihub_occurrence(n_k),
      "hub_occurrence": hub_occurrence(n_k, k, n_query, hub_size),
      "groupie_ratio": groupie_ratio(n_k, k, n_query),
      "max_k_occurrence": float(np.max(n_k)),
  }
  if include_gini:
    out["gini"] = gini_index(n_k)
  return out


# ----------------------------------------------------------------------------------------------
# volume collapse
# ----------------------------------------------------------------------------------------------
def log_ball_volume(n) -> np.ndarray:
  """log V_n = (n/2) log pi - log Gamma(n/2 + 1), unit n-ball; any real n >= 0, vectorised."""
  n = np.asarray(n, np.float64)
  if np.any(n < 0) or not np.all(np.isfinite(n)):
    raise ValueError("dimension n must be finite and >= 0.")
  return 0.5 * n * math.log(math.pi) - special.gammaln(0.5 * n + 1.0)


def log_volume_ratio(n) -> np.ndarray:
  """log rho_n = log(V_n / 2^n): fraction of the cube [-1, 1]^n filled by the inscribed unit ball."""
  n = np.asarray(n, np.float64)
  return log_ball_volume(n) - n * math.log(2.0)


def log10_volume_ratio(n) -> np.ndarray:
  return log_volume_ratio(n) / math.log(10.0)


def volume_ratio(n) -> np.ndarray:
  """rho_n = V_n / 2^n (underflows to 0 for very large n; use ``log_volume_ratio`` there)."""
  return np.exp(log_volume_ratio(n))


def log_ball_volume_stirling(n) -> np.ndarray:
  """Stirling approximation log V_n ~ -0.5 log(pi n) + (n/2) log(2 pi e / n)."""
  n = np.asarray(n, np.float64)
  return -0.5 * np.log(math.pi * n) + 0.5 * n * np.log(2 * math.pi * math.e / n)


def monte_carlo_ball_in_cube(n: int, num_samples: int, seed: int = 0, batch: int = 200_000):
  """Acceptance of 'uniform in [-1,1]^n, keep if ||x|| <= 1': returns (estimate, binomial std)."""
  rng = np.random.default_rng(seed)
  hits, done = 0, 0
  while done < num_samples:
    b = min(batch, num_samples - done)
    x = rng.uniform(-1.0, 1.0, size=(b, n))
    hits += int(np.sum(np.sum(x * x, axis=1) <= 1.0))
    done += b
  p = hits / num_samples
  return p, math.sqrt(max(p * (1 - p), 1e-300) / num_samples)


def spearman(a, b) -> float:
  """Spearman rank correlation (average ranks for ties), as scipy.stats.spearmanr."""
  return float(stats.spearmanr(np.asarray(a), np.asarray(b)).statistic)
