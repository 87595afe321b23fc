"""A small `research.train.fit` run used by tests/test_distributed.py, in-process or as one of N processes.

    python tests/mp_worker.py WORKDIR NUM_STEPS [KILL_AT]

joins the job that ``experiments.launch`` describes in the environment (if any), trains a 2-layer MLP
regression with AdamW on ``research.data.batch_fn`` batches (each process loads only its rows), checkpoints
every 5 steps in WORKDIR, and (process 0) saves the final parameters to WORKDIR/final.npz. With KILL_AT, every
process SIGKILLs itself when it asks for the batch of that step (a crash in the middle of training).
"""
from __future__ import annotations

import os
import signal
import sys

import numpy as np

if __name__ == "__main__":
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def train_problem(workdir: str, num_steps: int, kill_at: int = -1, mesh=None):
  """Trains the toy problem; returns ``(final state, history)``."""
  import jax
  import jax.numpy as jnp
  import optax

  from research import data, train

  rng = np.random.default_rng(0)
  x = rng.normal(size=(256, 6)).astype(np.float32)
  y = np.sin(x @ rng.normal(size=(6, 2))).astype(np.float32)
  k1, k2 = jax.random.split(jax.random.key(0))
  params = {"w1": 0.5 * jax.random.normal(k1, (6, 16)), "b1": jnp.zeros(16),
            "w2": 0.5 * jax.random.normal(k2, (16, 2)), "b2": jnp.zeros(2)}

  def loss_fn(p, batch, rng):
    h = jnp.tanh(batch["x"] @ p["w1"] + p["b1"])
    noise = 1e-3 * jax.random.normal(rng, batch["y"].shape)           # uses the step key: resume must replay it
    return jnp.mean((h @ p["w2"] + p["b2"] - batch["y"] - noise) ** 2), {}

  base = data.batch_fn({"x": x, "y": y}, 32, seed=0)

  def batches(step):
    if step == kill_at:
      os.kill(os.getpid(), signal.SIGKILL)
    return base(step)

  batches.process_local = base.process_local
  state = train.TrainState.create(params=params, tx=optax.adamw(0.03, weight_decay=1e-3), rng=0)
  return train.fit(loss_fn, state, batches, num_steps=num_steps, workdir=workdir, checkpoint_every=5,
                   log_every=1, progress=False, mesh=mesh)


def main(argv):
  workdir, num_steps = argv[1], int(argv[2])
  kill_at = int(argv[3]) if len(argv) > 3 else -1
  from research import train
  train.maybe_initialize_distributed()
  import jax
  state, _ = train_problem(workdir, num_steps, kill_at)
  params = jax.tree.map(np.asarray, jax.device_get(state.params))
  if train.is_main_process():
    np.savez(os.path.join(workdir, "final.npz"), **params)


if __name__ == "__main__":
  main(sys.argv)
