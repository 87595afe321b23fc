"""Fully sharded parameters (FSDP / ZeRO-3 layout) on a ``("data", "fsdp")`` mesh, placed for GSPMD.

With ``research.train.make_mesh(fsdp=F)`` the devices form a ``(N / F, F)`` mesh. Every array leaf of the
train state (parameters, every optimizer slot, whatever its shape) is split along its *largest axis that
``F`` divides* over the ``"fsdp"`` axis and replicated over ``"data"``; leaves with no such axis (scalars,
biases of odd size, step counters) stay replicated. The batch is split over both axes. Nothing else
changes: ``jit`` (GSPMD) all-gathers a parameter where a computation needs it whole and reduce-scatters its
gradient, so the maths of a step is the replicated step's, to float tolerance. Per device, a leaf of
``n`` elements sharded this way costs ``n / F`` elements instead of ``n``:

  bytes_per_device = sum_leaves itemsize * prod(shard_shape),  shard_shape[a*] = shape[a*] / F.

The rule reads only each leaf's own shape, so it applies to any optax state, including Amos's factored
slots (a ``(1, d)`` slot of a ``(k, d)`` kernel is split along ``d``).
"""
from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from research.train.sharding import FSDP_AXIS

__all__ = ["bytes_per_device", "fsdp_spec", "fsdp_size", "place_state", "sharded_bytes", "state_shardings"]


def fsdp_size(mesh: Mesh) -> int:
  """The size of the mesh's ``"fsdp"`` axis (1 for a 1-D data-parallel mesh)."""
  return int(mesh.shape[FSDP_AXIS]) if FSDP_AXIS in mesh.axis_names else 1


def fsdp_spec(shape: tuple[int, ...], fsdp: int) -> P:
  """``PartitionSpec`` putting ``"fsdp"`` on the largest axis of ``shape`` that ``fsdp`` divides (else ``P()``)."""
  if fsdp <= 1:
    return P()
  best = None
  for a, d in enumerate(shape):
    if d % fsdp == 0 and d >= fsdp and (best is None or d > shape[best]):
      best = a
  if best is None:
    return P()
  return P(*([None] * best + [FSDP_AXIS]))


def state_shardings(tree: Any, mesh: Mesh) -> Any:
  """The ``NamedSharding`` of every leaf of ``tree`` (arrays or ``jax.ShapeDtypeStruct``) on ``mesh``."""
  f = fsdp_size(mesh)
  return jax.tree.map(lambda x: NamedSharding(mesh, fsdp_spec(tuple(np.shape(x)), f)), tree)


def place_state(tree: Any, mesh: Mesh) -> Any:
  """Places ``tree`` on ``mesh``: sharded by :func:`fsdp_spec` when the mesh has an ``"fsdp"`` axis, else replicated.

  Every process must pass the same values (as after the same seeded initialisation); each keeps only the
  shards of its own devices.
  """
  return jax.device_put(tree, state_shardings(tree, mesh))


def sharded_bytes(tree: Any, fsdp: int) -> int:
  """Bytes per device of ``tree`` (arrays or ``jax.eval_shape`` structs) laid out by :func:`fsdp_spec` over ``fsdp``
  devices: ``sum_leaves nbytes / fsdp`` for the leaves with a divisible axis, ``nbytes`` for the others.

  ``fsdp = 1`` gives the replicated bytes. Needs no devices, so it sizes models larger than this machine.
  """
  total = 0
  for x in jax.tree.leaves(tree):
    n = int(np.prod(np.shape(x), dtype=np.int64)) * np.dtype(x.dtype).itemsize
    total += n // fsdp if fsdp > 1 and fsdp_spec(tuple(np.shape(x)), fsdp) != P() else n
  return total


def bytes_per_device(tree: Any) -> dict[Any, int]:
  """Bytes held by each device for ``tree``.

  Concrete ``jax.Array`` leaves are counted from their addressable shards (what is really allocated on this
  process's devices); ``jax.ShapeDtypeStruct`` leaves with a ``sharding`` from the shard shape it implies
  (abstract, e.g. from ``jax.eval_shape``), on every device of its mesh.
  """
  out: dict[Any, int] = {}
  for x in jax.tree.leaves(tree):
    if isinstance(x, jax.Array):
      for s in x.addressable_shards:
        out[s.device] = out.get(s.device, 0) + int(s.data.nbytes)
    elif getattr(x, "sharding", None) is not None:
      n = int(np.prod(x.sharding.shard_shape(x.shape))) * np.dtype(x.dtype).itemsize
      for d in x.sharding.device_set:
        out[d] = out.get(d, 0) + n
    else:
      raise TypeError(f"bytes_per_device needs jax.Arrays or ShapeDtypeStructs with a sharding, got {type(x)}; "
                      "place the tree with place_state or attach shardings with state_shardings.")
  return out
