"""The probe grid (PE x normalizer x mask) and the MLM arms of kexue 9105, and the models they build."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from research.nn import attention as attn_lib
from research.nn import transformer as tfm
from research.tasks import probe as probe_lib


class ProbeRow(NamedTuple):
  pe: str
  normalizer: str
  causal: bool
  boundary: str          # "none" | "cls_sep" | "bos"
  urpe: bool
  expected: str          # "fails" (theorem: CE = ln n, acc 1/n) | "capped" (acc <= 1/2) | "passes" (100%)


def _name(pe, nz, causal, boundary, urpe) -> str:
  mask = ("causal" if causal else "bi") + {"none": "", "cls_sep": "_clssep", "bos": "_bos"}[boundary]
  return f"{pe}{'_urpe' if urpe else ''}_{nz}_{mask}"


def _rows() -> dict[str, ProbeRow]:
  spec = [(pe, "softmax", False, "none", False, "fails")
          for pe in ("none", "rope", "t5_bias", "alibi_sym", "alibi_asym", "transformer_xl")]
  spec += [("abs_sin", "softmax", False, "none", False, "passes"),
           ("abs_learned", "softmax", False, "none", False, "passes"),
           ("shaw", "softmax", False, "none", False, "passes"),
           ("rope", "softmax", False, "none", True, "passes")]
  spec += [("rope", nz, False, "none", False, "passes") for nz in ("exp", "l2", "swish_l2", "relu2_over_n")]
  spec += [("alibi_sym", "l2", False, "none", False, "capped"), ("alibi_sym", "exp", False, "none", False, "capped"),
           ("alibi_asym", "l2", False, "none", False, "passes"), ("alibi_asym", "exp", False, "none", False, "passes"),
           ("t5_bias", "l2", False, "none", False, "passes"),
           ("rope", "softmax", False, "cls_sep", False, "passes"), ("none", "softmax", False, "cls_sep", False, "fails"),
           ("rope", "softmax", True, "none", False, "fails"), ("none", "softmax", True, "bos", False, "passes"),
           ("rope", "softmax", True, "bos", False, "passes"), ("rope", "l2", True, "none", False, "passes")]
  return {_name(pe, nz, c, b, u): ProbeRow(pe, nz, c, b, u, e) for pe, nz, c, b, u, e in spec}


PROBE_ROWS: dict[str, ProbeRow] = _rows()

PUBLISHED = {
    "fails": "fails: CE = ln n, acc 1/n",
    "passes": "passes (100%)",
    "capped": "capped: acc <= 1/2 (even n)",
}
SOURCE = {  # who says so
    "rope_softmax_bi": "article (RoPE named)", "rope_exp_bi": "article", "rope_l2_bi": "article",
    "rope_softmax_bi_clssep": "article", "rope_swish_l2_bi": "article ('some feasibility')",
    "rope_relu2_over_n_bi": "article (GAU cited)", "shaw_softmax_bi": "article (stated, not run)",
    "abs_sin_softmax_bi": "article (stated)", "abs_learned_softmax_bi": "article (stated)",
    "rope_urpe_softmax_bi": "Luo et al. (URPE)",
}


def source(row: str) -> str:
  r = PROBE_ROWS[row]
  return SOURCE.get(row, "spec derivation" if r.expected != "fails" or r.causal else "article (theory)")


def probe_rows(names) -> list[str]:
  rows = list(PROBE_ROWS) if list(names) == ["all"] else list(names)
  unknown = [r for r in rows if r not in PROBE_ROWS]
  if unknown:
    raise ValueError(f"Unknown probe row(s) {unknown}; valid: {list(PROBE_ROWS)} or ['all']")
  return rows


def probe_model(pc, row: str, n: int) -> tfm.Transformer:
  r = PROBE_ROWS[row]
  acfg = attn_lib.AttentionConfig(pe=r.pe, normalizer=r.normalizer, causal=r.causal,
                                  urpe_max_distance=pc.urpe_max_distance if r.urpe else None,
                                  shaw_max_distance=pc.shaw_max_distance)
  return tfm.Transformer(vocab_size=probe_lib.VOCAB_SIZE, num_outputs=n, num_layers=pc.num_layers,
                         d_model=pc.d_model, num_heads=pc.num_heads, d_ff=pc.d_ff, attention=acfg,
                         post_ln=pc.post_ln, max_len=n + 2)


# name -> (block, normalizer, shrink the W_V / W_O init)
PRETRAIN_ARMS = {
    "std_softmax": ("standard", "softmax", False),
    "std_l2": ("standard", "l2", False),
    "std_l2_shrunk": ("standard", "l2", True),
    "std_softmax_shrunk": ("standard", "softmax", True),
    "gau_softmax": ("gau", "softmax", False),
    "gau_l2": ("gau", "l2", False),
    "gau_relu2": ("gau", "relu2_over_n", False),
}


def shrink_factor(pc) -> float:
  """The W_V, W_O init scale of the shrunk arms: the config's, or seq_len^-1/4 (spec 03 §3.8)."""
  return float(pc.shrink_factor) if pc.shrink_factor > 0 else pc.seq_len ** -0.25


def pretrain_model(pc, arm: str, vocab: int) -> tfm.Transformer:
  if arm not in PRETRAIN_ARMS:
    raise ValueError(f"Unknown pretrain arm {arm!r}; valid: {list(PRETRAIN_ARMS)}")
  block, nz, shrink = PRETRAIN_ARMS[arm]
  s = shrink_factor(pc) if shrink else 1.0
  acfg = attn_lib.AttentionConfig(pe=pc.pe, normalizer=nz, v_init_scale=s, o_init_scale=s)
  return tfm.Transformer(vocab_size=vocab + 1, num_outputs=vocab, num_layers=pc.num_layers,
                         d_model=pc.d_model, num_heads=pc.num_heads, d_ff=4 * pc.d_model, attention=acfg,
                         block=block, post_ln=True, activation="gelu", head="mlm", gau_key_dim=pc.gau_key_dim,
                         gau_expansion=2)


def char_corpus(data_dir=None) -> tuple[np.ndarray, np.ndarray, int]:
  """tiny-shakespeare as character ids: (first 90% train, last 10% val, vocabulary size)."""
  from research import data
  text = data.load_tinyshakespeare(data_dir)
  chars = sorted(set(text))
  ids = np.frombuffer(text.encode("latin-1", "replace"), np.uint8)
  lut = np.zeros(256, np.int32)
  for i, c in enumerate(chars):
    lut[ord(c)] = i
  arr = lut[ids]
  split = int(0.9 * len(arr))
  return arr[:split], arr[split:], len(chars)
