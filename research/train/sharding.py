"""Device mesh and sharding helpers: the batch axis is sharded over every device, parameters replicated.

This is the modern form of ``pmap``-style data parallelism: a 1-D :class:`jax.sharding.Mesh` with axis
``"data"``, batches placed with ``NamedSharding(mesh, P("data"))`` and parameters with ``P()``; ``jit``
inserts the gradient all-reduce. Results do not depend on the number of devices beyond float tolerance.
"""
from __future__ import annotations

import os
import sys
import warnings
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"
FSDP_AXIS = "fsdp"


def maybe_initialize_distributed() -> bool:
  """Calls ``jax.distributed.initialize`` when launched as several processes; returns whether it did.

  Multi-process launches are recognised by ``JAX_COORDINATOR_ADDRESS`` (+ ``JAX_NUM_PROCESSES``,
  ``JAX_PROCESS_ID``; set by ``experiments.launch``), or a SLURM / Open MPI job with more than one task; see
  :mod:`research.train.distributed` (gloo collectives on CPU, bounded wait for the coordinator).
  Single-process runs are untouched.
  """
  from research.train import distributed
  return distributed.initialize()


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


def make_mesh(devices: Sequence[jax.Device] | None = None, fsdp: int = 1) -> Mesh:
  """A mesh over ``devices`` (default: all devices of all processes).

  ``fsdp = 1``: 1-D, axis ``"data"`` (parameters replicated). ``fsdp > 1``: 2-D ``("data", "fsdp")`` of shape
  ``(n / fsdp, fsdp)``, along which :func:`research.train.fsdp.place_state` shards parameters and optimizer
  state; the batch is sharded over both axes.
  """
  devices = list(jax.devices() if devices is None else devices)
  if fsdp == 1:
    return Mesh(np.asarray(devices), (DATA_AXIS,))
  if fsdp < 1 or len(devices) % fsdp:
    raise ValueError(f"mesh.fsdp={fsdp} must be a positive divisor of the number of devices ({len(devices)}).")
  return Mesh(np.asarray(devices).reshape(len(devices) // fsdp, fsdp), (DATA_AXIS, FSDP_AXIS))


def batch_axes(mesh: Mesh) -> tuple[str, ...]:
  """The mesh axes the batch's leading axis is sharded over: ``("data",)`` or ``("data", "fsdp")``."""
  return tuple(a for a in (DATA_AXIS, FSDP_AXIS) if a in mesh.axis_names)


def num_data_shards(mesh: Mesh) -> int:
  return int(np.prod([mesh.shape[a] for a in batch_axes(mesh)]))


def global_batch_size(batch_size: int, mesh: Mesh | None = None) -> int:
  """Rounds ``batch_size`` up to a multiple of the number of data shards, printing a line when it changes."""
  if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
    raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
  n = num_data_shards(mesh or make_mesh())
  rounded = -(-int(batch_size) // n) * n
  if rounded != batch_size and jax.process_index() == 0:
    print(f"[research.train] batch_size {batch_size} rounded up to {rounded}, a multiple of the {n} devices "
          f"(pass a multiple of {n} to keep it)", file=sys.stderr, flush=True)
  return rounded


def batch_sharding(mesh: Mesh, axis: int = 0) -> NamedSharding:
  """Axis ``axis`` of a batch (the example axis) sharded over the mesh's batch axes, the others replicated."""
  axes = batch_axes(mesh)
  return NamedSharding(mesh, P(*([None] * axis), axes[0] if len(axes) == 1 else axes))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def shard_batch(batch: Any, mesh: Mesh, axis: int = 0) -> Any:
  """Places a pytree of host arrays (this process's part of the global batch) sharded on axis ``axis``
  (the leading axis by default; a population's batches ``[steps, runs, examples, ...]`` use axis 2)."""
  sharding = batch_sharding(mesh, axis)
  n = num_data_shards(mesh) // jax.process_count()

  def put(x):
    x = np.asarray(x)
    if x.ndim <= axis:
      raise ValueError(f"Batch leaves must have a batch axis at position {axis}; got shape {x.shape}.")
    if x.shape[axis] % n:
      raise ValueError(f"The batch axis ({x.shape[axis]}) must be divisible by the number of local devices ({n}); "
                       "use research.train.global_batch_size() to pick the batch size.")
    return jax.make_array_from_process_local_data(sharding, x)

  return jax.tree.map(put, batch)


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places a pytree replicated on every device of the mesh."""
  return jax.device_put(tree, replicated_sharding(mesh))
