"""Optimizer-state (slot) memory accounting for any optax optimizer and any params pytree.

``state_bytes(tx, params)`` uses ``jax.eval_shape`` and allocates nothing, so it works for a 110M-parameter
BERT-base-shaped pytree given as ``jax.ShapeDtypeStruct`` leaves.
"""
from __future__ import annotations

from typing import Any, Dict

import jax
import numpy as np
import optax

__all__ = ["tree_bytes", "slot_leaves", "optimizer_state_bytes", "state_bytes", "state_report"]


def tree_bytes(tree: Any, *, min_size: int = 0) -> int:
  """Bytes of all array leaves (arrays or ShapeDtypeStructs) of ``tree`` with at least ``min_size`` entries."""
  total = 0
  for leaf in jax.tree_util.tree_leaves(tree):
    if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
      size = int(np.prod(leaf.shape, dtype=np.int64))
      if size >= min_size:
        total += size * np.dtype(leaf.dtype).itemsize
  return total


def _children(node: Any) -> list:
  """The immediate children of a pytree node ([] for a leaf)."""
  kids = jax.tree_util.tree_leaves(node, is_leaf=lambda x: x is not node)
  return [] if len(kids) == 1 and kids[0] is node else kids


def slot_leaves(state: Any, params: Any = None) -> list:
  """The slot variables of an optimizer state: its per-parameter statistics, of any shape.

  With ``params``: the leaves of every subtree of ``state`` that has the tree structure of ``params`` (Adam's
  mu and nu, Amos's v and b, whatever their shapes: full, factored, or scalar ``()`` slots), found by walking
  the state from the root. Without ``params``: the floating-point leaves (optax keeps step counters in
  integer leaves). Either way a slot is recognised by what it is, never by its size.
  """
  if params is None:
    return [x for x in jax.tree_util.tree_leaves(state)
            if hasattr(x, "dtype") and np.issubdtype(np.dtype(x.dtype), np.inexact)]
  pdef = jax.tree_util.tree_structure(params)
  if jax.tree_util.treedef_is_leaf(pdef):
    raise ValueError("slot_leaves needs a params pytree with at least one container (e.g. {'w': w}); a "
                     "single-array params cannot tell slots from counters by structure. Pass params=None to "
                     "count the floating-point leaves instead.")
  out = []

  def walk(node):
    if jax.tree_util.tree_structure(node) == pdef:
      out.extend(jax.tree_util.tree_leaves(node))
      return
    for child in _children(node):
      walk(child)

  walk(state)
  return out


def optimizer_state_bytes(state: Any, *, include_scalars: bool = True, params: Any = None) -> int:
  """Bytes of an optimizer state (any optax state).

  ``include_scalars=True``: every leaf (step counters included). ``include_scalars=False``: only the slot
  variables (:func:`slot_leaves`; scalar slots such as Amos's ``()`` v/b of a bias count, step counters do
  not). Pass ``params`` to recognise the slots by the params' tree structure (else by floating dtype).
  """
  if include_scalars:
    return tree_bytes(state)
  return tree_bytes(slot_leaves(state, params))


def state_bytes(tx: optax.GradientTransformation, params: Any, *, include_scalars: bool = True) -> int:
  """Bytes of ``tx.init(params)`` computed abstractly (no allocation); see :func:`optimizer_state_bytes`."""
  if not hasattr(tx, "init"):
    raise TypeError(f"tx must be an optax GradientTransformation, got {type(tx).__name__}")
  abstract = jax.eval_shape(tx.init, params)
  return optimizer_state_bytes(abstract, include_scalars=include_scalars, params=params)


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
