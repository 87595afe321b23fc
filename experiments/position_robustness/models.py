"""The CHE encoder of spec 07 §3.7 and the position schemes of the arms (sampled per forward call)."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from research.nn import attention as attn_lib
from research.nn import position_sampling as ps
from research.nn import transformer as tf_lib
from research.tasks import che

PE_MAP = {"sin_cos": "abs_sin", "learned": "abs_learned", "rope": "rope", "alibi": "alibi_asym",
          "relative": "transformer_xl", "none": "none"}
LAYERWISE_PES = ("rope", "alibi", "relative")  # reference code: resampled in every layer
TRAIN_MODES = ("sequential", "random", "equal_mean")
TEST_MODES = ("sequential", "random", "grid")


def check_arms(arms, pe: str) -> None:
  """Raises on an arm whose train/test mode is unknown, or equal-mean (real) positions for a learned table."""
  for a in arms:
    if a.train not in TRAIN_MODES or a.test not in TEST_MODES:
      raise ValueError(f"arm {a.name!r}: train must be one of {TRAIN_MODES} and test one of {TEST_MODES}, got "
                       f"{a.train!r} / {a.test!r}")
    if pe == "learned" and a.train == "equal_mean":
      raise TypeError("equal-mean positions are real-valued and cannot index a learned table (pe='learned').")


def che_model(task: che.Task, pe: str, c, logn_train_len: int | None = None) -> tf_lib.Transformer:
  if pe not in PE_MAP:
    raise ValueError(f"unknown CHE PE {pe!r}; valid: {sorted(PE_MAP)}")
  att = attn_lib.AttentionConfig(pe=PE_MAP[pe], use_bias=False, logn_train_len=logn_train_len,
                                 dropout_rate=float(c.dropout), relative_table_len=int(c.max_len),
                                 relative_index_bug=bool(c.relative_index_bug) and pe == "relative")
  return tf_lib.Transformer(
      vocab_size=task.input_vocab + 2, num_outputs=task.output_vocab, num_layers=int(c.num_layers),
      d_model=int(c.d_model), num_heads=int(c.num_heads), d_ff=int(c.ffn_mult) * int(c.d_model), attention=att,
      post_ln=True, dropout_rate=float(c.dropout), activation="relu", max_len=int(c.max_len),
      abs_layout="halves", embed_scale=math.sqrt(int(c.d_model)))


def pe_dtype(pe: str):
  return jnp.int32 if pe == "learned" else jnp.float32


def per_layer(c, pe: str) -> bool:
  return bool(c.per_layer) and pe in LAYERWISE_PES


def onehot(task: che.Task, tokens):
  return jax.nn.one_hot(tokens, task.input_vocab + 2, dtype=jnp.float32)


def positions(mode: str, key, t: int, total, c, pe: str, grid_m: int):
  """Positions ``[1, t]`` (``[layers, 1, t]`` when resampled per layer) of one forward call; ``total`` (may
  be traced) is the number of real tokens, the slots past it are padding."""
  L = int(c.max_len)

  def one(k):
    if mode == "sequential":
      return jnp.arange(t, dtype=jnp.float32)[None]
    if mode == "random":
      return ps.rpe_random(k, t, L, (1,), length=total).astype(jnp.float32)
    if mode == "grid":
      return ps.rpe_grid(t, L, grid_m).astype(jnp.float32)[None]
    if mode == "equal_mean":
      return ps.equal_mean(k, t, "exponential", (1,), length=total)
    raise ValueError(f"unknown position mode {mode!r}")

  p = jax.vmap(one)(jax.random.split(key, int(c.num_layers))) if per_layer(c, pe) else one(key)
  return p.astype(pe_dtype(pe))


def select_positions(mode_id, modes, key, t: int, total, c, pe: str, grid_m: int):
  """Positions of the mode ``modes[mode_id]`` (``mode_id`` may be traced: a run's arm in a population)."""
  return jnp.stack([positions(m, key, t, total, c, pe, grid_m) for m in modes])[mode_id]


def apply(model, params, task, tokens, pos, padding_mask, c, pe: str, dropout_key=None):
  """Logits ``[B, T, classes]``; dropout only when ``dropout_key`` is given (training)."""
  train = dropout_key is not None and model.dropout_rate > 0
  kw = dict(padding_mask=padding_mask, deterministic=not train)
  if train:
    kw["rngs"] = {"dropout": dropout_key}
  if per_layer(c, pe):
    return model.apply(params, onehot(task, tokens), layer_positions=pos, **kw)
  return model.apply(params, onehot(task, tokens), positions=pos, **kw)


def init_params(model, task, key, total: int, pe: str):
  dummy = jnp.zeros((1, total), jnp.int32)
  return model.init(key, onehot(task, dummy), positions=jnp.arange(total, dtype=pe_dtype(pe))[None])
