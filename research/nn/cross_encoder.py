"""Similarity models on top of :mod:`research.nn.bert` (kexue.fm 8847 / 8860 / 9341).

* :class:`CrossEncoder` ("interactive"): ``[CLS] a [SEP] b [SEP]`` -> BERT -> last-layer [CLS] ->
  ``Dense(1)`` (a raw logit f(a, b), trained with CoSENT, lambda = 1) or ``Dense(2)`` (softmax logits,
  trained with sparse cross-entropy; the similarity score is P(y = 1)). Segment ids are built by the
  tokenizer: ``segment_ids="zeros"`` as Su's scripts, or ``"proper"`` (BERT's 0/1).
* :class:`BiEncoder` ("feature-based"): each sentence -> BERT -> [CLS] or masked-mean pooling; score
  cos(u, v).
* :class:`SBertHead`: Sentence-BERT's classifier ``Dense(num_labels)`` on ``[u, v, |u - v|]`` (train
  with CE; at test time the score is still cos(u, v)).

Each model keeps its encoder params under ``"bert"``, so pretrained weights from
:func:`research.nn.bert.load_pretrained` drop in with :func:`with_pretrained`.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from research.nn import bert as bert_lib

__all__ = ["CrossEncoder", "BiEncoder", "SBertHead", "BiEncoderSBert", "with_pretrained", "ce_loss",
           "cross_encoder_score"]


class CrossEncoder(nn.Module):
  """``__call__(input_ids, attention_mask, token_type_ids) -> [B]`` logits (``head="logit"``) or
  ``[B, 2]`` softmax logits (``head="softmax"``)."""
  config: bert_lib.BertConfig
  head: str = "logit"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, input_ids, attention_mask=None, token_type_ids=None, *, deterministic: bool = True):
    if self.head not in ("logit", "softmax"):
      raise ValueError(f"head must be 'logit' (Dense(1), CoSENT) or 'softmax' (Dense(2), CE), got {self.head!r}")
    h = bert_lib.BertModel(self.config, self.dtype, name="bert")(
        input_ids, attention_mask, token_type_ids, deterministic=deterministic)
    cls = h[:, 0]
    out = nn.Dense(1 if self.head == "logit" else 2, name="head",
                   kernel_init=nn.initializers.normal(self.config.initializer_range))(cls)
    out = out.astype(jnp.float32)
    return out[:, 0] if self.head == "logit" else out


def cross_encoder_score(outputs, head: str):
  """The similarity score used for Spearman/thresholds: the raw logit, or P(y = 1) = softmax(...)[:, 1]."""
  if head == "logit":
    return outputs
  return jax.nn.softmax(outputs, axis=-1)[:, 1]


def ce_loss(logits2, labels):
  """Mean sparse softmax cross-entropy with labels (y > 0.5) -> {0, 1}."""
  y = (jnp.asarray(labels) > 0.5).astype(jnp.int32)
  logp = jax.nn.log_softmax(logits2, axis=-1)
  return -jnp.take_along_axis(logp, y[:, None], axis=-1).mean()


class BiEncoder(nn.Module):
  """``__call__(input_ids, attention_mask, token_type_ids) -> [N, H]`` pooled sentence vectors."""
  config: bert_lib.BertConfig
  pooling: str = "cls"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, input_ids, attention_mask=None, token_type_ids=None, *, deterministic: bool = True):
    if self.pooling not in ("cls", "mean"):
      raise ValueError(f"pooling must be 'cls' or 'mean', got {self.pooling!r}")
    if attention_mask is None:
      attention_mask = input_ids != self.config.pad_token_id
    h = bert_lib.BertModel(self.config, self.dtype, name="bert")(
        input_ids, attention_mask, token_type_ids, deterministic=deterministic)
    pool = bert_lib.mean_pool if self.pooling == "mean" else bert_lib.cls_pool
    return pool(h, attention_mask).astype(jnp.float32)


class SBertHead(nn.Module):
  """Sentence-BERT classifier: ``Dense(num_labels)([u, v, |u - v|])`` (2 labels; 3 for NLI)."""
  num_labels: int = 2

  @nn.compact
  def __call__(self, u, v):
    if u.shape != v.shape:
      raise ValueError(f"u and v must have the same shape, got {u.shape} and {v.shape}")
    return nn.Dense(self.num_labels, name="classifier")(jnp.concatenate([u, v, jnp.abs(u - v)], axis=-1))


class BiEncoderSBert(nn.Module):
  """A bi-encoder plus the SBERT head: ``__call__(ids, mask, types)`` on the interleaved [a1, b1, a2, b2, ...]
  batch returns (pair cosines [B], SBERT logits [B, num_labels])."""
  config: bert_lib.BertConfig
  pooling: str = "cls"
  num_labels: int = 2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, input_ids, attention_mask=None, token_type_ids=None, *, deterministic: bool = True):
    e = BiEncoder(self.config, self.pooling, self.dtype, name="encoder")(
        input_ids, attention_mask, token_type_ids, deterministic=deterministic)
    if e.shape[0] % 2:
      raise ValueError(f"interleaved batch must have an even number of sentences, got {e.shape[0]}")
    u, v = e[0::2], e[1::2]
    cos = (u * v).sum(-1) / jnp.maximum(jnp.linalg.norm(u, axis=-1) * jnp.linalg.norm(v, axis=-1), 1e-8)
    return cos, SBertHead(self.num_labels, name="sbert_head")(u, v)


def with_pretrained(params: dict, bert_params: dict, path: tuple[str, ...] = ("bert",)) -> dict:
  """Returns ``params`` with the encoder subtree at ``path`` replaced by pretrained ``bert_params``.

  Raises ValueError if a shape differs (e.g. a config mismatch) naming the parameter.
  """
  import flax
  params = flax.core.unfreeze(params) if hasattr(flax.core, "unfreeze") else dict(params)
  node = params
  for k in path[:-1]:
    node = node[k]
  old = node[path[-1]]
  old_flat = flax.traverse_util.flatten_dict(old, sep="/")
  new_flat = flax.traverse_util.flatten_dict(bert_params, sep="/")
  for k, v in old_flat.items():
    if k not in new_flat:
      raise ValueError(f"pretrained params lack {'/'.join(path)}/{k}")
    if tuple(new_flat[k].shape) != tuple(v.shape):
      raise ValueError(f"pretrained {'/'.join(path)}/{k} has shape {tuple(new_flat[k].shape)}, model expects "
                       f"{tuple(v.shape)}")
  node[path[-1]] = flax.traverse_util.unflatten_dict({k: new_flat[k] for k in old_flat}, sep="/")
  return params
