"""Transformer encoder / causal LM built from :mod:`research.nn.attention` (kexue 9105; reused by 9444 and others).

:class:`Transformer` = token embedding (x ``embed_scale``) [+ absolute PE] -> ``num_layers`` blocks -> head.

  block        ``"standard"``: attention + FFN, post-LN (``post_ln=True``, default: LN(x + Drop(MHA(x))), then
               LN(x + Drop(FFN(x)))) or pre-LN (x + Drop(MHA(LN x)), ..., final LN);
               ``"gau"``: single-head Gated Attention Unit (FLASH / GAU-alpha): u = act(W_u x), v = act(W_v x),
               z = act(W_z x), q = z*g_q + b_q, k = z*g_k + b_k, o = W_o (u * (A v)), A from the same attention
               core (any PE / normalizer, e.g. ``relu2_over_n`` or ``softmax``), residual + LN as above.
  attention    an :class:`research.nn.attention.AttentionConfig` (pe, normalizer, causal, log-n, ...). Absolute
               PEs (``abs_sin`` / ``abs_learned`` with ``max_len`` rows) are added to the embedding here.
  head         ``"linear"`` (Dense to ``num_outputs``; per-position classification, causal LM) or ``"mlm"``
               (Dense d + GELU + LN + Dense ``num_outputs``). ``num_outputs=None`` returns the hidden states.

Call: ``model.apply(params, tokens, positions=None, *, layer_positions=None, layer_relative_offsets=None,
mask=None, padding_mask=None, window=None, deterministic=True, rngs=...)``.
  tokens      int [B, N]   (or float [B, N, V] one-hot/soft inputs, projected by a Dense layer)
  positions   [N] or [B, N] (float allowed for functional PEs) used by the absolute PE and every layer;
  layer_positions        per-layer positions, shape [num_layers, N] / [num_layers, B, N] or a list
                         (randomized PEs resampled per layer, 9444); the embedding uses ``positions`` if given,
                         else layer 0's.
  layer_relative_offsets per-layer explicit offset matrices (see attention.py).

Helpers: :func:`masked_cross_entropy` (mean CE + accuracy over weighted positions) and :func:`mlm_corrupt`
(BERT-style 15% masking). A causal char-level LM is ``Transformer(vocab, vocab, attention=AttentionConfig(
causal=True, pe="rope"))`` trained with targets = tokens shifted by one.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from research.nn import attention as attn_lib
from research.nn import position as pos_lib

ACTIVATIONS = {"relu": nn.relu, "gelu": nn.gelu, "swish": nn.swish, "silu": nn.swish}


def _act(name: str):
  if name not in ACTIVATIONS:
    raise ValueError(f"Unknown activation {name!r}; valid: {sorted(ACTIVATIONS)}")
  return ACTIVATIONS[name]


class FeedForward(nn.Module):
  d_ff: int
  activation: str = "relu"
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, deterministic: bool = True):
    d = x.shape[-1]
    h = _act(self.activation)(nn.Dense(self.d_ff, dtype=self.dtype, name="wi")(x))
    h = nn.Dropout(self.dropout_rate)(h, deterministic=deterministic)
    return nn.Dense(d, dtype=self.dtype, name="wo")(h)


class EncoderBlock(nn.Module):
  """Attention + FFN with residuals, post-LN (default) or pre-LN."""
  num_heads: int
  d_ff: int
  attention: attn_lib.AttentionConfig = attn_lib.AttentionConfig()
  post_ln: bool = True
  dropout_rate: float = 0.0
  activation: str = "relu"

  @nn.compact
  def __call__(self, x, positions=None, *, relative_offsets=None, mask=None, padding_mask=None, window=None,
               deterministic: bool = True):
    drop = lambda y: nn.Dropout(self.dropout_rate)(y, deterministic=deterministic)
    mha = attn_lib.MultiHeadAttention(self.num_heads, self.attention, name="attention")
    ffn = FeedForward(self.d_ff, self.activation, self.dropout_rate, self.attention.dtype, name="ffn")
    kw = dict(relative_offsets=relative_offsets, mask=mask, padding_mask=padding_mask, window=window,
              deterministic=deterministic)
    if self.post_ln:
      x = nn.LayerNorm(name="ln_attn")(x + drop(mha(x, positions, **kw)))
      return nn.LayerNorm(name="ln_ffn")(x + drop(ffn(x, deterministic)))
    x = x + drop(mha(nn.LayerNorm(name="ln_attn")(x), positions, **kw))
    return x + drop(ffn(nn.LayerNorm(name="ln_ffn")(x), deterministic))


class GAUBlock(nn.Module):
  """Gated Attention Unit (Hua et al. 2022; Su's GAU-alpha): one head, expansion e = ``expansion`` * d,
  shared q/k from z (width ``key_dim``) by per-dimension scale/offset (scales initialised to 1, so that at
  init A is close to a multiple of the identity, cf. kexue 8990)."""
  attention: attn_lib.AttentionConfig = attn_lib.AttentionConfig(normalizer="relu2_over_n")
  expansion: int = 2
  key_dim: int = 128
  post_ln: bool = True
  dropout_rate: float = 0.0
  activation: str = "swish"

  @nn.compact
  def __call__(self, x, positions=None, *, relative_offsets=None, mask=None, padding_mask=None, window=None,
               deterministic: bool = True):
    cfg = self.attention
    d = x.shape[-1]
    e = self.expansion * d
    act = _act(self.activation)
    if cfg.pe == "rope" and self.key_dim % 2:
      raise ValueError(f"RoPE needs an even GAU key_dim, got {self.key_dim}.")
    h = x if self.post_ln else nn.LayerNorm(name="ln")(x)
    init = lambda s: nn.initializers.variance_scaling(s ** 2, "fan_in", "truncated_normal")
    u = act(nn.Dense(e, dtype=cfg.dtype, name="wu")(h))
    v = act(nn.Dense(e, dtype=cfg.dtype, kernel_init=init(cfg.v_init_scale), name="wv")(h))
    z = act(nn.Dense(self.key_dim, dtype=cfg.dtype, name="wz")(h))
    gamma = self.param("qk_scale", nn.initializers.ones, (2, self.key_dim))
    beta = self.param("qk_offset", nn.initializers.zeros, (2, self.key_dim))
    q = (z * gamma[0] + beta[0]).astype(cfg.dtype)[:, :, None, :]
    k = (z * gamma[1] + beta[1]).astype(cfg.dtype)[:, :, None, :]
    if positions is None:
      qp = kp = None
    else:
      qp = kp = positions
    o, _ = attn_lib.AttentionCore(cfg, name="core")(
        q, k, v[:, :, None, :], q_positions=qp, k_positions=kp, relative_offsets=relative_offsets, mask=mask,
        padding_mask=padding_mask, window=window, deterministic=deterministic)
    o = nn.Dense(d, dtype=cfg.dtype, kernel_init=init(cfg.o_init_scale), name="wo")(u * o[:, :, 0, :])
    o = nn.Dropout(self.dropout_rate)(o, deterministic=deterministic)
    if self.post_ln:
      return nn.LayerNorm(name="ln")(x + o)
    return x + o


class Transformer(nn.Module):
  """Embedding -> blocks -> head. See the module docstring."""
  vocab_size: int
  num_outputs: int | None
  num_layers: int = 2
  d_model: int = 64
  num_heads: int = 4
  d_ff: int | None = None
  attention: attn_lib.AttentionConfig = attn_lib.AttentionConfig()
  block: str = "standard"
  post_ln: bool = True
  dropout_rate: float = 0.0
  activation: str = "relu"
  max_len: int = 512
  abs_layout: str = "interleaved"
  embed_scale: float = 1.0
  head: str = "linear"
  gau_expansion: int = 2
  gau_key_dim: int = 128

  def setup_check(self):
    if self.block not in ("standard", "gau"):
      raise ValueError(f"Unknown block {self.block!r}; use 'standard' or 'gau'.")
    if self.head not in ("linear", "mlm"):
      raise ValueError(f"Unknown head {self.head!r}; use 'linear' or 'mlm'.")
    if self.block == "standard" and self.d_model % self.num_heads:
      raise ValueError(f"d_model {self.d_model} must be divisible by num_heads {self.num_heads}.")

  @nn.compact
  def __call__(self, tokens, positions=None, *, layer_positions=None, layer_relative_offsets=None, mask=None,
               padding_mask=None, window=None, deterministic: bool = True):
    self.setup_check()
    cfg = self.attention
    tokens = jnp.asarray(tokens)
    if jnp.issubdtype(tokens.dtype, jnp.integer):
      if tokens.ndim != 2:
        raise ValueError(f"tokens must be int [B, N], got shape {tokens.shape}.")
      x = nn.Embed(self.vocab_size, self.d_model, embedding_init=nn.initializers.normal(1.0),
                   name="embed")(tokens)
    else:
      if tokens.ndim != 3:
        raise ValueError(f"float inputs must be [B, N, V], got shape {tokens.shape}.")
      x = nn.Dense(self.d_model, use_bias=False, name="embed_in")(tokens)
    x = x * self.embed_scale
    n = x.shape[1]
    if layer_positions is not None:
      if len(layer_positions) != self.num_layers:
        raise ValueError(f"layer_positions needs one entry per layer ({self.num_layers}), got "
                         f"{len(layer_positions)}.")
      per_layer = [layer_positions[i] for i in range(self.num_layers)]
    else:
      per_layer = [positions] * self.num_layers
    if layer_relative_offsets is not None:
      if len(layer_relative_offsets) != self.num_layers:
        raise ValueError(f"layer_relative_offsets needs one entry per layer ({self.num_layers}).")
      rel = [layer_relative_offsets[i] for i in range(self.num_layers)]
    else:
      rel = [None] * self.num_layers
    emb_pos = positions if positions is not None else per_layer[0]
    if cfg.pe in pos_lib.ABSOLUTE_PES:
      p = pos_lib.default_positions(n) if emb_pos is None else pos_lib.check_positions(emb_pos, n)
      if cfg.pe == "abs_sin":
        pe = pos_lib.sinusoidal(p, self.d_model, layout=self.abs_layout)
      else:
        pe = pos_lib.LearnedPositions(self.max_len, self.d_model, name="pos_embed")(p)
      x = x + pe.astype(x.dtype)
    x = x.astype(cfg.dtype)
    for i in range(self.num_layers):
      kw = dict(relative_offsets=rel[i], mask=mask, padding_mask=padding_mask, window=window,
                deterministic=deterministic)
      if self.block == "standard":
        x = EncoderBlock(self.num_heads, self.d_ff or 4 * self.d_model, cfg, self.post_ln, self.dropout_rate,
                         self.activation, name=f"block_{i}")(x, per_layer[i], **kw)
      else:
        x = GAUBlock(cfg, self.gau_expansion, self.gau_key_dim, self.post_ln, self.dropout_rate,
                     name=f"block_{i}")(x, per_layer[i], **kw)
    if not self.post_ln:
      x = nn.LayerNorm(name="ln_final")(x)
    if self.num_outputs is None:
      return x
    if self.head == "mlm":
      x = nn.LayerNorm(name="mlm_ln")(nn.gelu(nn.Dense(self.d_model, name="mlm_dense")(x)))
    return nn.Dense(self.num_outputs, dtype=jnp.float32, name="head")(x).astype(jnp.float32)


def masked_cross_entropy(logits, targets, weights=None):
  """(mean CE, accuracy) over positions with weight > 0. logits [..., C] float, targets int [...]."""
  logits = logits.astype(jnp.float32)
  logp = jax.nn.log_softmax(logits, axis=-1)
  nll = -jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
  w = jnp.ones(targets.shape, jnp.float32) if weights is None else jnp.asarray(weights, jnp.float32)
  denom = jnp.maximum(jnp.sum(w), 1e-9)
  acc = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
  return jnp.sum(nll * w) / denom, jnp.sum(acc * w) / denom


def mlm_corrupt(rng, tokens, *, mask_id: int, vocab_size: int, rate: float = 0.15,
                special_ids: Sequence[int] = ()):
  """BERT masking: choose ``rate`` of the positions; 80% -> mask_id, 10% -> random token, 10% unchanged.

  Returns (inputs, targets = tokens, weights = 1.0 on chosen positions).
  """
  k1, k2, k3 = jax.random.split(rng, 3)
  chosen = jax.random.uniform(k1, tokens.shape) < rate
  for s in special_ids:
    chosen = chosen & (tokens != s)
  r = jax.random.uniform(k2, tokens.shape)
  rand_tok = jax.random.randint(k3, tokens.shape, 0, vocab_size)
  inputs = jnp.where(chosen & (r < 0.8), mask_id, jnp.where(chosen & (r < 0.9), rand_tok, tokens))
  return inputs, tokens, chosen.astype(jnp.float32)
