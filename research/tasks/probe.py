"""The zeros -> positions probe of kexue 9105 (spec 03 §3.1, §3.6).

Input: n copies of token ``ZERO`` (id 0), optionally wrapped as ``[CLS] 0...0 [SEP]`` (bidirectional) or
prefixed by ``[BOS]`` (causal). Target at the i-th zero token: class i-1 of n (positions "1..n" as classes
0..n-1). Boundary tokens have weight 0. No padding (pads would leak position).

Theory (spec §3.3, §3.7): a row-stochastic attention (softmax) with any PE acting on logits only gives
identical rows: best CE = ln n, accuracy 1/n. An even bias (symmetric ALiBi) under a bidirectional mask makes
rows i and n+1-i identical under every normalizer: best accuracy 1/2 (CE ln 2) for even n, and (n+1)/(2n)
(CE (n-1)/n ln 2) for odd n.
"""
from __future__ import annotations

import math

import numpy as np

ZERO, CLS, SEP = 0, 1, 2        # BOS reuses id 1
VOCAB_SIZE = 3
BOUNDARIES = ("none", "cls_sep", "bos")


def make_probe(n: int, boundary: str = "none") -> dict[str, np.ndarray]:
  """tokens int32 [1, T], targets int32 [1, T], weights float32 [1, T] (T = n, n+2 or n+1)."""
  if not isinstance(n, (int, np.integer)) or n < 1:
    raise ValueError(f"probe length n must be a positive integer, got {n!r}.")
  if boundary not in BOUNDARIES:
    raise ValueError(f"Unknown boundary {boundary!r}; valid: {list(BOUNDARIES)}.")
  tokens = [ZERO] * n
  targets = list(range(n))
  weights = [1.0] * n
  if boundary == "cls_sep":
    tokens = [CLS] + tokens + [SEP]
    targets = [0] + targets + [0]
    weights = [0.0] + weights + [0.0]
  elif boundary == "bos":
    tokens = [CLS] + tokens
    targets = [0] + targets
    weights = [0.0] + weights
  return {"tokens": np.asarray([tokens], np.int32), "targets": np.asarray([targets], np.int32),
          "weights": np.asarray([weights], np.float32)}


def theory(n: int, *, row_stochastic_fails: bool, symmetric_cap: bool) -> dict[str, float]:
  """Best attainable (CE, accuracy) under the two symmetry arguments; passing variants: (0, 1)."""
  if row_stochastic_fails:
    return {"ce": math.log(n), "acc": 1.0 / n}
  if symmetric_cap:
    if n % 2 == 0:
      return {"ce": math.log(2), "acc": 0.5}
    return {"ce": (n - 1) / n * math.log(2), "acc": (n + 1) / (2 * n)}
  return {"ce": 0.0, "acc": 1.0}


def tie_aware_accuracy(logits, targets, weights, tol: float = 1e-3):
  """Accuracy after rounding logits to multiples of ``tol`` (numpy or jax arrays).

  Identical rows up to float rounding (~1e-6) become exactly identical, so a provably failing model scores
  exactly 1/n with consistent tie-breaking (first index) instead of a random-looking value.
  """
  import jax.numpy as jnp
  q = jnp.round(logits / tol)
  acc = (jnp.argmax(q, axis=-1) == targets).astype(jnp.float32)
  return jnp.sum(acc * weights) / jnp.maximum(jnp.sum(weights), 1e-9)
