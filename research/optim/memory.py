"""Optimizer-state (slot) memory accounting for any optax optimizer and any params pytree.

``state_bytes(tx, params)`` uses ``jax.eval_shape`` and allocates nothing, so it works for a 110M-parameter
BERT-base-shaped pytree given as ``jax.ShapeDtypeStruct`` leaves.
"""
from __future__ import annotations

from typing import Any, Dict

import jax
import numpy as np
import optax

__all__ = ["tree_bytes", "optimizer_state_bytes", "state_bytes", "state_report"]


def tree_bytes(tree: Any, *, min_size: int = 0) -> int:
  """Bytes of all array leaves (arrays or ShapeDtypeStructs) of ``tree`` with at least ``min_size`` entries."""
  total = 0
  for leaf in jax.tree_util.tree_leaves(tree):
    if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
      size = int(np.prod(leaf.shape, dtype=np.int64))
      if size >= min_size:
        total += size * np.dtype(leaf.dtype).itemsize
  return total


def optimizer_state_bytes(state: Any, *, include_scalars: bool = True) -> int:
  """Bytes of an optimizer state (any optax state); ``include_scalars=False`` drops step counters and
  other size-1 leaves, i.e. counts only the slot variables."""
  return tree_bytes(state, min_size=1 if include_scalars else 2)


def state_bytes(tx: optax.GradientTransformation, params: Any, *, include_scalars: bool = True) -> int:
  """Bytes of ``tx.init(params)`` computed abstractly (no allocation)."""
  if not hasattr(tx, "init"):
    raise TypeError(f"tx must be an optax GradientTransformation, got {type(tx).__name__}")
  abstract = jax.eval_shape(tx.init, params)
  return optimizer_state_bytes(abstract, include_scalars=include_scalars)


def state_report(optimizers: Dict[str, optax.GradientTransformation], params: Any,
                 reference: str | None = None) -> Dict[str, Dict[str, float]]:
  """``{name: {"bytes": b, "ratio_to_params": b / params_bytes, "ratio_to_<reference>": ...}}``."""
  pb = tree_bytes(params)
  out = {name: {"bytes": float(state_bytes(tx, params))} for name, tx in optimizers.items()}
  for d in out.values():
    d["ratio_to_params"] = d["bytes"] / pb if pb else float("nan")
    if reference is not None:
      d[f"ratio_to_{reference}"] = d["bytes"] / out[reference]["bytes"]
  return out
