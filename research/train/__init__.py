"""Training (shared by every article): train state, mesh / sharding helpers, the generic loop, checkpoints.

:func:`fit` runs, under ``jit`` with the batch sharded over a device mesh and the state replicated (or
FSDP-sharded),

    (loss, metrics), g = value_and_grad(loss_fn)(params, batch, fold_in(rng, t))
    updates, opt_state = tx.update(g, opt_state, params);   params = params + updates

logs ``metrics.jsonl`` and TensorBoard summaries, checkpoints with orbax, resumes exactly, and stops with
:class:`NonFiniteLossError` at the first NaN/inf loss or gradient. Entry points: :class:`TrainState`,
:func:`fit`, :func:`fit_population` (seeds x arms vmapped), :func:`make_mesh`, :func:`global_batch_size`
(rounds a batch up to a multiple of the devices, printing a line), :func:`shard_batch`, :class:`Checkpointer`.
See ``docs/DEVELOPING.md`` for the contract and the README for a runnable example.
"""
from research.train.checkpoint import Checkpointer
from research.train.distributed import is_main_process
from research.train.fsdp import bytes_per_device, fsdp_spec, place_state, sharded_bytes, state_shardings
from research.train.loop import NonFiniteLossError, TrainState, fit, make_train_step
from research.train.population import Population, fit_population, stack_states, unstack_state, with_hyperparams
from research.train.sharding import (DATA_AXIS, FSDP_AXIS, batch_sharding, global_batch_size, make_mesh,
                                     maybe_initialize_distributed, num_data_shards, replicate,
                                     replicated_sharding, set_cpu_devices, shard_batch)

__all__ = ["Population", "fit_population", "stack_states", "unstack_state", "with_hyperparams", "Checkpointer", "DATA_AXIS", "FSDP_AXIS",
           "bytes_per_device", "fsdp_spec", "is_main_process", "place_state", "sharded_bytes", "state_shardings", "NonFiniteLossError", "TrainState", "batch_sharding", "fit",
           "global_batch_size", "make_mesh", "make_train_step", "maybe_initialize_distributed",
           "num_data_shards", "replicate", "replicated_sharding", "set_cpu_devices", "shard_batch"]
