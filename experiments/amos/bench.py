"""Optimizer update time and state bytes on a BERT-base-shaped pytree: Amos vs jestimator vs optax.adamw."""
from __future__ import annotations

import time
from typing import Any, Dict

import jax
import jax.numpy as jnp
import numpy as np
import optax

from research import verdict as V
from research.benchmark import ratio_vs_target, time_interleaved
from research.optim import amos as amos_lib
from research.optim import amos_oracle, memory, rules
from research.report import Results


def bert_base_shapes(num_layers=12, d=768, d_mlp=3072, vocab=30522, max_len=512) -> Dict[str, Any]:
  """A BERT-base-shaped parameter pytree of ``jax.ShapeDtypeStruct`` leaves (~110M parameters)."""
  sd = lambda *s: jax.ShapeDtypeStruct(s, jnp.float32)
  dense = lambda i, o: {"kernel": sd(i, o), "bias": sd(o)}
  ln = lambda: {"scale": sd(d), "bias": sd(d)}
  layers = {f"layer_{i}": {"attention": {"query": dense(d, d), "key": dense(d, d), "value": dense(d, d),
                                         "out": dense(d, d)},
                           "attention_norm": ln(), "ffn": {"wi": dense(d, d_mlp), "wo": dense(d_mlp, d)},
                           "ffn_norm": ln()} for i in range(num_layers)}
  return {"params": {"embeddings": {"word_embed": {"embedding": sd(vocab, d)},
                                    "position_embed": {"embedding": sd(max_len, d)},
                                    "type_embed": {"embedding": sd(2, d)}, "embed_norm": ln()},
                     "encoder": layers, "pooler": dense(d, d)}}


def run_bench(c, seed: int, res: Results) -> None:
  shapes = bert_base_shapes(c.num_layers, c.d_model, c.d_mlp, c.vocab, c.max_len)
  n_params = sum(int(np.prod(s.shape)) for s in jax.tree.leaves(shapes))
  kw = dict(learning_rate=optax.linear_schedule(0.0, 0.005, 10000),
            eta_fn=rules.eta_fn(rules.bert_eta_rules(c.d_model, c.d_mlp)),
            shape_fn=rules.shape_fn(rules.bert_shape_rules()), beta=0.999, momentum=c.momentum, clip_value=1.0)
  opts = {"amos": amos_lib.amos(**kw), "adamw": optax.adamw(1e-4, weight_decay=0.01)}
  oracle = amos_oracle.load_oracle()
  if oracle is not None:
    opts["jestimator"] = oracle.amos(**kw)
  bytes_ = {k: memory.state_bytes(tx, shapes) for k, tx in opts.items()}
  key = jax.random.key(seed)
  grads = jax.tree.map(lambda s: 1e-3 * jnp.ones(s.shape, s.dtype), shapes)
  runs, temp = {}, {}
  for name, tx in opts.items():   # one timed update per optimizer: apply_updates(p, tx.update(g, s, p))
    params = jax.tree.map(lambda s: 0.02 * jax.random.normal(key, s.shape, s.dtype), shapes)
    fn = jax.jit(lambda p, s, g, tx=tx: (lambda us: (optax.apply_updates(p, us[0]), us[1]))(tx.update(g, s, p)),
                 donate_argnums=(0, 1))
    t0 = time.perf_counter()
    state = tx.init(params)
    analysis = fn.lower(params, state, grads).compile().memory_analysis()
    if analysis is not None:    # full-size temporaries = extra passes over memory
      temp[name] = res.add(f"bench_{name}_temp_bytes", float(analysis.temp_size_in_bytes))
    runs[name] = [fn, jax.block_until_ready(fn(params, state, grads))]
    res.add(f"bench_{name}_first_call_s", time.perf_counter() - t0)

  def call(name):
    def go():
      fn, (p, s) = runs[name]
      runs[name][1] = jax.block_until_ready(fn(p, s, grads))
    return go

  samples = time_interleaved({name: call(name) for name in opts}, c.repeats)
  times = {name: float(np.median(ts)) for name, ts in samples.items()}
  runs.clear()   # frees the 110M-parameter states
  for name in opts:
    res.add(f"bench_{name}_update_s", times[name])
    res.add(f"bench_{name}_state_bytes", bytes_[name])
  res.add("bench_num_params", n_params)
  r_ad = res.add("bench_amos_over_adamw_time", times["amos"] / times["adamw"])
  r_mem = res.add("bench_amos_over_adamw_state_bytes", bytes_["amos"] / bytes_["adamw"])
  dev = jax.devices()[0].device_kind
  per_round = lambda a, b: np.asarray(samples[a]) / np.asarray(samples[b])   # paired by interleaved round
  if "jestimator" in times:
    r_or = res.add("bench_amos_over_oracle_time", times["amos"] / times["jestimator"])
    a, m = ratio_vs_target(per_round("amos", "jestimator"), 1.0, "less")
    res.rows.append(V.row("bench: Amos / jestimator update time", "<= 1.0x (target)", a, measured=f"{m}x",
                          note=f"{n_params / 1e6:.1f}M params, {c.repeats} interleaved rounds, jit, donated params "
                               f"and state, {dev}; medians Amos {times['amos'] * 1e3:.0f} ms, oracle "
                               f"{times['jestimator'] * 1e3:.0f} ms (ratio {r_or:.3f}); XLA temporaries "
                               + ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in temp.items())))
  a, m = ratio_vs_target(per_round("amos", "adamw"), 1.2, "less")
  res.rows.append(V.row("bench: Amos / optax.adamw update time", "<= 1.2x (target)", a, measured=f"{m}x",
                        note=f"medians adamw {times['adamw'] * 1e3:.0f} ms (ratio {r_ad:.3f})"))
  res.rows.append(V.row("bench: Amos state bytes / adamw (momentum 0.9)", "<= 0.51x",
                        V.exact(r_mem <= 0.51, f"bytes ratio {r_mem:.4f} <= 0.51"), measured=f"{r_mem:.4f}x",
                        note=f"{bytes_['amos'] / 2**20:.1f} MiB vs {bytes_['adamw'] / 2**20:.1f} MiB"))
