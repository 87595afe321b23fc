"""Char-level masked LM trained at length N, tested at N and M (spec 07 §6.3 C2).

The training schemes of the arms (sequential, RPE random, equal-mean exponential / Beta) share one
architecture, so seeds x schemes train as one population (run ``s * K + k``: seed ``s`` of scheme ``k``). The
schemes of one seed start from the same parameters and see the same windows and masks (paired). Log n, the
test positions and the local window change only the evaluation, so the arms that differ in them reuse the
trained runs. Every key derives from ``config.seed``.
"""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from research import data as data_lib
from research import train
from research.nn import attention as attn_lib
from research.nn import position_sampling as ps
from research.nn import transformer as tf_lib


def scheme(arm) -> tuple[str, float]:
  """The training scheme of an arm: (train positions, Beta kappa or 0)."""
  if arm.train not in ("sequential", "random", "equal_mean", "equal_mean_beta"):
    raise ValueError(f"MLM arm {arm.name!r}: unknown train positions {arm.train!r}")
  if arm.test not in ("sequential", "random", "grid"):
    raise ValueError(f"MLM arm {arm.name!r}: unknown test positions {arm.test!r}")
  return arm.train, float(arm.kappa) if arm.train == "equal_mean_beta" else 0.0


def schemes(arms) -> list[tuple[str, float]]:
  return list(dict.fromkeys(scheme(a) for a in arms))


def corpus(data_dir=None) -> tuple[np.ndarray, np.ndarray, int]:
  """tiny-shakespeare as character ids: (first 90% train, last 10% val, vocabulary size)."""
  text = data_lib.load_tinyshakespeare(data_dir)
  idx = {ch: i for i, ch in enumerate(sorted(set(text)))}
  ids = np.fromiter((idx[ch] for ch in text), dtype=np.int32, count=len(text))
  cut = int(0.9 * len(ids))
  return ids[:cut], ids[cut:], len(idx)


def model(m, vocab: int, logn: bool) -> tf_lib.Transformer:
  """Pre-LN RoPE encoder; ``logn``: attention logits x log n / log N (1 at the training length)."""
  att = attn_lib.AttentionConfig(pe="rope", logn_train_len=int(m.train_len) if logn else None)
  return tf_lib.Transformer(vocab_size=vocab + 1, num_outputs=vocab, num_layers=int(m.num_layers),
                            d_model=int(m.d_model), num_heads=int(m.num_heads), attention=att, post_ln=False,
                            activation="gelu", head="mlm", embed_scale=1.0)


def train_positions(sch: tuple[str, float], key, m):
  N, L, M = int(m.train_len), int(m.max_len), int(m.test_len)
  kind, kappa = sch
  if kind == "sequential":
    return jnp.arange(N, dtype=jnp.float32)[None]
  if kind == "random":
    return ps.rpe_random(key, N, L, (1,)).astype(jnp.float32)
  if kind == "equal_mean":
    return ps.equal_mean(key, N, "exponential", (1,), min_span=float(m.min_span))
  return ps.equal_mean(key, N, "beta", (1,), max_test_len=M, kappa=kappa, min_span=float(m.min_span))


def test_positions(mode: str, n: int, key, m):
  L, M = int(m.max_len), int(m.test_len)
  if mode == "sequential":
    return jnp.arange(n, dtype=jnp.float32)
  if mode == "random":
    return ps.rpe_random(key, n, L).astype(jnp.float32)
  return ps.rpe_grid(n, L, M).astype(jnp.float32)     # at n = N: the grid's first N positions (k L / M)


def train_schemes(m, *, seed: int, workdir: str | None, data_dir=None) -> dict:
  """Trains seeds x schemes for ``m.train_steps`` (checkpointed in ``workdir``; a re-run resumes)."""
  train_ids, val_ids, vocab = corpus(data_dir)
  N, B = int(m.train_len), int(m.batch_size)
  ps.check_support(int(m.max_len), int(m.test_len))
  sch = schemes(m.arms)
  S, K = int(m.seeds), len(sch)
  net = model(m, vocab, False)
  tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(float(m.learning_rate), weight_decay=0.01))
  root = jax.random.fold_in(jax.random.key(seed), 9444)
  states = []
  for s in range(S):
    p0 = net.init(jax.random.fold_in(jax.random.fold_in(root, 1), s), jnp.zeros((1, N), jnp.int32),
                  positions=jnp.arange(N, dtype=jnp.float32))
    states += [train.TrainState.create(params=p0, tx=tx, rng=jax.random.fold_in(jax.random.fold_in(root, 2), s))
               for _ in sch]

  def loss_fn(params, batch, rng, args):
    kc, kp = jax.random.split(rng)
    inputs, targets, w = tf_lib.mlm_corrupt(kc, batch["tokens"], mask_id=vocab, vocab_size=vocab)
    pos = jnp.stack([train_positions(x, kp, m) for x in sch])[args["scheme"]]
    loss, acc = tf_lib.masked_cross_entropy(net.apply(params, inputs, positions=pos), targets, w)
    return loss, {"acc": acc}

  def batches(t: int) -> dict:   # seed s's windows of step t, repeated for its schemes
    toks = []
    for s in range(S):
      starts = np.random.default_rng([seed, 0, s, t]).integers(0, len(train_ids) - N, size=B)
      toks += [train_ids[starts[:, None] + np.arange(N)]] * K
    return {"tokens": np.stack(toks)}

  le = int(m.log_every)
  t0 = time.time()
  pop = train.fit_population(
      loss_fn, states, batches, num_steps=int(m.train_steps), run_args={"scheme": np.tile(np.arange(K), S)},
      run_ids=[f"mlm/{k}{x:g}/seed{s}" if k == "equal_mean_beta" else f"mlm/{k}/seed{s}"
               for s in range(S) for k, x in sch],
      workdir=workdir, name="mlm", log_every=le, steps_per_call=le,
      checkpoint_every=le * max(1, int(m.train_steps) // le // 4), desc="mlm")
  return {"pop": pop, "schemes": sch, "vocab": vocab, "val_ids": val_ids, "train_s": time.time() - t0}


def eval_data(val_ids, n: int, count: int, vocab: int, key, rng: np.random.Generator):
  """``count`` validation windows of length n, BERT-masked; and the majority-class accuracy on their targets."""
  starts = rng.integers(0, len(val_ids) - n, size=count)
  toks = jnp.asarray(val_ids[starts[:, None] + np.arange(n)])
  inputs, targets, w = tf_lib.mlm_corrupt(key, toks, mask_id=vocab, vocab_size=vocab)
  counts = np.bincount(np.asarray(targets).ravel(), weights=np.asarray(w).ravel(), minlength=vocab)
  return (inputs, targets, w), float(counts.max() / counts.sum())


def evaluate(trained: dict, m, *, seed: int) -> tuple[dict, dict, float]:
  """``acc[arm][n]``: per-seed masked-token accuracy at n = N and M (random-test arms: mean over
  ``random_test_draws`` position draws, the same draws for every arm and seed); ``majority[n]``."""
  pop, sch, vocab = trained["pop"], trained["schemes"], trained["vocab"]
  N, M, S, K = int(m.train_len), int(m.test_len), int(m.seeds), len(sch)
  root = jax.random.fold_in(jax.random.key(seed), 9444)
  data, majority = {}, {}
  for n, count in ((N, int(m.eval_windows) * (M // N)), (M, int(m.eval_windows))):
    data[n], majority[n] = eval_data(trained["val_ids"], n, count, vocab,
                                     jax.random.fold_in(jax.random.fold_in(root, 4), n),
                                     np.random.default_rng([seed, 1, n]))
  fwd = {}       # (log n, window, n) -> jitted per-seed accuracy; local to this evaluation

  def acc_fn(logn: bool, window, n: int):
    if (logn, window, n) not in fwd:
      net = model(m, vocab, logn)
      fwd[(logn, window, n)] = jax.jit(jax.vmap(
          lambda p, x, y, w, pos: tf_lib.masked_cross_entropy(net.apply(p, x, positions=pos, window=window), y, w)[1],
          in_axes=(0, None, None, None, None)))
    return fwd[(logn, window, n)]

  nb = int(m.eval_chunks)
  pos_key = jax.random.fold_in(root, 5)
  acc = {}
  t0 = time.time()
  for a in m.arms:
    k = sch.index(scheme(a))
    params = jax.tree.map(lambda x: x[np.arange(S) * K + k], pop.state.params)
    acc[a.name] = {}
    for n in (N, M):
      f = acc_fn(bool(a.logn), N if a.get("window", False) else None, n)
      x, y, w = data[n]
      per = x.shape[0] // nb
      vals = [np.asarray(f(params, x[c * per:(c + 1) * per], y[c * per:(c + 1) * per], w[c * per:(c + 1) * per],
                           test_positions(a.test, n, jax.random.fold_in(pos_key, d * nb + c), m)))
              for d in range(int(m.random_test_draws) if a.test == "random" else 1) for c in range(nb)]
      acc[a.name][n] = np.mean(vals, axis=0)          # [S]
  return acc, majority, time.time() - t0
