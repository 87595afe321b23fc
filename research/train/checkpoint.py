"""Orbax checkpointing of any pytree (a :class:`~research.train.loop.TrainState` in particular).

The state is saved as its flat list of leaves under an orbax ``CheckpointManager``; restoring unflattens
into the structure of a template state, so optimizer states made of NamedTuples, empty states and typed
containers all round-trip exactly. Saves are synchronous, so a checkpoint that exists on disk is complete
even if the process is killed right after.

Leaves that are ``jax.Array`` are saved as such: in a multi-process run (``jax.distributed``) every process
writes the shards of its own devices into the same directory (orbax's multi-process protocol, with barriers
between the processes), and restoring into a template of ``jax.Array`` leaves puts every leaf back with the
template leaf's sharding (replicated or FSDP-sharded, over one or several processes). Every process must
call ``save``/``restore`` together. Host (numpy) leaves are saved and restored as numpy arrays.
"""
from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


def _key(i: int) -> str:
  return f"{i:05d}"


class Checkpointer:
  """Keeps the latest ``keep`` checkpoints of a pytree in ``directory``."""

  def __init__(self, directory: str, keep: int = 2):
    self.directory = os.path.abspath(directory)
    self._manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, tree: Any) -> None:
    if self.latest_step() == int(step):
      return
    leaves = jax.tree.leaves(tree)
    item = {_key(i): x if isinstance(x, jax.Array) else np.asarray(x) for i, x in enumerate(leaves)}
    self._manager.save(int(step), args=ocp.args.StandardSave(item), force=True)
    self._manager.wait_until_finished()

  def restore(self, step: int, template: Any) -> Any:
    leaves, treedef = jax.tree.flatten(template)
    target = {}
    for i, x in enumerate(leaves):
      if isinstance(x, jax.Array):
        target[_key(i)] = jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
      else:
        target[_key(i)] = np.asarray(x)
    meta = self._manager.item_metadata(int(step))
    saved_shapes = {k: tuple(getattr(v, "shape", ())) for k, v in (meta or {}).items()} if meta else {}
    for i, x in enumerate(leaves):
      want = tuple(np.shape(x))
      got = saved_shapes.get(_key(i), want)
      if got != want:
        raise ValueError(f"Checkpoint {self.directory}/{step}: leaf {i} has shape {got}, the model expects "
                         f"{want}. The checkpoint belongs to a different configuration; use a fresh workdir.")
    if meta and len(saved_shapes) != len(leaves):
      raise ValueError(f"Checkpoint {self.directory}/{step} holds {len(saved_shapes)} arrays, the model has "
                       f"{len(leaves)}. The checkpoint belongs to a different configuration; use a fresh workdir.")
    item = self._manager.restore(int(step), args=ocp.args.StandardRestore(target))
    restored = []
    for i, old in enumerate(leaves):
      new = item[_key(i)]
      if isinstance(old, jax.Array):
        restored.append(new if new.dtype == old.dtype else new.astype(old.dtype))
      else:
        restored.append(np.asarray(new, dtype=np.asarray(old).dtype))
    return jax.tree.unflatten(treedef, restored)

  def restore_latest(self, template: Any) -> Any | None:
    step = self.latest_step()
    return None if step is None else self.restore(step, template)

  def close(self) -> None:
    self._manager.close()
