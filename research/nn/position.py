"""Position encodings that take EXPLICIT positions (kexue 9105, shared with 9444).

Every function here takes the positions as an array of shape ``[..., N]`` (usually ``[N]``, shared by the
batch, or ``[B, N]``, one set per example). Nothing assumes positions are ``0..N-1``: randomized sorted subsets
of ``[0, L)`` (Ruoss et al.), evenly spaced grids and real-valued "equal-mean" positions (9444) work unchanged,
and a transformer may pass different positions to every layer.

Dtypes
  * functional PEs (``abs_sin``, ``rope``, ``alibi_*``, ``transformer_xl``) accept float or int positions;
  * table/bucket PEs (``abs_learned``, ``shaw``, ``urpe``) need integer positions and raise ``TypeError`` for
    floats; ``t5_bias`` buckets real offsets by flooring ``|offset|`` (exact for integers).

PE names (``PE_NAMES``), as used by :class:`research.nn.attention.AttentionConfig` ``pe=``:
  ``none``            no position information (NoPE).
  ``abs_sin``         sinusoidal vector added to the token embedding (:func:`sinusoidal`); layout
                      ``interleaved`` (PE_{2k}=sin(p w_k), PE_{2k+1}=cos(p w_k)) or ``halves`` ([sin | cos], the
                      DeepMind randomized-PE code), w_k = base^(-2k/d).
  ``abs_learned``     a learned table with ``max_len`` = L rows, added to the embedding (:class:`LearnedPositions`).
  ``rope``            rotary: channel pairs of q and k rotated by p * theta_k, theta_k = base^(-2k/d_h)
                      (:func:`apply_rope`; pairs ``interleaved`` (2k, 2k+1) or ``halves`` (k, k+d/2)).
  ``t5_bias``         per-head learned scalar per bucket of the offset j-i (:func:`t5_bucket`), asymmetric when
                      bidirectional (separate buckets for j<i and j>i), T5 defaults 32 buckets / max distance 128.
  ``alibi_sym``       -m_h |i-j|  (:func:`alibi_bias`; slopes m_h = 2^(-8h/H), :func:`alibi_slopes`).
  ``alibi_asym``      -m_h (|i-j| - 0.5 [j<i])  (left/right asymmetric form of the DeepMind code).
                      With a causal mask both equal the original causal ALiBi -m_h (i-j).
  ``transformer_xl``  b_ij = (q_i+u)^T k_j + (q_i+w)^T W_R r_{i-j}, r = sinusoid of the offset i-j
                      (:func:`relative_sinusoid`). Positions on a unit grid (the default 0..N-1, or any concrete
                      run p0 + 0..N-1): offset table + relative shift (:func:`txl_position_logits_grid`, about
                      the cost of Q K^T); other (traced, float, [B, N]) positions: the product-to-sum identity
                      in O(N d) memory (:func:`txl_position_logits`); or an explicit offset matrix
                      (``relative_offsets=`` / ``relative_index_bug=True``). All three give the same logits.
  ``shaw``            Shaw et al.: logits q_i^T (k_j + rK_{clip(j-i,K)}), values v_j + rV_{clip(j-i,K)}.
  (URPE is not a PE but a gate, ``AttentionConfig(urpe_max_distance=K)``: a <- a * g_h[clip(i-j,-K,K)+K].)

Offsets: ``relative_offsets(q_pos, k_pos)[..., i, j] = k_pos[j] - q_pos[i]`` (key minus query, "j - i").
Transformer-XL and URPE use ``i - j`` = minus that; ALiBi uses |j - i| and the sign.

The 9444 reference code's noisy-relative indexing bug (spec 07 §4): its sinusoid table has rows for [0, L)
but is indexed with offset + L, and JAX clamps the gather, so offsets >= -1 all read row L-1. Its offset is
oriented key minus query, j - i (its relative shift puts entry T + (j - i) of the [left, 0, right] index array
at logit (i, j)), so the keys that collapse onto the query's own row are those at and to the RIGHT of the
query (j >= i - 1); the keys to the left keep distinct rows.
:func:`relative_sinusoid` reproduces it with ``relative_index_bug=True`` (needs ``table_len=L``); the default
``False`` is the fixed table over [-L, L) (= the sinusoid of the offset itself).
"""
from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

PE_NAMES = ("none", "abs_sin", "abs_learned", "rope", "t5_bias", "alibi_sym", "alibi_asym",
            "transformer_xl", "shaw")
ABSOLUTE_PES = ("abs_sin", "abs_learned")       # added to the embeddings (handled by the transformer)
RELATIVE_PES = ("rope", "t5_bias", "alibi_sym", "alibi_asym", "transformer_xl", "shaw")
FLOAT_OK_PES = ("none", "abs_sin", "rope", "alibi_sym", "alibi_asym", "transformer_xl", "t5_bias")
INT_ONLY_PES = ("abs_learned", "shaw")


def check_pe_name(pe: str) -> str:
  if pe not in PE_NAMES:
    raise ValueError(f"Unknown position encoding {pe!r}; valid names: {list(PE_NAMES)}")
  return pe


def default_positions(n: int, dtype=jnp.int32) -> jax.Array:
  """The plain positions ``0..n-1`` (int32 by default)."""
  return jnp.arange(n, dtype=dtype)


def is_float_positions(positions) -> bool:
  return jnp.issubdtype(jnp.asarray(positions).dtype, jnp.floating)


def require_int_positions(positions, what: str) -> None:
  """Raises TypeError when a table/bucket encoding gets real-valued positions."""
  dt = jnp.asarray(positions).dtype
  if not jnp.issubdtype(dt, jnp.integer):
    raise TypeError(
        f"{what} indexes a table and needs integer positions, got dtype {dt}. Real-valued positions (e.g. "
        "equal-mean sampling) only work with functional encodings (abs_sin, rope, alibi_sym, alibi_asym, "
        "transformer_xl); round them or cast to int32 if an integer grid was intended.")


def check_positions(positions, n: int, what: str = "positions") -> jax.Array:
  """Checks that ``positions`` has shape [..., n] (``[n]`` or ``[B, n]``) and a numeric dtype."""
  positions = jnp.asarray(positions)
  if positions.ndim < 1 or positions.shape[-1] != n:
    raise ValueError(f"{what} must have shape [..., N] with N = {n} (the sequence length), got shape "
                     f"{positions.shape}; pass one position per token, e.g. jnp.arange({n}).")
  if not (jnp.issubdtype(positions.dtype, jnp.integer) or jnp.issubdtype(positions.dtype, jnp.floating)):
    raise TypeError(f"{what} must be an integer or float array, got dtype {positions.dtype}.")
  return positions


def _concrete(x) -> np.ndarray | None:
  """Numpy value of x when it is concrete (not traced), else None."""
  try:
    return np.asarray(x)
  except Exception:  # TracerArrayConversionError and friends
    return None


def relative_offsets(q_positions, k_positions) -> jax.Array:
  """``rel[..., i, j] = k_positions[..., j] - q_positions[..., i]`` (shape [..., Nq, Nk])."""
  q = jnp.asarray(q_positions)
  k = jnp.asarray(k_positions)
  return k[..., None, :] - q[..., :, None]


# --------------------------------------------------------------------------- sinusoids
def sinusoid_frequencies(dim: int, base: float = 10000.0) -> jax.Array:
  """w_k = base^(-2k/dim), k = 0..dim/2-1 (float32)."""
  if dim % 2:
    raise ValueError(f"sinusoidal encodings need an even dimension, got {dim}.")
  return base ** (-jnp.arange(0, dim, 2, dtype=jnp.float32) / dim)


def sinusoidal(positions, dim: int, base: float = 10000.0, layout: str = "interleaved") -> jax.Array:
  """Sinusoidal vectors of (float or int) positions: shape [..., N, dim] (float32).

  ``interleaved``: PE_{2k} = sin(p w_k), PE_{2k+1} = cos(p w_k) (Vaswani et al.).
  ``halves``:      PE = [sin(p w_0..) | cos(p w_0..)] (the DeepMind randomized-PE code).
  """
  ang = jnp.asarray(positions, jnp.float32)[..., None] * sinusoid_frequencies(dim, base)
  s, c = jnp.sin(ang), jnp.cos(ang)
  if layout == "interleaved":
    return jnp.stack([s, c], axis=-1).reshape(*ang.shape[:-1], dim)
  if layout == "halves":
    return jnp.concatenate([s, c], axis=-1)
  raise ValueError(f"Unknown sinusoid layout {layout!r}; use 'interleaved' or 'halves'.")


def relative_sinusoid(offsets, dim: int, *, base: float = 10000.0, relative_index_bug: bool = False,
                      table_len: int | None = None) -> jax.Array:
  """Sinusoidal encodings r_o of relative offsets o (Transformer-XL), shape [..., dim].

  Fixed (default): r_o = sinusoid(o), i.e. a table over [-L, L) indexed with o + L.
  ``relative_index_bug=True`` reproduces the released 9444 reference code: the table holds sinusoid(t) for
  t in [0, L) only, it is indexed with o + L and the gather is clamped, so r_o = sinusoid(clip(o + L, 0, L-1)):
  offsets -1, 0, 1, 2, ... all get the same vector. Here ``o`` is the reference code's offset, key minus
  query (j - i); :func:`txl_position_logits_from_offsets` converts its i - j offsets before the gather.
  """
  offsets = jnp.asarray(offsets)
  if relative_index_bug:
    if table_len is None:
      raise ValueError("relative_index_bug=True needs table_len=L (the number of rows of the reference "
                       "sinusoid table, the randomized-position range).")
    require_int_positions(offsets, "relative_index_bug=True (a clamped table gather)")
    offsets = jnp.clip(offsets + table_len, 0, table_len - 1)
  return sinusoidal(offsets, dim, base, "interleaved")


class LearnedPositions(nn.Module):
  """Learned absolute embeddings: a table of ``max_len`` = L rows indexed by integer positions in [0, L)."""
  max_len: int
  dim: int
  init_std: float = 0.02
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, positions) -> jax.Array:
    require_int_positions(positions, "abs_learned (a table with L rows)")
    p = _concrete(positions)
    if p is not None and p.size and (p.min() < 0 or p.max() >= self.max_len):
      raise ValueError(f"abs_learned has max_len L = {self.max_len} rows but got positions in "
                       f"[{p.min()}, {p.max()}]; raise max_len to at least {p.max() + 1} (L must cover every "
                       "test position).")
    table = self.param("table", nn.initializers.normal(self.init_std), (self.max_len, self.dim),
                       self.param_dtype)
    return jnp.take(table, jnp.asarray(positions), axis=0, mode="clip")


# --------------------------------------------------------------------------- RoPE
def _rope_cos_sin(ang) -> tuple[jax.Array, jax.Array]:
  """cos/sin of the RoPE angles [..., N, 1, D/2], materialised once per call.

  Left alone, XLA (CPU) fuses the transcendentals into the [..., N, H, D] rotation loops, recomputing them
  for every batch row and head whenever the positions are not compile-time constants (randomized / equal-mean
  positions: ~9% slower CHE steps than plain positions, whose cos/sin are constant-folded). A product with
  the identity (exact in float32) is not fused into elementwise consumers, so cos/sin are computed on
  [..., N, D/2] only. Values are unchanged.
  """
  cs = jnp.concatenate([jnp.cos(ang), jnp.sin(ang)], axis=-1)
  cs = jnp.einsum("...k,kl->...l", cs, jnp.eye(cs.shape[-1], dtype=cs.dtype), precision="highest")
  h = ang.shape[-1]
  return cs[..., :h], cs[..., h:]


def apply_rope(x, positions, *, base: float = 10000.0, layout: str = "interleaved") -> jax.Array:
  """Rotates channel pairs of ``x`` [..., N, H, D] by p * theta_k, theta_k = base^(-2k/D).

  ``positions`` has shape [N] or [B, N] (float allowed). Then (R_m q)^T (R_n k) = q^T R_{n-m} k.
  ``interleaved`` pairs channels (2k, 2k+1) (RoFormer); ``halves`` pairs (k, k + D/2) (GPT-NeoX).
  """
  d = x.shape[-1]
  if d % 2:
    raise ValueError(f"RoPE rotates channel pairs, so the head dimension must be even; got head_dim={d}. "
                     "Choose d_model/num_heads even.")
  theta = base ** (-jnp.arange(0, d, 2, dtype=jnp.float32) / d)               # [D/2]
  ang = jnp.asarray(positions, jnp.float32)[..., :, None, None] * theta       # [..., N, 1, D/2]
  cos, sin = _rope_cos_sin(ang)
  xf = x.astype(jnp.float32)
  if layout == "interleaved":
    x1, x2 = xf[..., 0::2], xf[..., 1::2]
    y = jnp.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1).reshape(xf.shape)
  elif layout == "halves":
    x1, x2 = xf[..., : d // 2], xf[..., d // 2:]
    y = jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)
  else:
    raise ValueError(f"Unknown RoPE layout {layout!r}; use 'interleaved' or 'halves'.")
  return y.astype(x.dtype)


# --------------------------------------------------------------------------- T5
def t5_bucket(rel, *, bidirectional: bool = True, num_buckets: int = 32, max_distance: int = 128) -> jax.Array:
  """T5 bucket of the offset rel = j - i (key minus query); int32 in [0, num_buckets).

  Bidirectional: half the buckets for j > i, half for j <= i. Within a half, the first half of the buckets
  are exact distances, the rest log-spaced up to ``max_distance`` (all larger distances share the last).
  Causal (``bidirectional=False``): only j <= i is distinguished. Real offsets are floored.
  """
  rel = jnp.asarray(rel)
  n = -rel
  ret = jnp.zeros(rel.shape, jnp.int32)
  nb = num_buckets
  if bidirectional:
    nb //= 2
    ret = ret + (n < 0).astype(jnp.int32) * nb
    n = jnp.abs(n)
  else:
    n = jnp.maximum(n, 0)
  n = jnp.floor(n.astype(jnp.float32))
  max_exact = nb // 2
  is_small = n < max_exact
  large = max_exact + (jnp.log(jnp.maximum(n, 1.0) / max_exact) / math.log(max_distance / max_exact)
                       * (nb - max_exact)).astype(jnp.int32)
  large = jnp.minimum(large, nb - 1)
  return ret + jnp.where(is_small, n.astype(jnp.int32), large)


# --------------------------------------------------------------------------- ALiBi
def alibi_slopes(num_heads: int) -> jax.Array:
  """ALiBi head slopes m_h = 2^(-8h/H), h = 1..H (the standard recipe for H not a power of two)."""
  def pow2(n):
    start = 2.0 ** (-8.0 / n)
    return [start ** (i + 1) for i in range(n)]
  if math.log2(num_heads).is_integer():
    s = pow2(num_heads)
  else:
    p = 2 ** math.floor(math.log2(num_heads))
    s = pow2(p) + pow2(2 * p)[0::2][: num_heads - p]
  return jnp.asarray(s, jnp.float32)


def alibi_bias(rel, slopes, *, asymmetric: bool = False) -> jax.Array:
  """ALiBi bias from offsets rel = j - i [..., Nq, Nk] and slopes [H]: shape [..., H, Nq, Nk].

  symmetric: -m_h |i-j|;  asymmetric (DeepMind code): -m_h (|i-j| - 0.5 [j < i]). Float offsets allowed.
  """
  rel = jnp.asarray(rel, jnp.float32)[..., None, :, :]
  d = jnp.abs(rel)
  if asymmetric:
    d = d - 0.5 * (rel < 0).astype(jnp.float32)
  return -jnp.asarray(slopes, jnp.float32)[:, None, None] * d


# --------------------------------------------------------------------------- Transformer-XL
def txl_position_logits(qw, q_positions, k_positions, w_r, *, base: float = 10000.0) -> jax.Array:
  """(q_i + w)^T W_R r_{p_i - p_j} for all i, j without materializing [Nq, Nk, d] (exact identity).

  qw: [B, Nq, H, D] (queries plus the per-head w); w_r: [R, H, D] (R even, the sinusoid width);
  positions [Nq]/[Nk] or [B, Nq]/[B, Nk], float allowed. Returns [B, H, Nq, Nk] (float32).

  With z = W_R^T (q_i + w) split into sine/cosine halves (z_s, z_c) and o = p_i - p_j:
  sum_k z_s,k sin(o w_k) + z_c,k cos(o w_k)
    = sum_k cos(p_j w_k) (z_s sin_i + z_c cos_i) + sin(p_j w_k) (z_c sin_i - z_s cos_i).
  """
  r = w_r.shape[0]
  freqs = sinusoid_frequencies(r, base)                                   # [R/2]
  z = jnp.einsum("bqhd,rhd->bhqr", qw.astype(jnp.float32), w_r.astype(jnp.float32))
  z_s, z_c = z[..., 0::2], z[..., 1::2]                                   # interleaved sinusoid layout
  aq = jnp.asarray(q_positions, jnp.float32)[..., None, :, None] * freqs  # [(B),1,Nq,R/2]
  ak = jnp.asarray(k_positions, jnp.float32)[..., None, :, None] * freqs  # [(B),1,Nk,R/2]
  sq, cq = jnp.sin(aq), jnp.cos(aq)
  qf = jnp.concatenate([z_s * sq + z_c * cq, z_c * sq - z_s * cq], axis=-1)     # [B,H,Nq,R]
  kf = jnp.concatenate([jnp.cos(ak), jnp.sin(ak)], axis=-1)                      # [(B),1,Nk,R]
  kf = jnp.broadcast_to(kf, (qf.shape[0], 1) + kf.shape[-2:])
  return jnp.einsum("bhqr,bxkr->bhqk", qf, kf)


def relative_shift(x, nk: int) -> jax.Array:
  """Transformer-XL relative shift: ``y[..., i, j] = x[..., i, nq - 1 - i + j]`` for j < nk.

  ``x``: [..., Nq, Nq + Nk - 1] scores against a table of offsets in DESCENDING order (column c holds offset
  o_0 - c); the result [..., Nq, Nk] holds, for each (i, j), the column of offset o_0 - (Nq - 1) + i - j.
  Reshape + slice only (no gather): flat index i (Nq + Nk - 1) + Nq - 1 - i + j = Nq - 1 + i (Nq + Nk - 2) + j.
  """
  *lead, nq, width = x.shape
  if width != nq + nk - 1:
    raise ValueError(f"relative_shift needs Nq + Nk - 1 = {nq + nk - 1} columns, got {width}.")
  if nq == 1:
    return x[..., :nk]
  xf = x.reshape(*lead, nq * width)
  return xf[..., nq - 1: nq - 1 + nq * (width - 1)].reshape(*lead, nq, width - 1)[..., :nk]


def txl_position_logits_grid(qw, nk: int, w_r, *, offset: float = 0.0, base: float = 10000.0,
                             block: int = 32) -> jax.Array:
  """:func:`txl_position_logits` for positions on a unit grid (p_i = offset + i, p_j = j): the same maths,
  computed the Transformer-XL way, in about the cost of Q K^T.

  The projected sinusoid table W_R r_o over the offsets o = p_i - p_j is built once per call (batch
  independent). Query rows go in blocks of ``block``; block n is scored against the Bq + Nk - 1 table rows its
  offsets reach (one batched matmul, O(Nq (Bq + Nk) d_head)), then :func:`relative_shift` puts each score in
  place. Returns [B, H, Nq, Nk] (float32).
  """
  b, nq, h, d = qw.shape
  bq = max(1, min(int(block), nq))
  nb = -(-nq // bq)
  nqp = nb * bq
  if nqp != nq:
    qw = jnp.pad(qw, ((0, 0), (0, nqp - nq), (0, 0), (0, 0)))
  lb = bq + nk - 1
  offs = offset + (nqp - 1) - jnp.arange(nqp + nk - 1, dtype=jnp.float32)       # descending i - j
  r = sinusoidal(offs, w_r.shape[0], base, "interleaved")                        # [L, R]
  proj = jnp.einsum("lr,rhd->hld", r, w_r.astype(jnp.float32))                   # [H, L, D]
  starts = nqp - bq - bq * np.arange(nb)                                         # block n: rows starts[n] + [0, lb)
  pb = jnp.take(proj, jnp.asarray(starts[:, None] + np.arange(lb)[None, :]), axis=1)   # [H, nb, lb, D]
  qb = qw.reshape(b, nb, bq, h, d).transpose(3, 1, 0, 2, 4).reshape(h, nb, b * bq, d)
  x = jnp.einsum("hnmd,hnld->hnml", qb, pb.astype(qw.dtype), preferred_element_type=jnp.float32)
  y = relative_shift(x.reshape(h, nb, b, bq, lb), nk)                            # [H, nb, B, bq, Nk]
  return y.transpose(2, 0, 1, 3, 4).reshape(b, h, nqp, nk)[:, :, :nq]


def grid_offset(q_positions, k_positions, nq: int, nk: int) -> float | None:
  """q_start - k_start when both position sets are concrete [N] runs with unit step, else None."""
  out = []
  for p, n in ((q_positions, nq), (k_positions, nk)):
    a = _concrete(p)
    if a is None or a.ndim != 1 or a.shape[0] != n or not np.all(np.diff(a) == 1):
      return None
    out.append(float(a[0]) if n else 0.0)
  return out[0] - out[1]


def txl_position_logits_from_offsets(qw, offsets_qk, w_r, *, base: float = 10000.0,
                                     relative_index_bug: bool = False,
                                     table_len: int | None = None) -> jax.Array:
  """Same as :func:`txl_position_logits` from an explicit offset matrix o_ij = i - j, [(B), Nq, Nk].

  Materializes [.., Nq, Nk, R]; use it for offsets that come from no position set (the 9444 "distance"
  variant) or for the reference-code indexing bug. With ``relative_index_bug=True`` the clamped table is
  indexed as in the reference code, with j - i = -o_ij (``compute_attention_with_noisy_relative_encodings``:
  row clip((j - i) + L, 0, L-1)), so keys at and right of the query collapse, as released.
  """
  table_offsets = -offsets_qk if relative_index_bug else offsets_qk
  r = relative_sinusoid(table_offsets, w_r.shape[0], base=base, relative_index_bug=relative_index_bug,
                        table_len=table_len)                                    # [(B),Nq,Nk,R]
  proj = jnp.einsum("...qkr,rhd->...hqkd", r, w_r.astype(jnp.float32))
  if proj.ndim == 4:
    proj = proj[None]
  return jnp.einsum("bqhd,bhqkd->bhqk", qw.astype(jnp.float32), proj)


# --------------------------------------------------------------------------- Shaw / URPE
def clipped_index(rel, max_distance: int) -> jax.Array:
  """clip(rel, -K, K) + K in [0, 2K] for integer offsets."""
  return jnp.clip(jnp.asarray(rel), -max_distance, max_distance).astype(jnp.int32) + max_distance


def toeplitz_gate(rel_ij, gates, max_distance: int) -> jax.Array:
  """URPE gate C[h, i, j] = g_h[clip(i-j, -K, K) + K] from offsets i - j [(B), Nq, Nk]; -> [(B), H, Nq, Nk]."""
  idx = clipped_index(rel_ij, max_distance)        # [(B),Nq,Nk]
  c = jnp.take(gates, idx, axis=-1)                # gates [H, 2K+1] -> [H, (B), Nq, Nk]
  return jnp.moveaxis(c, 0, -3)
