"""Classifier output heads: a softmax head and the Perturb-Max head (kexue.fm 9085), with an NLL loss.

Both heads map features ``[..., d]`` to log-probabilities ``[..., num_classes]``, so they are drop-in
replacements for each other:

    log_probs = PerturbMaxHead(10, noise="normal")(features)      # Dense -> logits -> log Perturb-Max
    loss = nll_loss(log_probs, labels)                             # -mean log p_y
    pred = log_probs.argmax(-1)

``PerturbMaxHead(noise="gumbel")`` equals ``SoftmaxHead`` (closed form). With ``learn_temperature=True`` the
noise scale s = init_scale * exp(log_temperature) is a parameter (logits are divided by s). For a
scale-matched comparison with softmax, set ``init_scale=GUMBEL_STD`` (= pi/sqrt(6), the Gumbel std).

For large class counts, training only needs log p_y, which costs O(n K) per row instead of O(n^2 K):
use ``PerturbMaxHead(...).apply(params, x, method="log_prob_of", labels=y)`` or :func:`perturb_max_nll`.
"""
from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from research.distributions import perturb_max as pm


class SoftmaxHead(nn.Module):
  """Dense -> log_softmax."""
  num_classes: int
  use_bias: bool = True
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    logits = nn.Dense(self.num_classes, use_bias=self.use_bias, dtype=self.dtype, name="dense")(x)
    return jax.nn.log_softmax(logits.astype(jnp.promote_types(logits.dtype, jnp.float32)), axis=-1)


class PerturbMaxHead(nn.Module):
  """Dense -> logits -> Perturb-Max log-probabilities log P[argmax(logits/s + eps) = i].

  Attributes:
    num_classes: output classes n.
    noise: "normal" | "logistic" | "cauchy" | "gumbel" (= softmax) | a ``perturb_max.Noise``.
    rule: quadrature rule (None: the library default -- mode-centred adaptive Gauss-Hermite; Gauss-Legendre in
      u for Cauchy noise; Gauss-Hermite levels for the max-quantile method used from 16 classes on).
    num_nodes: quadrature size K (None: the library default for the noise, rule and class count).
    init_scale: the noise scale s (fixed unless ``learn_temperature``).
    learn_temperature: learn log(s / init_scale), initialised at 0.
  """
  num_classes: int
  noise: Any = "normal"
  rule: Optional[str] = None
  num_nodes: Optional[int] = None
  init_scale: float = 1.0
  learn_temperature: bool = False
  use_bias: bool = True
  dtype: Any = None

  def setup(self):
    pm.get_noise(self.noise)  # fail early on an unknown noise
    if self.num_classes < 1:
      raise ValueError(f"num_classes must be >= 1, got {self.num_classes}.")
    if not self.init_scale > 0:
      raise ValueError(f"init_scale must be > 0, got {self.init_scale}.")
    self.dense = nn.Dense(self.num_classes, use_bias=self.use_bias, dtype=self.dtype)
    if self.learn_temperature:
      self.log_temperature = self.param("log_temperature", nn.initializers.zeros, ())

  def scale(self):
    s = jnp.asarray(self.init_scale, jnp.float32)
    if self.learn_temperature:
      s = s * jnp.exp(self.log_temperature)
    return s

  def logits(self, x):
    return self.dense(x)

  def __call__(self, x, mask=None):
    return pm.perturb_max_log_probs(self.dense(x), self.noise, self.rule, self.num_nodes,
                                    scale=self.scale(), mask=mask)

  def log_prob_of(self, x, labels, mask=None):
    """log p_y only, O(n K) per row."""
    return pm.perturb_max_log_prob_of(self.dense(x), labels, self.noise, self.rule, self.num_nodes,
                                      scale=self.scale(), mask=mask)


def nll_loss(log_probs, labels, weights=None):
  """Mean negative log-likelihood -mean_b log p[b, y_b] of log-probabilities from either head.

  Eager calls validate (integer labels of shape ``log_probs.shape[:-1]`` in ``[0, n)`` -> TypeError/ValueError);
  under jit invalid labels/NaN inputs give NaN so the training loop's non-finite guard stops the run.
  """
  labels = jnp.asarray(labels)
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise TypeError(f"labels must be integer class indices, got dtype {labels.dtype}.")
  if labels.shape != log_probs.shape[:-1]:
    raise ValueError(f"labels shape {labels.shape} must equal log_probs.shape[:-1] = {log_probs.shape[:-1]}.")
  n = log_probs.shape[-1]
  if not isinstance(labels, jax.core.Tracer):
    lab = np.asarray(labels)
    if lab.size and (lab.min() < 0 or lab.max() >= n):
      raise ValueError(f"nll_loss: labels must lie in [0, {n}) for {n} classes, got values in "
                       f"[{lab.min()}, {lab.max()}]; check the label encoding or the head's num_classes.")
  valid = (labels >= 0) & (labels < n)
  lp = jnp.take_along_axis(log_probs, jnp.clip(labels, 0, n - 1)[..., None].astype(jnp.int32), axis=-1)[..., 0]
  lp = jnp.where(valid, lp, jnp.nan)
  if weights is None:
    return -jnp.mean(lp)
  weights = jnp.asarray(weights, lp.dtype)
  return -jnp.sum(weights * lp) / jnp.maximum(jnp.sum(weights), 1e-12)


def perturb_max_nll(logits, labels, noise="normal", rule=None, num_nodes=None, scale=1.0, mask=None):
  """-mean log p_y of Perturb-Max from logits, via the O(n K) single-class path."""
  return -jnp.mean(pm.perturb_max_log_prob_of(logits, labels, noise, rule, num_nodes, scale=scale,
                                              mask=mask))
