"""Training the cross-encoder and bi-encoder arms as populations, with the reference's per-epoch evaluation.

Every population trains through :func:`research.train.fit_population`, one call per epoch (each call resumes
from the previous epoch's checkpoint in the workdir): after each epoch the scores on valid and test are
computed on the host (the reference's Powell threshold search is not jittable) and logged to
``metrics.jsonl`` at the epoch's last step, tagged with the run id. A re-run finds those records and the
checkpoints and trains nothing. Run ``s`` of every arm starts from ``fold_in(key(config.seed), s)`` and sees
the data order of seed :func:`run_seed` (arms are paired by seed).
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.cosent.data import eval_batches, run_seed
from research import data as data_lib
from research import train
from research.eval import sts
from research.losses import cosent
from research.nn import cross_encoder as xe
from research.report import MetricLogger
from research.train.records import read_records


def run_key(seed: int, s: int) -> jax.Array:
  return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), 3), s)


def _epochs(pop_fit, runs, num_epochs: int, steps_per_epoch: int, workdir: str, evaluate) -> list[list[dict]]:
  """Trains epoch by epoch; returns per run the evaluations of every epoch (read back from metrics.jsonl)."""
  path = os.path.join(workdir, "metrics.jsonl")
  for e in range(1, num_epochs + 1):
    pop = pop_fit(e * steps_per_epoch)
    step = e * steps_per_epoch
    done = {r["run"] for r in read_records(path, runs) if r["step"] == step and "valid_spearman" in r}
    if len(done) < len(runs):
      for run, rec in zip(runs, evaluate(pop.state.params)):
        MetricLogger(workdir, prefix=run, tensorboard=False).write(step, epoch=e, **rec)
  hist = {r: {} for r in runs}
  for rec in read_records(path, runs):
    if "valid_spearman" in rec:
      hist[rec["run"]][rec["step"]] = rec
  return [[hist[r][e * steps_per_epoch] for e in range(1, num_epochs + 1)] for r in runs]


def _mesh(config):
  return train.make_mesh(jax.devices()[:config.mesh_devices] if config.mesh_devices > 0 else jax.devices())


def train_cross(config, enc, splits: dict, arms: tuple, *, task: str, lr: float, workdir: str,
                graded: bool = False) -> dict:
  """Fine-tunes the cross-encoder arms sharing (loss, batch size) as one population of arms x seeds.

  ``graded``: the labels are 0-5 scores (STS-B-en); CE then trains on labels binarised at > 2.5.
  Returns ``{arm name: [per seed: [per epoch: evaluation dict]]}``.
  """
  bcfg, bert_params = enc[0], enc[1]
  seeds = range(config.seeds)
  tr = splits["train"]
  out = {}
  groups: dict = {}
  for arm in arms:
    groups.setdefault((arm.loss, arm.batch_size), []).append(arm)
  for (loss, bs), group in groups.items():
    if len(tr["y"]) < bs:
      raise ValueError(f"{task}: {len(tr['y'])} training pairs < batch size {bs}; raise n_train")
    head = "logit" if loss == "cosent" else "softmax"
    model = xe.CrossEncoder(bcfg, head=head)
    tx = optax.adam(lr, b1=0.9, b2=0.999, eps=config.adam_eps)
    t = tr["ids"].shape[1]
    init = jax.jit(lambda k: model.init(k, jnp.zeros((2, t), jnp.int32))["params"])
    runs, states, fns, segs = [], [], [], []
    y_train = (tr["y"] > 2.5).astype(np.float32) if graded and loss == "ce" else tr["y"]
    for arm in group:
      for s in seeds:
        k = run_key(config.seed, s)
        params = jax.tree.map(jnp.copy, xe.with_pretrained(init(k), bert_params))
        states.append(train.TrainState.create(params=params, tx=tx, rng=jax.random.fold_in(k, 1)))
        runs.append(f"{task}/{arm.name}/seed{s}")
        seg = (lambda x: np.zeros_like(x)) if arm.segments == "zeros" else (lambda x: x)
        segs.append(seg)
        fns.append(data_lib.batch_fn({"ids": tr["ids"], "mask": tr["mask"], "seg": seg(tr["seg"]), "y": y_train},
                                     bs, seed=run_seed(config.seed, s)))

    def loss_fn(params, b, rng, loss=loss, model=model):
      o = model.apply({"params": params}, b["ids"], b["mask"], b["seg"], deterministic=False, rngs={"dropout": rng})
      if loss == "cosent":
        return cosent.cosent_logit_loss(o, b["y"], scale=config.cosent_logit_scale, clip=config.logit_clip), {}
      return xe.ce_loss(o, b["y"]), {}

    score = jax.jit(jax.vmap(lambda p, ids, mask, seg, model=model, head=head: xe.cross_encoder_score(
        model.apply({"params": p}, ids, mask, seg), head), in_axes=(0, None, None, 0)))

    def evaluate(params, segs=segs, score=score, head=head):
      scores = {}
      for split in ("valid", "test"):
        d = splits[split]
        arrays = {"ids": d["ids"], "mask": d["mask"], "seg": np.stack([f(d["seg"]) for f in segs])}
        sc = np.zeros((len(segs), len(d["y"])), np.float32)
        for rows, b in eval_batches(arrays, config.eval_batch_size, config.pad_multiple):
          sc[:, rows] = np.asarray(score(params, b["ids"], b["mask"], b["seg"]))[:, :len(rows)]
        scores[split] = sc
      param = "identity" if head == "logit" else "tanh"
      return [sts.evaluate_split(splits["valid"]["y"], scores["valid"][i], splits["test"]["y"], scores["test"][i],
                                 param=param) for i in range(len(segs))]

    spe = len(tr["y"]) // bs
    every = max(1, min(config.log_every, spe))
    fit = lambda n, loss_fn=loss_fn, states=states, fns=fns, runs=runs, loss=loss, bs=bs: train.fit_population(
        loss_fn, states, fns, num_steps=n, run_ids=runs, workdir=workdir, name=f"cross/{task}/{loss}_b{bs}",
        log_every=every, steps_per_call=every, desc=f"{task} {loss} b{bs}", mesh=_mesh(config),
        keep_checkpoints=1)
    hist = _epochs(fit, runs, config.epochs, spe, workdir, evaluate)
    for i, arm in enumerate(group):
      out[arm.name] = hist[i * config.seeds:(i + 1) * config.seeds]
  return out


def train_bi(config, enc, splits: dict, *, task: str, pooling: str, lr: float, workdir: str,
             graded: bool = False, seed_loop: bool = False) -> tuple[dict, float]:
  """CoSENT (lambda = ``cosent_cos_scale`` on cosines) vs Sentence-BERT ([u, v, |u-v|] + softmax CE) bi-encoders:
  one model (it returns both the pair cosines and the SBERT logits), so both losses x all seeds are one
  population (``seed_loop``: one population per seed, for memory); ``run_args`` (0: CoSENT, 1: SBERT) picks
  each run's loss. Returns ``({"cosent"|"sbert": [per seed: [per epoch: evaluation]]}, untrained test
  Spearman)``."""
  bcfg, bert_params = enc[0], enc[1]
  tr = splits["train"]
  model = xe.BiEncoderSBert(bcfg, pooling=pooling)
  embed_model = xe.BiEncoder(bcfg, pooling)
  tx = optax.adam(lr, eps=config.adam_eps)
  t = tr["a_ids"].shape[1]
  init = jax.jit(lambda k: model.init(k, jnp.zeros((4, t), jnp.int32), jnp.ones((4, t), jnp.int32))["params"])
  y_sbert = (tr["y"] > 2.5).astype(np.float32) if graded else tr["y"]
  arrays = {"a_ids": tr["a_ids"], "a_mask": tr["a_mask"], "b_ids": tr["b_ids"], "b_mask": tr["b_mask"],
            "y": tr["y"], "y_sbert": y_sbert}
  losses = ("cosent", "sbert")

  def population(seeds):
    runs, states, fns = [], [], []
    for loss in losses:
      for s in seeds:
        k = run_key(config.seed, s)
        params = jax.tree.map(jnp.copy, xe.with_pretrained(init(k), bert_params, path=("encoder", "bert")))
        states.append(train.TrainState.create(params=params, tx=tx, rng=jax.random.fold_in(k, 1)))
        runs.append(f"bi/{task}/{loss}/seed{s}")
        fns.append(data_lib.batch_fn(arrays, config.bi_batch_size, seed=run_seed(config.seed, s)))
    return runs, states, fns, np.repeat(np.arange(len(losses), dtype=np.int32), len(seeds))

  def loss_fn(params, b, rng, arm):
    n = b["y"].shape[0]
    inter = lambda x, y: jnp.stack([x, y], 1).reshape(2 * n, x.shape[-1])   # [a1, b1, a2, b2, ...]
    cos, logits = model.apply({"params": params}, inter(b["a_ids"], b["b_ids"]), inter(b["a_mask"], b["b_mask"]),
                              None, deterministic=False, rngs={"dropout": rng})
    l_cosent = cosent.cosent_loss(cos, b["y"], scale=config.cosent_cos_scale)
    return jnp.where(arm == 0, l_cosent, xe.ce_loss(logits, b["y_sbert"])), {}

  embed = jax.jit(jax.vmap(lambda p, ids, mask: embed_model.apply({"params": p["encoder"]}, ids, mask),
                           in_axes=(0, None, None)))

  def cosines(params, d):
    e = {}
    for side in ("a", "b"):
      arr = {"ids": d[f"{side}_ids"], "mask": d[f"{side}_mask"]}
      out = None
      for rows, b in eval_batches(arr, config.eval_batch_size, config.pad_multiple):
        v = np.asarray(embed(params, b["ids"], b["mask"]))[:, :len(rows)]
        out = np.zeros((v.shape[0], len(d["y"]), v.shape[-1]), np.float32) if out is None else out
        out[:, rows] = v
      e[side] = out
    norm = np.linalg.norm(e["a"], axis=-1) * np.linalg.norm(e["b"], axis=-1)
    return (e["a"] * e["b"]).sum(-1) / np.maximum(norm, 1e-12)

  def evaluate(params, n):
    c = {split: cosines(params, splits[split]) for split in ("valid", "test")}
    return [{f"{split}_spearman": sts.spearman(splits[split]["y"], c[split][i]) for split in c} for i in range(n)]

  spe = len(tr["y"]) // config.bi_batch_size
  every = max(1, min(config.log_every, spe))
  out, untrained = {loss: [None] * config.seeds for loss in losses}, None
  for group in ([[s] for s in range(config.seeds)] if seed_loop else [list(range(config.seeds))]):
    runs, states, fns, arm_id = population(group)
    if untrained is None:
      one = jax.tree.map(lambda x: x[None], states[0].params)
      untrained = sts.spearman(splits["test"]["y"], cosines(one, splits["test"])[0])
    fit = lambda n, runs=runs, states=states, fns=fns, arm_id=arm_id, group=group: train.fit_population(
        loss_fn, states, fns, num_steps=n, run_ids=runs, run_args=arm_id, workdir=workdir,
        name=f"bi/{task}/{'-'.join(map(str, group))}", log_every=every, steps_per_call=every,
        desc=f"bi-encoder {task}", mesh=_mesh(config), keep_checkpoints=1)
    hist = _epochs(fit, runs, config.epochs, spe, workdir, lambda p, n=len(runs): evaluate(p, n))
    for i, (loss, s) in enumerate((loss, s) for loss in losses for s in group):
      out[loss][s] = hist[i]
  return out, untrained
