"""Accuracy surrogates: the baselines of the EXACT paper's tables (kexue.fm 9098, spec 02 §3.5).

All losses take ``logits`` of shape ``[..., C]`` and integer ``labels`` of shape ``[...]`` and return the
mean over all leading (batch) axes. Deltas are *true minus alternative*: ``Delta_j = z_y - z_j`` for the
``C - 1`` classes ``j != y`` (the true-class column is removed).

=================  ==========================================================================
loss               per sample
=================  ==========================================================================
cross-entropy      ``-log softmax(z)_y``
hinge              ``max(0, m - Delta_j)``, averaged over all (sample, alternative) pairs
sigmoid            ``sum_j (1 - sigmoid(Delta_j / T))``
Beta-Bernoulli     ``sum_j -log(w theta + (1 - w) sigmoid(Delta_j / T))``, ``w = sigmoid(h_w)``,
                   ``theta = sigmoid(h_theta)`` (``h`` = 0 gives the frozen tabular setting)
polynomial         ``sum_j (D^3/4 - 3 D/4 + 1/2)``, ``D = clip(Delta_j / T, -1, 1)``
PolyLoss (Poly-1)  ``CE + eps (1 - p_y)`` under softmax
smoothed accuracy  ``1 - p_y`` under softmax (Su's "smoothed accuracy", 10145)
=================  ==========================================================================
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def _is_concrete(x) -> bool:
  return not isinstance(x, jax.core.Tracer)


def check_logits_labels(logits, labels, name: str = "loss") -> None:
  """Eager shape/dtype/range checks; value checks only when the arrays are concrete (not traced).

  Under ``jit`` the values cannot be checked: out-of-range labels and NaN logits then make every loss NaN
  (never a finite wrong value), so the training loop's non-finite guard stops the run and names the step.

  Raises:
    TypeError: integer logits or non-integer labels.
    ValueError: shape mismatch, fewer than 2 classes, an empty batch, labels out of ``[0, C)``, non-finite
      logits.
  """
  logits_dtype = jnp.result_type(logits)
  if not jnp.issubdtype(logits_dtype, jnp.floating):
    raise TypeError(f"{name}: logits must be a floating array, got dtype {logits_dtype}; "
                    "cast with logits.astype(jnp.float32).")
  labels_dtype = jnp.result_type(labels)
  if not jnp.issubdtype(labels_dtype, jnp.integer):
    raise TypeError(f"{name}: labels must be integer class indices, got dtype {labels_dtype}; "
                    "pass labels.astype(jnp.int32) (one-hot targets are not accepted).")
  if jnp.ndim(logits) < 1 or jnp.shape(logits)[-1] < 2:
    raise ValueError(f"{name}: logits must have shape [..., C] with C >= 2 classes, got {jnp.shape(logits)}.")
  if tuple(jnp.shape(labels)) != tuple(jnp.shape(logits)[:-1]):
    raise ValueError(f"{name}: labels shape {jnp.shape(labels)} must equal logits.shape[:-1] = "
                     f"{jnp.shape(logits)[:-1]} (one integer label per row of logits).")
  num_classes = jnp.shape(logits)[-1]
  if int(np.prod(jnp.shape(labels))) == 0:
    raise ValueError(f"{name}: the batch is empty (logits shape {jnp.shape(logits)}); the mean over no samples is "
                     "undefined. Pass at least one sample.")
  if _is_concrete(labels):
    lab = np.asarray(labels)
    if lab.size and (lab.min() < 0 or lab.max() >= num_classes):
      raise ValueError(f"{name}: labels must lie in [0, {num_classes}) for {num_classes} classes, got values in "
                       f"[{lab.min()}, {lab.max()}]; check the label encoding or the number of logits.")
  if _is_concrete(logits):
    lg = np.asarray(logits, dtype=np.float32)
    if not np.all(np.isfinite(lg)):
      raise ValueError(f"{name}: logits contain {int((~np.isfinite(lg)).sum())} non-finite value(s) (nan/inf); "
                       "fix the model or the input, or mask classes explicitly instead of using -inf.")


def label_deltas(logits, labels):
  """``Delta_j = z_y - z_j`` for ``j != y``, shape ``[..., C - 1]`` (true-class column removed, order kept)."""
  num_classes = logits.shape[-1]
  z_y = jnp.take_along_axis(logits, labels[..., None], axis=-1)
  deltas = z_y - logits                                             # [..., C], zero at y
  # Index of the j-th alternative: j if j < y else j + 1.
  j = jnp.arange(num_classes - 1)
  idx = j + (j >= labels[..., None]).astype(j.dtype)                # [..., C-1]
  return jnp.take_along_axis(deltas, idx, axis=-1)


def cross_entropy(logits, labels):
  """Mean softmax cross-entropy ``-log p_y``."""
  check_logits_labels(logits, labels, "cross_entropy")
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return -jnp.mean(jnp.take_along_axis(logp, labels[..., None], axis=-1))


def softmax_prob_of(logits, labels):
  """``p_y`` under softmax, shape ``logits.shape[:-1]``."""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return jnp.exp(jnp.take_along_axis(logp, labels[..., None], axis=-1)[..., 0])


def smoothed_accuracy_loss(logits, labels):
  """Su's smoothed accuracy loss ``1 - mean p_y`` under softmax (bounded; vanishing gradient when p_y ~ 0)."""
  check_logits_labels(logits, labels, "smoothed_accuracy_loss")
  return 1.0 - jnp.mean(softmax_prob_of(logits, labels))


def hinge(logits, labels, margin: float = 1.0):
  """Multi-class hinge: mean over all (sample, alternative) pairs of ``max(0, margin - Delta_j)``."""
  check_logits_labels(logits, labels, "hinge")
  d = label_deltas(logits.astype(jnp.float32), labels)
  return jnp.mean(jax.nn.relu(margin - d))


def _check_temperature(temperature, name):
  if _is_concrete(temperature) and np.any(np.asarray(temperature) <= 0):
    raise ValueError(f"{name}: temperature must be > 0, got {temperature}.")


def sigmoid_loss(logits, labels, temperature=1.0):
  """Sigmoid relaxation of the 0-1 error: ``sum_j (1 - sigmoid(Delta_j / T))`` per sample, batch mean."""
  check_logits_labels(logits, labels, "sigmoid_loss")
  _check_temperature(temperature, "sigmoid_loss")
  d = label_deltas(logits.astype(jnp.float32), labels) / temperature
  return jnp.mean(jnp.sum(1.0 - jax.nn.sigmoid(d), axis=-1))


def beta_bernoulli_loss(logits, labels, temperature=1.0, h_w=0.0, h_theta=0.0):
  """Beta-Bernoulli loss ``sum_j -log(w theta + (1-w) sigmoid(Delta_j/T))`` with ``w, theta = sigmoid(h)``.

  ``h_w`` and ``h_theta`` may be trainable scalars; the tabular script keeps them at 0 (``w = theta = 1/2``).
  """
  check_logits_labels(logits, labels, "beta_bernoulli_loss")
  _check_temperature(temperature, "beta_bernoulli_loss")
  d = label_deltas(logits.astype(jnp.float32), labels) / temperature
  w = jax.nn.sigmoid(h_w)
  theta = jax.nn.sigmoid(h_theta)
  return jnp.mean(jnp.sum(-jnp.log(w * theta + (1.0 - w) * jax.nn.sigmoid(d)), axis=-1))


def polynomial_loss(logits, labels, temperature=1.0):
  """Cubic relaxation ``sum_j (D^3/4 - 3D/4 + 1/2)``, ``D = clip(Delta_j/T, -1, 1)`` (1 at D=-1, 0 at D=1)."""
  check_logits_labels(logits, labels, "polynomial_loss")
  _check_temperature(temperature, "polynomial_loss")
  d = jnp.clip(label_deltas(logits.astype(jnp.float32), labels) / temperature, -1.0, 1.0)
  return jnp.mean(jnp.sum(0.25 * d ** 3 - 0.75 * d + 0.5, axis=-1))


def poly1_loss(logits, labels, epsilon: float = 1.0):
  """PolyLoss (Poly-1): ``CE + epsilon * mean(1 - p_y)`` under softmax."""
  check_logits_labels(logits, labels, "poly1_loss")
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  logp_y = jnp.take_along_axis(logp, labels[..., None], axis=-1)[..., 0]
  return jnp.mean(-logp_y + epsilon * (1.0 - jnp.exp(logp_y)))


def accuracy(logits, labels):
  """Top-1 accuracy (ties resolved by ``argmax``, i.e. the first maximal class)."""
  return jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))


SURROGATES = {
    "ce": cross_entropy,
    "hinge": hinge,
    "sigmoid": sigmoid_loss,
    "beta_bernoulli": beta_bernoulli_loss,
    "polynomial": polynomial_loss,
    "polyloss": poly1_loss,
    "smoothed_accuracy": smoothed_accuracy_loss,
}
