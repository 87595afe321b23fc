"""CoSENT: a ranking loss over all pairs of labelled pairs in a batch (Su, kexue.fm 8847 and 9341).

For a batch of B labelled pairs with gold similarities y_p and model scores s_p = lambda * f_p
(f a cosine for bi-encoders, lambda = 20; f the raw logit of a cross-encoder, lambda = 1)

    L = log(1 + sum_{p,q : y_p < y_q} exp(s_p - s_q))
      = logsumexp({0} U {s_p - s_q : y_p < y_q}).

Ties (y_p = y_q) contribute nothing (strict <); if all labels are equal, L = log 1 = 0 with gradient 0.
It is one logsumexp per batch, not a mean over examples; there are no cross-pair negatives.

Two implementations with the same value and gradient:

* ``impl="pairwise"``: the B x B matrix D_pq = s_p - s_q masked to y_p < y_q (O(B^2) time and memory).
* ``impl="sorted"``:   L = log(1 + sum_q exp(-s_q) * sum_{p : y_p < y_q} exp(s_p)). Sort by label, take a
  running logsumexp of s over the strictly lower label groups (ties grouped via searchsorted) and combine
  it with -s_q in log space (O(B log B) time, O(B) memory).

Masking uses -inf with ``where`` and a logsumexp that always contains the finite 0, so gradients stay
finite even when every entry is masked (no -1e12 offsets, which float16 cannot represent).

Bad input: shapes are checked at trace time (``ValueError``); concrete (eager) scores or labels that hold
NaN/inf raise ``ValueError``; under ``jit`` a non-finite score or label makes the loss NaN (a NaN label would
otherwise fall out of every ``y_p < y_q`` comparison and leave a finite, wrong loss), so the training loop's
non-finite guard stops the run at that step.
"""
from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["cosent_loss", "cosent_cosine_loss", "cosent_logit_loss", "pair_cosines", "cosent_brute_force",
           "validate_scores_labels"]

COSINE_SCALE = 20.0
LOGIT_SCALE = 1.0
LOGIT_CLIP = 1e6


def validate_scores_labels(scores, labels) -> None:
  """Raises ValueError unless scores and labels are 1-D arrays of the same length (checked at trace time),
  and, for concrete (non-traced) arrays, unless every score and label is finite."""
  s, y = jnp.shape(scores), jnp.shape(labels)
  try:
    chex.assert_rank([scores, labels], 1)
  except AssertionError:
    raise ValueError(f"CoSENT expects 1-D scores and labels (one per labelled pair); got shapes {s} and {y}. "
                     "Flatten a [B, 1] logit with logits[:, 0].") from None
  if s[0] != y[0]:
    raise ValueError(f"CoSENT: {s[0]} scores but {y[0]} labels; every labelled pair needs exactly one score")
  if s[0] == 0:
    raise ValueError("CoSENT: empty batch (0 pairs)")
  for name, x in (("scores", scores), ("labels", labels)):
    if not isinstance(x, jax.core.Tracer):
      a = np.asarray(x)
      if a.dtype.kind == "f" and not np.isfinite(a).all():
        bad = np.flatnonzero(~np.isfinite(a))
        raise ValueError(f"CoSENT: {name} hold NaN/inf at positions {bad[:5].tolist()}; drop or fix those pairs "
                         "(a NaN label would silently fall out of every comparison)")


def _pairwise(s, y):
  d = s[:, None] - s[None, :]                       # D_pq = s_p - s_q
  mask = y[:, None] < y[None, :]                    # keep y_p < y_q (strict: ties excluded)
  d = jnp.where(mask, d, -jnp.inf).reshape(-1)
  return jax.nn.logsumexp(jnp.concatenate([jnp.zeros((1,), d.dtype), d]))


def _sorted(s, y):
  order = jnp.argsort(y, stable=True)
  ys, ss = y[order], s[order]
  run = jax.lax.associative_scan(jnp.logaddexp, ss)        # run_i = logsumexp(ss_0..ss_i)
  start = jnp.searchsorted(ys, ys, side="left")            # first index of each label group
  lower = jnp.where(start > 0, run[jnp.maximum(start - 1, 0)], -jnp.inf)   # logsumexp over y_p < y_q
  terms = jnp.where(start > 0, lower - ss, -jnp.inf)
  return jax.nn.logsumexp(jnp.concatenate([jnp.zeros((1,), terms.dtype), terms]))


def cosent_loss(scores, labels, *, scale: float = 1.0, impl: str = "sorted", clip: float | None = None):
  """CoSENT over already-computed scores: log(1 + sum_{y_p < y_q} exp(scale * (f_p - f_q))).

  Args:
    scores: [B] model similarities f_p (cosines or logits).
    labels: [B] gold similarities (binary, ordinal or graded; only their order matters).
    scale: lambda (20 for cosines, 1 for logits).
    impl: "sorted" (O(B log B)) or "pairwise" (O(B^2)); equal in value and gradient.
    clip: if given, scores are clipped to [-clip, clip] first (the reference clips logits to +-1e6).
  Returns:
    scalar loss (float32 at least); NaN under ``jit`` when a score or label is NaN/inf (eager calls raise).
  """
  validate_scores_labels(scores, labels)
  if impl not in ("sorted", "pairwise"):
    raise ValueError(f"impl must be 'sorted' (O(B log B)) or 'pairwise' (O(B^2)), got {impl!r}")
  if not scale > 0:
    raise ValueError(f"scale (lambda) must be > 0, got {scale}")
  s = jnp.asarray(scores)
  s = s.astype(jnp.promote_types(s.dtype, jnp.float32))
  if clip is not None:
    s = jnp.clip(s, -clip, clip)
  s = s * scale
  y = jnp.asarray(labels)
  loss = _sorted(s, y) if impl == "sorted" else _pairwise(s, y)
  finite = jnp.isfinite(s).all() & jnp.isfinite(y).all()  # traced NaN/inf input: NaN, never a finite wrong loss
  return jnp.where(finite, loss, jnp.nan)


def cosent_logit_loss(logits, labels, *, scale: float = LOGIT_SCALE, impl: str = "sorted",
                      clip: float | None = LOGIT_CLIP):
  """Interactive CoSENT (9341): raw Dense(1) logits [B] or [B, 1], lambda = 1, clipped to +-1e6."""
  logits = jnp.asarray(logits)
  if logits.ndim == 2 and logits.shape[1] == 1:
    logits = logits[:, 0]
  return cosent_loss(logits, labels, scale=scale, impl=impl, clip=clip)


def pair_cosines(a, b=None, *, layout: str = "two_lists", eps: float = 1e-8):
  """cos(u_p1, u_p2) per pair. ``layout="two_lists"``: a = [B, D] first, b = [B, D] second sentences;
  ``layout="interleaved"``: a = [2B, D] ordered [a_1, b_1, a_2, b_2, ...] and b is None."""
  a = jnp.asarray(a)
  if layout == "interleaved":
    if b is not None:
      raise ValueError("layout='interleaved' takes one [2B, D] array; pass b=None")
    if a.ndim != 2 or a.shape[0] % 2:
      raise ValueError(f"interleaved embeddings must be [2B, D] with an even first axis, got {a.shape}; "
                       "an odd count means a pair was split")
    a, b = a[0::2], a[1::2]
  elif layout == "two_lists":
    if b is None:
      raise ValueError("layout='two_lists' needs both a and b")
    b = jnp.asarray(b)
    if a.shape != b.shape:
      raise ValueError(f"first and second sentence embeddings differ in shape: {a.shape} vs {b.shape}")
  else:
    raise ValueError(f"layout must be 'two_lists' or 'interleaved', got {layout!r}")
  an = a / jnp.maximum(jnp.linalg.norm(a, axis=-1, keepdims=True), eps)
  bn = b / jnp.maximum(jnp.linalg.norm(b, axis=-1, keepdims=True), eps)
  return (an * bn).sum(-1)


def cosent_cosine_loss(a, b, labels, *, scale: float = COSINE_SCALE, layout: str = "two_lists",
                       impl: str = "sorted"):
  """Bi-encoder CoSENT (8847): cosines of the pair embeddings, lambda = 20."""
  return cosent_loss(pair_cosines(a, b, layout=layout), labels, scale=scale, impl=impl)


def cosent_brute_force(scores, labels, scale: float = 1.0) -> float:
  """Reference double loop in float64 Python (for tests)."""
  import math
  s = [float(x) * scale for x in scores]
  y = [float(x) for x in labels]
  terms = [0.0] + [s[p] - s[q] for p in range(len(s)) for q in range(len(s)) if y[p] < y[q]]
  m = max(terms)
  return m + math.log(sum(math.exp(t - m) for t in terms))
