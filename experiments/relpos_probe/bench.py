"""Forward+backward throughput of every PE/normalizer vs plain softmax and flax MHDPA (interleaved timing)."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from research import verdict as V
from research.benchmark import ratio_vs_target, time_interleaved
from research.nn import attention as attn_lib
from research.report import Results

BASE = "none:softmax"


def _layer(entry: str, bc):
  if entry == "flax_mhdpa":
    return nn.MultiHeadDotProductAttention(num_heads=bc.num_heads, qkv_features=bc.d_model,
                                           dtype=jnp.dtype(bc.dtype))
  pe, _, nz = entry.partition(":")
  urpe = pe.endswith("+urpe")
  cfg = attn_lib.AttentionConfig(pe=pe.replace("+urpe", ""), normalizer=nz or "softmax",
                                 urpe_max_distance=16 if urpe else None, dtype=jnp.dtype(bc.dtype))
  return attn_lib.MultiHeadAttention(bc.num_heads, cfg)


def time_layers(bc, seed: int) -> dict[str, list[float]]:
  """Median seconds of one fwd+bwd call per entry, every entry compiled first, then timed round-robin."""
  B, N, D = bc.batch_size, bc.seq_len, bc.d_model
  x = jax.random.normal(jax.random.fold_in(jax.random.key(seed), 0), (B, N, D), jnp.dtype(bc.dtype))
  fns = {}
  for name in ["flax_mhdpa"] + list(bc.entries):
    m = _layer(name, bc)
    params = m.init(jax.random.fold_in(jax.random.key(seed), 1), x)
    f = jax.jit(jax.value_and_grad(lambda p, x, m=m: jnp.sum(m.apply(p, x).astype(jnp.float32) ** 2),
                                   argnums=(0, 1)))
    jax.block_until_ready(f(params, x))
    fns[name] = (f, params)
  samples = time_interleaved({name: (lambda f=f, p=p: jax.block_until_ready(f(p, x)))
                              for name, (f, p) in fns.items()}, bc.iters)
  return samples   # per interleaved round, so ratios are paired by round


def bench_rows(bc, samples: dict[str, list[float]], res: Results) -> None:
  tokens = bc.batch_size * bc.seq_len
  times = {name: float(np.median(ts)) for name, ts in samples.items()}
  per_round = lambda a, b: np.asarray(samples[a]) / np.asarray(samples[b])
  for name, t in times.items():
    print(f"[bench] {name:28s} {t * 1e3:8.2f} ms  {tokens / t:.0f} tok/s", flush=True)
    res.add(f"bench_{name}_tokens_per_s", tokens / t)
  for name, t in times.items():
    if name in ("flax_mhdpa", BASE):
      continue
    r = t / times[BASE]
    res.add(f"bench_{name}_time_ratio_vs_plain", r)
    a, m = ratio_vs_target(per_round(name, BASE), 1.5, "less")
    res.rows.append(V.row(f"bench {name} / plain softmax (time)", "target <= 1.5", a, measured=f"{m}x",
                          note=f"{tokens / t:.0f} tok/s; ratio of medians {r:.2f}"))
  r = times[BASE] / times["flax_mhdpa"]
  res.add("bench_plain_time_ratio_vs_flax", r)
  a, m = ratio_vs_target(per_round(BASE, "flax_mhdpa"), 1.1, "less")
  res.rows.append(V.row("bench plain softmax / flax MultiHeadDotProductAttention (time)", "target <= 1.1", a,
                        measured=f"{m}x", note=f"flax {tokens / times['flax_mhdpa']:.0f} tok/s; ratio of medians {r:.2f}"))
  res.notes.append(f"Bench: forward+backward (grads w.r.t. params and inputs) of one attention layer, "
                   f"B={bc.batch_size}, N={bc.seq_len}, d={bc.d_model}, H={bc.num_heads}, {bc.dtype}; every arm "
                   f"compiled and warmed up first, then {bc.iters} rounds of one timed call per arm, interleaved "
                   f"(order reversed every other round), rows: geometric mean of the per-round ratios with its 95 % interval, judged on the log scale by research.verdict; on {jax.default_backend()}.")
