"""l2-vs-softmax char-level masked-LM pretraining (kexue 9105, spec 03 §6.4): one population per arm."""
from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.relpos_probe.grid import char_corpus, pretrain_model
from research import train
from research.nn import transformer as tfm


def windows(arr: np.ndarray, rng: np.random.Generator, shape: tuple[int, ...], length: int) -> np.ndarray:
  starts = rng.integers(0, len(arr) - length, size=shape)
  return arr[starts[..., None] + np.arange(length)]


def train_arms(pc, *, seed: int, workdir: str | None, data_dir=None, fsdp: int = 1) -> tuple[dict, float]:
  """Trains every arm of ``pc.arms`` for ``pc.steps`` steps, the seeds of each arm as one population.

  Returns ``(curves, majority)``: ``curves[arm] = {"step": [...], "val_loss": [S, T], "val_acc": [S, T]}``
  (every evaluation, read back from ``metrics.jsonl`` so a resumed run has the whole curve), and the
  masked-token accuracy of always predicting the most frequent character (the chance level).
  """
  train_arr, val_arr, vocab = char_corpus(data_dir)
  majority = float(np.bincount(val_arr).max() / len(val_arr))
  mask_id, L, B = vocab, pc.seq_len, pc.batch_size
  root = jax.random.key(seed)
  val_tok = jnp.asarray(windows(val_arr, np.random.default_rng([seed, 1]), (pc.eval_batches, B), L))
  val_keys = jax.random.split(jax.random.fold_in(root, 2), pc.eval_batches)
  seeds = [int(s) for s in pc.seeds]
  curves = {}
  for arm in pc.arms:
    model = pretrain_model(pc, arm, vocab)
    sched = optax.warmup_cosine_decay_schedule(0.0, pc.lr, max(1, pc.steps // 10), pc.steps, pc.lr * 0.1)
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(sched, weight_decay=0.01))

    def mlm_loss(params, tok, key, model=model):
      inp, tgt, w = tfm.mlm_corrupt(key, tok, mask_id=mask_id, vocab_size=vocab, rate=0.15)
      return tfm.masked_cross_entropy(model.apply(params, inp), tgt, w)

    def loss_fn(params, batch, rng, mlm_loss=mlm_loss):
      loss, acc = mlm_loss(params, batch["tokens"], rng)
      return loss, {"acc": acc}

    def eval_fn(params, mlm_loss=mlm_loss):
      loss, acc = jax.lax.map(lambda xs: mlm_loss(params, *xs), (val_tok, val_keys))
      return {"val_loss": loss.mean(), "val_acc": acc.mean()}

    def batches(t):
      return {"tokens": windows(train_arr, np.random.default_rng([seed, 0, t]), (B,), L)}

    run_key = lambda s: jax.random.fold_in(jax.random.fold_in(root, 3), s)
    states = [train.TrainState.create(params=model.init(run_key(s), jnp.zeros((1, L), jnp.int32)), tx=tx,
                                      rng=run_key(s)) for s in seeds]
    run_ids = [f"{arm}_seed{s}" for s in seeds]
    pop = train.fit_population(loss_fn, states, batches, shared_batch=True, num_steps=pc.steps, run_ids=run_ids,
                               workdir=workdir, name=f"pretrain/{arm}", eval_fn=eval_fn, eval_every=pc.eval_every,
                               log_every=pc.eval_every, steps_per_call=pc.eval_every,
                               checkpoint_every=pc.eval_every * max(1, pc.steps // pc.eval_every // 4),
                               desc=f"pretrain {arm}", mesh=train.make_mesh(fsdp=fsdp))
    steps, val_loss = pop.curves("val_loss")
    curves[arm] = {"step": steps, "val_loss": val_loss, "val_acc": pop.curves("val_acc")[1]}
    print(f"[pretrain] {arm:18s} final val loss {curves[arm]['val_loss'][:, -1].mean():.4f} "
          f"acc {curves[arm]['val_acc'][:, -1].mean():.4f} ({len(seeds)} seeds)", flush=True)
  return curves, majority
