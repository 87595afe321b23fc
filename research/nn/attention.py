"""Multi-head attention with switchable position encoding and normalizer (kexue 9105; extended by 9444).

Configuration lives in a frozen, hashable :class:`AttentionConfig` (validated on construction):

  pe           one of ``research.nn.position.PE_NAMES``: none, abs_sin, abs_learned (both absolute: added to the
               embeddings by the transformer, a no-op here), rope, t5_bias, alibi_sym, alibi_asym,
               transformer_xl, shaw.
  normalizer   one of ``NORMALIZERS`` (b = logits over the visible keys V_i):
                 softmax       a_ij = e^{b_ij} / sum_j' e^{b_ij'}
                 exp           a_ij = e^{c tanh(b_ij / c)}   (no denominator; soft cap c = ``exp_logit_cap``;
                               subtracting the row max would change the model, so the logits are capped)
                 l2            a_ij = e^{b_ij} / sqrt(sum_j' e^{2 b_ij'}), computed as
                               e^{b-m} / sqrt(sum e^{2(b-m)}), m = row max (exactly equal, stable)
                 swish_l2      s = b sigmoid(b);  a_ij = s_ij / sqrt(sum_j' s_ij'^2 + eps)
                 relu2_over_n  a_ij = relu(b_ij)^2 / n  (GAU/FLASH); n = number of visible keys of row i
                               (``relu2_n="visible"``, default) or the key length (``"length"``)
  causal       False (bidirectional) or True (j <= i).
  urpe_max_distance   None, or K: URPE gate a_ij <- a_ij * g_h[clip(i-j, -K, K) + K] after normalizing,
               g learnable per head (and layer), initialised to 1.
  logn_train_len      None (off) or m: log-n scaling, the dot-product logits are multiplied by log(n)/log(m);
               ``logn_mode="length"``: n = number of non-padding keys of the example (or Nk);
               ``"visible"``: n = visible keys of each row (i+1 under a causal mask). Applied as written (a factor
               below 1 when n < m). Additive biases (ALiBi, T5) are added after the scaling.
  rope_base / rope_layout, t5_num_buckets / t5_max_distance, shaw_max_distance (K),
  txl_rel_dim, relative_index_bug / relative_table_len (9444 reference-code bug, see position.py),
  exp_logit_cap, l2_eps, swish_eps, dropout_rate, use_bias, v_init_scale / o_init_scale (multiply the init
  std of W_V / W_O; spec 03 §3.8 recommends n_train^(-1/4) each for l2 attention), dtype (computation dtype,
  e.g. bfloat16; logits and normalization always run in float32), param_dtype.

Call: ``MultiHeadAttention(num_heads, config)(x, positions=None, *, q_positions=None, k_positions=None,
relative_offsets=None, mask=None, padding_mask=None, window=None, inputs_kv=None, deterministic=True,
return_weights=False)``.

Conventions
  * ``positions`` (or q_positions / k_positions): shape [N] (shared by the batch) or [B, N]; default 0..N-1.
    Float for functional PEs; integers for tables (``shaw``, URPE, learned). Different layers may get
    different positions.
  * ``relative_offsets``: optional explicit matrix o_ij = p_j - p_i, shape [Nq, Nk] or [B, Nq, Nk], used by the
    relative schemes (ALiBi, T5, Transformer-XL, Shaw, URPE) instead of differences of positions (the 9444
    "distance" variant). RoPE always uses positions.
  * ``mask``: boolean, True = may attend, broadcastable to [B, H, Nq, Nk] (Flax convention).
    ``padding_mask``: boolean [B, Nk], True = real token (pads are removed from the keys).
    ``window``: visible only if |i - j| < window (causal: 0 <= i - j < window), by token index (the 9431
    local-attention "super baseline" at inference).
  * A row with no visible key gets zero weights and a zero output (never NaN).
  * Logits: q.k / sqrt(d_h) (+ position terms), then ALiBi/T5 biases.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from research.nn import position as pos_lib

NORMALIZERS = ("softmax", "exp", "l2", "swish_l2", "relu2_over_n")
ROW_STOCHASTIC = ("softmax",)


def check_normalizer(name: str) -> str:
  if name not in NORMALIZERS:
    raise ValueError(f"Unknown attention normalizer {name!r}; valid names: {list(NORMALIZERS)}")
  return name


@dataclasses.dataclass(frozen=True)
class AttentionConfig:
  """All switches of :class:`MultiHeadAttention` / :class:`AttentionCore` (see the module docstring)."""
  pe: str = "none"
  normalizer: str = "softmax"
  causal: bool = False
  urpe_max_distance: int | None = None
  logn_train_len: int | None = None
  logn_mode: str = "length"
  rope_base: float = 10000.0
  rope_layout: str = "interleaved"
  t5_num_buckets: int = 32
  t5_max_distance: int = 128
  shaw_max_distance: int = 16
  txl_rel_dim: int | None = None
  relative_index_bug: bool = False
  relative_table_len: int | None = None
  exp_logit_cap: float = 20.0
  l2_eps: float = 1e-20
  swish_eps: float = 1e-6
  relu2_n: str = "visible"
  dropout_rate: float = 0.0
  use_bias: bool = True
  v_init_scale: float = 1.0
  o_init_scale: float = 1.0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  def __post_init__(self):
    pos_lib.check_pe_name(self.pe)
    check_normalizer(self.normalizer)
    if self.logn_mode not in ("length", "visible"):
      raise ValueError(f"logn_mode must be 'length' or 'visible', got {self.logn_mode!r}.")
    if self.logn_train_len is not None and self.logn_train_len < 2:
      raise ValueError(f"logn_train_len (the training length m of log n / log m) must be >= 2 or None, got "
                       f"{self.logn_train_len}.")
    if self.relu2_n not in ("visible", "length"):
      raise ValueError(f"relu2_n must be 'visible' or 'length', got {self.relu2_n!r}.")
    if self.rope_layout not in ("interleaved", "halves"):
      raise ValueError(f"rope_layout must be 'interleaved' or 'halves', got {self.rope_layout!r}.")
    if self.urpe_max_distance is not None and self.urpe_max_distance < 0:
      raise ValueError(f"urpe_max_distance must be >= 0 or None, got {self.urpe_max_distance}.")
    if self.relative_index_bug and not self.relative_table_len:
      raise ValueError("relative_index_bug=True needs relative_table_len=L (rows of the reference table).")
    if self.exp_logit_cap <= 0:
      raise ValueError(f"exp_logit_cap must be > 0, got {self.exp_logit_cap}.")

  def replace(self, **kw) -> "AttentionConfig":
    return dataclasses.replace(self, **kw)


# --------------------------------------------------------------------------- pure functions
def check_mask(mask, target_shape, name: str = "mask") -> jax.Array | None:
  """Checks a boolean mask broadcastable to ``target_shape`` = (B, H, Nq, Nk)."""
  if mask is None:
    return None
  mask = jnp.asarray(mask)
  if mask.dtype != jnp.bool_:
    raise TypeError(f"{name} must be boolean (True = may attend), got dtype {mask.dtype}; use mask.astype(bool).")
  try:
    if mask.ndim > len(target_shape):
      raise ValueError
    np.broadcast_shapes(mask.shape, tuple(target_shape))
    if np.broadcast_shapes(mask.shape, tuple(target_shape)) != tuple(target_shape):
      raise ValueError
  except ValueError:
    raise ValueError(f"{name} of shape {mask.shape} does not broadcast to [B, H, Nq, Nk] = "
                     f"{tuple(target_shape)}; give a boolean mask like [B, 1, Nq, Nk] or [Nq, Nk] "
                     "(True = may attend).") from None
  return mask


def causal_mask(nq: int, nk: int | None = None) -> jax.Array:
  """[Nq, Nk] boolean, True where j <= i (queries aligned with the last Nq keys when Nk > Nq)."""
  nk = nq if nk is None else nk
  i = jnp.arange(nq)[:, None] + (nk - nq)
  return jnp.arange(nk)[None, :] <= i


def window_mask(nq: int, nk: int, window: int, causal: bool) -> jax.Array:
  i = jnp.arange(nq)[:, None] + (nk - nq)
  d = i - jnp.arange(nk)[None, :]
  return (d >= 0) & (d < window) if causal else jnp.abs(d) < window


def normalize(logits, mask=None, normalizer: str = "softmax", *, exp_logit_cap: float = 20.0,
              l2_eps: float = 1e-20, swish_eps: float = 1e-6, relu2_n: str = "visible") -> jax.Array:
  """Attention weights from logits [..., Nk] (float32) under a boolean mask (True = visible).

  Masked entries get weight exactly 0; a row with no visible key is all zeros. See the module docstring.
  """
  check_normalizer(normalizer)
  b = jnp.asarray(logits, jnp.float32)
  if mask is None:
    mask = jnp.ones(b.shape, bool)
  mask = jnp.broadcast_to(mask, b.shape)
  if normalizer in ("softmax", "l2"):
    m = jnp.max(jnp.where(mask, b, -jnp.inf), axis=-1, keepdims=True)
    m = jax.lax.stop_gradient(jnp.where(jnp.isfinite(m), m, 0.0))
    e = jnp.where(mask, jnp.exp(jnp.where(mask, b - m, 0.0)), 0.0)
    if normalizer == "softmax":
      s = jnp.sum(e, axis=-1, keepdims=True)
      return e / jnp.where(s > 0, s, 1.0)
    s2 = jnp.sum(e * e, axis=-1, keepdims=True)
    return e / jnp.sqrt(jnp.maximum(s2, l2_eps))
  if normalizer == "exp":
    c = exp_logit_cap
    return jnp.where(mask, jnp.exp(c * jnp.tanh(jnp.where(mask, b, 0.0) / c)), 0.0)
  if normalizer == "swish_l2":
    s = jnp.where(mask, jax.nn.swish(jnp.where(mask, b, 0.0)), 0.0)
    # s / sqrt(sum s^2 + eps), evaluated after dividing by the row's max |s| (exactly equal, no overflow).
    mx = jax.lax.stop_gradient(jnp.max(jnp.abs(s), axis=-1, keepdims=True))
    mx = jnp.maximum(mx, 1e-30)
    t = s / mx
    return t / jnp.sqrt(jnp.sum(t * t, axis=-1, keepdims=True) + swish_eps / (mx * mx))
  # relu2_over_n
  r = jnp.where(mask, jax.nn.relu(jnp.where(mask, b, 0.0)) ** 2, 0.0)
  if relu2_n == "visible":
    n = jnp.sum(mask, axis=-1, keepdims=True).astype(jnp.float32)
  else:
    n = jnp.full(b.shape[:-1] + (1,), b.shape[-1], jnp.float32)
  return r / jnp.maximum(n, 1.0)


def logn_factor(mask, train_len: int, mode: str, nk: int, padding_mask=None) -> jax.Array:
  """log(n) / log(m): [.., Nq, 1] ("visible") or [B or 1, 1, 1, 1] ("length")."""
  if mode == "visible":
    n = jnp.sum(mask, axis=-1, keepdims=True).astype(jnp.float32)
  elif padding_mask is not None:
    n = jnp.sum(padding_mask, axis=-1).astype(jnp.float32)[:, None, None, None]
  else:
    n = jnp.full((1, 1, 1, 1), nk, jnp.float32)
  return jnp.log(jnp.maximum(n, 1.0)) / math.log(train_len)


def _scaled_init(scale: float):
  return nn.initializers.variance_scaling(scale ** 2, "fan_in", "truncated_normal")


# --------------------------------------------------------------------------- modules
class AttentionCore(nn.Module):
  """Everything between the projections: PE terms, masks, normalizer, URPE gate, Shaw values.

  Inputs q, k: [B, Nq, H, Dqk], [B, Nk, H, Dqk]; v: [B, Nk, H, Dv]. Returns ([B, Nq, H, Dv], weights
  [B, H, Nq, Nk]). Used by :class:`MultiHeadAttention` and the GAU block of ``research.nn.transformer``.
  """
  config: AttentionConfig

  @nn.compact
  def __call__(self, q, k, v, *, q_positions=None, k_positions=None, relative_offsets=None, mask=None,
               padding_mask=None, window=None, deterministic: bool = True):
    cfg = self.config
    b, nq, h, dk = q.shape
    nk = k.shape[1]
    raw_positions = (np.arange(nq) if q_positions is None else q_positions,
                     np.arange(nk) if k_positions is None else k_positions)
    if k.shape[0] != b or k.shape[2] != h or v.shape[:3] != (b, nk, h):
      raise ValueError(f"q, k, v shapes are inconsistent: {q.shape}, {k.shape}, {v.shape} (expected "
                       "[B, Nq, H, D], [B, Nk, H, D], [B, Nk, H, Dv]).")
    q_positions = (pos_lib.default_positions(nq) if q_positions is None
                   else pos_lib.check_positions(q_positions, nq, "q_positions"))
    k_positions = (pos_lib.default_positions(nk) if k_positions is None
                   else pos_lib.check_positions(k_positions, nk, "k_positions"))
    for p in (q_positions, k_positions):
      if p.ndim > 2 or (p.ndim == 2 and p.shape[0] not in (1, b)):
        raise ValueError(f"positions must be [N] or [B, N] with B = {b}, got shape {p.shape}.")
    if relative_offsets is not None:
      relative_offsets = jnp.asarray(relative_offsets)
      if relative_offsets.shape[-2:] != (nq, nk) or relative_offsets.ndim > 3:
        raise ValueError(f"relative_offsets must be [Nq, Nk] or [B, Nq, Nk] = [.., {nq}, {nk}], got "
                         f"{relative_offsets.shape}.")
      rel = relative_offsets
    else:
      rel = pos_lib.relative_offsets(q_positions, k_positions)   # j - i, [(B), Nq, Nk]

    # ---- visibility mask [B or 1, H or 1, Nq, Nk]
    target = (b, h, nq, nk)
    full = jnp.ones((1, 1, nq, nk), bool)
    m = check_mask(mask, target)
    if m is not None:
      full = full & m
    if padding_mask is not None:
      pm = jnp.asarray(padding_mask)
      if pm.dtype != jnp.bool_:
        raise TypeError(f"padding_mask must be boolean (True = real token), got {pm.dtype}.")
      if pm.shape != (b, nk):
        raise ValueError(f"padding_mask must have shape [B, Nk] = {(b, nk)}, got {pm.shape}.")
      full = full & pm[:, None, None, :]
    if cfg.causal:
      full = full & causal_mask(nq, nk)
    if window is not None:
      full = full & window_mask(nq, nk, int(window), cfg.causal)

    # ---- logits
    pe = cfg.pe
    if pe == "rope":
      q = pos_lib.apply_rope(q, q_positions, base=cfg.rope_base, layout=cfg.rope_layout)
      k = pos_lib.apply_rope(k, k_positions, base=cfg.rope_base, layout=cfg.rope_layout)
    scale = 1.0 / math.sqrt(dk)
    qs = q
    if pe == "transformer_xl":
      u = self.param("txl_u", nn.initializers.zeros, (h, dk), cfg.param_dtype)
      qs = q + u.astype(q.dtype)
    logits = jnp.einsum("bqhd,bkhd->bhqk", qs, k, preferred_element_type=jnp.float32)
    if pe == "transformer_xl":
      w = self.param("txl_w", nn.initializers.zeros, (h, dk), cfg.param_dtype)
      rdim = cfg.txl_rel_dim or h * dk
      w_r = self.param("txl_w_r", nn.initializers.lecun_normal(in_axis=0, out_axis=(1, 2)),
                       (rdim, h, dk), cfg.param_dtype)
      qw = q + w.astype(q.dtype)
      grid = (pos_lib.grid_offset(*raw_positions, nq, nk)
              if relative_offsets is None and not cfg.relative_index_bug else None)
      if grid is not None:     # unit-step positions (the default 0..N-1): offset table + relative shift
        logits = logits + pos_lib.txl_position_logits_grid(qw, nk, w_r, offset=grid)
      elif relative_offsets is None and not cfg.relative_index_bug:
        logits = logits + pos_lib.txl_position_logits(qw, q_positions, k_positions, w_r)
      else:
        logits = logits + pos_lib.txl_position_logits_from_offsets(
            qw, -rel, w_r, relative_index_bug=cfg.relative_index_bug, table_len=cfg.relative_table_len)
    shaw_idx = None
    if pe == "shaw" or cfg.urpe_max_distance is not None:
      pos_lib.require_int_positions(rel, "shaw / URPE (tables indexed by clipped offsets)")
    if pe == "shaw":
      kk = cfg.shaw_max_distance
      r_k = self.param("shaw_rk", nn.initializers.normal(0.02), (2 * kk + 1, dk), cfg.param_dtype)
      shaw_idx = jax.nn.one_hot(pos_lib.clipped_index(rel, kk), 2 * kk + 1, dtype=jnp.float32)  # [(B),q,k,R]
      if shaw_idx.ndim == 3:
        shaw_idx = shaw_idx[None]
      qr = jnp.einsum("bqhd,rd->bhqr", q.astype(jnp.float32), r_k.astype(jnp.float32))
      logits = logits + jnp.einsum("bhqr,bqkr->bhqk", qr, shaw_idx)
    logits = logits * scale
    if cfg.logn_train_len is not None:
      logits = logits * logn_factor(full, cfg.logn_train_len, cfg.logn_mode, nk, padding_mask)
    if pe in ("alibi_sym", "alibi_asym"):
      logits = logits + pos_lib.alibi_bias(rel, pos_lib.alibi_slopes(h), asymmetric=(pe == "alibi_asym"))
    elif pe == "t5_bias":
      table = self.param("t5_bias", nn.initializers.normal(0.02), (h, cfg.t5_num_buckets), cfg.param_dtype)
      bucket = pos_lib.t5_bucket(rel, bidirectional=not cfg.causal, num_buckets=cfg.t5_num_buckets,
                                 max_distance=cfg.t5_max_distance)
      logits = logits + jnp.moveaxis(jnp.take(table.astype(jnp.float32), bucket, axis=-1), 0, -3)

    # ---- weights
    a = normalize(logits, full, cfg.normalizer, exp_logit_cap=cfg.exp_logit_cap, l2_eps=cfg.l2_eps,
                  swish_eps=cfg.swish_eps, relu2_n=cfg.relu2_n)
    if cfg.urpe_max_distance is not None:
      kk = cfg.urpe_max_distance
      g = self.param("urpe_gate", nn.initializers.ones, (h, 2 * kk + 1), cfg.param_dtype)
      a = a * pos_lib.toeplitz_gate(-rel, g.astype(jnp.float32), kk)
    if cfg.dropout_rate > 0 and not deterministic:
      keep = jax.random.bernoulli(self.make_rng("dropout"), 1.0 - cfg.dropout_rate, a.shape)
      a = jnp.where(keep, a / (1.0 - cfg.dropout_rate), 0.0)
    out = jnp.einsum("bhqk,bkhd->bqhd", a.astype(v.dtype), v,
                     preferred_element_type=jnp.float32)
    if pe == "shaw":
      r_v = self.param("shaw_rv", nn.initializers.normal(0.02), (2 * cfg.shaw_max_distance + 1, v.shape[-1]),
                       cfg.param_dtype)
      ab = jnp.einsum("bhqk,bqkr->bhqr", a, shaw_idx)
      out = out + jnp.einsum("bhqr,rd->bqhd", ab, r_v.astype(jnp.float32))
    return out.astype(cfg.dtype), a


class MultiHeadAttention(nn.Module):
  """Multi-head attention: q/k/v projections, :class:`AttentionCore`, output projection.

  Attributes: num_heads; config (:class:`AttentionConfig`); head_dim (default features // num_heads);
  out_features (default the input width).
  """
  num_heads: int
  config: AttentionConfig = AttentionConfig()
  head_dim: int | None = None
  out_features: int | None = None

  @nn.compact
  def __call__(self, x, positions=None, *, q_positions=None, k_positions=None, relative_offsets=None,
               mask=None, padding_mask=None, window=None, inputs_kv=None, deterministic: bool = True,
               return_weights: bool = False):
    cfg = self.config
    x = jnp.asarray(x)
    if x.ndim != 3:
      raise ValueError(f"MultiHeadAttention expects inputs [B, N, D], got shape {x.shape}.")
    kv = x if inputs_kv is None else jnp.asarray(inputs_kv)
    d = x.shape[-1]
    if self.head_dim is None and d % self.num_heads:
      raise ValueError(f"features {d} is not divisible by num_heads {self.num_heads}; set head_dim.")
    hd = self.head_dim or d // self.num_heads
    if cfg.pe == "rope" and hd % 2:
      raise ValueError(f"RoPE needs an even head dimension, got head_dim={hd} (features {d} / "
                       f"{self.num_heads} heads).")
    if positions is not None:
      q_positions = positions if q_positions is None else q_positions
      k_positions = positions if k_positions is None else k_positions
    dense = lambda name, scale=1.0: nn.DenseGeneral(
        (self.num_heads, hd), use_bias=cfg.use_bias, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
        kernel_init=_scaled_init(scale), name=name)
    q = dense("query")(x)
    k = dense("key")(kv)
    v = dense("value", cfg.v_init_scale)(kv)
    out, a = AttentionCore(cfg, name="core")(
        q, k, v, q_positions=q_positions, k_positions=k_positions, relative_offsets=relative_offsets,
        mask=mask, padding_mask=padding_mask, window=window, deterministic=deterministic)
    y = nn.DenseGeneral(self.out_features or d, axis=(-2, -1), use_bias=cfg.use_bias, dtype=cfg.dtype,
                        param_dtype=cfg.param_dtype, kernel_init=_scaled_init(cfg.o_init_scale),
                        name="out")(out)
    return (y, a) if return_weights else y
