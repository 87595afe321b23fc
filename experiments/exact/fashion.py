"""Fashion-MNIST from scratch (spec 02 §6): CE vs softmax 1 - p vs EXACT (mean, meanlog), a small Flax CNN.

Run ``s`` of every arm starts from the same parameters and sees the same batches (paired by seed). Each run is
one research.train.fit: on the XLA CPU a population (vmap: grouped convolutions; lax.scan over steps) of this
CNN runs ~30x slower per step than the plain jitted step that fit compiles.
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from research import train
from research.train import records
from research.losses import exact, surrogates
from research.optim import grad_normalizer as gn


def load(config):
  from research import data
  f = config.fm
  xtr, ytr = data.load_fashion_mnist("train", config.data_dir)
  xte, yte = data.load_fashion_mnist("test", config.data_dir)
  itr = np.random.default_rng([config.seed, 7]).permutation(len(xtr))[: int(f.train_size)]
  prep = lambda x: ((x.astype(np.float32) / 255.0 - 0.2860) / 0.3530)[..., None]
  m = int(f.test_size)
  return prep(xtr[itr]), ytr[itr].astype(np.int32), prep(xte[:m]), yte[:m].astype(np.int32)


def arm_loss(arm, logits, y, sigma, key, f):
  if arm == "ce":
    return surrogates.cross_entropy(logits, y)
  if arm == "smoothed_accuracy":
    return surrogates.smoothed_accuracy_loss(logits, y)
  if arm == "polyloss":
    return surrogates.poly1_loss(logits, y, 1.0)
  if arm == "hinge":
    return surrogates.hinge(logits, y, 1.0)
  if arm in ("exact_mean", "exact_meanlog"):
    return exact.exact_loss(logits, y, sigma, aggregation=arm.split("_")[1], margin=f.margin,
                            standardize=True, method=f.estimator, key=key, num_samples=int(f.num_samples))
  raise ValueError(f"unknown fashion arm {arm!r}")


def model(f):
  """3x3 convs (``pool="max"``: conv + 2x2 max-pool; ``"stride"``: stride-2 conv, ~7x cheaper on the CPU,
  where XLA's max-pool backward is slow), a hidden dense layer, 10 logits."""
  import flax.linen as nn
  channels, pool, hidden = tuple(int(c) for c in f.channels), str(f.pool), int(f.hidden)
  if pool not in ("max", "stride"):
    raise ValueError(f"fashion: pool must be 'max' or 'stride', got {pool!r}.")

  class CNN(nn.Module):
    @nn.compact
    def __call__(self, x):
      for c in channels:
        if pool == "max":
          x = nn.max_pool(nn.relu(nn.Conv(c, (3, 3))(x)), (2, 2), (2, 2))
        else:
          x = nn.relu(nn.Conv(c, (3, 3), strides=(2, 2))(x))
      x = nn.relu(nn.Dense(hidden)(x.reshape(x.shape[0], -1)))
      return nn.Dense(10)(x)
  return CNN()


def optimizer(arm: str, opt: str, f):
  """normaliser (EXACT) or clipping (others) -> weight decay -> SGD momentum 0.9 / Adam, LR decayed per epoch."""
  E, spe = int(f.num_epochs), int(f.steps_per_epoch)
  is_exact = arm.startswith("exact")
  if opt == "sgd":
    base = optax.sgd(gn.epoch_exponential_lr(f.lr_exact if is_exact else f.lr_ce, f.final_lr, E, spe), momentum=0.9)
  elif opt == "adam":
    base = optax.adam(gn.epoch_exponential_lr(f.lr_adam, f.final_lr, E, spe))
  else:
    raise ValueError(f"fashion: unknown optimizer {opt!r}; use 'sgd' or 'adam'.")
  first = gn.gradient_normalizer() if is_exact else optax.clip_by_global_norm(f.clip_ce)
  return optax.chain(first, optax.add_decayed_weights(f.weight_decay), base)


def train_arms(config, data, workdir: str) -> dict:
  """Every (optimizer, arm) on ``f.seeds`` seeds. Returns ``{(opt, arm): {"acc": [S] test accuracy (%),
  "steps": [T], "ce": [S, T], "one_minus_p": [S, T], "batch_acc": [S, T]}}`` (curves from metrics.jsonl)."""
  f = config.fm
  xtr, ytr, xte, yte = data
  E, spe, bs = int(f.num_epochs), int(f.steps_per_epoch), int(f.batch_size)
  if spe * bs > len(xtr):
    raise ValueError(f"fashion: steps_per_epoch * batch_size = {spe * bs} exceeds train_size {len(xtr)}.")
  net = model(f)
  sigma_fn = gn.variance_schedule(f.initial_variance, f.min_variance, E, spe)
  root = jax.random.key(config.seed)
  apply_j = jax.jit(net.apply)
  chunk = min(500, len(xte))
  mesh = train.make_mesh(jax.devices()[:1])

  def batches(s):
    orders = {}

    def get(step):
      e = step // spe
      if e not in orders:
        orders.clear()
        orders[e] = np.random.default_rng([config.seed, s, e]).permutation(len(xtr))[: spe * bs].reshape(spe, bs)
      idx = orders[e][step % spe]
      return {"x": xtr[idx], "y": ytr[idx], "step": np.full((bs,), step, np.int32)}
    return get

  def test_accuracy(params):   # chunks from Python (a lax.map over convs is slow on the CPU)
    hits = sum(int(jnp.sum(jnp.argmax(apply_j(params, xte[i:i + chunk]), -1) == yte[i:i + chunk]))
               for i in range(0, len(xte), chunk))
    return 100.0 * hits / len(xte)

  out = {}
  for opt in f.optimizers:
    for arm in f.arms:
      tx = optimizer(arm, opt, f)

      def loss_fn(params, batch, rng, arm=arm):
        logits = net.apply(params, batch["x"])
        loss = arm_loss(arm, logits, batch["y"], sigma_fn(batch["step"][0]), rng, f)
        ce, omp = exact.ce_and_smoothed_accuracy(jax.lax.stop_gradient(logits), batch["y"])
        return loss, {"ce": jnp.mean(ce), "one_minus_p": jnp.mean(omp),
                      "batch_acc": surrogates.accuracy(logits, batch["y"])}

      accs, curves = [], {"ce": [], "one_minus_p": [], "batch_acc": []}
      for s in range(int(f.seeds)):
        k = jax.random.fold_in(root, s)
        state = train.TrainState.create(params=net.init(k, jnp.zeros((1, 28, 28, 1), jnp.float32)), tx=tx,
                                        rng=jax.random.fold_in(k, 1))
        name = f"fashion/{opt}/{arm}/seed{s}"
        state, _ = train.fit(loss_fn, state, batches(s), num_steps=E * spe, workdir=workdir, run_name=name,
                             log_every=int(f.log_every), checkpoint_every=spe * max(1, E // 2), desc=name,
                             mesh=mesh)
        accs.append(test_accuracy(state.params))
        recs = records.read_records(os.path.join(workdir, "metrics.jsonl"), [name])
        for key in curves:
          steps, v = records.curves(recs, key)[name]
          curves[key].append(v)
        print(f"[exact/fashion] {opt}/{arm} seed {s}: test acc {accs[-1]:.2f}", flush=True)
      out[(opt, arm)] = {"acc": np.asarray(accs), "steps": steps, **{k: np.asarray(v) for k, v in curves.items()}}
  return out
