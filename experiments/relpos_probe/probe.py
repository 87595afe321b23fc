"""Training and measuring the zeros -> positions probe: one population (the seeds) per (row, n)."""
from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.relpos_probe.grid import probe_model
from research import train
from research.nn import transformer as tfm
from research.tasks import probe as probe_lib


def measure(model, params, data, tie_tol: float) -> dict[str, jax.Array]:
  """Final CE, tie-aware accuracy, raw accuracy and the max logit spread between target rows (one run)."""
  tokens, targets, weights = (jnp.asarray(data[k]) for k in ("tokens", "targets", "weights"))
  logits = model.apply(params, tokens)
  ce, raw = tfm.masked_cross_entropy(logits, targets, weights)
  acc = probe_lib.tie_aware_accuracy(logits, targets, weights, tie_tol)
  lt = logits[0][np.asarray(data["weights"][0]) > 0]
  return {"ce": ce, "acc": acc, "raw_acc": raw, "spread": jnp.max(jnp.abs(lt - lt[:1]))}


def train_row(pc, row: str, n: int, *, seed: int, workdir: str | None, boundary: str) -> dict[str, np.ndarray]:
  """Full-batch Adam on the probe for ``pc.steps`` steps, every seed of ``pc.seeds`` one run of a population.

  Run ``s`` is initialised from ``fold_in(key(seed), s)``. Returns per-seed arrays ``ce, acc, raw_acc,
  spread`` and the training-loss curve ``curve [seeds, points]`` at ``steps`` (logged every ~steps/50).
  """
  data = probe_lib.make_probe(n, boundary)
  model = probe_model(pc, row, n)
  tokens = jnp.asarray(data["tokens"])
  tx = optax.adam(pc.lr)
  seeds = [int(s) for s in pc.seeds]
  states = [train.TrainState.create(params=model.init(jax.random.fold_in(jax.random.key(seed), s), tokens),
                                    tx=tx, rng=jax.random.fold_in(jax.random.key(seed), s)) for s in seeds]

  def loss_fn(params, batch, rng):
    ce, acc = tfm.masked_cross_entropy(model.apply(params, batch["tokens"]), batch["targets"], batch["weights"])
    return ce, {"acc": acc}

  full = {k: np.asarray(data[k]) for k in ("tokens", "targets", "weights")}
  log_every = max(1, pc.steps // 50)
  t0 = time.time()
  pop = train.fit_population(loss_fn, states, lambda t: full, shared_batch=True, num_steps=pc.steps,
                             run_ids=[f"{row}_n{n}_seed{s}" for s in seeds], workdir=workdir,
                             name=f"probe/{row}_n{n}", log_every=log_every, steps_per_call=log_every,
                             checkpoint_every=pc.steps, desc=f"probe {row} n={n}",
                             mesh=train.make_mesh(jax.devices()[:1]))
  out = jax.device_get(jax.jit(jax.vmap(lambda p: measure(model, p, data, pc.tie_tol)))(pop.state.params))
  out = {k: np.asarray(v) for k, v in out.items()}
  # the whole curve, also when this call only resumed a finished population: from metrics.jsonl
  out["curve_steps"], out["curve"] = pop.curves("loss")
  out["time"] = np.asarray(time.time() - t0)
  out["diverged"] = pop.diverged_at
  return out


def describe(row: str, n: int, out: dict) -> str:
  return (f"[probe] {row:32s} n={n:4d} acc={out['acc'].mean():.4f} ce={out['ce'].mean():.4f} "
          f"(ln n={math.log(n):.4f}) spread={out['spread'].max():.1e} {float(out['time']):.1f}s")
