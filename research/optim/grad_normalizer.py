"""EXACT's training devices (kexue.fm 9098, spec 02 §3.4): gradient normaliser and sigma / LR schedules.

* :func:`gradient_normalizer` -- keeps an EMA of the global gradient norm (the first step uses the raw norm)
  and divides every gradient by ``max(EMA, floor)``. An optax ``GradientTransformation``; put it *first* in
  ``optax.chain(gradient_normalizer(), optax.add_decayed_weights(wd, mask), optax.sgd(lr, momentum))`` so the
  weight decay is added after normalisation, as in the official code.
* :func:`sigma_schedule` -- tabular ``sigma_e = sigma_0 (sigma_min / sigma_0)^(e / E)``, ``e = 0..E-1``
  (the last epoch stays slightly above ``sigma_min``).
* :func:`variance_schedule` -- vision: variance decays exponentially from ``initial`` (100) to ``minimum``
  over the epochs; ``sigma = sqrt(variance)``.
* :func:`epoch_exponential_lr` -- ``lr * gamma^e`` with ``gamma = (final / lr)^(1 / (E - 1))`` so the last
  epoch runs at exactly ``final`` (1e-4 in the paper).

All schedules map an optimizer step count to a value (optax ``Schedule`` protocol), piecewise constant per
epoch; ``steps_per_epoch`` converts steps to epochs.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax


class GradientNormalizerState(NamedTuple):
  """State of :func:`gradient_normalizer`: EMA of the global gradient norm and a first-step flag."""
  ema_norm: jax.Array      # float32 scalar
  initialized: jax.Array   # bool scalar: False until the first update


def gradient_normalizer(momentum: float = 0.9, floor: float = 0.01) -> optax.GradientTransformation:
  """Divides all gradients by ``max(EMA of the global gradient norm, floor)``.

  ``ema_t = momentum * ema_{t-1} + (1 - momentum) * ||g_t||`` with ``ema_1 = ||g_1||``.

  Args:
    momentum: EMA momentum in ``[0, 1)`` (0.9 in the paper).
    floor: lower bound of the divisor (> 0), so near-zero gradients are not blown up.
  """
  if isinstance(momentum, (int, float)) and not 0.0 <= momentum < 1.0:
    raise ValueError(f"gradient_normalizer: momentum must be in [0, 1), got {momentum}.")
  if isinstance(floor, (int, float)) and not floor > 0.0:
    raise ValueError(f"gradient_normalizer: floor must be > 0, got {floor}.")

  def init_fn(params):
    del params
    return GradientNormalizerState(ema_norm=jnp.zeros([], jnp.float32),
                                   initialized=jnp.zeros([], jnp.bool_))

  def update_fn(updates, state, params=None):
    del params
    norm = optax.global_norm(updates).astype(jnp.float32)
    ema = jnp.where(state.initialized, momentum * state.ema_norm + (1.0 - momentum) * norm, norm)
    scale = 1.0 / jnp.maximum(ema, floor)
    updates = jax.tree_util.tree_map(lambda g: (g * scale).astype(g.dtype), updates)
    return updates, GradientNormalizerState(ema_norm=ema, initialized=jnp.ones([], jnp.bool_))

  return optax.GradientTransformation(init_fn, update_fn)


def _check_epochs(num_epochs, steps_per_epoch, name):
  if int(num_epochs) < 1 or int(steps_per_epoch) < 1:
    raise ValueError(f"{name}: num_epochs and steps_per_epoch must be >= 1, got {num_epochs}, {steps_per_epoch}.")


def _epoch(count, steps_per_epoch, num_epochs):
  return jnp.minimum(jnp.asarray(count) // steps_per_epoch, num_epochs - 1).astype(jnp.float32)


def sigma_schedule(initial: float = 10.0, minimum: float = 0.01, num_epochs: int = 16,
                   steps_per_epoch: int = 1) -> optax.Schedule:
  """Tabular sigma (or relaxation temperature) ``initial * (minimum / initial)^(e / E)`` for epoch ``e``."""
  _check_epochs(num_epochs, steps_per_epoch, "sigma_schedule")
  if not (initial > 0 and minimum > 0):
    raise ValueError(f"sigma_schedule: initial and minimum sigma must be > 0, got {initial}, {minimum}.")
  ratio = float(minimum) / float(initial)

  def schedule(count):
    e = _epoch(count, steps_per_epoch, num_epochs)
    return initial * ratio ** (e / num_epochs)
  return schedule


def variance_schedule(initial: float = 100.0, minimum: float = 1.0, num_epochs: int = 150,
                      steps_per_epoch: int = 1, return_sigma: bool = True) -> optax.Schedule:
  """Vision schedule: variance ``initial * (minimum / initial)^(e / (E - 1))``; returns sigma = sqrt(var).

  The variance reaches ``minimum`` at the last epoch (``E > 1``).
  """
  _check_epochs(num_epochs, steps_per_epoch, "variance_schedule")
  if not (initial > 0 and minimum > 0):
    raise ValueError(f"variance_schedule: variances must be > 0, got {initial}, {minimum}.")
  ratio = float(minimum) / float(initial)
  denom = max(int(num_epochs) - 1, 1)

  def schedule(count):
    e = _epoch(count, steps_per_epoch, num_epochs)
    var = initial * ratio ** (e / denom)
    return jnp.sqrt(var) if return_sigma else var
  return schedule


def epoch_exponential_lr(lr, final: float = 1e-4, num_epochs: int = 16,
                         steps_per_epoch: int = 1) -> optax.Schedule:
  """Per-epoch exponential LR ``lr * gamma^e``, ``gamma = (final / lr)^(1 / (E - 1))`` (last epoch = final).

  ``lr`` may be a traced scalar (e.g. a vmapped hyperparameter).
  """
  _check_epochs(num_epochs, steps_per_epoch, "epoch_exponential_lr")
  if isinstance(lr, (int, float)) and lr <= 0:
    raise ValueError(f"epoch_exponential_lr: lr must be > 0, got {lr}.")
  denom = max(int(num_epochs) - 1, 1)

  def schedule(count):
    e = _epoch(count, steps_per_epoch, num_epochs)
    log_gamma = (jnp.log(final) - jnp.log(lr)) / denom
    return lr * jnp.exp(log_gamma * e)
  return schedule


def sigma_values(schedule: optax.Schedule, num_epochs: int, steps_per_epoch: int) -> np.ndarray:
  """The per-epoch values of a schedule (for reports and plots)."""
  return np.asarray([float(schedule(e * steps_per_epoch)) for e in range(num_epochs)])
