"""Training the arms of a task: each arm's seeds are one population (or, with ``seed_loop``, one each)."""
from __future__ import annotations

import time

import jax
import numpy as np

from experiments.amos.arms import make_arm
from experiments.amos.tasks import Task
from research import train
from research.optim import memory


def run_seed(config_seed: int, s: int) -> int:
  """The integer seed of run ``s`` (data order), derived from ``config.seed``."""
  return 1000 * config_seed + s


def train_arms(task: Task, c, *, seed: int, workdir: str, fsdp: int = 1) -> dict:
  """Trains every arm of ``c.arms`` on ``c.seeds`` runs; returns per arm its curves and final parameters.

  Run ``s`` of every arm starts from the same parameters (``fold_in(key(seed), s)``) and sees the same batches
  (seed :func:`run_seed`), so arms are paired by seed. ``c.seed_loop``: the seeds are separate populations
  of one run each, trained one after the other (on a CPU, vmapping per-seed conv weights makes every
  convolution a slow grouped one); otherwise one population of all seeds.
  Returns ``{arm: {"steps": [T], "val_loss": [S, T], "params": stacked, "state_bytes", "seconds", "info"}}``;
  the curves are read back from ``metrics.jsonl`` (the whole curve, also for a resumed run).
  """
  seeds = list(range(int(c.seeds)))
  devs = jax.devices()
  mesh = train.make_mesh(devs[:c.mesh_devices] if c.mesh_devices > 0 else devs, fsdp=fsdp)
  groups = [[s] for s in seeds] if c.seed_loop else [seeds]
  eta_f, shape_f, sigma_f = task.rules
  out = {}
  for arm in c.arms:
    tx, info = make_arm(arm, c, c.num_steps, task.steps_per_epoch, eta_f, shape_f, sigma_f)
    summed = arm == "amos" and task.name == "fashion_cnn"   # the README's recipe uses a summed cross-entropy

    def loss_fn(p, batch, rng, summed=summed):
      loss, acc = task.loss(p, batch, summed)
      return loss, {"acc": acc}

    t0 = time.time()
    params, val_loss = [], []
    for group in groups:
      keys = [jax.random.fold_in(jax.random.key(seed), s) for s in group]
      states = [train.TrainState.create(params=task.init(k), tx=tx, rng=k) for k in keys]
      ids = [f"{task.name}/{arm}/seed{s}" for s in group]
      pop = train.fit_population(
          loss_fn, states, [task.batches(run_seed(seed, s)) for s in group], num_steps=c.num_steps, run_ids=ids,
          workdir=workdir, name=f"{task.name}/{arm}/{'-'.join(map(str, group))}",
          eval_fn=lambda p: {"val_loss": task.eval_loss(p)}, eval_every=c.eval_every, log_every=c.eval_every,
          checkpoint_every=c.eval_every * max(1, c.num_steps // c.eval_every // 4), steps_per_call=c.eval_every,
          desc=f"{task.name}/{arm}", mesh=mesh)
      params.append(jax.device_get(pop.state.params))
      steps, vl = pop.curves("val_loss")
      val_loss.append(vl)
    out[arm] = {"steps": steps, "val_loss": np.concatenate(val_loss),
                "params": jax.tree.map(lambda *xs: np.concatenate(xs), *params),
                "state_bytes": memory.state_bytes(tx, task.init(jax.random.key(seed))),
                "seconds": time.time() - t0, "info": info}
  return out
