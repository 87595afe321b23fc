"""Orbax checkpointing of any pytree (a :class:`~research.train.loop.TrainState` in particular).

The state is saved as its flat list of leaves (host numpy arrays) under an orbax ``CheckpointManager``;
restoring unflattens into the structure of a template state, so optimizer states made of NamedTuples,
empty states and typed containers all round-trip exactly. Saves are synchronous, so a checkpoint that
exists on disk is complete even if the process is killed right after.
"""
from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


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
    leaves = jax.tree.leaves(jax.device_get(tree))
    item = {f"{i:05d}": np.asarray(x) for i, x in enumerate(leaves)}
    self._manager.save(int(step), args=ocp.args.StandardSave(item), force=True)
    self._manager.wait_until_finished()

  def restore(self, step: int, template: Any) -> Any:
    leaves, treedef = jax.tree.flatten(template)
    target = {f"{i:05d}": np.asarray(jax.device_get(x)) for i, x in enumerate(leaves)}
    item = self._manager.restore(int(step), args=ocp.args.StandardRestore(target))
    restored = [np.asarray(item[f"{i:05d}"]) for i in range(len(leaves))]
    for i, (new, old) in enumerate(zip(restored, leaves)):
      if new.shape != np.shape(old):
        raise ValueError(f"Checkpoint {self.directory}/{step}: leaf {i} has shape {new.shape}, the model expects "
                         f"{np.shape(old)}. The checkpoint belongs to a different configuration; use a fresh workdir.")
    return jax.tree.unflatten(treedef, [np.asarray(r, dtype=np.asarray(o).dtype) for r, o in zip(restored, leaves)])

  def restore_latest(self, template: Any) -> Any | None:
    step = self.latest_step()
    return None if step is None else self.restore(step, template)

  def close(self) -> None:
    self._manager.close()
