"""Perturb-Max discrete distributions (Su Jianlin, kexue.fm/archives/9085; named in /archives/10145).

For logits mu in R^n and i.i.d. noise eps_1..eps_n with CDF Phi,

    p_i = P[argmax_k(mu_k + eps_k) = i] = E_eps[ prod_{j != i} Phi(mu_i - mu_j + eps) ]          (PM)

Gumbel noise gives softmax exactly; normal noise gives the independent multinomial probit. Everything is
evaluated in log space,

    log p_i = logsumexp_k [ log w_k + sum_{j != i} log Phi(mu_i - mu_j + eps_k) ],

with a 1-D quadrature (nodes eps_k, weights w_k) over the noise law. Gradients are exact gradients of the
discretised quantity (plain autodiff through the sum). This is the article's formula (``method="pairwise"``):
every class i evaluates all n differences, O(n^2 K) per row.

The one 1-D integral (:func:`log_integral`, shared by the pairwise formula, the label-only NLL and EXACT 9098)
writes eps = Phi^{-1}(Phi_N(t)) with t standard normal and uses the default ``rule="adaptive"``: Gauss-Hermite
nodes t_k = t* + s x_k centred at the mode t* of phi(t) prod_j Phi(d_j + eps(t)) (Newton steps) with its
Laplace scale s, so K = 8-24 nodes sit where the mass is, also for a class 40 noise scales behind the winner
(centred at 0, K = 16 gave log p = -299.8 instead of -229.0 at a normal gap of 30). Cauchy noise (heavy tails:
a class 40 scales behind keeps mass at e ~ 0 and at e >~ 40, with a transition of width 1 there) uses panels of
Gauss-Legendre nodes over the window of features e = -d_j plus Gauss-Legendre in u for the two tails, K = 224
(:func:`_cauchy_window_integral`; Gauss-Legendre in u alone, K = 64, was off by 4e-2 relative on log p at a gap
of 40). User-given noises (smoothness unknown) default to Gauss-Legendre in u = Phi(eps) with K = 64. The
normal log-CDF is
:func:`research.special.log_ndtr` (one rational erfcx, derivative phi/Phi from the same intermediate).

``method="max_quantile"`` evaluates the same p in O(n K) per row by integrating over the law of the maximum
M = max_j(mu_j + eps_j) instead of over the winner's own noise. With F_M(x) = prod_j Phi(x - mu_j) and the
reverse hazard r = f / Phi = d/dx log Phi, P[argmax = i | M = x] = r(x - mu_i) / sum_j r(x - mu_j), so

    p_i = int_0^1 softmax_i( log r(x_u - mu) ) du,    sum_j log Phi(x_u - mu_j) = log u,             (MQ)
    log p_i ~= logsumexp_k [ log w_k + log_softmax_i( log r(x_k - mu) ) ],   x_k = x_{u_k}, u_k = Phi(eps_k),

with the same rule read as levels u_k = Phi(eps_k) (the normal default ``"tail_trapezoid"``: a trapezoid rule in
t = Phi_N^-1(u) over [-22, 5.6], spacing ~0.7 in the body and ~1.4 in the lower tail, K = 28, see
:func:`_tail_trapezoid`; Gauss-Hermite: eps_k ~ N(0,1); grid/midpoint: u_k =
k/(K+1), (k-1/2)/K) and weights w_k renormalised to sum to 1, so sum_i p_i = 1 exactly for every K. x_k is the
u_k-quantile of M, found by a few Newton (normal noise: Halley) steps on log(-sum_j log Phi(x - mu_j)) =
log(-log u_k) (monotone in x,
bracketed by m + Phi^-1(u_k) <= x_k <= m + Phi^-1(u_k^(1/n)), m = max mu), under stop_gradient; the gradient of
x_k comes from the implicit function theorem, dx_k/dmu_j = softmax_j(log r(x_k - mu)), attached to first order
(no autodiff through the Newton loop). For normal noise its RMS error at K = 16 is ~1e-9 at n = 1000 (the
integrand over u is smooth; ties are exact for any K), and Gumbel noise gives softmax for every x_k.
``method=None`` picks "pairwise" for the article's ``grid`` rule and for n < 16 classes, "max_quantile"
otherwise. The default levels reach u ~ 1e-107, so a class up to ~40 noise scales behind the winner keeps
log p to 1e-3 relative (Gauss-Hermite levels, |t| <= 6.6 at K = 16, gave -578 for -402 at a gap of 40); beyond,
use ``method="pairwise"`` or :func:`perturb_max_log_prob_of` (adaptive). Cauchy noise: the same integral over
the value of the max with the window nodes shared by all classes (:func:`_cauchy_max_log_probs`, no solve).

Public API (all functions act on the last axis of ``logits`` of any batch shape; jit/vmap/grad-safe)
-------------------------------------------------------------------------------------------------
``quadrature(noise, rule, num_nodes) -> (nodes, log_weights)``
    float64 numpy arrays (host, scipy/numpy), cached. ``rule`` is one of
    ``"grid"`` (the article's rule: nodes Phi^-1(k/(K+1)), weights 1/K -- first order, sums != 1),
    ``"midpoint"`` (nodes Phi^-1((k-1/2)/K), weights 1/K),
    ``"gauss_hermite"`` (probabilists' Gauss-Hermite centred at 0, normal noise only),
    ``"gauss_legendre"`` (Gauss-Legendre in u = Phi(eps)) or
    ``"adaptive"`` (the default: mode-centred Gauss-Hermite; Cauchy: panels over the window of features;
    data-dependent nodes, see :func:`log_integral`) or
    ``"tail_trapezoid"`` (trapezoid in t = Phi_N^-1(u) on [-22, 5.6], mapped to wider spacing in the lower tail:
    the max-quantile default for normal noise).

``log_integral(d, noise="normal", num_nodes=8, keep=None, adaptive=True) -> log E[prod_j Phi(d_j + eps)]``
    The shared 1-D integral over the last axis of d.

``perturb_max_log_probs(logits, noise="normal", rule=None, num_nodes=None, scale=1.0, mask=None,
                        renormalize=False, closed_form=True, chunk_size=None, method=None) -> log p  [..., n]``
``perturb_max_probs(...)`` -> p = exp(log p).
    ``noise``: "gumbel" | "normal" | "logistic" | "cauchy" | a :class:`Noise` (see :func:`custom_noise`).
    ``rule=None``: "adaptive" (Gauss-Legendre for user-given noises; max-quantile levels: "tail_trapezoid"
    for normal noise, Gauss-Hermite for logistic/Gumbel).
    ``num_nodes=None``: chosen from the noise, rule and n (normal adaptive, skewed nodes: 10 at every n;
    max-quantile levels 28; logistic/Gumbel 32; Cauchy 224; Gauss-Legendre 64), see
    ``_default_num_nodes``.
    ``scale``: noise scale s (float or traced array); p(mu; s*eps) = p(mu / s; eps).
    ``mask``: optional boolean array broadcastable to logits; False classes get p = 0 (log p = -inf) and
    drop out of the products. Use it instead of -inf logits (non-finite logits raise).
    ``renormalize``: divide by sum_i p_i (useful for the biased "grid" rule).
    ``closed_form``: Gumbel noise returns ``jax.nn.log_softmax(logits / scale)`` directly when True; False
    forces the quadrature (used to test that it converges to softmax).
    ``method``: "pairwise" (the article's (PM), O(n^2 K) per row; rows of i are processed in blocks of
    ``chunk_size`` when n is large), "max_quantile" ((MQ), O(n K) per row times ~3 solver passes), or None
    (see above).

``perturb_max_log_prob_of(logits, labels, noise="normal", rule=None, num_nodes=None, margin=0.0,
                          scale=1.0, mask=None, closed_form=True) -> log p_y  [...]``
    log P[argmax(mu + eps) = y] for the label class only, in O(n K) per row:
        log E_eps[ prod_{j != y} Phi((mu_y - mu_j - margin) / s + eps) ].
    ``labels``: integer array of shape logits.shape[:-1]. ``margin`` (float or array broadcastable to
    labels) is subtracted from every difference mu_y - mu_j (the EXACT margin, arXiv:2205.09615).

``perturb_max_probs_mc(key, logits, noise="normal", num_samples=1000, method="expectation", scale=1.0)``
    Monte Carlo estimate of p with an explicit PRNG key. "expectation": (1/S) sum_s g_i(eps_s) with a
    scalar eps_s per sample; "argmax": frequency of argmax(mu + eps_s) = i with a full noise vector;
    "max_quantile": (MQ) at S random levels u_s.

``sample(key, logits, noise="normal", scale=1.0, shape=())`` -> int indices (exact sample of p).
``relaxed_sample(key, logits, tau, noise="normal", scale=1.0, shape=())`` -> softmax((mu + s*eps)/tau).
``straight_through_sample(key, logits, tau, ...)`` -> one-hot forward, relaxed-sample gradient backward.
``sample_noise(key, noise, shape, dtype)`` -> i.i.d. noise draws.

``custom_noise(cdf, quantile, log_cdf=None, sampler=None, name="custom") -> Noise``
    A user-given noise. ``cdf``/``log_cdf`` must be jax-traceable; ``quantile`` is called on a float64
    numpy array on the host to build the quadrature nodes (it must also be jax-traceable if it is used to
    sample, unless ``sampler(key, shape, dtype)`` is given).
``get_noise(noise) -> Noise``; ``log_cdf(noise, x)``; ``validate_logits(logits)``.
``NOISES``, ``RULES``, ``METHODS``: the valid names. ``GUMBEL_STD = pi/sqrt(6)``: std of Gumbel(0,1), the scale at which
normal noise matches softmax's noise level.

Bad input: non-floating logits -> TypeError; non-finite concrete logits, num_nodes < 1, unknown noise or
rule, Gauss-Hermite with a non-normal noise, labels of the wrong shape/dtype/range -> ValueError/TypeError.
Eager calls validate; under jit invalid labels/NaN inputs give NaN so the training loop's non-finite guard
stops the run.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy import special as jsp_special
from scipy import special as sp_special

from research import special

NOISES = ("gumbel", "normal", "logistic", "cauchy")
RULES = ("grid", "midpoint", "gauss_hermite", "gauss_legendre", "adaptive", "tail_trapezoid")
METHODS = ("pairwise", "max_quantile")
AUTO_MAX_QUANTILE_MIN_CLASSES = 16   # method=None uses "max_quantile" from this many classes on
MAX_NEWTON_ITERS = 16
GUMBEL_STD = math.pi / math.sqrt(6.0)

# Below this many elements per block the (…, n, n, K) tensor is built in one go.
_DEFAULT_BLOCK_ELEMENTS = 1 << 24


# ----------------------------------------------------------------------------------------------------------
# Noises
# ----------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class Noise:
  """A continuous noise law: jax log-CDF, host float64 quantile, and a sampler.

  Attributes:
    name: a label used in messages and plots.
    log_cdf: ``x -> log Phi(x)`` (jax-traceable, numerically stable in the lower tail if possible).
    quantile: ``t -> Phi^{-1}(t)`` for t in (0, 1); called with float64 numpy arrays on the host.
    sampler: ``(key, shape, dtype) -> eps`` or None (then ``quantile`` of a uniform draw, traced by jax).
    log_pdf: ``x -> log f(x)`` (jax-traceable) or None; used by ``method="max_quantile"`` for the reverse
      hazard log r = log f - log Phi (None: r = d/dx log Phi by autodiff of ``log_cdf``).
    from_normal: ``t -> Phi^{-1}(Phi_N(t))`` (jax-traceable), the noise as a function of a standard normal t;
      the adaptive rule places its nodes in t. None: the adaptive rule falls back to fixed Gauss-Hermite
      nodes in t (``quantile(Phi_N(x_k))`` on the host).
  """
  name: str
  log_cdf: Callable[[jax.Array], jax.Array]
  quantile: Callable[[np.ndarray], np.ndarray]
  sampler: Optional[Callable[..., jax.Array]] = None
  log_pdf: Optional[Callable[[jax.Array], jax.Array]] = None
  from_normal: Optional[Callable[[jax.Array], jax.Array]] = None

  def __repr__(self) -> str:  # short, for messages
    return f"Noise({self.name!r})"


def _gumbel_log_cdf(x):
  # log Phi = -exp(-x); clip the exponent so that the gradient stays finite far in the lower tail.
  return -jnp.exp(jnp.minimum(-x, 60.0))


def _logistic_log_cdf(x):
  return -jax.nn.softplus(-x)


def _cauchy_log_cdf(x):
  """log(1/2 + arctan(x)/pi) without cancellation: x<0 uses log(arctan(-1/x)/pi)."""
  neg = x < 0
  safe_neg = jnp.where(neg, x, -1.0)
  safe_pos = jnp.where(neg, 1.0, x)
  lower = jnp.log(jnp.arctan(-1.0 / safe_neg) / jnp.pi)
  upper = jnp.log1p(-jnp.arctan2(1.0, safe_pos) / jnp.pi)  # arctan2(1, x) = arctan(1/x) for x>0, pi/2 at 0
  return jnp.where(neg, lower, upper)


def _normal_log_cdf(x):
  return special.log_ndtr(x)


# t -> eps = Phi^{-1}(Phi_N(t)) for the built-in noises, accurate in both tails (u = Phi_N(t) and 1 - u = Phi_N(-t)
# are never formed as 1 - something).
def _logistic_from_normal(t):
  return special.log_ndtr(t) - special.log_ndtr(-t)


def _gumbel_from_normal(t):
  return -jnp.log(-special.log_ndtr(t))


def _cauchy_from_normal(t):
  neg = t < 0
  u = jsp_special.ndtr(-jnp.abs(t))                # min(u, 1 - u)
  v = 1.0 / jnp.tan(jnp.pi * jnp.maximum(u, jnp.finfo(u.dtype).tiny))
  return jnp.where(neg, -v, v)


_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def _normal_log_pdf(x):
  return -0.5 * x * x - _LOG_SQRT_2PI


def _gumbel_log_pdf(x):
  return -x - jnp.exp(jnp.minimum(-x, 60.0))


def _logistic_log_pdf(x):
  return -x - 2.0 * jax.nn.softplus(-x)


def _cauchy_log_pdf(x):
  return -math.log(math.pi) - jnp.log1p(x * x)


_BUILTIN = {
    "gumbel": Noise("gumbel", _gumbel_log_cdf, lambda t: -np.log(-np.log(t)),
                    lambda key, shape, dtype: jax.random.gumbel(key, shape, dtype), _gumbel_log_pdf,
                    _gumbel_from_normal),
    "normal": Noise("normal", _normal_log_cdf, lambda t: sp_special.ndtri(t),
                    lambda key, shape, dtype: jax.random.normal(key, shape, dtype), _normal_log_pdf,
                    lambda t: t),
    "logistic": Noise("logistic", _logistic_log_cdf, lambda t: np.log(t) - np.log1p(-t),
                      lambda key, shape, dtype: jax.random.logistic(key, shape, dtype), _logistic_log_pdf,
                      _logistic_from_normal),
    "cauchy": Noise("cauchy", _cauchy_log_cdf, lambda t: np.tan(np.pi * (t - 0.5)),
                    lambda key, shape, dtype: jax.random.cauchy(key, shape, dtype), _cauchy_log_pdf,
                    _cauchy_from_normal),
}


# log Phi^{-1}: y = log u (<= 0) -> Phi^{-1}(e^y), jax-traceable, accurate for u near 0 and near 1 (used only for
# starting points and brackets of the max-quantile solve, so built-in noises only).
def _normal_quantile_of_log(y):
  upper = y > -math.log(2.0)
  lo = jsp_special.ndtri(jnp.exp(jnp.where(upper, -1.0, y)))
  hi = -jsp_special.ndtri(-jnp.expm1(jnp.where(upper, y, -1.0)))
  return jnp.where(upper, hi, lo)


def _gumbel_quantile_of_log(y):
  return -jnp.log(-y)


def _logistic_quantile_of_log(y):
  return -jnp.log(jnp.expm1(-y))


def _cauchy_quantile_of_log(y):
  upper = y > -math.log(2.0)
  lo = -1.0 / jnp.tan(jnp.pi * jnp.exp(jnp.where(upper, -1.0, y)))
  hi = 1.0 / jnp.tan(-jnp.pi * jnp.expm1(jnp.where(upper, y, -1.0)))
  return jnp.where(upper, hi, lo)


def _normal_log_cdf_precise(z):
  """log Phi(z), keeping the relative precision of log Phi ~ -Phi(-z) in the upper tail that the max-quantile
  solve needs: the one shared implementation, :func:`research.special.log_ndtr`."""
  return special.log_ndtr(z)


def _normal_log_hazard(z, lcdf=None):
  """log r(z) = log phi(z) - log Phi(z) and its derivative -z - r(z) (closed form, no autodiff)."""
  lr = _normal_log_pdf(z) - (_normal_log_cdf_precise(z) if lcdf is None else lcdf)
  return lr, -z - jnp.exp(lr)


_QUANTILE_OF_LOG = {"gumbel": _gumbel_quantile_of_log, "normal": _normal_quantile_of_log,
                    "logistic": _logistic_quantile_of_log, "cauchy": _cauchy_quantile_of_log}

NoiseLike = Union[str, Noise]


def custom_noise(cdf: Optional[Callable] = None, quantile: Optional[Callable] = None, *,
                 log_cdf: Optional[Callable] = None, sampler: Optional[Callable] = None,
                 name: str = "custom", log_pdf: Optional[Callable] = None) -> Noise:
  """Builds a user-given noise from its CDF (or log-CDF) and its quantile function.

  Args:
    cdf: ``x -> Phi(x)``, jax-traceable. Used as ``log(max(cdf, tiny))`` when ``log_cdf`` is not given
      (give ``log_cdf`` for a stable lower tail).
    quantile: ``t -> Phi^{-1}(t)``; evaluated on float64 numpy arrays on the host for the nodes.
    log_cdf: optional stable ``x -> log Phi(x)``, jax-traceable.
    sampler: optional ``(key, shape, dtype) -> eps``; default: ``quantile(uniform)`` traced by jax.
    name: label.
    log_pdf: optional ``x -> log f(x)``, jax-traceable (for ``method="max_quantile"``; default: the
      derivative of ``log_cdf`` by autodiff).
  """
  if quantile is None or not callable(quantile):
    raise ValueError("custom_noise needs a callable `quantile` (t -> Phi^-1(t) on (0, 1)) to place the "
                     "quadrature nodes, e.g. quantile=scipy.stats.t(df=3).ppf.")
  if log_cdf is None:
    if cdf is None or not callable(cdf):
      raise ValueError("custom_noise needs a callable `cdf` (x -> Phi(x)) or `log_cdf` (x -> log Phi(x)), "
                       "both jax-traceable, e.g. cdf=lambda x: jax.scipy.stats.t.cdf(x, 3).")

    def log_cdf(x, _cdf=cdf):
      c = _cdf(x)
      return jnp.log(jnp.maximum(c, jnp.finfo(jnp.result_type(c)).tiny))
  elif not callable(log_cdf):
    raise ValueError("custom_noise: `log_cdf` must be callable (x -> log Phi(x)).")
  if log_pdf is not None and not callable(log_pdf):
    raise ValueError("custom_noise: `log_pdf` must be callable (x -> log f(x)).")
  return Noise(name=name, log_cdf=log_cdf, quantile=quantile, sampler=sampler, log_pdf=log_pdf,
               from_normal=_traced_from_normal(quantile))


def _traced_from_normal(quantile):
  """t -> quantile(Phi_N(t)) if ``quantile`` traces under jax (else None: the adaptive rule is unavailable)."""
  def from_normal(t):
    u = jsp_special.ndtr(t)
    eps = jnp.finfo(u.dtype).eps
    return jnp.asarray(quantile(jnp.clip(u, jnp.finfo(u.dtype).tiny, 1.0 - eps)), t.dtype)
  try:
    jax.eval_shape(from_normal, jax.ShapeDtypeStruct((2,), jnp.float32))
  except Exception:  # noqa: BLE001 -- a host-only quantile (numpy/scipy) cannot be traced
    return None
  return from_normal


def get_noise(noise: NoiseLike) -> Noise:
  """Returns the :class:`Noise` for a name in :data:`NOISES` or a :class:`Noise` itself."""
  if isinstance(noise, Noise):
    return noise
  if isinstance(noise, str):
    key = noise.lower()
    if key in _BUILTIN:
      return _BUILTIN[key]
    raise ValueError(f"Unknown noise {noise!r}; valid noises: {list(NOISES)}, or a Noise built with "
                     "research.distributions.perturb_max.custom_noise(cdf=..., quantile=...).")
  raise TypeError(f"noise must be a string in {list(NOISES)} or a Noise (see custom_noise), got "
                  f"{type(noise).__name__}.")


def log_cdf(noise: NoiseLike, x: jax.Array) -> jax.Array:
  """log Phi(x) for the given noise."""
  return get_noise(noise).log_cdf(x)


def sample_noise(key: jax.Array, noise: NoiseLike, shape=(), dtype=jnp.float32) -> jax.Array:
  """i.i.d. draws of the noise."""
  if key is None:  # every sampler (sample, relaxed_sample, ..., perturb_max_probs_mc) draws through here
    raise TypeError("Perturb-Max sampling needs an explicit PRNG key, got None: pass jax.random.key(seed) "
                    "(and split it for further draws).")
  nz = get_noise(noise)
  if nz.sampler is not None:
    return nz.sampler(key, tuple(shape), dtype)
  tiny = jnp.finfo(dtype).tiny
  u = jax.random.uniform(key, tuple(shape), dtype, minval=tiny, maxval=1.0)
  return jnp.asarray(nz.quantile(u), dtype)


# ----------------------------------------------------------------------------------------------------------
# Quadrature (host, float64)
# ----------------------------------------------------------------------------------------------------------
def _check_num_nodes(num_nodes) -> int:
  if isinstance(num_nodes, bool) or not isinstance(num_nodes, (int, np.integer)):
    raise TypeError(f"num_nodes must be a Python int >= 1 (the quadrature size K), got {num_nodes!r}.")
  if num_nodes < 1:
    raise ValueError(f"num_nodes must be >= 1 (the quadrature size K), got {num_nodes}.")
  return int(num_nodes)


def _default_rule(noise: Noise, method: str = "pairwise") -> str:
  """rule=None: the window rule for the heavy-tailed Cauchy noise (its integrand in t is bimodal; see
  :func:`_cauchy_window_integral`), Gauss-Legendre in u = Phi(eps) for user-given noises (no smoothness known: a Laplace noise's kinks cost the adaptive rule
  1.7e-4 at K=64, Gauss-Legendre 4.5e-6); otherwise the adaptive rule for the integral over eps (pairwise,
  label-only) and fixed levels for the max-quantile method (normal: ``tail_trapezoid``)."""
  if not any(noise is nz for nz in _BUILTIN.values()):
    return "gauss_legendre"
  if _is_builtin(noise, "cauchy"):   # the window of features (_cauchy_window_integral, _cauchy_max_log_probs)
    return "adaptive"
  if method == "max_quantile":   # normal: levels that reach the far lower tail (see _tail_trapezoid)
    return "tail_trapezoid" if _is_builtin(noise, "normal") else "gauss_hermite"
  return "adaptive"


def _default_num_nodes(noise: Noise, rule: str, method: str = "pairwise", n: int = 2) -> int:
  """num_nodes=None: the K at which the rule met |p - p_ref| <= 1e-5, 1e-3 relative on far-behind log p and
  1e-4 relative on the EXACT value and gradient in float64 checks (tests/test_normal_integral.py): normal
  noise, adaptive rule: 10 at every n (the skewed node map of :func:`_log_integral` follows the Gumbel-like
  skew that the product of many factors gives the integrand; float64, n from 1 to 1000 and gaps up to 40:
  worst relative error 4.8e-6 on p and 1.7e-5 on its gradient at K = 10, against 1.3e-4 and 1.2e-3 with the
  unskewed mode-centred rule at K = 12, which needed K = 24 at n = 1000); max-quantile levels
  (tail_trapezoid) 28 (24: 1.0e-5 at n = 1000, logit spread 2.5; 28: 6.8e-7); other light-tailed noises 32; Cauchy (window) 224; Gauss-Legendre in u 64."""
  normal = _is_builtin(noise, "normal")
  if normal and rule == "adaptive":
    return ADAPTIVE_NORMAL_NODES
  if rule == "tail_trapezoid":
    return TAIL_TRAPEZOID_NODES
  if rule == "adaptive" and _is_builtin(noise, "cauchy"):
    return CAUCHY_DEFAULT_NODES
  if rule in ("adaptive", "gauss_hermite"):
    return 16 if normal else 32
  if rule == "gauss_legendre":
    return 64
  return 16


def _resolve_rule(noise: Noise, rule: Optional[str], method: str = "pairwise") -> str:
  if rule is None:
    return _default_rule(noise, method)
  if not isinstance(rule, str) or rule.lower() not in RULES:
    raise ValueError(f"Unknown quadrature rule {rule!r}; valid rules: {list(RULES)} (or None for the "
                     "default: adaptive nodes; tail_trapezoid levels for the max-quantile method).")
  rule = rule.lower()
  if rule == "gauss_hermite" and noise is not _BUILTIN["normal"]:
    raise ValueError(f"rule='gauss_hermite' integrates against the normal density and only applies to "
                     f"noise='normal', not {noise.name!r}; use rule='adaptive' (Gauss-Hermite in t with "
                     "eps = Phi^-1(Phi_N(t))), 'gauss_legendre', 'midpoint' or 'grid'.")
  if rule == "adaptive" and method == "max_quantile" and not _is_builtin(noise, "cauchy"):
    return "tail_trapezoid" if _is_builtin(noise, "normal") else "gh_levels"
  return rule


TAIL_TRAPEZOID_NODES = 28
_TAIL_T_RANGE = (-22.0, 5.6)       # t* of a class 40 noise scales behind is >= -20 (two classes: -gap/2)
_TAIL_MAP = (1.0, -4.0, 1.5)       # beta, v0, width of t = psi(v)


def _tail_trapezoid(num_nodes: int):
  """Levels t_k = psi(v_k) on a uniform v-grid and log w_k = log(psi'(v_k) phi(t_k)) (unnormalised), float64.

  psi(v) = v - beta c softplus(-(v - v0)/c) (beta = 1, v0 = -4, c = 1.5): spacing h in the body, (1 + beta) h
  below t ~ -6, down to t = -22. The trapezoid rule is spectrally accurate for the smooth, bell-shaped
  integrand phi(t) softmax_i(...) over the level t, also for a class whose mass sits deep in the lower tail
  (far behind the winner: width >= 1/sqrt 2 in t, at t ~ -gap/2), which Gauss-Hermite levels (|t| <= 6.6 at
  K = 16) miss: at a gap of 40 they gave log p = -578 for -402. K = 28 (h ~ 0.7): max |p - p_ref| <= 1e-6 for
  n = 100 and 1000, logit spreads 1-5 (K = 24: 1.0e-5 at n = 1000, spread 2.5), relative log p error <= 2e-4 on
  the float64 checks of tests/test_normal_integral.py.
  """
  beta, v0, c = _TAIL_MAP
  psi = lambda v: v - beta * c * np.logaddexp(0.0, -(v - v0) / c)
  lo, hi = _TAIL_T_RANGE
  v_lo = v0 + (lo - v0) / (1.0 + beta)          # psi(v) ~ (1 + beta) v - beta v0 far below v0; refine by bisection
  a, b = v_lo - 10.0, hi
  for _ in range(100):
    mid = 0.5 * (a + b)
    a, b = (mid, b) if psi(mid) < lo else (a, mid)
  v = np.linspace(b, hi, num_nodes) if num_nodes > 1 else np.array([0.0])
  t = psi(v)
  log_w = np.log1p(beta * sp_special.expit(-(v - v0) / c)) - 0.5 * t * t
  return t, log_w - sp_special.logsumexp(log_w)


@functools.lru_cache(maxsize=256)
def _quadrature_cached(noise: Noise, rule: str, num_nodes: int):
  with jax.ensure_compile_time_eval():   # a jnp quantile called while tracing must still give host values
    return _quadrature_host(noise, rule, num_nodes)


def _quadrature_host(noise: Noise, rule: str, num_nodes: int):
  k = np.arange(1, num_nodes + 1, dtype=np.float64)
  if rule == "tail_trapezoid":
    t, log_w = _tail_trapezoid(num_nodes)
    nodes = t if _is_builtin(noise, "normal") else np.asarray(noise.quantile(sp_special.ndtr(t)), np.float64)
  elif rule in ("gauss_hermite", "gh_levels", "adaptive"):   # "adaptive" here: its t* = 0, s = 1 (fixed) form
    x, w = np.polynomial.hermite_e.hermegauss(num_nodes)
    w = w / math.sqrt(2.0 * math.pi)
    keep = w > 0  # very large K: the outermost weights underflow in float64
    if not _is_builtin(noise, "normal"):   # levels with Phi_N(x) rounding to 0 or 1 (weight < 1e-15) are dropped
      u = sp_special.ndtr(x)
      keep &= (u > 0) & (u < 1)
    x, log_w = x[keep], np.log(w[keep])
    nodes = x if _is_builtin(noise, "normal") else np.asarray(noise.quantile(sp_special.ndtr(x)), np.float64)
  elif rule == "gauss_legendre":
    x, w = np.polynomial.legendre.leggauss(num_nodes)
    nodes = np.asarray(noise.quantile(0.5 * (x + 1.0)), dtype=np.float64)
    log_w = np.log(0.5 * w)
  else:
    t = k / (num_nodes + 1) if rule == "grid" else (k - 0.5) / num_nodes
    nodes = np.asarray(noise.quantile(t), dtype=np.float64)
    log_w = np.full(num_nodes, -math.log(num_nodes))
  if nodes.shape != (len(log_w),) or not np.all(np.isfinite(nodes)):
    raise ValueError(f"The quantile function of noise {noise.name!r} returned non-finite or mis-shaped "
                     f"values on (0, 1) for rule {rule!r}, K={num_nodes}: {nodes[:4]}...")
  nodes.setflags(write=False)
  log_w.setflags(write=False)
  return nodes, log_w


def quadrature(noise: NoiseLike = "normal", rule: Optional[str] = None, num_nodes: int = 16):
  """Nodes eps_k and log-weights log w_k with E[f(eps)] ~= sum_k w_k f(eps_k) (float64 numpy, cached).

  ``grid``: eps_k = Phi^-1(k/(K+1)), w_k = 1/K (the article's rule, O(1/K), weights and nodes mismatched);
  ``midpoint``: eps_k = Phi^-1((k-1/2)/K), w_k = 1/K;
  ``gauss_hermite``: probabilists' Gauss-Hermite x_k, w_k = omega_k / sqrt(2 pi) (normal noise only);
  ``gauss_legendre``: eps_k = Phi^-1(u_k), (u_k, w_k) Gauss-Legendre on (0, 1);
  ``adaptive``: its nodes depend on the integrand (see :func:`log_integral`); returned here at t* = 0, s = 1,
  i.e. eps_k = Phi^-1(Phi_N(x_k)) with Gauss-Hermite weights.
  """
  nz = get_noise(noise)
  num_nodes = _check_num_nodes(num_nodes)
  rule = _resolve_rule(nz, rule)
  return _quadrature_cached(nz, rule, num_nodes)


@functools.lru_cache(maxsize=256)
def _levels_cached(noise: Noise, rule: str, num_nodes: int):
  """The same rule read as levels u_k = Phi(eps_k) of the max: (nodes eps_k, log u_k, log w_k), sum w_k = 1."""
  nodes, log_w = _quadrature_cached(noise, rule, num_nodes)
  if rule == "tail_trapezoid":
    log_u = sp_special.log_ndtr(_tail_trapezoid(num_nodes)[0])
  elif rule in ("gauss_hermite", "gh_levels"):
    x, w = np.polynomial.hermite_e.hermegauss(num_nodes)
    keep = w > 0
    if not _is_builtin(noise, "normal"):
      keep &= (sp_special.ndtr(x) > 0) & (sp_special.ndtr(x) < 1)
    log_u = sp_special.log_ndtr(x[keep])
  elif rule == "gauss_legendre":
    log_u = np.log(0.5 * (np.polynomial.legendre.leggauss(num_nodes)[0] + 1.0))
  else:
    k = np.arange(1, num_nodes + 1, dtype=np.float64)
    log_u = np.log(k / (num_nodes + 1) if rule == "grid" else (k - 0.5) / num_nodes)
  log_w = log_w - sp_special.logsumexp(log_w)  # exactly normalised weights => exactly normalised p
  for a in (log_u, log_w):
    a.setflags(write=False)
  return nodes, log_u, log_w


# ----------------------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------------------
def _is_concrete(x) -> bool:
  return not isinstance(x, jax.core.Tracer)


def validate_logits(logits, name: str = "logits") -> None:
  """Raises for non-floating dtypes, scalars, and (when concrete) non-finite values."""
  dtype = getattr(logits, "dtype", None)
  if dtype is None:
    logits = np.asarray(logits)
    dtype = logits.dtype
  if not jnp.issubdtype(dtype, jnp.floating):
    raise TypeError(f"{name} must have a floating dtype (float32/bfloat16/float64), got {dtype}; "
                    f"cast with {name}.astype(jnp.float32).")
  if jnp.ndim(logits) < 1:
    raise ValueError(f"{name} must have at least one axis (classes on the last axis), got a scalar.")
  if _is_concrete(logits):
    arr = np.asarray(jax.device_get(logits)).astype(np.float32)
    if not np.all(np.isfinite(arr)):
      bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
      raise ValueError(f"{name} contains {bad} non-finite value(s) (nan/inf). Perturb-Max needs finite "
                       "logits; to exclude classes pass a boolean `mask` instead of -inf logits.")


def _validate(logits, scale, mask):
  """Eager (trace-time) checks; returns (logits array, scale, mask or None). No computation."""
  validate_logits(logits)
  x = jnp.asarray(logits)
  if isinstance(scale, (int, float)) and not isinstance(scale, bool):
    if not (scale > 0 and math.isfinite(scale)):
      raise ValueError(f"scale (the noise scale) must be a finite positive number, got {scale}.")
  if mask is not None:
    mask = jnp.asarray(mask)
    if mask.dtype != jnp.bool_:
      raise TypeError(f"mask must be a boolean array (True = keep the class), got dtype {mask.dtype}.")
    try:
      if np.broadcast_shapes(mask.shape, x.shape) != x.shape:
        raise ValueError
    except ValueError as e:
      raise ValueError(f"mask of shape {mask.shape} does not broadcast to logits {x.shape}.") from e
  return x, scale, mask


def _cast(x, scale, mask):
  """Inside jit: promote to >= float32 (bfloat16 in, float32 accumulation/out), divide by the scale."""
  ct = jnp.promote_types(x.dtype, jnp.float32)
  x = x.astype(ct) / jnp.asarray(scale, ct)
  if mask is not None:
    mask = jnp.broadcast_to(mask, x.shape)
    x = jnp.where(mask, x, 0.0)  # safe values; masked terms are removed from every product
  return x, mask


# ----------------------------------------------------------------------------------------------------------
# Core quadrature evaluation
# ----------------------------------------------------------------------------------------------------------
# ----------------------------------------------------------------------------------------------------------
# The one 1-D integral: log E_eps[ prod_j Phi(d_j + eps) ] with mode-centred (adaptive) Gauss-Hermite nodes
# ----------------------------------------------------------------------------------------------------------
NEWTON_STEPS_NORMAL = 5      # Halley steps for the mode (normal noise: closed-form derivatives, concave)
NEWTON_STEPS_OTHER = 8       # other noises (derivatives by forward-mode autodiff, damped steps)
ADAPTIVE_NORMAL_NODES = 10   # default K of the skewed adaptive rule for normal noise (see _default_num_nodes)
SKEW_MAX = 1.0               # |c| of the skewed node map t = t* + s expm1(c x)/c (measured c in [0, 0.3])


@functools.lru_cache(maxsize=64)
def _hermite_table(num_nodes: int):
  """Probabilists' Gauss-Hermite nodes x_k and a_k = log w_k + x_k^2/2 (w_k normalised to sum 1), float64."""
  x, w = np.polynomial.hermite_e.hermegauss(num_nodes)
  keep = w > 0
  x, w = x[keep], w[keep] / math.sqrt(2.0 * math.pi)
  a = np.log(w) + 0.5 * x * x
  for v in (x, a):
    v.setflags(write=False)
  return x, a


def _from_normal(noise: Noise, t):
  return noise.from_normal(t)


def _masked_sum(v, keep, axis=-1):
  return jnp.sum(v if keep is None else jnp.where(keep, v, 0.0), axis=axis)


def _mode_and_scale(d, keep, noise: Noise):
  """Mode t*, Laplace scale s = (-G''(t*))^(-1/2) and skew c of G(t) = -t^2/2 + sum_j log Phi(d_j + eps(t)).

  d [..., m] (no gradient), keep [..., m] or None. Normal noise: Halley steps with G' = -t + sum r(z),
  G'' = -1 - sum r (z + r), z = d + t, r = phi/Phi (G is strictly concave), from t0 = max(0, -min_j d_j / 2)
  (the two-class mode for a gap -min d), and the skew c = G^(3)(t*) s^3 / 3 with
  G^(3) = sum r'' = sum r [(z + r)^2 - 1 + r (z + r)] (see :func:`_log_integral`). Other noises: damped Newton
  in t with derivatives by forward-mode autodiff, c = 0. Values only: the nodes carry no gradient (the
  integral does not depend on where they sit).
  """
  d = jax.lax.stop_gradient(d)
  if _is_builtin(noise, "normal"):
    dmin = jnp.min(d if keep is None else jnp.where(keep, d, jnp.inf), axis=-1)
    t = jnp.where(jnp.isfinite(dmin), jnp.maximum(-0.5 * dmin, 0.0), 0.0)
    g2 = -jnp.ones_like(t)
    for _ in range(NEWTON_STEPS_NORMAL):
      z = d + t[..., None]
      r = special._hazard(z)
      zr = z + r
      g1 = -t + _masked_sum(r, keep)
      g2 = -1.0 - _masked_sum(r * zr, keep)
      g3 = _masked_sum(r * (zr * zr - 1.0 + r * zr), keep)
      den = 2.0 * g2 * g2 - g1 * g3                       # Halley on the decreasing convex first derivative
      t_new = jnp.where(den > 0, t - 2.0 * g1 * g2 / den, t - g1 / g2)
      t = jnp.where(jnp.isfinite(t_new), t_new, t)
    # s and c from the last evaluation (one step before the returned t: converged to well within s)
    s = jax.lax.rsqrt(-g2)
    skew = jnp.clip(g3 * s * s * s / 3.0, -SKEW_MAX, SKEW_MAX)
    return t, s, jnp.where(jnp.isfinite(skew), skew, 0.0)

  def big_g(t):
    e = _from_normal(noise, t)
    return -0.5 * t * t + _masked_sum(noise.log_cdf(d + e[..., None]), keep)

  def derivs(t):
    one = jnp.ones_like(t)
    g1, g2 = jax.jvp(lambda u: jax.jvp(big_g, (u,), (one,))[1], (t,), (one,))
    return g1, g2

  # a coarse grid locates the highest mode (stiff or flat factors make Newton from 0 unreliable), then Newton
  grid = jnp.asarray(np.linspace(-8.0, 14.0, 45), d.dtype)
  g_grid = jax.vmap(big_g, in_axes=-1, out_axes=-1)(jnp.broadcast_to(grid, d.shape[:-1] + grid.shape))
  t = grid[jnp.argmax(jnp.where(jnp.isnan(g_grid), -jnp.inf, g_grid), axis=-1)]
  for _ in range(NEWTON_STEPS_OTHER):
    g1, g2 = derivs(t)
    step = jnp.clip(g1 / jnp.maximum(-g2, 0.25), -0.5, 0.5)
    t = jnp.where(jnp.isfinite(step), t + step, t)
  _, g2 = derivs(t)
  s = jax.lax.rsqrt(jnp.clip(-g2, 0.04, 1e4))
  return t, jnp.where(jnp.isfinite(s), s, 1.0), jnp.zeros_like(t)


def log_integral(d, noise: NoiseLike = "normal", num_nodes: int = 8, keep=None, *, adaptive: bool = True):
  """log E_eps[ prod_j Phi(d_j + eps) ] over the last axis of ``d`` -- THE 1-D integral of Perturb-Max and EXACT.

  With eps = eps(t) = Phi^{-1}(Phi_N(t)) (t standard normal; eps = t for normal noise) the integral is
  int phi(t) prod_j Phi(d_j + eps(t)) dt. ``adaptive``: Gauss-Hermite nodes t_k = t* + s x_k around the mode t*
  of the integrand, scaled by its Laplace scale s and skewed by c (:func:`_mode_and_scale`):
  t_k = t* + s u(x_k) with u(x) = (exp(c x) - 1)/c, so that

      log I = log s + logsumexp_k [ log w_k + x_k^2/2 + c x_k - t_k^2/2 + sum_j log Phi(d_j + eps(t_k)) ],

  which is exact for a Gaussian-shaped integrand (c = 0) and, with c = G^(3)(t*) s^3 / 3, cancels the cubic term
  of the log-integrand at the mode: the product of many factors has a Gumbel-like skew (steep on the left,
  Gaussian on the right) that the exponential map follows. It keeps K small where the mass sits far from t = 0
  (a class far behind the winner, a sharp product of many factors). Other noises than the normal: c = 0.
  ``adaptive=False`` (or a custom noise whose quantile does not trace under jax): the plain rule t* = 0, s = 1.
  ``keep`` [..., m] drops factors (False -> factor 1). Gradients: plain autodiff through the factors at fixed
  nodes (the node placement carries no gradient).
  """
  nz = get_noise(noise)
  num_nodes = _check_num_nodes(num_nodes)
  d = jnp.asarray(d)
  return _log_integral(d, keep, nz, num_nodes, bool(adaptive))


CAUCHY_DEFAULT_NODES = 224  # 24 panels: |p - p_quad| <= 7e-7 for features spread over 50 noise scales
CAUCHY_TAIL_NODES = 16      # Gauss-Legendre nodes in u for each tail beyond the window of features
CAUCHY_PANEL_NODES = 8      # Gauss-Legendre nodes per panel of the window
CAUCHY_MARGIN = 6.0         # the window reaches this far beyond the outermost feature


def _cauchy_window_integral(d, keep, noise: Noise, num_nodes: int):
  """log int f(e) prod_j F(d_j + e) de for Cauchy noise: panels over the window of features, u-space tails.

  Every factor F(d_j + e) = 1/2 + arctan(d_j + e)/pi turns from ~1/(pi |d_j + e|) to ~1 over a width ~1 around
  e = -d_j (branch points at -d_j +- i), and f(e) has its poles at +-i: a class 40 scales behind has two
  regions of mass, e ~ 0 and e >~ 40, with a transition of width 1 at 40 that no single rule in u (Gauss-Legendre
  K = 512: 2e-4 relative) or in t = Phi_N^-1(u) resolves. The window [lo, hi] = [min(0, -d) - 6, max(0, -d) + 6]
  is cut into (K - 32) / 8 equal panels of 8 Gauss-Legendre nodes in e (length <= 2 for gaps up to ~40 at the
  default K = 224; a forced K below ~100 is coarse: 0.09 off in p at K = 24), and the two heavy tails e < lo and e > hi, where every factor is smooth in u = F(e), take 16
  Gauss-Legendre nodes in u each. Nodes carry no gradient.
  """
  ds = jax.lax.stop_gradient(d)
  e_feat = -ds if keep is None else jnp.where(keep, -ds, 0.0)
  lo = jnp.minimum(jnp.min(e_feat, axis=-1), 0.0) - CAUCHY_MARGIN                  # [...]
  hi = jnp.maximum(jnp.max(e_feat, axis=-1), 0.0) + CAUCHY_MARGIN
  e, log_w = _cauchy_window_nodes(lo, hi, num_nodes)
  lf = noise.log_cdf(d[..., :, None] + e[..., None, :])                           # [..., m, K]
  if keep is not None:
    lf = jnp.where(keep[..., None], lf, 0.0)
  return jax.nn.logsumexp(jnp.sum(lf, axis=-2) + log_w, axis=-1)


def _cauchy_window_nodes(lo, hi, num_nodes: int):
  """Nodes e [..., K] and log-weights for int f(e) g(e) de, f the Cauchy density: panels on [lo, hi] (lo <= -6,
  hi >= 6), Gauss-Legendre in u = F(e) beyond (see :func:`_cauchy_window_integral`)."""
  dt = lo.dtype
  num_tail = min(CAUCHY_TAIL_NODES, max(1, num_nodes // 4))          # a forced small K keeps all three parts
  rest = max(1, num_nodes - 2 * num_tail)
  num_panels = max(1, rest // CAUCHY_PANEL_NODES)
  xq, wq = np.polynomial.legendre.leggauss(rest // num_panels)
  pos = (np.arange(num_panels)[:, None] + 0.5 * (xq[None] + 1.0)).ravel() / num_panels      # in (0, 1)
  width = (hi - lo)[..., None]
  e_mid = lo[..., None] + width * jnp.asarray(pos, dt)
  lw_mid = (jnp.log(width / num_panels) + jnp.asarray(np.log(0.5 * np.tile(wq, num_panels)), dt)
            + _cauchy_log_pdf(e_mid))
  xt, wt = np.polynomial.legendre.leggauss(num_tail)
  frac = jnp.asarray(0.5 * (xt + 1.0), dt)                                        # u / u_edge in (0, 1)
  u_lo = jnp.exp(_cauchy_log_cdf(lo))[..., None] * frac                           # F(lo), lo < 0
  v_hi = jnp.exp(_cauchy_log_cdf(-hi))[..., None] * frac                          # 1 - F(hi) = F(-hi)
  e_lo = -1.0 / jnp.tan(jnp.pi * u_lo)                                            # F^-1(u), u < 1/2
  e_hi = 1.0 / jnp.tan(jnp.pi * v_hi)                                             # F^-1(1 - v)
  lw_t = jnp.asarray(np.log(0.5 * wt), dt)
  lw_lo = _cauchy_log_cdf(lo)[..., None] + lw_t
  lw_hi = _cauchy_log_cdf(-hi)[..., None] + lw_t
  return (jnp.concatenate([e_lo, e_mid, e_hi], axis=-1),
          jnp.concatenate([lw_lo, lw_mid, lw_hi], axis=-1))


def _cauchy_max_log_probs(x, keep, num_nodes: int):
  """O(n K) full distribution for Cauchy noise, over the value of the max M with nodes shared by all classes:

      p_i = int f(y - mu_i) prod_{j != i} F(y - mu_j) dy = int r(y - mu_i) exp(S(y)) dy,   S = sum_j log F(y - mu_j),

  with the window nodes of :func:`_cauchy_window_nodes` around the logits (y = m + e, m = max mu, window
  [min mu - m - 6, 6]) read as weights for dy (log w - log f(e)). The Gauss-Legendre levels of the max (K = 64)
  were off by 4e-4 in p for a class 40 scales behind at n = 16. Nodes carry no gradient.
  """
  mu = jax.lax.stop_gradient(x if keep is None else jnp.where(keep, x, jnp.nan))
  m = jnp.nanmax(mu, axis=-1)
  lo = jnp.nanmin(mu, axis=-1) - m - CAUCHY_MARGIN
  e, log_w = _cauchy_window_nodes(lo, jnp.full_like(lo, CAUCHY_MARGIN), num_nodes)
  log_w = log_w - _cauchy_log_pdf(e)                                              # weights for dy
  z = (m[..., None] + e)[..., :, None] - x[..., None, :]                          # [..., K, n]
  lcdf = _cauchy_log_cdf(z)
  if keep is not None:
    lcdf = jnp.where(keep[..., None, :], lcdf, 0.0)
  s = jnp.sum(lcdf, axis=-1, keepdims=True)                                       # S(y_k)
  return jax.nn.logsumexp(_cauchy_log_pdf(z) - lcdf + s + log_w[..., :, None], axis=-2)


def _log_integral(d, keep, noise: Noise, num_nodes: int, adaptive: bool = True):
  if adaptive and _is_builtin(noise, "cauchy"):
    return _cauchy_window_integral(d, keep, noise, num_nodes)
  x_np, a_np = _hermite_table(num_nodes)
  x, a = jnp.asarray(x_np, d.dtype), jnp.asarray(a_np, d.dtype)
  if noise.from_normal is None:                                  # host quantile: fixed nodes in t
    with jax.ensure_compile_time_eval():
      e = jnp.asarray(np.asarray(noise.quantile(sp_special.ndtr(x_np)), np.float64), d.dtype)
    lf = noise.log_cdf(d[..., :, None] + e)
    if keep is not None:
      lf = jnp.where(keep[..., None], lf, 0.0)
    return jax.nn.logsumexp(jnp.sum(lf, axis=-2) + (a - 0.5 * x * x), axis=-1)
  if adaptive:
    t_star, scale, skew = _mode_and_scale(d, keep, noise)
  else:
    t_star, scale = jnp.zeros(d.shape[:-1], d.dtype), jnp.ones(d.shape[:-1], d.dtype)
    skew = jnp.zeros_like(t_star)
  c = skew[..., None]
  cx = c * x
  small = jnp.abs(c) < 1e-4                                      # expm1(c x)/c = x (1 + c x/2 + ...)
  u = jnp.where(small, x * (1.0 + 0.5 * cx), jnp.expm1(cx) / jnp.where(small, 1.0, c))
  a = a + cx                                                     # log du/dx = c x
  tk = t_star[..., None] + scale[..., None] * u                  # [..., K]
  e = tk if _is_builtin(noise, "normal") else _from_normal(noise, tk)
  # [..., K, m]: the classes on the minor axis, so XLA:CPU vectorises the log-CDF chain over them ([..., m, K]
  # with K = 10 was 5x slower under grad at 256 x 1000: a minor axis of 10 does not fill the vector lanes)
  lf = noise.log_cdf(d[..., None, :] + e[..., :, None])         # [..., K, m]
  if keep is not None:
    lf = jnp.where(keep[..., None, :], lf, 0.0)
  s = jnp.sum(lf, axis=-1) + a - 0.5 * tk * tk
  return jax.nn.logsumexp(s, axis=-1) + jnp.log(scale)


def _fixed_integral(nodes, log_w, lcdf):
  """The integral with fixed nodes eps_k / log-weights: log sum_k w_k prod_j Phi(d_j + eps_k)."""
  def integral(d, keep):
    t = lcdf(d[..., None] + nodes)                            # [..., m, K]
    if keep is not None:
      t = jnp.where(keep[..., None], t, 0.0)
    return jax.nn.logsumexp(jnp.sum(t, axis=-2) + log_w, axis=-1)
  return integral


def _block_log_probs(xi, x, integral, keep_j, self_mask):
  """log p for a block of 'own' classes.

  xi: [..., c] own logits; x: [..., n] all logits; keep_j [..., n] mask or None;
  self_mask: [c, n] bool, True where j == i (excluded from the product); integral(d, keep) -> log E prod.
  """
  d = xi[..., :, None] - x[..., None, :]                      # [..., c, n]   mu_i - mu_j
  keep = ~self_mask
  if keep_j is not None:
    keep = keep & keep_j[..., None, :]
  return integral(d, jnp.broadcast_to(keep, d.shape))        # [..., c]


def _rule_integral(x, noise: Noise, rule: str, num_nodes: int):
  """integral(d, keep) for a resolved rule (the adaptive rule or fixed nodes)."""
  if rule == "adaptive":
    return lambda d, keep: _log_integral(d, keep, noise, num_nodes)
  nodes, log_w = _quadrature_cached(noise, rule, num_nodes)
  return _fixed_integral(jnp.asarray(nodes, x.dtype), jnp.asarray(log_w, x.dtype), noise.log_cdf)


def _log_probs_quadrature(x, mask, integral, chunk_size, num_nodes=16):
  n = x.shape[-1]
  batch = int(np.prod(x.shape[:-1])) if x.ndim > 1 else 1
  K = num_nodes
  if chunk_size is None:
    per_row = max(batch * n * K, 1)
    limit = _DEFAULT_BLOCK_ELEMENTS * (8 if jax.default_backend() == "gpu" else 1)  # bigger blocks on a GPU
    chunk_size = max(1, min(n, limit // per_row))
  chunk_size = int(min(max(chunk_size, 1), n))
  if chunk_size >= n:
    self_mask = jnp.eye(n, dtype=bool)
    return _block_log_probs(x, x, integral, mask, self_mask)

  # Blocks of own classes i, scanned with rematerialisation (memory O(batch * chunk * n * K)).
  nb = -(-n // chunk_size)
  pad = nb * chunk_size - n
  xi_all = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, pad)])
  xi_blocks = jnp.moveaxis(xi_all.reshape(x.shape[:-1] + (nb, chunk_size)), -2, 0)  # [nb, ..., c]
  starts = jnp.arange(nb) * chunk_size
  cols = jnp.arange(n)

  @jax.checkpoint
  def body(args):
    xi, start = args
    rows = start + jnp.arange(chunk_size)
    self_mask = rows[:, None] == cols[None, :]
    return _block_log_probs(xi, x, integral, mask, self_mask)

  out = jax.lax.map(body, (xi_blocks, starts))               # [nb, ..., c]
  out = jnp.moveaxis(out, 0, -2).reshape(x.shape[:-1] + (nb * chunk_size,))
  return out[..., :n]


# ----------------------------------------------------------------------------------------------------------
# O(n K) full distribution: quadrature over the quantiles of the max (method="max_quantile")
# ----------------------------------------------------------------------------------------------------------
def _is_builtin(noise: Noise, name: str) -> bool:
  return noise is _BUILTIN[name]


def _cdf_and_log_hazard(noise: Noise, z):
  """(log Phi(z), log r(z)) with the reverse hazard r = f / Phi = d/dz log Phi."""
  if _is_builtin(noise, "normal"):
    lcdf = _normal_log_cdf_precise(z)
    return lcdf, _normal_log_pdf(z) - lcdf
  lcdf = noise.log_cdf(z)
  if _is_builtin(noise, "gumbel"):
    return lcdf, -z
  if _is_builtin(noise, "logistic"):
    return lcdf, -jax.nn.softplus(z)
  if noise.log_pdf is not None:
    return lcdf, noise.log_pdf(z) - lcdf
  return lcdf, jnp.log(jax.jvp(noise.log_cdf, (z,), (jnp.ones_like(z),))[1])


def _log_hazard_and_slope(noise: Noise, z):
  """(log r(z), d/dz log r(z)) -- the slope in closed form for the built-in noises."""
  if _is_builtin(noise, "normal"):
    return _normal_log_hazard(z)
  if _is_builtin(noise, "gumbel"):
    return -z, -jnp.ones_like(z)
  if _is_builtin(noise, "logistic"):
    return -jax.nn.softplus(z), -jax.nn.sigmoid(z)
  return jax.jvp(lambda v: _cdf_and_log_hazard(noise, v)[1], (z,), (jnp.ones_like(z),))


def _max_quantiles(mu, keep, t, log_u, noise: Noise, max_iter: int):
  """Quantiles x_k of M = max_j(mu_j + eps_j): sum_j log Phi(x_k - mu_j) = log u_k (values only, no gradient).

  mu [..., n] (no gradient), keep [..., n] or None, t = Phi^-1(u) and log_u: [K] or [..., K]. Newton (Halley
  for normal noise: ~3 passes to float32 round-off) on
  log(-S(x)) = log(-log u) with S(x) = sum_j log Phi(x - mu_j) (exact in one step for Gumbel noise), started
  from the "m ties" model S(x) ~ nu log Phi(x - m) fitted at x = m and kept inside the bracket
  m + Phi^-1(u) <= x_k <= m + Phi^-1(u^(1/n)) (m = max mu; the bounds are the one-class and the all-tied cases).
  """
  mu = jax.lax.stop_gradient(mu)
  dt = mu.dtype
  t = jnp.asarray(t, dt)
  log_u = jnp.asarray(log_u, dt)
  if keep is None:
    m = jnp.max(mu, axis=-1, keepdims=True)
    count = jnp.asarray(mu.shape[-1], dt)
  else:
    m = jnp.max(jnp.where(keep, mu, -jnp.inf), axis=-1, keepdims=True)
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    count = jnp.maximum(jnp.sum(keep, axis=-1, keepdims=True).astype(dt), 1.0)
  lo = m + t
  qlog = next((q for name, q in _QUANTILE_OF_LOG.items() if _is_builtin(noise, name)), None)
  if qlog is not None:
    hi = m + qlog(log_u / count)
    l_at_m = noise.log_cdf(m - mu)
    if keep is not None:
      l_at_m = jnp.where(keep, l_at_m, 0.0)
    nu = jnp.clip(jnp.sum(l_at_m, axis=-1, keepdims=True) / noise.log_cdf(jnp.zeros((), dt)), 1.0, count)
    x0 = jnp.clip(m + qlog(log_u / nu), lo, hi)
    x0 = jnp.where(jnp.isfinite(x0), x0, lo)
  else:
    hi = jnp.full_like(lo, jnp.inf)
    x0 = lo
  x0 = jnp.broadcast_to(x0, jnp.broadcast_shapes(x0.shape, lo.shape, log_u.shape))
  tol = float(np.sqrt(np.finfo(dt).eps))
  # levels below u = e^-30 (t < ~-7.5) carry weight only for classes with log p < ~-25, whose bar is 1e-3
  # relative: a 100x looser step test there spares the extra Halley pass the deepest levels need to *show*
  # convergence (they are at round-off after 3 steps; the last step is still ~1e-2 at t = -22)
  step_scale = jnp.where(log_u < -30.0, 1e-2, 1.0).astype(dt)
  neg_log_neg_c = jnp.log(-log_u)
  halley = _is_builtin(noise, "normal")

  def body(state):
    i, x, _, _ = state
    z = x[..., :, None] - mu[..., None, :]
    lcdf, lr = _cdf_and_log_hazard(noise, z)
    r = jnp.exp(lr)
    hazard = (x, lr, r) if halley else ()   # the last evaluation, reused by the final pass
    if keep is not None:
      lcdf = jnp.where(keep[..., None, :], lcdf, 0.0)
      r = jnp.where(keep[..., None, :], r, 0.0)
    s = jnp.sum(lcdf, axis=-1)
    ds = jnp.sum(r, axis=-1)
    g = jnp.log(-s) - neg_log_neg_c               # g(x) = log(-S) - log(-log u), decreasing in x
    g1 = ds / s                                    # g'
    xn = x - g / g1                                # Newton
    if halley:                                     # Halley (cubic): S'' = sum_j r (d log r/dz) = sum r (-z - r)
      d2 = -jnp.sum(r * (z + r) if keep is None else jnp.where(keep[..., None, :], r * (z + r), 0.0), axis=-1)
      g2 = d2 / s - g1 * g1
      den = 2.0 * g1 * g1 - g * g2
      xh = x - 2.0 * g * g1 / den
      xn = jnp.where((den > 0) & jnp.isfinite(xh), xh, xn)
    xn = jnp.where(jnp.isfinite(xn), xn, 0.5 * (x + lo))
    xn = jnp.clip(xn, lo, hi)
    delta = jnp.max(step_scale * jnp.abs(xn - x) / (1.0 + jnp.abs(xn - m)))
    return i + 1, xn, delta, hazard

  def cond(state):
    i, _, delta, _ = state
    return (i < max_iter) & (delta > tol)

  zeros = jnp.zeros(x0.shape + mu.shape[-1:], dt)
  init = (0, x0, jnp.asarray(jnp.inf, dt), (x0, zeros, zeros) if halley else ())
  _, x, delta, hazard = jax.lax.while_loop(cond, body, init)
  if not halley:
    return x, None
  return x, hazard + (delta <= tol,)


def _log_probs_max_quantile(mu, keep, t, log_u, log_w, noise: Noise, max_iter: int):
  """log p_i = logsumexp_k [ log w_k + log softmax_i( log r(x_k - mu) ) ]   (see the module docstring).

  The gradient of x_k (implicit function theorem: dx_k/dmu_j = pi_kj = softmax_j log r(x_k - mu)) is attached
  to first order, so no derivative goes through the Newton loop.
  """
  x, last = _max_quantiles(mu, keep, t, log_u, noise, max_iter)    # [..., K], no gradient
  mu_sg = jax.lax.stop_gradient(mu)
  z = x[..., :, None] - mu_sg[..., None, :]                          # [..., K, n]
  if last is None:
    lr, slope = _log_hazard_and_slope(noise, z)
  else:
    # normal noise: the solver's last evaluation was at x_e = x - d with |d| <~ 1e-5 once converged; move
    # log r and its slope -z - r to x by a first-order step (error O(d^2)) instead of a fresh log-CDF pass.
    x_e, lr_e, r_e, converged = last

    def moved():
      d = (x - x_e)[..., :, None]
      slope_e = -(z - d) - r_e
      return lr_e + slope_e * d, slope_e - (1.0 + r_e * slope_e) * d

    lr, slope = jax.lax.cond(converged, moved, lambda: _log_hazard_and_slope(noise, z))
  if keep is not None:
    kj = keep[..., None, :]
    lr = jnp.where(kj, lr, -jnp.inf)
    slope = jnp.where(kj, slope, 0.0)
  pi = jax.lax.stop_gradient(jax.nn.softmax(lr, axis=-1))           # dx_k / dmu_j
  xt = jnp.sum(pi * mu[..., None, :], axis=-1)                       # value sum pi mu, tangent sum pi dmu
  dz = xt[..., :, None] - mu[..., None, :]
  dz = dz - jax.lax.stop_gradient(dz)                                # value 0, tangent dx_k - dmu_j
  lr = lr + jax.lax.stop_gradient(slope) * dz
  log_pi = jax.nn.log_softmax(lr, axis=-1)
  if keep is not None:  # masked classes: a finite stand-in (overwritten by -inf by the caller), finite gradients
    log_pi = jnp.where(keep[..., None, :], log_pi, 0.0)
  log_w = jnp.asarray(log_w, mu.dtype)
  return jax.nn.logsumexp(log_pi + log_w[..., :, None], axis=-2)     # [..., n]


def _resolve_method(method, rule, n):
  if method is None:
    return "pairwise" if (rule == "grid" or n < AUTO_MAX_QUANTILE_MIN_CLASSES) else "max_quantile"
  if not isinstance(method, str) or method not in METHODS:
    raise ValueError(f"Unknown method {method!r}; valid methods: {list(METHODS)} (or None: 'pairwise' for the "
                     f"article's grid rule and n < {AUTO_MAX_QUANTILE_MIN_CLASSES} classes, else 'max_quantile').")
  return method


class Settings(NamedTuple):
  """How a Perturb-Max call evaluates its 1-D integral: ``method`` (pairwise | max_quantile), quadrature
  ``rule`` and number of nodes ``num_nodes`` (K)."""
  method: str
  rule: str
  num_nodes: int


def default_settings(noise: NoiseLike = "normal", num_classes: int = 2, *, label_only: bool = False,
                     method: Optional[str] = None, rule: Optional[str] = None,
                     num_nodes: Optional[int] = None) -> Settings:
  """The (method, rule, K) that :func:`perturb_max_log_probs` / :func:`perturb_max_probs` (or, with
  ``label_only``, :func:`perturb_max_log_prob_of`) use for ``noise`` and ``num_classes`` classes, filling every
  argument left at None with the library's default. The same resolution the calls run, so tables and
  benchmarks can name the defaults without restating them.

  >>> default_settings("normal", 1000)
  Settings(method='max_quantile', rule='tail_trapezoid', num_nodes=28)
  """
  nz = get_noise(noise)
  if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
    raise ValueError(f"num_classes must be an int >= 1 (the size of the logits' last axis), got {num_classes!r}.")
  n = int(num_classes)
  if label_only:
    if method not in (None, "pairwise"):
      raise ValueError(f"label_only=True evaluates the label's own pairwise integral; method must be None or "
                       f"'pairwise', got {method!r}.")
    method = "pairwise"
  else:
    method = _resolve_method(method, rule, n)
  rule = _resolve_rule(nz, rule, method)
  k = _default_num_nodes(nz, rule, method, n) if num_nodes is None else _check_num_nodes(num_nodes)
  return Settings(method, rule, k)


def perturb_max_log_probs(logits, noise: NoiseLike = "normal", rule: Optional[str] = None,
                          num_nodes: Optional[int] = None, scale=1.0, mask=None, *, renormalize: bool = False,
                          closed_form: bool = True, chunk_size: Optional[int] = None,
                          method: Optional[str] = None) -> jax.Array:
  """log p_i = log P[argmax(mu/s + eps) = i] over the last axis (see the module docstring)."""
  return _dispatch(logits, noise, rule, num_nodes, scale, mask, renormalize, closed_form, chunk_size, False,
                   method)


def perturb_max_probs(logits, noise: NoiseLike = "normal", rule: Optional[str] = None,
                      num_nodes: Optional[int] = None, scale=1.0, mask=None, *, renormalize: bool = False,
                      closed_form: bool = True, chunk_size: Optional[int] = None,
                      method: Optional[str] = None) -> jax.Array:
  """p = exp(perturb_max_log_probs(...)); Gumbel noise (closed form) returns ``jax.nn.softmax`` itself."""
  return _dispatch(logits, noise, rule, num_nodes, scale, mask, renormalize, closed_form, chunk_size, True,
                   method)


def _dispatch(logits, noise, rule, num_nodes, scale, mask, renormalize, closed_form, chunk_size, probs,
              method=None):
  nz = get_noise(noise)
  x, scale, mask = _validate(logits, scale, mask)
  method, rule, num_nodes = default_settings(nz, x.shape[-1], method=method, rule=rule, num_nodes=num_nodes)
  if chunk_size is not None:
    chunk_size = _check_num_nodes(chunk_size)
  return _log_probs_jit(x, scale, mask, noise=nz, rule=rule, num_nodes=num_nodes,
                        renormalize=bool(renormalize), closed_form=bool(closed_form),
                        chunk_size=chunk_size, probs=bool(probs), method=method)


@functools.partial(jax.jit, static_argnames=("noise", "rule", "num_nodes", "renormalize", "closed_form",
                                             "chunk_size", "probs", "method"))
def _log_probs_jit(x, scale, mask, *, noise, rule, num_nodes, renormalize, closed_form, chunk_size, probs,
                   method="pairwise"):
  x, mask = _cast(x, scale, mask)
  if noise is _BUILTIN["gumbel"] and closed_form:
    if mask is None:
      return jax.nn.softmax(x, axis=-1) if probs else jax.nn.log_softmax(x, axis=-1)
    lp = _masked_log_softmax(x, mask)
  elif method == "max_quantile":
    if rule == "adaptive":                                  # Cauchy (see _resolve_rule)
      lp = _cauchy_max_log_probs(x, mask, num_nodes)
    else:
      nodes, log_u, log_w = _levels_cached(noise, rule, num_nodes)
      lp = _log_probs_max_quantile(x, mask, nodes, log_u, log_w, noise, MAX_NEWTON_ITERS)
    if mask is not None:
      lp = jnp.where(mask, lp, -jnp.inf)
    if renormalize:
      lp = lp - jax.nn.logsumexp(lp, axis=-1, keepdims=True)
  else:
    lp = _log_probs_quadrature(x, mask, _rule_integral(x, noise, rule, num_nodes), chunk_size, num_nodes)
    if mask is not None:
      lp = jnp.where(mask, lp, -jnp.inf)
    if renormalize:
      lp = lp - jax.nn.logsumexp(lp, axis=-1, keepdims=True)
  return jnp.exp(lp) if probs else lp


def _masked_log_softmax(x, mask):
  z = jnp.where(mask, x, -jnp.inf)
  lse = jax.nn.logsumexp(z, axis=-1, keepdims=True)
  return jnp.where(mask, x - lse, -jnp.inf)


def _check_labels(labels, x):
  labels = jnp.asarray(labels)
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise TypeError(f"labels must be an integer array of class indices, got dtype {labels.dtype}.")
  if labels.shape != x.shape[:-1]:
    raise ValueError(f"labels shape {labels.shape} must equal logits.shape[:-1] = {x.shape[:-1]}.")
  if _is_concrete(labels):
    lab = np.asarray(labels)
    n = x.shape[-1]
    if lab.size and (lab.min() < 0 or lab.max() >= n):
      raise ValueError(f"labels must lie in [0, {n}) for {n} classes; got range "
                       f"[{lab.min()}, {lab.max()}].")
  return labels


def perturb_max_log_prob_of(logits, labels, noise: NoiseLike = "normal", rule: Optional[str] = None,
                            num_nodes: Optional[int] = None, margin=0.0, scale=1.0, mask=None, *,
                            closed_form: bool = True) -> jax.Array:
  """log P[argmax(mu/s + eps) = y] for the label class only, O(n K) per row.

  log E_eps[ prod_{j != y} Phi((mu_y - mu_j - margin)/s + eps) ]; masked classes drop out of the product.
  Returns an array of shape ``logits.shape[:-1]`` in float32 (or float64 for float64 logits).
  """
  nz = get_noise(noise)
  x, scale, mask = _validate(logits, scale, mask)
  _, rule, num_nodes = default_settings(nz, x.shape[-1], label_only=True, rule=rule, num_nodes=num_nodes)
  labels = _check_labels(labels, x)
  return _log_prob_of_jit(x, labels, margin, scale, mask, noise=nz, rule=rule, num_nodes=num_nodes,
                          closed_form=bool(closed_form))


@functools.partial(jax.jit, static_argnames=("noise", "rule", "num_nodes", "closed_form"))
def _log_prob_of_jit(x, labels, margin, scale, mask, *, noise, rule, num_nodes, closed_form):
  nz = noise
  x, mask = _cast(x, scale, mask)
  n = x.shape[-1]
  onehot = jnp.arange(n) == labels[..., None]                       # [..., n]
  margin = jnp.asarray(margin, x.dtype) / jnp.asarray(scale, x.dtype)
  xy = jnp.sum(jnp.where(onehot, x, 0.0), axis=-1) - margin          # [...]
  if nz is _BUILTIN["gumbel"] and closed_form:
    # softmax of the logits with mu_y replaced by mu_y - margin
    keep = ~onehot if mask is None else (~onehot & mask)
    others = jnp.where(keep, x, -jnp.inf)
    lse = jnp.logaddexp(xy, jax.nn.logsumexp(others, axis=-1))
    out = xy - lse
  else:
    keep = ~onehot if mask is None else (~onehot & mask)
    out = _rule_integral(x, nz, rule, num_nodes)(xy[..., None] - x, keep)
  if mask is not None:
    ym = jnp.sum(jnp.where(onehot, mask, False), axis=-1) > 0
    out = jnp.where(ym, out, -jnp.inf)
  return jnp.where((labels >= 0) & (labels < n), out, jnp.nan)   # traced out-of-range labels: NaN


# ----------------------------------------------------------------------------------------------------------
# Monte Carlo (checks)
# ----------------------------------------------------------------------------------------------------------
def perturb_max_probs_mc(key: jax.Array, logits, noise: NoiseLike = "normal", num_samples: int = 1000,
                         method: str = "expectation", scale=1.0, mask=None) -> jax.Array:
  """Monte Carlo estimate of p over the last axis, with an explicit PRNG key.

  method="expectation": p_i ~= (1/S) sum_s prod_{j != i} Phi(mu_i - mu_j + eps_s), eps_s scalar draws
  (the same draws for every class and row).
  method="argmax": frequency of argmax(mu + eps_s) = i, eps_s in R^n (independent per row).
  method="max_quantile": p_i ~= (1/S) sum_s softmax_i(log r(x_s - mu)), x_s the quantile of the max at the
  random level u_s = Phi(eps_s) (the O(n S) form of ``method="max_quantile"`` with random instead of quadrature
  levels; exactly normalised, differentiable).
  """
  nz = get_noise(noise)
  if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
    raise ValueError(f"num_samples must be an int >= 1, got {num_samples!r}.")
  if method not in ("expectation", "argmax", "max_quantile"):
    raise ValueError(f"Unknown Monte Carlo method {method!r}; use 'expectation', 'argmax' or 'max_quantile'.")
  x, scale, mask = _validate(logits, scale, mask)
  return _mc_jit(key, x, scale, mask, noise=nz, num_samples=int(num_samples), method=method)


@functools.partial(jax.jit, static_argnames=("noise", "num_samples", "method"))
def _mc_jit(key, x, scale, mask, *, noise, num_samples, method):
  x, mask = _cast(x, scale, mask)
  if method == "expectation":
    eps = sample_noise(key, noise, (num_samples,), x.dtype)
    log_w = jnp.full((num_samples,), -math.log(num_samples), x.dtype)
    lp = _log_probs_quadrature(x, mask, _fixed_integral(eps, log_w, noise.log_cdf), None, num_samples)
    if mask is not None:
      lp = jnp.where(mask, lp, -jnp.inf)
    return jnp.exp(lp)
  if method == "max_quantile":
    eps = sample_noise(key, noise, (num_samples,), x.dtype)
    log_u = (_normal_log_cdf_precise(eps) if _is_builtin(noise, "normal") else noise.log_cdf(eps))
    log_w = jnp.full((num_samples,), -math.log(num_samples), x.dtype)
    lp = _log_probs_max_quantile(x, mask, eps, log_u, log_w, noise, MAX_NEWTON_ITERS)
    if mask is not None:
      lp = jnp.where(mask, lp, -jnp.inf)
    return jnp.exp(lp)
  eps = sample_noise(key, noise, (num_samples,) + x.shape, x.dtype)
  z = x + eps
  if mask is not None:
    z = jnp.where(mask, z, -jnp.inf)
  idx = jnp.argmax(z, axis=-1)
  return jnp.mean(jax.nn.one_hot(idx, x.shape[-1], dtype=x.dtype), axis=0)


# ----------------------------------------------------------------------------------------------------------
# Sampling and relaxations
# ----------------------------------------------------------------------------------------------------------
def _check_tau(tau):
  if isinstance(tau, (int, float)) and not tau > 0:
    raise ValueError(f"tau (the relaxation temperature) must be > 0, got {tau}.")


def _sample_args(logits, noise, scale, shape):
  validate_logits(logits)
  return jnp.asarray(logits), get_noise(noise), scale, tuple(int(d) for d in shape)


@functools.partial(jax.jit, static_argnames=("noise", "shape", "kind"))
def _sample_jit(key, x, scale, tau, *, noise, shape, kind):
  ct = jnp.promote_types(x.dtype, jnp.float32)
  x = x.astype(ct)
  z = x + jnp.asarray(scale, ct) * sample_noise(key, noise, shape + x.shape, ct)
  if kind == "hard":
    return jnp.argmax(z, axis=-1)
  soft = jax.nn.softmax(z / tau, axis=-1)
  if kind == "relaxed":
    return soft
  hard = jax.nn.one_hot(jnp.argmax(z, axis=-1), z.shape[-1], dtype=soft.dtype)
  return soft + jax.lax.stop_gradient(hard - soft)


def sample(key: jax.Array, logits, noise: NoiseLike = "normal", scale=1.0, shape=()) -> jax.Array:
  """Exact sample of the Perturb-Max law: argmax(mu + s*eps); result shape ``shape + logits.shape[:-1]``."""
  x, nz, scale, shape = _sample_args(logits, noise, scale, shape)
  return _sample_jit(key, x, scale, 1.0, noise=nz, shape=shape, kind="hard")


def relaxed_sample(key: jax.Array, logits, tau, noise: NoiseLike = "normal", scale=1.0,
                   shape=()) -> jax.Array:
  """softmax((mu + s*eps)/tau): Gumbel-softmax for Gumbel noise; for other noises E[.] != p at tau > 0."""
  _check_tau(tau)
  x, nz, scale, shape = _sample_args(logits, noise, scale, shape)
  return _sample_jit(key, x, scale, tau, noise=nz, shape=shape, kind="relaxed")


def straight_through_sample(key: jax.Array, logits, tau, noise: NoiseLike = "normal", scale=1.0,
                            shape=()) -> jax.Array:
  """One-hot argmax sample in the forward pass; gradient of the relaxed sample in the backward pass."""
  _check_tau(tau)
  x, nz, scale, shape = _sample_args(logits, noise, scale, shape)
  return _sample_jit(key, x, scale, tau, noise=nz, shape=shape, kind="straight_through")


# ----------------------------------------------------------------------------------------------------------
# Closed forms for n = 2 (test oracles)
# ----------------------------------------------------------------------------------------------------------
def two_class_closed_form(delta, noise: str) -> np.ndarray:
  """p_1 for n = 2 with delta = mu_1 - mu_2 (float64 numpy): gumbel, normal and cauchy only."""
  delta = np.asarray(delta, np.float64)
  if noise == "gumbel":
    return sp_special.expit(delta)
  if noise == "normal":
    return sp_special.ndtr(delta / math.sqrt(2.0))
  if noise == "cauchy":
    return 0.5 + np.arctan(delta / 2.0) / math.pi
  raise ValueError(f"No n=2 closed form for noise {noise!r}; available: gumbel, normal, cauchy.")


__all__ = [
    "NOISES", "RULES", "METHODS", "GUMBEL_STD", "Noise", "Settings", "default_settings", "custom_noise",
    "get_noise", "log_cdf", "sample_noise",
    "quadrature", "log_integral", "validate_logits", "perturb_max_log_probs", "perturb_max_probs",
    "perturb_max_log_prob_of", "perturb_max_probs_mc", "sample", "relaxed_sample",
    "straight_through_sample", "two_class_closed_form",
]
