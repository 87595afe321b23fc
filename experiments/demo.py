"""Driver of configs/demo.py: a Flax MLP on scikit-learn digits, trained with research.train.fit."""
from __future__ import annotations

import os
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from research import data, train
from research.plotting import save_figure, subplots
from research.train import records
from research.report import Results, Row, fmt


class MLP(nn.Module):
  hidden: int = 128
  num_classes: int = 10

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Dense(self.hidden)(x))
    x = nn.relu(nn.Dense(self.hidden)(x))
    return nn.Dense(self.num_classes)(x)


def run(config, workdir: str) -> Results:
  x, y = data.load_sklearn("digits")
  x = x / 16.0
  tr, te = data.train_val_split(len(x), config.test_fraction, seed=config.seed)
  mesh = train.make_mesh(fsdp=config.mesh.fsdp)
  bs = train.global_batch_size(config.batch_size, mesh)
  model = MLP(config.hidden)
  params = model.init(jax.random.key(config.seed), x[:1])

  def loss_fn(params, batch, rng):
    logits = model.apply(params, batch["x"])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()
    return loss, {"acc": jnp.mean(logits.argmax(-1) == batch["y"])}

  apply = jax.jit(model.apply)

  def eval_fn(params):
    logits = apply(params, x[te])
    return {"test_acc": jnp.mean(logits.argmax(-1) == y[te]),
            "test_loss": optax.softmax_cross_entropy_with_integer_labels(logits, y[te]).mean()}

  state = train.TrainState.create(params=params, tx=optax.adam(config.learning_rate), rng=config.seed)
  t0 = time.perf_counter()
  state, history = train.fit(loss_fn, state, data.batch_fn({"x": x[tr], "y": y[tr]}, bs, config.seed),
                             num_steps=config.num_steps, workdir=workdir, eval_fn=eval_fn,
                             eval_every=config.eval_every, checkpoint_every=config.checkpoint_every,
                             log_every=20, accum_steps=config.accum_steps, desc="demo/mlp", mesh=mesh)
  train_time = time.perf_counter() - t0
  final = eval_fn(state.params)

  from sklearn.linear_model import LogisticRegression
  anchor = LogisticRegression(max_iter=2000).fit(x[tr], y[tr]).score(x[te], y[te])

  res = Results(title="Demo: Flax MLP on scikit-learn digits (foundation check)")
  acc = res.add("test_acc", final["test_acc"])
  res.add("test_loss", final["test_loss"])
  res.add("sklearn_logreg_test_acc", anchor)
  # throughput of the steps trained by this process only (none when a finished run is re-run)
  rates = [h["examples_per_s"] for h in history if "examples_per_s" in h]
  res.add("train_examples_per_s", float(np.median(rates)) if rates else float("nan"))
  res.add("train_seconds_this_process", train_time)
  res.add("num_devices", mesh.size)
  res.rows.append(Row("digits test accuracy (MLP, data-parallel)", f"{fmt(anchor)} (sklearn LogisticRegression, same split, this run)",
                      fmt(acc), "agrees" if acc >= anchor - 0.03 else "below anchor",
                      f"{mesh.size} devices, global batch {bs}, {config.num_steps} steps"))
  res.notes.append("No article number applies: the anchor is scikit-learn measured in the same run on the same split.")

  # the whole curve, across resumes, from metrics.jsonl
  steps, losses = records.curves(records.read_records(os.path.join(workdir, "metrics.jsonl"), [None]))[None]
  fig, ax = subplots(figsize=(5, 3.2))
  ax.plot(steps, losses, marker="o")
  ax.set_xlabel("step"); ax.set_ylabel("train loss"); ax.set_yscale("log"); ax.set_title("demo: MLP on digits")
  save_figure(fig, workdir, "loss.png", res, dpi=100)
  return res
