"""Device mesh and sharding helpers: the batch axis is sharded over every device, parameters replicated.

This is the modern form of ``pmap``-style data parallelism: a 1-D :class:`jax.sharding.Mesh` with axis
``"data"``, batches placed with ``NamedSharding(mesh, P("data"))`` and parameters with ``P()``; ``jit``
inserts the gradient all-reduce. Results do not depend on the number of devices beyond float tolerance.
"""
from __future__ import annotations

import os
import warnings
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def maybe_initialize_distributed() -> bool:
  """Calls ``jax.distributed.initialize()`` when launched on several hosts; returns whether it did.

  Multi-host launches are recognised by the standard variables (``JAX_COORDINATOR_ADDRESS``, or a SLURM /
  Open MPI job with more than one task). Single-host runs are untouched.
  """
  multi = bool(os.environ.get("JAX_COORDINATOR_ADDRESS"))
  for var in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"):
    try:
      multi |= int(os.environ.get(var, "1")) > 1
    except ValueError:
      pass
  if multi and not getattr(maybe_initialize_distributed, "_done", False):
    jax.distributed.initialize()
    maybe_initialize_distributed._done = True  # type: ignore[attr-defined]
    return True
  return False


def set_cpu_devices(n: int) -> bool:
  """Exposes the host CPU as ``n`` JAX devices, so a mesh over ``jax.devices()`` shards the batch over cores.

  ``n = -1``: one device per core (``os.cpu_count()``); ``n = 0``: leave JAX's default (one CPU device, or
  what ``XLA_FLAGS=--xla_force_host_platform_device_count`` says). Each CPU device runs its shard of every
  op on its own thread, which on a few cores is often faster than XLA's intra-op threading of one device.
  It only affects the CPU backend (an accelerator's devices are unchanged) and only takes effect before
  JAX's first operation; afterwards it warns, keeps the current devices and returns ``False``.
  """
  if n == 0:
    return False
  if n < -1:
    raise ValueError(f"cpu_devices must be -1 (one per core), 0 (JAX's default) or a positive count; got {n}")
  n = (os.cpu_count() or 1) if n == -1 else int(n)
  try:
    jax.config.update("jax_num_cpu_devices", n)
  except RuntimeError as e:                     # backends already initialised (e.g. inside a test session)
    warnings.warn(f"cpu_devices={n} not applied ({e}); keeping the {jax.device_count()} current device(s)",
                  stacklevel=2)
    return False
  return True


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh named ``"data"`` over ``devices`` (default: all devices of all processes)."""
  devices = list(jax.devices() if devices is None else devices)
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def num_data_shards(mesh: Mesh) -> int:
  return mesh.shape[DATA_AXIS]


def global_batch_size(batch_size: int, mesh: Mesh | None = None) -> int:
  """Rounds ``batch_size`` up to a multiple of the number of data shards."""
  n = num_data_shards(mesh or make_mesh())
  return -(-batch_size // n) * n


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def shard_batch(batch: Any, mesh: Mesh) -> Any:
  """Places a pytree of host arrays (this process's part of the global batch) sharded on the leading axis."""
  sharding = batch_sharding(mesh)
  n = num_data_shards(mesh) // jax.process_count()

  def put(x):
    x = np.asarray(x)
    if x.ndim == 0:
      raise ValueError("Batch leaves must have a leading batch axis; got a scalar.")
    if x.shape[0] % n:
      raise ValueError(f"The batch axis ({x.shape[0]}) must be divisible by the number of local devices ({n}); "
                       "use research.train.global_batch_size() to pick the batch size.")
    return jax.make_array_from_process_local_data(sharding, x)

  return jax.tree.map(put, batch)


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places a pytree replicated on every device of the mesh."""
  return jax.device_put(tree, replicated_sharding(mesh))
