"""Su Jianlin's training rules derived from Amos (kexue.fm/archives/9344) as a plug-in optax transform.

Placed after any base *direction* ``u_t`` (Adam's m/sqrt(v), Lion's sign(.), plain gradients, ...), the
transform :func:`su_rules` returns, per tensor,

  delta_t = -s(t) [ alpha0 sigma u_t / (RMS(u_t) + eps) + alpha0^2 / (2 q) theta_t ],

i.e. an update of RMS ``alpha0 * sigma * s(t)`` over the *whole* tensor (Su's ||u_t|| normalisation) and a
decoupled weight decay rho_t = s(t) alpha0^2 / (2q) that is **not** multiplied by the learning rate
(the learning rate here is alpha_t = alpha0 sigma s(t) / RMS(u_t)). ``sigma`` is the tensor's expected
scale of change, from the regex rules of :mod:`research.optim.rules`. Schedules (t = 0-based step):

  R2 (constant p, inverse square): s(t) = 1 / (alpha0 p t + 1)^2,  half-life T: alpha0 p = (sqrt(2) - 1) / T
  R3 (p_t = p0 e^{-S_t}, inverse time): s(t) = 1 / (kappa t + 1),  kappa = 2 alpha0 p0, half-life: kappa = 1/T

Su suggests alpha0 ~ 1e-3 (up to 1e-2 for easy tasks), q = 1, sigma = 0.5 for gains and biases.
Apply the result with ``optax.apply_updates`` (it is already signed).
"""
from __future__ import annotations

import math
import numbers
from typing import Callable, NamedTuple, Optional, Tuple, Union

import jax
import jax.numpy as jnp
import optax

from research.optim.amos import path_names

__all__ = ["SuRulesState", "su_rules", "r2_schedule", "r3_schedule", "r2_alpha0_p_from_half_life",
           "r3_kappa_from_half_life", "lion_equivalent", "adam_su", "lion_su"]


class SuRulesState(NamedTuple):
  count: jax.Array  # int32 scalar, number of updates done


def r2_alpha0_p_from_half_life(half_life: float) -> float:
  """alpha0 * p such that the R2 factor 1/(alpha0 p t + 1)^2 equals 1/2 at t = half_life."""
  if not half_life > 0:
    raise ValueError(f"half_life must be > 0 steps, got {half_life}")
  return (math.sqrt(2.0) - 1.0) / half_life


def r3_kappa_from_half_life(half_life: float) -> float:
  """kappa (= 2 alpha0 p0) such that the R3 factor 1/(kappa t + 1) equals 1/2 at t = half_life."""
  if not half_life > 0:
    raise ValueError(f"half_life must be > 0 steps, got {half_life}")
  return 1.0 / half_life


def r2_schedule(alpha0_p: float) -> Callable:
  """R2: t -> 1 / (alpha0 p t + 1)^2."""
  if not alpha0_p >= 0:
    raise ValueError(f"alpha0*p must be >= 0, got {alpha0_p}")
  return lambda t: 1.0 / jnp.square(alpha0_p * t + 1.0)


def r3_schedule(kappa: float) -> Callable:
  """R3: t -> 1 / (kappa t + 1), kappa = 2 alpha0 p0."""
  if not kappa >= 0:
    raise ValueError(f"kappa must be >= 0, got {kappa}")
  return lambda t: 1.0 / (kappa * t + 1.0)


def lion_equivalent(alpha0: float, sigma: float, q: float = 1.0) -> Tuple[float, float]:
  """For a sign direction (RMS(u) = 1) the rules give lr = alpha0 sigma and a coupled weight-decay
  coefficient lambda = rho / lr = alpha0 / (2 q sigma) (Su, kexue.fm/archives/9473)."""
  return alpha0 * sigma, alpha0 / (2.0 * q * sigma)


def _schedule_from(schedule, alpha0, half_life, alpha0_p, kappa):
  if callable(schedule):
    return schedule
  if schedule in (None, "constant", "none"):
    return lambda t: jnp.ones_like(jnp.asarray(t, jnp.float32))
  if schedule == "r2":
    if alpha0_p is None:
      if half_life is None:
        raise ValueError("schedule='r2' needs alpha0_p (= alpha0 * p) or half_life (steps)")
      alpha0_p = r2_alpha0_p_from_half_life(half_life)
    return r2_schedule(alpha0_p)
  if schedule == "r3":
    if kappa is None:
      if half_life is None:
        raise ValueError("schedule='r3' needs kappa (= 2 alpha0 p0) or half_life (steps)")
      kappa = r3_kappa_from_half_life(half_life)
    return r3_schedule(kappa)
  raise ValueError(f"Unknown schedule {schedule!r}; use 'r2', 'r3', 'constant' or a callable t -> s(t)")


def su_rules(alpha0: float, sigma_fn: Union[Callable, float], *, q: float = 1.0,
             schedule: Union[str, Callable, None] = "r3", half_life: Optional[float] = None,
             alpha0_p: Optional[float] = None, kappa: Optional[float] = None,
             eps: float = 1e-12) -> optax.GradientTransformation:
  """Su's rules (R2/R3) as a transform placed after a base direction; see the module docstring.

  Args:
    alpha0: global relative step per update (> 0; ~1e-3).
    sigma_fn: ``(path, shape) -> sigma > 0`` (e.g. ``rules.sigma_fn(rules.su_sigma_rules())``) or a number.
    q: safety factor of the weight decay alpha0^2 / (2q) (> 0; Su: 1).
    schedule: 'r2', 'r3', 'constant' or a callable of the 0-based step.
    half_life: steps after which the schedule factor is 1/2 (alternative to ``alpha0_p`` / ``kappa``).
    eps: added to RMS(u) to avoid 0/0 for an all-zero direction.
  """
  if isinstance(alpha0, numbers.Number) and not (alpha0 > 0 and math.isfinite(alpha0)):
    raise ValueError(f"alpha0 (the relative step) must be a finite positive number, got {alpha0}")
  if not q > 0:
    raise ValueError(f"q must be > 0, got {q}")
  sched = _schedule_from(schedule, alpha0, half_life, alpha0_p, kappa)
  sig = sigma_fn if callable(sigma_fn) else (lambda name, shape: sigma_fn)

  def init_fn(params):
    del params
    return SuRulesState(count=jnp.zeros([], jnp.int32))

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("su_rules needs the current parameters for its weight decay: call "
                       "tx.update(updates, state, params).")
    s = sched(state.count)
    decay = alpha0 * alpha0 / (2.0 * q)
    p_leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    u_leaves = treedef.flatten_up_to(updates)
    out = []
    for (path, theta), u in zip(p_leaves, u_leaves):
      name = path_names(path)
      sigma = sig(name, tuple(theta.shape))
      if isinstance(sigma, numbers.Number) and not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma} for parameter {'/'.join(name)!r} of shape "
                         f"{tuple(theta.shape)}")
      cdt = jnp.promote_types(u.dtype, jnp.float32)
      uc = u.astype(cdt)
      rms = jnp.sqrt(jnp.mean(jnp.square(uc)))
      delta = -s * (alpha0 * sigma * uc / (rms + eps) + decay * theta.astype(cdt))
      out.append(delta.astype(u.dtype))
    return jax.tree_util.tree_unflatten(treedef, out), SuRulesState(count=optax.safe_int32_increment(state.count))

  return optax.GradientTransformation(init_fn, update_fn)


def adam_su(alpha0: float, sigma_fn, *, b1: float = 0.9, b2: float = 0.999, eps_adam: float = 1e-8,
            **kw) -> optax.GradientTransformation:
  """AdamW with Su's rules: Adam's direction m_hat / (sqrt(v_hat) + eps), then :func:`su_rules`."""
  return optax.chain(optax.scale_by_adam(b1=b1, b2=b2, eps=eps_adam), su_rules(alpha0, sigma_fn, **kw))


def lion_su(alpha0: float, sigma_fn, *, b1: float = 0.9, b2: float = 0.99, **kw) -> optax.GradientTransformation:
  """Lion (sign direction) with Su's rules (9473's worked example)."""
  return optax.chain(optax.scale_by_lion(b1=b1, b2=b2), su_rules(alpha0, sigma_fn, **kw))
