"""Training: train state, mesh/sharding helpers, the generic loop, checkpoints.

See :func:`research.train.loop.fit` for the loop and ``docs/DEVELOPING.md`` for the contract.
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
