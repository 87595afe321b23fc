"""Forward+backward throughput of every PE/normalizer vs plain softmax and flax MHDPA (interleaved timing)."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from research.benchmark import time_interleaved
from research.nn import attention as attn_lib
from research.report import Results, Row

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


def time_layers(bc, seed: int) -> dict[str, float]:
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
  return {name: float(np.median(ts)) for name, ts in samples.items()}


def bench_rows(bc, times: dict[str, float], res: Results) -> None:
  tokens = bc.batch_size * bc.seq_len
  for name, t in times.items():
    print(f"[bench] {name:28s} {t * 1e3:8.2f} ms  {tokens / t:.0f} tok/s", flush=True)
    res.add(f"bench_{name}_tokens_per_s", tokens / t)
  for name, t in times.items():
    if name in ("flax_mhdpa", BASE):
      continue
    r = t / times[BASE]
    res.add(f"bench_{name}_time_ratio_vs_plain", r)
    res.rows.append(Row(name=f"bench {name} / plain softmax (time)", published="target <= 1.5",
                        measured=f"{r:.2f}x", verdict="meets target" if r <= 1.5 else "misses target",
                        note=f"{tokens / t:.0f} tok/s"))
  r = times[BASE] / times["flax_mhdpa"]
  res.add("bench_plain_time_ratio_vs_flax", r)
  res.rows.append(Row(name="bench plain softmax / flax MultiHeadDotProductAttention (time)",
                      published="target <= 1.1", measured=f"{r:.2f}x",
                      verdict="meets target" if r <= 1.1 else "misses target",
                      note=f"flax {tokens / times['flax_mhdpa']:.0f} tok/s"))
  res.notes.append(f"Bench: forward+backward (grads w.r.t. params and inputs) of one attention layer, "
                   f"B={bc.batch_size}, N={bc.seq_len}, d={bc.d_model}, H={bc.num_heads}, {bc.dtype}; every arm "
                   f"compiled and warmed up first, then {bc.iters} rounds of one timed call per arm, interleaved "
                   f"(order reversed every other round), median per arm; on {jax.default_backend()}.")
