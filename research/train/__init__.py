"""Training: train state, mesh/sharding helpers, the generic loop, checkpoints.

See :func:`research.train.loop.fit` for the loop and ``docs/DEVELOPING.md`` for the contract.
"""
from research.train.checkpoint import Checkpointer
from research.train.loop import NonFiniteLossError, TrainState, fit, make_train_step
from research.train.population import Population, fit_population, stack_states, unstack_state, with_hyperparams
from research.train.sharding import (DATA_AXIS, batch_sharding, global_batch_size, make_mesh,
                                     maybe_initialize_distributed, num_data_shards, replicate,
                                     replicated_sharding, set_cpu_devices, shard_batch)

__all__ = ["Population", "fit_population", "stack_states", "unstack_state", "with_hyperparams", "Checkpointer", "DATA_AXIS", "NonFiniteLossError", "TrainState", "batch_sharding", "fit",
           "global_batch_size", "make_mesh", "make_train_step", "maybe_initialize_distributed",
           "num_data_shards", "replicate", "replicated_sharding", "set_cpu_devices", "shard_batch"]
