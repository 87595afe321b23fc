"""Several processes (hosts) as one JAX program: JAX's multi-controller runtime, made explicit and bounded.

Every process runs the same Python program. ``initialize`` joins them through a coordinator (process 0's
``host:port``) with ``jax.distributed.initialize``; afterwards ``jax.devices()`` lists the devices of all
processes (process ``p`` owns ``jax.local_devices()``), a mesh over them is one global mesh, and a ``jit``
over global arrays runs as one SPMD program whose cross-process reductions go through the backend's
collectives (gloo on CPU, NCCL on GPU, ICI/DCN on TPU). Data parallelism over ``P`` processes with ``D``
local devices each is then the 1-process recipe with a ``P * D``-device mesh:

  global batch  B = sum_p B_p,   B_p = B / P rows per process (``research.data.batch_fn`` slices them);
  global array  x = concat_p x_p  (``jax.make_array_from_process_local_data``, in ``shard_batch``).

Where the parameters come from (which process, which variables) is read from, in order: the arguments;
``JAX_COORDINATOR_ADDRESS`` + ``JAX_NUM_PROCESSES`` + ``JAX_PROCESS_ID`` (what ``experiments.launch``
sets, and what a cluster script can set); a SLURM or Open MPI job with more than one task (JAX's own
cluster detection fills in the rest). A process that cannot reach the coordinator raises
:class:`CoordinatorUnreachableError` after ``timeout_s`` seconds instead of hanging.
"""
from __future__ import annotations

import dataclasses
import os
import socket
import time
from typing import Any

import jax
import numpy as np

__all__ = ["CoordinatorUnreachableError", "DistributedSpec", "initialize", "is_main_process",
           "process_rows", "process_slice", "spec_from_env"]

ENV_ADDRESS = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"
ENV_TIMEOUT = "RESEARCH_DIST_TIMEOUT"          # seconds to wait for the coordinator / the other processes
DEFAULT_TIMEOUT_S = 120


class CoordinatorUnreachableError(ConnectionError):
  """No coordinator answered at the given address within the timeout."""


@dataclasses.dataclass(frozen=True)
class DistributedSpec:
  """How this process joins the job. ``None`` fields are left to JAX's cluster detection (SLURM, Open MPI)."""
  coordinator_address: str | None
  num_processes: int | None
  process_id: int | None
  timeout_s: int = DEFAULT_TIMEOUT_S


def _env_int(name: str) -> int | None:
  text = os.environ.get(name)
  if text in (None, ""):
    return None
  try:
    return int(text)
  except ValueError:
    raise ValueError(f"{name}={text!r} is not an integer; unset it or give the number.") from None


def spec_from_env() -> DistributedSpec | None:
  """The multi-process spec the environment asks for, or ``None`` for a single-process run.

  Multi-process runs are recognised by ``JAX_COORDINATOR_ADDRESS`` (with ``JAX_NUM_PROCESSES`` and
  ``JAX_PROCESS_ID``), or by a SLURM (``SLURM_NTASKS``) / Open MPI (``OMPI_COMM_WORLD_SIZE``) job with more
  than one task.
  """
  timeout = _env_int(ENV_TIMEOUT) or DEFAULT_TIMEOUT_S
  address = os.environ.get(ENV_ADDRESS) or None
  num, pid = _env_int(ENV_NUM_PROCESSES), _env_int(ENV_PROCESS_ID)
  if address is not None:
    return DistributedSpec(address, num, pid, timeout)
  if _cluster_job():
    return DistributedSpec(None, None, None, timeout)
  return None


def _cluster_job() -> bool:
  """Whether this is one task of a SLURM or Open MPI job with more than one task."""
  for var in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"):
    try:
      if int(os.environ.get(var, "1")) > 1:
        return True
    except ValueError:
      pass
  return False


def _split_address(address: str) -> tuple[str, int]:
  host, sep, port = address.rpartition(":")
  if not sep or not host or not port.isdigit():
    raise ValueError(f"Coordinator address {address!r} must be HOST:PORT (e.g. 127.0.0.1:12355).")
  return host.strip("[]"), int(port)


def wait_for_coordinator(address: str, timeout_s: float) -> None:
  """Blocks until a TCP connection to ``address`` succeeds; raises after ``timeout_s`` seconds.

  Used by processes other than 0 before ``jax.distributed.initialize``, whose own failure on an unreachable
  coordinator is a native abort with an RPC deadline message rather than a Python exception.
  """
  host, port = _split_address(address)
  deadline = time.monotonic() + timeout_s
  last = None
  while True:
    try:
      with socket.create_connection((host, port), timeout=min(1.0, max(timeout_s, 0.01))):
        return
    except OSError as e:
      last = e
    if time.monotonic() >= deadline:
      raise CoordinatorUnreachableError(
          f"No JAX coordinator answered at {address} within {timeout_s:g} s ({last}). Start process 0 (it "
          f"hosts the coordinator) with the same {ENV_ADDRESS}, check the host and port, or raise "
          f"{ENV_TIMEOUT} if process 0 starts later.")
    time.sleep(0.1)


def initialize(spec: DistributedSpec | None = None, *, cpu_collectives: str = "gloo") -> bool:
  """Joins the multi-process job described by ``spec`` (default: :func:`spec_from_env`); returns whether it did.

  Must run before JAX's first computation. On the CPU backend the cross-process collectives are set to
  ``cpu_collectives`` (gloo; without it a CPU mesh cannot span processes). Calling it again, or in a
  single-process run, does nothing.
  """
  spec = spec_from_env() if spec is None else spec
  if spec is None or jax.distributed.is_initialized():
    return False
  if spec.coordinator_address is not None:
    if (spec.num_processes is None or spec.process_id is None) and not _cluster_job():
      raise ValueError(f"{ENV_ADDRESS}={spec.coordinator_address} needs {ENV_NUM_PROCESSES} and {ENV_PROCESS_ID} "
                       "too (the number of processes and this process's id in 0..N-1).")
    if spec.num_processes is not None and spec.process_id is not None and not 0 <= spec.process_id < spec.num_processes:
      raise ValueError(f"process_id must be in 0..{spec.num_processes - 1}, got {spec.process_id}.")
  if spec.timeout_s <= 0:
    raise ValueError(f"timeout_s must be positive, got {spec.timeout_s}")
  try:
    jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
  except (AttributeError, RuntimeError, ValueError):  # an older/newer JAX without the option: its default
    pass
  if spec.coordinator_address is not None and spec.process_id:
    wait_for_coordinator(spec.coordinator_address, spec.timeout_s)
  jax.distributed.initialize(coordinator_address=spec.coordinator_address, num_processes=spec.num_processes,
                             process_id=spec.process_id, initialization_timeout=int(spec.timeout_s))
  return True


def is_main_process() -> bool:
  """Whether this is process 0, the one that writes metrics, results and plots."""
  return jax.process_index() == 0


def process_slice(global_size: int, process_index: int | None = None, process_count: int | None = None) -> slice:
  """Rows ``[p B/P, (p+1) B/P)`` of a global batch of ``B`` rows that process ``p`` of ``P`` loads.

  This is the block that ``jax.make_array_from_process_local_data`` expects from process ``p`` for a batch
  sharded over a mesh whose devices are in ``jax.devices()`` order (``research.train.make_mesh``).
  """
  p = jax.process_index() if process_index is None else int(process_index)
  n = jax.process_count() if process_count is None else int(process_count)
  if global_size % n:
    raise ValueError(f"The global batch ({global_size}) must divide by the number of processes ({n}); "
                     "use research.train.global_batch_size() to pick it.")
  size = global_size // n
  return slice(p * size, (p + 1) * size)


def process_rows(batch: Any, axis: int = 0) -> Any:
  """This process's rows (:func:`process_slice`) along axis ``axis`` of every leaf of a global batch."""
  return jax.tree.map(
      lambda x: np.asarray(x)[(slice(None),) * axis + (process_slice(np.shape(x)[axis]),)], batch)
