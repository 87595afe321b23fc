"""EXACT: training the expected accuracy directly (kexue.fm 9098; Karpukhin et al., arXiv:2205.09615).

The classifier is made stochastic, ``s = mu(x) / sigma + eps`` with ``eps ~ N(0, I)``, and the model maximises

    p(y | x) = P(y = argmax s) = P(Delta / sigma + eta > 0),   eta ~ N(0, I_D + 1 1^T),   D = C - 1,

with deltas ``Delta_j = z_y - z_j`` (true minus alternative, true column removed). Conditioning on the true
class's noise turns this orthant probability into the 1-D normal Perturb-Max integral of 9085 (spec 01, PM):

    p = int phi(e) prod_{j != y} Phi(Delta_j / sigma + e) de.

Two estimators of ``p`` are offered:

* ``method="quadrature"`` -- deterministic Gauss-Hermite quadrature with exact autodiff gradients. It calls
  the one shared 1-D integral :func:`research.distributions.perturb_max.perturb_max_log_prob_of` (no second
  implementation here): the deltas ``m`` are passed as logits ``[0, -m_1, ..., -m_D]`` with label 0.
* ``method="sampling"`` -- the paper's estimator (Genz sequential conditioning on the Cholesky factor of
  ``I + 1 1^T``, deltas sorted ascending, ``n`` shared uniforms, value and the ``D`` gradient channels all in
  the forward pass, installed through a ``jax.custom_vjp``; spec 02 §3.3). Needs an explicit PRNG key.

Training devices (spec 02 §3.4): margin ``Delta <- min(Delta, margin)`` *before* dividing by sigma, logit
standardisation with one scalar mean / unbiased std over the whole ``[B, C]`` tensor, and the aggregations
``mean`` (loss ``1 - mean max(p, 0)``) and ``meanlog`` (``-mean log(max(p, 0) + 1e-6)``).

The module also gives Su's diagnostics (spec 02 §3.6): per-sample CE and smoothed-accuracy losses under
softmax and their correlation, which measures ``E[-log p] ~ 1 - E[p]`` late in training.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy import special as jsp_special

from research.losses import surrogates

METHODS = ("quadrature", "sampling")
AGGREGATIONS = ("mean", "meanlog")


# ----------------------------------------------------------------------------------------------------------
# Validation and preprocessing
# ----------------------------------------------------------------------------------------------------------

def _is_concrete(x) -> bool:
  return not isinstance(x, jax.core.Tracer)


def check_sigma(sigma, name: str = "exact") -> None:
  """Raises ``ValueError`` if a concrete sigma is not strictly positive and finite."""
  if sigma is None:
    raise ValueError(f"{name}: sigma must be given (a positive scalar or per-sample array), got None.")
  if _is_concrete(sigma):
    s = np.asarray(sigma, dtype=np.float64)
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
      raise ValueError(f"{name}: sigma must be finite and > 0, got {sigma!r}; use a positive noise scale "
                       "(e.g. a decaying schedule from 10 to 0.01) or parametrise it as exp(log_sigma).")


def standardize_logits(logits, eps: float = 1e-6):
  """``(z - mean) / (std + eps)`` with ONE scalar mean and unbiased std over the whole logits tensor.

  Pins the logit scale so that sigma is the only temperature; argmax is unchanged.
  """
  z = logits.astype(jnp.float32)
  n = z.size
  if n < 2:
    raise ValueError("standardize_logits: need at least 2 logits to estimate a standard deviation.")
  mean = jnp.mean(z)
  std = jnp.sqrt(jnp.sum((z - mean) ** 2) / (n - 1))
  return (z - mean) / (std + eps)


def exact_margins(logits, labels, sigma=1.0, *, margin=None, standardize: bool = False,
                  standardize_eps: float = 1e-6):
  """The scaled deltas ``m = min(z_y - z_j, margin) / sigma`` for ``j != y``, shape ``[..., C - 1]``.

  Args:
    logits: ``[..., C]`` float.
    labels: ``[...]`` integer in ``[0, C)``.
    sigma: positive scalar or array broadcastable to ``logits.shape[:-1]`` (per-sample sigma).
    margin: ``None`` (no clipping) or a float; alternatives beaten by more than ``margin`` get no gradient.
    standardize: apply :func:`standardize_logits` first (one scalar over the tensor).
  """
  surrogates.check_logits_labels(logits, labels, "exact")
  check_sigma(sigma)
  z = standardize_logits(logits, standardize_eps) if standardize else logits.astype(jnp.float32)
  d = surrogates.label_deltas(z, labels)
  if margin is not None:
    d = jnp.minimum(d, margin)
  sigma = jnp.asarray(sigma, jnp.float32)
  return d / sigma[..., None] if sigma.ndim else d / sigma


# ----------------------------------------------------------------------------------------------------------
# Deterministic quadrature: the shared 1-D Perturb-Max integral of 9085
# ----------------------------------------------------------------------------------------------------------

def orthant_log_prob_quadrature(m, *, num_nodes=None, rule=None):
  """``log P(m + eta > 0)``, ``eta ~ N(0, I + 1 1^T)``, over the last axis of ``m`` ([..., D]), by quadrature.

  Thin wrapper over :func:`research.distributions.perturb_max.perturb_max_log_prob_of` (normal noise): the
  orthant probability equals the Perturb-Max probability of class 0 for logits ``[0, -m]``. ``rule``/
  ``num_nodes`` None: the shared default (mode-centred adaptive Gauss-Hermite, K = 8).
  """
  from research.distributions import perturb_max  # the single shared implementation of the integral
  m = jnp.asarray(m, jnp.float32)
  logits = jnp.concatenate([jnp.zeros(m.shape[:-1] + (1,), m.dtype), -m], axis=-1)
  labels = jnp.zeros(m.shape[:-1], jnp.int32)
  return perturb_max.perturb_max_log_prob_of(logits, labels, noise="normal", rule=rule, num_nodes=num_nodes)


def exact_log_prob_quadrature(logits, labels, sigma=1.0, *, margin=None, standardize: bool = False,
                              num_nodes=None, rule=None, standardize_eps: float = 1e-6):
  """``log p(y|x)`` by quadrature straight from the ``[..., C]`` logits (no ``[..., C-1]`` delta tensor).

  Same value as ``orthant_log_prob_quadrature(exact_margins(...))``, but the shared integral is called on
  ``z' / sigma`` with label ``y``, where the margin is folded into the logits:
  ``z'_j = max(z_j, z_y - margin)`` for ``j != y`` gives ``z_y - z'_j = min(Delta_j, margin)`` (and no gradient
  to alternatives beaten by more than the margin). This avoids the gather that drops the true column and
  its scatter in the backward pass, and the re-concatenation of a zero column (spec 02 §3.2).

  Eager calls validate; under jit invalid labels/NaN inputs give NaN so the training loop's non-finite guard
  stops the run.
  """
  surrogates.check_logits_labels(logits, labels, "exact")
  check_sigma(sigma)
  z = standardize_logits(logits, standardize_eps) if standardize else logits.astype(jnp.float32)
  if margin is not None:
    onehot = jnp.arange(z.shape[-1]) == labels[..., None]
    z_y = jnp.sum(jnp.where(onehot, z, 0.0), axis=-1, keepdims=True)
    z = jnp.where(onehot, z, jnp.maximum(z, z_y - margin))
  sigma = jnp.asarray(sigma, jnp.float32)
  x = z / sigma[..., None] if sigma.ndim else z / sigma
  return _label_log_prob(x, jnp.asarray(labels), num_nodes, rule)


def _label_log_prob(x, labels, num_nodes, rule):
  """``log p_y`` of normal-noise Perturb-Max: the shared 9085 function (one implementation of the integral).

  Its gradient is plain autodiff at fixed (mode-centred) nodes; each factor's derivative is the inverse Mills
  ratio r = phi/Phi that :func:`research.special.log_ndtr`'s custom JVP returns from the forward intermediate,

      d log p / d x_j = -sum_k pi_k r(u_jk)   (j != y),   d log p / d x_y = -sum_{j != y} d log p / d x_j,

  with ``u_jk = x_y - x_j + e_k`` and ``pi_k`` the normalised node contributions. Labels outside ``[0, C)``
  (possible only under jit) give NaN.
  """
  from research.distributions import perturb_max
  n = x.shape[-1]
  valid = (labels >= 0) & (labels < n)
  out = perturb_max.perturb_max_log_prob_of(x, jnp.clip(labels, 0, n - 1), noise="normal", rule=rule,
                                            num_nodes=num_nodes)
  return jnp.where(valid, out, jnp.nan)


# ----------------------------------------------------------------------------------------------------------
# The paper's sampling estimator (Genz sequential conditioning) with its coded gradient
# ----------------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=64)
def equicorrelated_cholesky(dim: int):
  """Diagonal ``d_i`` and constant sub-diagonal column values ``a_i`` of chol(I + 1 1^T), float64 numpy.

  ``d_i = sqrt(2 - sum_{k<i} a_k^2)``, ``a_i = d_i - 1 / d_i``.
  """
  d = np.zeros(dim)
  a = np.zeros(dim)
  s = 0.0
  for i in range(dim):
    d[i] = np.sqrt(2.0 - s)
    a[i] = d[i] - 1.0 / d[i]
    s += a[i] ** 2
  return d, a


_LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)


def _genz_value_and_grad(m, u, max_alternatives=None, with_grad: bool = True):
  """Genz estimate of ``P(m + eta > 0)`` and of ``dP/dm``, both averaged over the ``n`` samples.

  Args:
    m: ``[R, D]`` scaled deltas.
    u: ``[n, R, D]`` uniforms in ``[0, 1)`` shared by the value channel and all gradient channels.
    max_alternatives: integrate only the ``k`` smallest deltas (the others get zero gradient).
    with_grad: also run the ``k`` gradient channels (O(n R k^2)); without them only the value channel runs
      (O(n R k)). The channels never interact, so the value estimate is the same either way.
  Returns:
    ``(p [R], grad [R, D])``; ``grad`` is ``None`` when ``with_grad`` is False.
  """
  num_rows, dim = m.shape
  order = jnp.argsort(m, axis=-1)                      # hardest alternatives first
  ms = jnp.take_along_axis(m, order, axis=-1)
  k = dim if max_alternatives is None else min(int(max_alternatives), dim)
  ms = ms[:, :k]
  u = u[..., :k]
  d_np, a_np = equicorrelated_cholesky(k)
  d = jnp.asarray(d_np, m.dtype)
  a = jnp.asarray(a_np, m.dtype)
  n = u.shape[0]
  # 0..k-1: gradient channels; k: value channel (never pinned)
  channels = jnp.arange(k + 1) if with_grad else jnp.array([k])
  num_channels = channels.shape[0]

  def level(carry, xs):
    log_p, s = carry                                    # [n, R, num_channels] each
    m_i, u_i, d_i, a_i, i = xs                          # [R], [n, R], (), (), ()
    ell = (-m_i[None, :, None] - s) / d_i
    pinned = channels == i
    log_tail = jsp_special.log_ndtr(-ell)               # log(1 - Phi(ell))
    log_dens = -0.5 * ell ** 2 - _LOG_SQRT_2PI - jnp.log(d_i)
    log_p = log_p + jnp.where(pinned, log_dens, log_tail)
    # Truncated-normal draw on (ell, inf) by inverse CDF: w = -Phi^{-1}((1 - u) * (1 - Phi(ell))).
    q = (1.0 - u_i)[..., None] * jnp.exp(log_tail)
    w = -jsp_special.ndtri(jnp.maximum(q, jnp.finfo(q.dtype).tiny))
    w = jnp.clip(w, -5.0, 5.0)
    w = jnp.where(pinned, ell, w)
    return (log_p, s + a_i * w), None

  init = (jnp.zeros((n, num_rows, num_channels), m.dtype), jnp.zeros((n, num_rows, num_channels), m.dtype))
  xs = (ms.T, jnp.moveaxis(u, -1, 0), d, a, jnp.arange(k))
  (log_p, _), _ = jax.lax.scan(level, init, xs)
  est = jnp.mean(jnp.exp(log_p), axis=0)               # [R, num_channels]
  p = est[:, -1]
  if not with_grad:
    return p, None
  grad_sorted = jnp.concatenate([est[:, :k], jnp.zeros((num_rows, dim - k), m.dtype)], axis=-1)
  inverse = jnp.argsort(order, axis=-1)
  grad = jnp.take_along_axis(grad_sorted, inverse, axis=-1)
  return p, grad


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _genz_prob(m, u, max_alternatives):
  # Not differentiated: the value channel alone (O(n R D) instead of O(n R D^2)).
  return _genz_value_and_grad(m, u, max_alternatives, with_grad=False)[0]


def _genz_prob_fwd(m, u, max_alternatives):
  p, grad = _genz_value_and_grad(jax.lax.stop_gradient(m), u, max_alternatives)
  return p, grad


def _genz_prob_bwd(max_alternatives, grad, ct):
  del max_alternatives
  return ct[:, None] * grad, None


_genz_prob.defvjp(_genz_prob_fwd, _genz_prob_bwd)


def orthant_prob_sampling(key, m, *, num_samples: int = 16, max_alternatives=None):
  """The paper's Genz estimator of ``P(m + eta > 0)`` over the last axis of ``m`` ([..., D]).

  Differentiable through a custom VJP that returns the estimator's own coded gradient (computed in the
  forward pass from the same uniforms); ``m`` is treated as a constant inside the estimator.
  """
  if key is None:
    raise ValueError("exact (sampling): an explicit PRNG key is required, e.g. key=jax.random.key(0).")
  if int(num_samples) < 1:
    raise ValueError(f"exact (sampling): num_samples must be >= 1, got {num_samples}.")
  if max_alternatives is not None and int(max_alternatives) < 1:
    raise ValueError(f"exact (sampling): max_alternatives must be None or >= 1, got {max_alternatives}.")
  m = jnp.asarray(m, jnp.float32)
  batch_shape, dim = m.shape[:-1], m.shape[-1]
  flat = m.reshape(-1, dim)
  u = jax.random.uniform(key, (int(num_samples),) + flat.shape, flat.dtype)
  p = _genz_prob(flat, u, None if max_alternatives is None else int(max_alternatives))
  return p.reshape(batch_shape)


# ----------------------------------------------------------------------------------------------------------
# Public API: probability and loss
# ----------------------------------------------------------------------------------------------------------

def exact_prob(logits, labels, sigma=1.0, *, margin=None, standardize: bool = False,
               method: str = "quadrature", num_nodes=None, rule=None,
               key=None, num_samples: int = 16, max_alternatives=None):
  """EXACT expected accuracy ``p(y|x) = P(y = argmax(z / sigma + eps))`` per sample, shape ``logits.shape[:-1]``.

  Args:
    logits, labels: ``[..., C]`` float and ``[...]`` int labels in ``[0, C)``.
    sigma: positive noise scale (scalar or per-sample); may be traced (trainable or scheduled).
    margin: ``None`` or float; ``Delta <- min(Delta, margin)`` before dividing by sigma.
    standardize: one-scalar logit standardisation over the whole tensor (depends on the batch).
    method: ``"quadrature"`` (deterministic, exact autodiff gradient) or ``"sampling"`` (Genz, needs key).
    num_nodes, rule: quadrature rule of the shared Perturb-Max integral (None: mode-centred adaptive
      Gauss-Hermite with K = 8, relative error <~1e-6 on p and its gradient up to C = 1000; ``rule=
      "gauss_hermite"`` forces the fixed rule centred at 0).
    key, num_samples, max_alternatives: sampling estimator options.

  Eager calls validate (labels in ``[0, C)``, finite logits, non-empty batch); under jit invalid labels/NaN
  inputs give NaN so the training loop's non-finite guard stops the run.
  """
  if method not in METHODS:
    raise ValueError(f"exact: unknown method {method!r}; use one of {METHODS}.")
  if method == "quadrature" and num_nodes is not None and int(num_nodes) < 1:
    raise ValueError(f"exact: num_nodes must be >= 1, got {num_nodes}.")
  if jnp.ndim(logits) >= 1 and int(np.prod(jnp.shape(logits)[:-1])) == 0:
    raise ValueError(f"exact: empty batch (logits shape {jnp.shape(logits)}); the mean of nothing is undefined. "
                     "Skip empty batches before calling the loss.")
  if method == "quadrature":
    return jnp.exp(exact_log_prob_quadrature(logits, labels, sigma, margin=margin, standardize=standardize,
                                             num_nodes=num_nodes, rule=rule))
  m = exact_margins(logits, labels, sigma, margin=margin, standardize=standardize)
  p = orthant_prob_sampling(key, m, num_samples=num_samples, max_alternatives=max_alternatives)
  labels = jnp.asarray(labels)
  valid = (labels >= 0) & (labels < jnp.shape(logits)[-1])
  return jnp.where(valid, p, jnp.nan)


def exact_loss(logits, labels, sigma=1.0, *, aggregation: str = "mean", log_eps: float = 1e-6, **kwargs):
  """EXACT loss: ``1 - mean max(p, 0)`` (``mean``) or ``-mean log(max(p, 0) + log_eps)`` (``meanlog``).

  ``kwargs`` are those of :func:`exact_prob`. Returns a float32 scalar.

  Eager calls validate (labels in ``[0, C)`` and finite logits -> ValueError; an empty batch -> ValueError);
  under jit invalid labels/NaN inputs give NaN so the training loop's non-finite guard stops the run.
  """
  if aggregation not in AGGREGATIONS:
    raise ValueError(f"exact: unknown aggregation {aggregation!r}; use one of {AGGREGATIONS}.")
  p = exact_prob(logits, labels, sigma, **kwargs)
  p = jnp.where(jnp.isnan(p), p, jnp.maximum(p, 0.0))   # max(nan, 0) would hide an invalid label
  if aggregation == "mean":
    return 1.0 - jnp.mean(p)
  return -jnp.mean(jnp.log(p + log_eps))


def two_class_prob(logits, labels, sigma=1.0):
  """Closed form for C = 2: ``p = Phi((z_y - z_other) / (sigma sqrt 2))`` (test oracle)."""
  d = surrogates.label_deltas(logits.astype(jnp.float32), labels)[..., 0]
  return jsp_special.ndtr(d / (jnp.asarray(sigma, jnp.float32) * np.sqrt(2.0)))


# ----------------------------------------------------------------------------------------------------------
# Su's analysis: CE versus smoothed accuracy (spec 02 §3.6)
# ----------------------------------------------------------------------------------------------------------

def ce_and_smoothed_accuracy(logits, labels):
  """Per-sample ``(-log p_y, 1 - p_y)`` under softmax; ``-log p ~ 1 - p`` when ``p ~ 1``."""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  logp_y = jnp.take_along_axis(logp, labels[..., None], axis=-1)[..., 0]
  return -logp_y, 1.0 - jnp.exp(logp_y)


def pearson(a, b):
  """Pearson correlation of two 1-D series (e.g. CE and 1 - E[p] over training)."""
  a = np.asarray(a, np.float64).ravel()
  b = np.asarray(b, np.float64).ravel()
  if a.size != b.size or a.size < 2:
    raise ValueError(f"pearson: need two series of equal length >= 2, got {a.size} and {b.size}.")
  a = a - a.mean()
  b = b - b.mean()
  den = np.sqrt((a * a).sum() * (b * b).sum())
  return float((a * b).sum() / den) if den > 0 else float("nan")
