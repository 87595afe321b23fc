"""Driver of configs/scaling.py: FSDP bytes per device, and 1 process x 8 devices vs 2 processes x 4 step time."""
from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from research import train
from research.benchmark import time_interleaved
from research.nn import bert as bert_lib
from research.optim import amos as amos_lib
from research.optim import rules
from research.report import Results, Row, fmt

ARMS = {"1x8": (1, 8), "2x4": (2, 4)}      # name -> (processes, devices per process): 8 devices either way


def _bert(m) -> bert_lib.BertConfig:
  return bert_lib.BertConfig(vocab_size=m.vocab_size, hidden_size=m.hidden_size, num_hidden_layers=m.num_layers,
                             num_attention_heads=m.num_heads, intermediate_size=m.intermediate_size,
                             max_position_embeddings=m.max_position, hidden_dropout_prob=0.0,
                             attention_probs_dropout_prob=0.0)


def optimizers(m, learning_rate: float) -> dict[str, optax.GradientTransformation]:
  """AdamW, and Amos with jestimator's BERT eta and factored slot-shape rules."""
  return {"adamw": optax.adamw(learning_rate, weight_decay=0.01),
          "amos": amos_lib.amos(learning_rate, rules.eta_fn(rules.bert_eta_rules(m.hidden_size, m.intermediate_size)),
                                rules.shape_fn(rules.bert_shape_rules()), beta=0.98)}


def bytes_table(c) -> dict[str, dict[str, int]]:
  """Per-device bytes of params and of params + optimizer state, replicated (F = 1) and FSDP (F = fsdp_bytes)."""
  cfg = _bert(c.bytes_model)
  params = jax.eval_shape(lambda k: bert_lib.init_params(cfg, k, mlm=True, seq_len=8), jax.random.key(0))
  out = {}
  for name, tx in optimizers(c.bytes_model, c.learning_rate).items():
    opt = jax.eval_shape(tx.init, params)
    out[name] = {"num_params": int(sum(np.prod(x.shape) for x in jax.tree.leaves(params))),
                 "params_replicated": train.sharded_bytes(params, 1),
                 "params_fsdp": train.sharded_bytes(params, c.fsdp_bytes),
                 "state_replicated": train.sharded_bytes((params, opt), 1),
                 "state_fsdp": train.sharded_bytes((params, opt), c.fsdp_bytes)}
  return out


def mlm_problem(c):
  """A small BERT MLM: params, loss, and a deterministic step -> batch (random tokens, 3 masked positions)."""
  cfg = _bert(c.step_model)
  model = bert_lib.BertForMaskedLM(cfg)
  params = bert_lib.init_params(cfg, jax.random.key(c.seed), mlm=True, seq_len=c.seq_len)
  vocab = c.step_model.vocab_size

  def loss_fn(p, b, rng):
    ids = b["ids"]
    logits = model.apply({"params": p}, ids, jnp.ones_like(ids), jnp.zeros_like(ids), b["pos"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, b["y"]).mean(), {}

  def batch(step):
    r = np.random.default_rng([c.seed, step])
    ids = r.integers(5, vocab, size=(c.batch_size, c.seq_len)).astype(np.int32)
    pos = np.argsort(r.random((c.batch_size, c.seq_len)), axis=1)[:, :3].astype(np.int32)
    y = np.take_along_axis(ids, pos, 1)
    np.put_along_axis(ids, pos, 3, 1)
    return {"ids": ids, "pos": pos, "y": y}

  return params, loss_fn, batch


def step_time(c) -> dict[str, float]:
  """One process of a step-time launch: fit's jitted step on this job's mesh; median seconds per step."""
  params, loss_fn, batch = mlm_problem(c)
  mesh = train.make_mesh(fsdp=c.mesh.fsdp)
  tx = optimizers(c.step_model, c.learning_rate)["adamw"]
  state = train.place_state(train.TrainState.create(params=params, tx=tx, rng=c.seed), mesh)
  step = jax.jit(train.make_train_step(loss_fn), donate_argnums=(0,),
                 out_shardings=(train.state_shardings(state, mesh), train.replicated_sharding(mesh)))
  local = [train.distributed.process_rows(batch(s)) for s in range(c.warmup_steps + c.steps)]
  for s in range(c.warmup_steps):
    state, metrics = step(state, train.shard_batch(local[s], mesh))
  jax.block_until_ready((state, metrics))
  times, losses = [], []
  for s in range(c.warmup_steps, c.warmup_steps + c.steps):
    t0 = time.perf_counter()
    state, metrics = step(state, train.shard_batch(local[s], mesh))
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t0)
    losses.append(float(metrics["loss"]))
  return {"step_time_s": statistics.median(times), "processes": jax.process_count(),
          "devices": jax.device_count(), **{f"loss_{i}": v for i, v in enumerate(losses)}}


def _launch_arm(c, name: str, workdir: str, samples: dict) -> None:
  from experiments import launch
  processes, devices = ARMS[name]
  wd = os.path.join(workdir, "launches", f"{name}_{len(samples[name])}")
  cmd = [sys.executable, "-m", "experiments.run", f"--config=configs/scaling.py:{c.variant}", "--config.role=step",
         f"--config.mesh.fsdp={c.mesh.fsdp}", f"--workdir={wd}"]
  status = launch.launch(cmd, processes, devices, log_prefix=wd + "_log", wall_limit_s=c.launch_timeout,
                         env={k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"} | {"JAX_PLATFORMS": "cpu",
                                                                                             "RESEARCH_NO_PROGRESS": "1"})
  if status != 0:
    raise RuntimeError(f"The {name} step-time launch failed with status {status}: {' '.join(cmd)} "
                       f"(output in {wd}_log.*.log)")
  with open(os.path.join(wd, "results.json")) as f:
    m = json.load(f)["metrics"]
  if (m["processes"], m["devices"]) != (processes, processes * devices):
    raise RuntimeError(f"The {name} launch ran {m['processes']} process(es) with {m['devices']} devices")
  samples[name].append(m)
  shutil.rmtree(wd)                          # a failed launch keeps its directory and logs for inspection
  for i in range(processes):
    os.remove(f"{wd}_log.{i}.log")


def run(config, workdir: str) -> Results:
  c = config
  res = Results(title=f"Scaling: FSDP memory and multi-process step time ({c.variant})")
  if c.role == "step":
    for k, v in step_time(c).items():
      res.add(k, v)
    return res

  table = bytes_table(c)
  f = c.fsdp_bytes
  for name, b in table.items():
    ratio = b["state_fsdp"] / b["state_replicated"]
    res.add(f"{name}_state_bytes_replicated", b["state_replicated"])
    res.add(f"{name}_state_bytes_fsdp", b["state_fsdp"])
    res.add(f"{name}_fsdp_bytes_ratio", ratio)
    res.add(f"{name}_params_bytes_ratio", b["params_fsdp"] / b["params_replicated"])
    res.rows.append(Row(
        f"{name}: params + optimizer state per device, FSDP-{f} / replicated", f"~1/{f} = {1 / f:.3f} (ideal)",
        f"{fmt(ratio)} ({b['state_fsdp'] / 2**20:.1f} MiB vs {b['state_replicated'] / 2**20:.1f} MiB)",
        "agrees" if ratio <= 1.05 / f else "above 1/F",
        f"BERT-base-shaped MLM, {b['num_params'] / 1e6:.1f}M params; params alone {b['params_fsdp'] / 2**20:.1f} vs "
        f"{b['params_replicated'] / 2**20:.1f} MiB; abstract shapes (jax.eval_shape)"))

  samples: dict[str, list] = {name: [] for name in ARMS}
  wall = time_interleaved({name: (lambda name=name: _launch_arm(c, name, workdir, samples)) for name in ARMS},
                          rounds=c.rounds)
  med = {name: statistics.median(m["step_time_s"] for m in samples[name]) for name in ARMS}
  ratio = med["2x4"] / med["1x8"]
  launch_ratio = statistics.median(wall["2x4"]) / statistics.median(wall["1x8"])
  res.add("step_time_1x8_s", med["1x8"])
  res.add("step_time_2x4_s", med["2x4"])
  res.add("step_time_ratio_2x4_vs_1x8", ratio)
  res.add("launch_wall_ratio_2x4_vs_1x8", launch_ratio)
  curves = {name: np.array([[m[f"loss_{i}"] for i in range(c.steps)] for m in samples[name]]) for name in ARMS}
  curve_diff = float(np.max(np.abs(curves["2x4"] - curves["1x8"][:1]) / np.abs(curves["1x8"][:1])))
  res.add("loss_curve_max_rel_diff_2x4_vs_1x8", curve_diff)
  res.add("final_loss", float(curves["1x8"][0, -1]))
  m = c.step_model
  res.rows.append(Row(
      "loss curve, 2 processes x 4 devices vs 1 process x 8 devices (max relative difference)",
      "0 up to float rounding", f"{curve_diff:.1e}", "agrees" if curve_diff < 1e-5 else "differs",
      f"{c.steps} timed steps of every launch against the first 1x8 launch (same seed and batches)"))
  layout = "replicated" if c.mesh.fsdp == 1 else f"FSDP-{c.mesh.fsdp}"
  res.rows.append(Row(
      "step time, 2 processes x 4 devices / 1 process x 8 devices", "no article number (1.0 = no cost)",
      f"{ratio:.2f}x ({med['2x4'] * 1e3:.0f} ms vs {med['1x8'] * 1e3:.0f} ms)", "measured",
      f"BERT MLM {m.num_layers} x {m.hidden_size}, batch {c.batch_size} x {c.seq_len}, AdamW, {layout}; median of "
      f"{c.steps} steps per launch, median over {c.rounds} interleaved rounds; whole launch wall {launch_ratio:.2f}x"))
  res.notes.append(
      "Bytes are per device for parameters + optimizer state, computed from the shapes `jax.eval_shape` gives and "
      "the sharding rule of `research.train.fsdp` (the test suite checks the rule against the bytes really "
      "allocated on 8 devices). Step time: each round launches both arms as separate jobs "
      "(`experiments.launch`: 1 process with 8 emulated CPU devices vs 2 processes with 4, gloo collectives), "
      "alternating which goes first; every launch times the jitted training step after warm-up. On one CPU host "
      "the two arms share the same cores, so the ratio is the cost of the cross-process collectives, not a speed-up.")
  return res
