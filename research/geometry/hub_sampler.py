"""Hub-prior latent sampling (Liang et al., ICML 2022; kexue 9147) and its baselines.

A batch of ``n_ref`` latents z ~ N(0, I) is drawn; every latent gets its hub value (k-occurrence)
within the batch, computed either in the prior space z or in W = mapping(z) (StyleGAN-like mapping
network); the latents whose hub value passes the threshold t are kept; fresh batches are drawn until
enough latents are collected.

Rules (``HubRule``):
  * ``SU_RULE`` (article code ``get_z_samples``): z space, N = 10,000, k = 5, self *not* in the list
    (ranks 1..5), keep N_5 > 50 (strict).
  * ``OFFICIAL_RULE`` (Liang et al.'s notebook): W space, N = 10,000, k = 5, the query is its own first
    neighbour (count = 1 + N_4), keep count >= 50 (non-strict).
Both differences (strict/non-strict, self in/out) are switches of ``HubRule``.

Baselines, computed from the *same* candidate batches (``select_with_controls``):
  * min-norm at equal acceptance: per batch, the same number of latents as the hub rule keeps, with the
    smallest ||z|| (in W: smallest ||w - w_mean||);
  * anti-hubs: hub value 0 (or <= ``antihub_max``);
  * random: the first latents of each batch, same count;
  * truncation ``truncate(x, psi, center)``: center + psi (x - center) (z: center 0; W: batch mean or
    the EMA w_avg of training).

Hub values depend on the reference batch (not on z alone): batch b uses ``jax.random.fold_in(key, b)``.
A threshold that no latent can pass (t >= N - 1 for strict without self, ...) raises immediately, and a
run that keeps fewer than requested within ``max_batches`` raises with the measured acceptance rate
instead of looping forever.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from research.geometry import knn as knn_lib


@dataclasses.dataclass(frozen=True)
class HubRule:
  """Which latents count as hubs: hub value (k-occurrence within a batch of n_ref) vs threshold."""
  n_ref: int = 10_000
  k: int = 5
  threshold: float = 50.0
  strict: bool = True            # keep value > t (Su's code) or value >= t (official code)
  include_self: bool = False     # official code: the query is its own 1st neighbour (1 + N_{k-1})
  space: str = "z"               # "z" (prior) or "w" (through a mapping network)
  metric: str = "sqeuclidean"

  def max_value(self) -> int:
    """Largest hub value any latent can have in a batch."""
    return self.n_ref if self.include_self else self.n_ref - 1

  def validate(self):
    if self.n_ref < 2:
      raise ValueError(f"n_ref must be >= 2; got {self.n_ref}.")
    if not 1 <= self.k <= (self.n_ref if self.include_self else self.n_ref - 1):
      raise ValueError(f"k={self.k} must satisfy 1 <= k < n_ref={self.n_ref} "
                       "(k >= N leaves no neighbours to count).")
    if self.space not in ("z", "w"):
      raise ValueError(f"space must be 'z' or 'w'; got {self.space!r}.")
    if not math.isfinite(self.threshold):
      raise ValueError(f"threshold must be finite; got {self.threshold}.")
    top = self.max_value()
    if (self.strict and self.threshold >= top) or (not self.strict and self.threshold > top):
      op = ">" if self.strict else ">="
      raise ValueError(
          f"No latent can pass: the hub value is at most {top} (n_ref={self.n_ref}, "
          f"include_self={self.include_self}) but the rule keeps value {op} {self.threshold}. Lower "
          "the threshold (see calibrate_threshold) or raise n_ref.")
    return self

  def passes(self, values):
    values = np.asarray(values)
    return values > self.threshold if self.strict else values >= self.threshold


SU_RULE = HubRule(n_ref=10_000, k=5, threshold=50, strict=True, include_self=False, space="z")
OFFICIAL_RULE = HubRule(n_ref=10_000, k=5, threshold=50, strict=False, include_self=True, space="w")


def hub_values(points, rule: HubRule, **knn_kw) -> np.ndarray:
  """Hub value of every point of one reference batch under ``rule`` (self in or out)."""
  return np.asarray(knn_lib.hub_values(points, rule.k, include_self=rule.include_self,
                                       metric=rule.metric, **knn_kw))


def calibrate_threshold(values, target_acceptance: float, strict: bool = True) -> float:
  """Smallest threshold t whose acceptance on ``values`` is <= target (the t-vs-N,k,d pitfall).

  Because hub values are integers the achieved acceptance is the largest attainable one not above
  the target (at least one value is kept, unless none can be).
  """
  if not 0.0 < target_acceptance <= 1.0:
    raise ValueError(f"target_acceptance must be in (0, 1]; got {target_acceptance}.")
  v = np.sort(np.asarray(values, np.float64))
  for t in np.unique(v):
    cand = t if strict else t + 1
    acc = np.mean(v > cand) if strict else np.mean(v >= cand)
    if acc <= target_acceptance:
      return float(cand)
  return float(v[-1] - 1 if strict else v[-1])


def truncate(x, psi: float, center=None):
  """Truncation trick x' = c + psi (x - c) (c = 0 in z; batch mean or EMA w_avg in W)."""
  x = jnp.asarray(x)
  if center is None:
    return psi * x
  return center + psi * (x - center)


def _check_count(num: int):
  if not isinstance(num, (int, np.integer)) or num < 1:
    raise ValueError(f"number of latents requested must be a positive int; got {num!r}.")


def select_with_controls(key, num: int, z_dim: int, rule: HubRule,
                         mapping: Optional[Callable] = None, *, max_batches: int = 100,
                         antihub_max: int = 0, w_center=None, knn_kw: Optional[dict] = None,
                         controls: bool = True) -> dict:
  """Collects ``num`` hub latents under ``rule`` and, from the same batches, the controls.

  Args:
    key: PRNG key; batch b uses ``fold_in(key, b)``.
    num: hub latents wanted (the controls get the same count per batch).
    z_dim: latent dimension.
    rule: ``HubRule`` (``rule.space == "w"`` requires ``mapping``).
    mapping: callable z [n, z_dim] -> w [n, w_dim] (jit it); used for the W space and returned w's.
    max_batches: give up (RuntimeError with the acceptance seen) after this many batches.
    antihub_max: anti-hubs are latents with N_k <= antihub_max (self never counted here).
    w_center: center for min-norm in W (default: the batch mean of w).
    controls: also collect the min-norm / random / anti-hub controls.

  Returns dict of numpy arrays: ``z_hub`` [num, z_dim] (and ``w_hub`` when mapping is given),
  ``z_minnorm``, ``z_random``, ``z_antihub`` (+ w_*), ``hub_values`` of kept latents, ``acceptance``
  (kept / drawn), ``batches``, ``all_values`` (hub values of the first batch), ``threshold``.
  """
  rule.validate()
  _check_count(num)
  if rule.space == "w" and mapping is None:
    raise ValueError("rule.space == 'w' needs a mapping network (mapping=callable z -> w).")
  knn_kw = knn_kw or {}
  keep = {name: [] for name in ("z_hub", "z_minnorm", "z_random", "z_antihub",
                                "w_hub", "w_minnorm", "w_random", "w_antihub", "hub_values")}
  got, anti_got, drawn, passed, first_values = 0, 0, 0, 0, None
  b = 0
  for b in range(max_batches):
    z = jax.random.normal(jax.random.fold_in(key, b), (rule.n_ref, z_dim), jnp.float32)
    w = mapping(z) if mapping is not None else None
    space = w if rule.space == "w" else z
    vals = hub_values(space, rule, **knn_kw)
    if first_values is None:
      first_values = vals
    drawn += rule.n_ref
    mask = rule.passes(vals)
    passed += int(mask.sum())
    zn = np.asarray(z)
    wn = None if w is None else np.asarray(w)
    take = np.flatnonzero(mask)[: max(num - got, 0)]
    keep["z_hub"].append(zn[take]); keep["hub_values"].append(vals[take])
    if wn is not None:
      keep["w_hub"].append(wn[take])
    if controls:
      c = len(take)
      sp = np.asarray(space, np.float64)
      center = (np.asarray(w_center, np.float64) if (rule.space == "w" and w_center is not None)
                else (sp.mean(0) if rule.space == "w" else 0.0))
      norms = np.linalg.norm(sp - center, axis=1)
      mn = np.argsort(norms, kind="stable")[:c]
      rnd = np.arange(c)
      anti = np.flatnonzero(vals - int(rule.include_self) <= antihub_max)[: max(num - anti_got, 0)]
      anti_got += len(anti)
      for name, ids in (("minnorm", mn), ("random", rnd), ("antihub", anti)):
        keep[f"z_{name}"].append(zn[ids])
        if wn is not None:
          keep[f"w_{name}"].append(wn[ids])
    got += len(take)
    if got >= num and (not controls or anti_got >= num):
      break
  if got < num:
    acc = got / max(drawn, 1)
    raise RuntimeError(
        f"Hub sampling kept only {got} of {num} latents in {b + 1} batches of {rule.n_ref} "
        f"(acceptance {acc:.2e}; rule {rule}). The threshold is too high for this n_ref/k/dimension: "
        "lower it (calibrate_threshold to a target acceptance) or raise max_batches.")
  out = {name: np.concatenate(v) for name, v in keep.items() if v}
  out["acceptance"] = passed / drawn       # fraction of all drawn latents that pass the rule
  out["batches"] = b + 1
  out["all_values"] = first_values
  out["threshold"] = rule.threshold
  return out


def sample_hub_latents(key, num: int, z_dim: int, rule: HubRule = SU_RULE,
                       mapping: Optional[Callable] = None, max_batches: int = 100, **kw) -> np.ndarray:
  """Only the hub latents z (the article's ``get_z_samples(size, t=50)``)."""
  return select_with_controls(key, num, z_dim, rule, mapping, max_batches=max_batches,
                              controls=False, **kw)["z_hub"]


def min_norm_select(points, num: int, center=None) -> np.ndarray:
  """Indices of the ``num`` points with the smallest ||x - center|| (stable order)."""
  x = np.asarray(points, np.float64)
  _check_count(num)
  if num > x.shape[0]:
    raise ValueError(f"asked for {num} points but only {x.shape[0]} are available.")
  c = 0.0 if center is None else np.asarray(center, np.float64)
  return np.argsort(np.linalg.norm(x - c, axis=1), kind="stable")[:num]
