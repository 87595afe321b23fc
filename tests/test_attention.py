"""Tests for research.nn.position / attention / transformer (kexue 9105, shared with 9444)."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.nn import attention as A
from research.nn import position as P
from research.nn import transformer as T

RELATIVE = ["none", "rope", "t5_bias", "alibi_sym", "alibi_asym", "transformer_xl"]
KEY = jax.random.key(0)


def _mha(pe="none", nz="softmax", causal=False, h=2, x=None, **kw):
  cfg = A.AttentionConfig(pe=pe, normalizer=nz, causal=causal, **kw)
  m = A.MultiHeadAttention(h, cfg)
  x = jnp.ones((1, 6, 16)) if x is None else x
  return m, m.init(KEY, x), x


def _spread(y):
  return float(jnp.max(jnp.abs(y - y[:, :1])))


# ----------------------------------------------------------------------------- the defect and its escapes
@pytest.mark.parametrize("causal", [False, True])
def test_softmax_with_any_relative_pe_gives_identical_rows(causal):
  for pe in RELATIVE:
    m, p, x = _mha(pe, "softmax", causal)
    p = jax.tree.map(lambda a: a + 0.3 * jax.random.normal(KEY, a.shape), p)  # not just the init
    assert _spread(m.apply(p, x)) < 1e-5, pe


def test_non_row_stochastic_normalizers_shaw_and_urpe_break_the_symmetry():
  for nz in ("exp", "l2", "swish_l2", "relu2_over_n"):
    m, p, x = _mha("rope", nz)
    assert _spread(m.apply(p, x)) > 1e-3, nz
  m, p, x = _mha("shaw", "softmax")
  assert _spread(m.apply(p, x)) > 1e-3
  m, p, x = _mha("rope", "softmax", urpe_max_distance=2)
  assert _spread(m.apply(p, x)) < 1e-5               # gate initialised to 1 = plain attention
  p = jax.tree.map(lambda a: a, p)
  p["params"]["core"]["urpe_gate"] = jnp.linspace(0.5, 1.5, 10).reshape(2, 5)
  assert _spread(m.apply(p, x)) > 1e-3


def test_symmetric_bias_mirror_property_and_asymmetric_breaks_it():
  for nz in ("l2", "exp", "softmax"):
    m, p, x = _mha("alibi_sym", nz)
    y = m.apply(p, x)[0]
    np.testing.assert_allclose(y, y[::-1], atol=1e-5)
  m, p, x = _mha("alibi_asym", "l2")
  y = m.apply(p, x)[0]
  assert float(jnp.max(jnp.abs(y - y[::-1]))) > 1e-3


def test_probe_transformer_at_init_identical_rows_and_boundary_tokens_break_it():
  for causal, pe in ((False, "rope"), (True, "t5_bias")):
    model = T.Transformer(3, 8, num_layers=2, d_model=16, num_heads=2,
                          attention=A.AttentionConfig(pe=pe, causal=causal))
    tok = jnp.zeros((1, 8), jnp.int32)
    logits = model.apply(model.init(KEY, tok), tok)
    assert _spread(logits) < 1e-4
  tok = jnp.asarray([[1] + [0] * 8 + [2]], jnp.int32)
  model = T.Transformer(3, 8, num_layers=2, d_model=16, num_heads=2, attention=A.AttentionConfig(pe="rope"))
  logits = model.apply(model.init(KEY, tok), tok)[:, 1:-1]
  assert _spread(logits) > 1e-3


# ----------------------------------------------------------------------------- normalizers
def test_normalizers_match_their_definitions():
  b = jax.random.normal(KEY, (3, 7)) * 2
  mask = jnp.arange(7)[None, :] < jnp.asarray([[7], [4], [1]])
  e = np.where(mask, np.exp(np.asarray(b, np.float64)), 0)
  np.testing.assert_allclose(A.normalize(b, mask, "softmax"), e / e.sum(-1, keepdims=True), rtol=1e-5)
  np.testing.assert_allclose(A.normalize(b, mask, "l2"), e / np.sqrt((e ** 2).sum(-1, keepdims=True)),
                             rtol=1e-5)
  np.testing.assert_allclose(A.normalize(b, mask, "exp"), np.where(mask, np.exp(20 * np.tanh(b / 20)), 0),
                             rtol=1e-4)
  np.testing.assert_allclose(A.normalize(b / 50, mask, "exp"), np.where(mask, np.exp(b / 50), 0), rtol=1e-4)
  s = np.where(mask, np.asarray(b) / (1 + np.exp(-np.asarray(b))), 0)
  np.testing.assert_allclose(A.normalize(b, mask, "swish_l2"), s / np.sqrt((s ** 2).sum(-1, keepdims=True) + 1e-6),
                             rtol=1e-4, atol=1e-6)
  r = np.where(mask, np.maximum(np.asarray(b), 0) ** 2, 0)
  np.testing.assert_allclose(A.normalize(b, mask, "relu2_over_n"), r / mask.sum(-1, keepdims=True), rtol=1e-5)
  np.testing.assert_allclose(A.normalize(b, mask, "relu2_over_n", relu2_n="length"), r / 7, rtol=1e-5)
  # l2 weight sums lie in [1, sqrt(|V_i|)]
  s_l2 = np.asarray(A.normalize(b, mask, "l2")).sum(-1)
  assert np.all(s_l2 >= 1 - 1e-6) and np.all(s_l2 <= np.sqrt(mask.sum(-1)) + 1e-6)


def test_stability_large_logits_and_fully_masked_rows():
  b = jnp.asarray([[1e4, 1e4 - 1.0, -1e4, 3.0], [0.0, 0.0, 0.0, 0.0]])
  mask = jnp.asarray([[True, True, True, True], [False, False, False, False]])
  for nz in A.NORMALIZERS:
    a = A.normalize(b, mask, nz)
    assert np.all(np.isfinite(a)), nz
    np.testing.assert_array_equal(a[1], 0.0)
    g = jax.grad(lambda x: jnp.sum(A.normalize(x, mask, nz) ** 2))(b)
    assert np.all(np.isfinite(g)), nz
  a = A.normalize(b, mask, "l2")
  np.testing.assert_allclose(a[0, :2], [1 / np.sqrt(1 + np.exp(-2.0)), np.exp(-1) / np.sqrt(1 + np.exp(-2.0))],
                             rtol=1e-5)
  assert float(jnp.max(A.normalize(jnp.full((1, 3), 1e4), None, "exp"))) <= np.exp(20.0) * 1.0001
  # module: a fully masked row gives a zero output, not NaN
  m, p, x = _mha("rope", "l2")
  mask = jnp.ones((1, 1, 6, 6), bool).at[:, :, 2, :].set(False)
  out, w = m.apply(p, x, mask=mask, return_weights=True)
  assert np.all(np.isfinite(out)) and np.all(np.asarray(w)[0, :, 2] == 0)


def test_causal_weights_and_padding_equals_unpadded():
  x = jax.random.normal(KEY, (2, 6, 16))
  m, p, _ = _mha("rope", "l2", causal=True, x=x)
  _, w = m.apply(p, x, return_weights=True)
  assert float(jnp.max(jnp.abs(jnp.triu(w, 1)))) == 0.0
  for pe, nz in (("alibi_asym", "relu2_over_n"), ("t5_bias", "l2"), ("shaw", "softmax"),
                 ("transformer_xl", "softmax")):
    m, p, _ = _mha(pe, nz, x=x)
    pad = jnp.asarray([[True] * 4 + [False] * 2] * 2)
    y = m.apply(p, x, padding_mask=pad)
    y4 = m.apply(p, x[:, :4])
    np.testing.assert_allclose(y[:, :4], y4, atol=1e-5, err_msg=f"{pe}/{nz}")


# ----------------------------------------------------------------------------- oracles
def test_plain_attention_equals_flax_mhdpa():
  x = jax.random.normal(KEY, (2, 5, 16))
  ref = nn.MultiHeadDotProductAttention(num_heads=4, qkv_features=16)
  rp = ref.init(KEY, x)
  m, p, _ = _mha("none", "softmax", h=4, x=x)
  mine = {"params": {"query": rp["params"]["query"], "key": rp["params"]["key"],
                     "value": rp["params"]["value"], "out": rp["params"]["out"]}}
  np.testing.assert_allclose(m.apply(mine, x), ref.apply(rp, x), atol=1e-5)
  cm = nn.make_causal_mask(jnp.ones((2, 5)))
  m2 = A.MultiHeadAttention(4, A.AttentionConfig(causal=True))
  np.testing.assert_allclose(m2.apply(mine, x), ref.apply(rp, x, mask=cm), atol=1e-5)


def test_rope_relative_invariance_with_float_positions():
  q = jax.random.normal(KEY, (1, 5, 2, 8))
  k = jax.random.normal(jax.random.key(1), (1, 5, 2, 8))
  pos = jnp.asarray([0.0, 0.7, 3.1, 4.0, 9.5])
  for layout in ("interleaved", "halves"):
    def logits(p):
      return jnp.einsum("bqhd,bkhd->bhqk", P.apply_rope(q, p, layout=layout), P.apply_rope(k, p, layout=layout))
    np.testing.assert_allclose(logits(pos), logits(pos + 123.25), atol=2e-4)
    np.testing.assert_allclose(logits(jnp.zeros(5)), jnp.einsum("bqhd,bkhd->bhqk", q, k), atol=1e-5)
  # batched positions [B, N]
  qb = jnp.concatenate([q, q])
  y = P.apply_rope(qb, jnp.stack([pos, pos + 1]))
  np.testing.assert_allclose(y[0], P.apply_rope(q, pos)[0], atol=1e-6)


def test_transformer_xl_factorized_equals_explicit_offsets_and_index_bug():
  qw = jax.random.normal(KEY, (2, 4, 2, 3))
  w_r = jax.random.normal(jax.random.key(1), (8, 2, 3))
  pq = jnp.asarray([0.0, 1.5, 2.0, 7.25])
  pk = jnp.asarray([0.5, 1.0, 4.0, 5.0])
  fact = P.txl_position_logits(qw, pq, pk, w_r)
  expl = P.txl_position_logits_from_offsets(qw, pq[:, None] - pk[None, :], w_r)
  np.testing.assert_allclose(fact, expl, atol=1e-4)
  offs = jnp.arange(-5, 5)
  fixed = P.relative_sinusoid(offs, 8)
  assert len({tuple(np.round(r, 5)) for r in np.asarray(fixed)}) == 10
  bug = P.relative_sinusoid(offs, 8, relative_index_bug=True, table_len=16)
  np.testing.assert_allclose(bug[4:], jnp.broadcast_to(P.sinusoidal(15, 8), (6, 8)), atol=1e-6)  # -1, 0, 1..
  np.testing.assert_allclose(bug[0], P.sinusoidal(11, 8), atol=1e-6)                            # -5 -> row 11


def test_transformer_xl_grid_path_equals_factorized_values_and_grads(monkeypatch):
  """Unit-grid positions take the offset-table + relative-shift path; it must equal the product-to-sum one."""
  w_r = jax.random.normal(jax.random.key(1), (8, 3, 4))
  grid = jax.jit(P.txl_position_logits_grid, static_argnames=("nk", "offset", "block"))
  fact = jax.jit(P.txl_position_logits)
  for nq, nk, off, block in ((7, 5, 0.0, 3), (6, 9, -1.5, 4)):
    qw = jax.random.normal(KEY, (2, nq, 3, 4))
    pq, pk = off + jnp.arange(nq, dtype=jnp.float32), jnp.arange(nk, dtype=jnp.float32)
    np.testing.assert_allclose(grid(qw, nk=nk, w_r=w_r, offset=off, block=block), fact(qw, pq, pk, w_r),
                               atol=2e-5, err_msg=f"{nq},{nk},{off}")
  assert P.grid_offset(jnp.arange(3) + 4, np.arange(5), 3, 5) == 4.0
  assert P.grid_offset(jnp.asarray([0, 2, 3]), np.arange(3), 3, 3) is None
  calls = []
  grid_fn = P.txl_position_logits_grid
  monkeypatch.setattr(P, "txl_position_logits_grid", lambda *a, **k: calls.append(1) or grid_fn(*a, **k))
  x = jax.random.normal(KEY, (2, 9, 16))
  m = A.MultiHeadAttention(2, A.AttentionConfig(pe="transformer_xl"))
  p = jax.jit(m.init)(KEY, x)
  p = jax.tree.map(lambda a: a + 0.3 * jax.random.normal(KEY, a.shape), p)
  loss = lambda p, *pos: jnp.sum(m.apply(p, x, *pos) ** 2)
  traced = jax.jit(jax.value_and_grad(loss))                 # traced positions: product-to-sum path
  for shift in (0, 3):                                       # default / concrete shifted grid: grid path
    pos = (np.arange(9) + shift,) if shift else ()
    n_calls = len(calls)
    (l1, g1), (l2, g2) = jax.jit(jax.value_and_grad(lambda p: loss(p, *pos)))(p), traced(p, jnp.arange(9) + shift)
    assert len(calls) == n_calls + 1
    np.testing.assert_allclose(l1, l2, rtol=1e-5)
    g1, g2 = (np.concatenate([np.ravel(a) for a in jax.tree.leaves(g)]) for g in (g1, g2))
    np.testing.assert_allclose(g1, g2, rtol=1e-4, atol=1e-5 * np.max(np.abs(g2)))


def test_alibi_t5_urpe_and_sinusoid_definitions():
  np.testing.assert_allclose(P.alibi_slopes(8), 2.0 ** -np.arange(1, 9), rtol=1e-6)
  assert P.alibi_slopes(6).shape == (6,)
  rel = P.relative_offsets(jnp.arange(4), jnp.arange(4))           # j - i
  i, j = np.meshgrid(np.arange(4), np.arange(4), indexing="ij")
  np.testing.assert_allclose(P.alibi_bias(rel, [0.5])[0], -0.5 * np.abs(i - j))
  np.testing.assert_allclose(P.alibi_bias(rel, [0.5], asymmetric=True)[0], -0.5 * (np.abs(i - j) - 0.5 * (j < i)))
  b = np.asarray(P.t5_bucket(jnp.arange(-300, 301)))
  assert b.min() >= 0 and b.max() < 32
  for d in range(8):                     # exact buckets: j<i -> d, j>i -> 16 + d
    assert b[300 - d] == d and (d == 0 or b[300 + d] == 16 + d)
  assert np.all(np.diff(b[:300]) <= 0) and np.all(np.diff(b[301:]) >= 0) and b[0] == 15 and b[-1] == 31
  bc = np.asarray(P.t5_bucket(jnp.arange(-40, 41), bidirectional=False))
  assert np.all(bc[40:] == 0) and bc[39] == 1
  g = jnp.arange(10.0).reshape(2, 5)
  c = np.asarray(P.toeplitz_gate(-P.relative_offsets(jnp.arange(6), jnp.arange(6)), g, 2))
  ii, jj = np.meshgrid(np.arange(6), np.arange(6), indexing="ij")
  np.testing.assert_array_equal(c, np.asarray(g)[:, np.clip(ii - jj, -2, 2) + 2])   # Toeplitz, clipped
  s = P.sinusoidal(jnp.asarray([3.0]), 6)[0]
  w = 10000.0 ** (-np.arange(0, 6, 2) / 6)
  np.testing.assert_allclose(s[0::2], np.sin(3 * w), rtol=1e-5)
  np.testing.assert_allclose(P.sinusoidal(jnp.asarray([3.0]), 6, layout="halves")[0][3:], np.cos(3 * w), rtol=1e-5)


def test_logn_scaling_and_relative_offsets_override():
  x = jax.random.normal(KEY, (1, 6, 16))
  m0, p, _ = _mha("none", "softmax", x=x)
  _, w0 = m0.apply(p, x, return_weights=True)
  m1 = A.MultiHeadAttention(2, A.AttentionConfig(logn_train_len=6))
  np.testing.assert_allclose(m1.apply(p, x, return_weights=True)[1], w0, atol=1e-6)   # n = m: factor 1
  m2 = A.MultiHeadAttention(2, A.AttentionConfig(logn_train_len=3))
  _, w2 = m2.apply(p, x, return_weights=True)
  lg = jnp.log(jnp.maximum(w0, 1e-30))          # softmax(f * b) from softmax(b)
  np.testing.assert_allclose(w2, jax.nn.softmax(lg * np.log(6) / np.log(3), axis=-1), atol=1e-5)
  m3 = A.MultiHeadAttention(2, A.AttentionConfig(logn_train_len=3, logn_mode="visible", causal=True))
  assert np.all(np.isfinite(m3.apply(p, x)))
  ma, pa, _ = _mha("alibi_asym", "l2", x=x)
  pos = jnp.asarray([0, 2, 3, 7, 8, 20])
  np.testing.assert_allclose(ma.apply(pa, x, pos), ma.apply(pa, x, relative_offsets=pos[None] - pos[:, None]),
                             atol=1e-6)


def test_bfloat16_close_to_float32():
  x = jax.random.normal(KEY, (1, 6, 16))
  for pe, nz in (("rope", "softmax"), ("alibi_asym", "l2"), ("transformer_xl", "softmax")):
    m, p, _ = _mha(pe, nz, x=x)
    mb = A.MultiHeadAttention(2, A.AttentionConfig(pe=pe, normalizer=nz, dtype=jnp.bfloat16))
    yb = mb.apply(p, x.astype(jnp.bfloat16))
    assert yb.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(yb, np.float32), m.apply(p, x), atol=6e-2, rtol=6e-2)


def test_transformer_variants_run():
  tok = jnp.zeros((2, 5), jnp.int32)
  for kw in (dict(post_ln=False, head="mlm"), dict(block="gau", gau_key_dim=8)):
    model = T.Transformer(4, 4, num_layers=1, d_model=16, num_heads=2, **kw)
    y = model.apply(model.init(KEY, tok), tok)
    assert y.shape == (2, 5, 4) and np.all(np.isfinite(y))
  model = T.Transformer(4, 4, num_layers=2, d_model=16, num_heads=2, attention=A.AttentionConfig(pe="rope"))
  params = model.init(KEY, tok)
  lp = jnp.asarray([[0.0, 1.5, 2.0, 9.0, 11.0], [0.0, 3.0, 4.0, 5.0, 6.5]])
  y = model.apply(params, tok, layer_positions=lp)
  assert np.all(np.isfinite(y))
  ce, acc = T.masked_cross_entropy(jnp.zeros((1, 3, 4)), jnp.asarray([[0, 1, 2]]))
  np.testing.assert_allclose(ce, np.log(4), rtol=1e-6)


# ----------------------------------------------------------------------------- bad input
def test_bad_input_errors():
  with pytest.raises(ValueError, match="Unknown position encoding"):
    A.AttentionConfig(pe="rotary")
  with pytest.raises(ValueError, match="Unknown attention normalizer"):
    A.AttentionConfig(normalizer="sparsemax")
  x = jnp.ones((1, 4, 6))
  with pytest.raises(ValueError, match="even head dimension"):
    A.MultiHeadAttention(2, A.AttentionConfig(pe="rope")).init(KEY, x)
  m, p, x = _mha()
  with pytest.raises(ValueError, match="does not broadcast"):
    m.apply(p, x, mask=jnp.ones((1, 1, 5, 6), bool))
  with pytest.raises(TypeError, match="boolean"):
    m.apply(p, x, mask=jnp.ones((1, 1, 6, 6)))
  with pytest.raises(ValueError, match="shape"):
    m.apply(p, x, positions=jnp.arange(5))
  with pytest.raises(TypeError, match="integer positions"):
    P.LearnedPositions(16, 4).init(KEY, jnp.arange(4.0))
  with pytest.raises(ValueError, match="max_len"):
    P.LearnedPositions(4, 4).init(KEY, jnp.arange(6))
  ms, ps, x = _mha("shaw")
  with pytest.raises(TypeError, match="integer positions"):
    ms.apply(ps, x, positions=jnp.arange(6.0) * 0.5)
  with pytest.raises(ValueError, match="relative_table_len"):
    A.AttentionConfig(pe="transformer_xl", relative_index_bug=True)
