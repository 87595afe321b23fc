"""kexue 9105: a theoretical defect of relative position encodings (the zeros -> positions probe).

Reproduces (spec 03): (P1) the probe "input n zeros, output positions 1..n" for every position encoding x
attention normalizer x mask the article discusses: softmax with any logit-only relative PE (RoPE, T5, ALiBi,
Transformer-XL) or NoPE sits at exactly CE = ln n, accuracy 1/n (a theorem, not a plateau), while absolute PEs,
Shaw's value term, URPE, non-row-stochastic normalizers (exp, l2, swish-l2, relu^2/n) and [CLS]/[SEP]
boundary tokens escape it; (P2) the article's l2-vs-softmax masked-LM comparison (standard attention with
default / shrunk W_V, W_O init, GAU). Published results are qualitative only (no numbers, sizes or data):
"fails" / "passes" verdicts, and "l2 slightly worse for standard attention after shrinking the init,
slightly better for GAU".

Command: ``python -m experiments.run --config=configs/relpos_probe.py:<variant> --workdir=results/relpos_probe/<variant>``

Variants and time (2-core CPU shared with other jobs / one GPU):
  smoke        2 probe rows at n=8, 1 tiny MLM arm: ~15 s CPU (idle).
  quick        8 headline probe rows at n=32, 3 seeds: measured 42 s inside `make run` on a fresh clone (2026-12-06).
  table        the full probe grid: 25 rows x n in {8, 32, 128} x 3 seeds (one population per row and n):
               measured 2,365 s (39 min) on the 2-core CPU at load ~10-12 from other jobs; ~3 min GPU.
  table_gpu    same grid, 5 seeds, 3000 steps: GPU.
  pretrain     MLM, 5 arms, 2 layers d=64, seq 64, 1500 steps, 3 seeds (one population per arm): measured
               813 s (14 min) on the 2-core CPU at load ~5-10 from other jobs.
  pretrain_gpu MLM, 4 layers d=128 (spec P2), seq 128, 15k steps, 3 seeds, all 7 arms: ~1 h GPU.
  bench        forward+backward throughput of every PE/normalizer vs plain softmax and flax MHDPA: ~2 min CPU.
  bench_gpu    the same at B=16, N=1024, d=512, H=8, bfloat16.
"""
from __future__ import annotations

import ml_collections

from configs import common

VARIANTS = {
    "smoke": "seconds; end-to-end check used by the tests (2 probe rows, n=8; 1 tiny MLM arm)",
    "quick": "~45 s CPU: headline probe rows at n=32, 3 seeds (softmax+RoPE at ln n vs l2/exp/abs/[CLS] passing)",
    "table": "the full probe grid (PE x normalizer x mask), n in {8,32,128}, 3 seeds; 39 min CPU (measured under load)",
    "table_gpu": "full probe grid, 5 seeds, 3000 steps (GPU)",
    "pretrain": "l2 vs softmax char-level MLM on tiny-shakespeare, CPU size, 3 seeds (14 min measured under load)",
    "pretrain_gpu": "l2 vs softmax MLM at spec size (4 layers, d=128, 15k steps, 3 seeds) on a GPU",
    "bench": "attention fwd+bwd throughput of each PE/normalizer vs plain softmax and flax MHDPA (CPU)",
    "bench_gpu": "the benchmark at GPU size (bfloat16)",
}
REPRODUCE = ["table", "pretrain", "bench"]
REPRODUCE_GPU = ["table_gpu", "pretrain_gpu", "bench_gpu"]   # make reproduce-gpu (not yet run: no GPU lent)

QUICK_ROWS = ["none_softmax_bi", "rope_softmax_bi", "abs_sin_softmax_bi", "rope_l2_bi", "rope_exp_bi",
              "alibi_sym_l2_bi", "rope_softmax_bi_clssep", "rope_softmax_causal"]
BENCH_ENTRIES = ["none:softmax", "rope:softmax", "t5_bias:softmax", "alibi_sym:softmax", "alibi_asym:softmax",
                 "transformer_xl:softmax", "shaw:softmax", "rope+urpe:softmax", "none:exp", "none:l2",
                 "none:swish_l2", "none:relu2_over_n", "rope:l2"]


def get_config(variant: str = "smoke") -> ml_collections.ConfigDict:
  cfg = common.base_config("relpos_probe", variant, VARIANTS)
  cfg.mesh = common.mesh_config()   # the MLM pretraining mesh (the probe is one full batch of 1: one device)
  cfg.parts = ("probe",)

  p = cfg.probe = ml_collections.ConfigDict()
  p.rows = ("all",)                 # names from experiments/relpos_probe.py PROBE_ROWS, or ["all"]
  p.ns = (8, 32, 128)
  p.seeds = (0, 1, 2)               # one population per (row, n); run s starts from fold_in(key(seed), s)
  p.steps = 1500
  p.lr = 1e-3
  p.num_layers = 2
  p.d_model = 64
  p.num_heads = 4
  p.d_ff = 256
  p.post_ln = True
  p.urpe_max_distance = 16
  p.shaw_max_distance = 16
  p.tie_tol = 1e-3

  m = cfg.pretrain = ml_collections.ConfigDict()
  m.arms = ("std_softmax", "std_l2", "std_l2_shrunk", "gau_softmax", "gau_l2")
  m.pe = "rope"
  m.num_layers = 2
  m.d_model = 64
  m.num_heads = 4
  m.gau_key_dim = 32
  m.seq_len = 64
  m.batch_size = 32
  m.steps = 1500
  m.eval_every = 150
  m.eval_batches = 8
  m.lr = 2e-3
  m.shrink_factor = 0.0            # <= 0: seq_len ** -0.25 (spec 03 §3.8 default)
  m.seeds = (0, 1, 2)

  b = cfg.bench = ml_collections.ConfigDict()
  b.entries = tuple(BENCH_ENTRIES)
  b.batch_size = 8
  b.seq_len = 256
  b.d_model = 256
  b.num_heads = 4
  b.dtype = "float32"
  b.iters = 20

  if variant == "smoke":
    p.rows = ("rope_softmax_bi", "rope_l2_bi")
    p.ns = (8,)
    p.seeds = (0,)
    p.steps = 150
    p.lr = 3e-3
    p.num_layers = 1
    p.d_model = 32
    p.d_ff = 64
    cfg.parts = ("probe", "pretrain")
    m.arms = ("std_softmax",)
    m.num_layers = 1
    m.d_model = 32
    m.gau_key_dim = 16
    m.seq_len = 16
    m.batch_size = 8
    m.steps = 4
    m.eval_every = 2
    m.eval_batches = 1
    m.seeds = (0,)
  elif variant == "quick":
    p.rows = tuple(QUICK_ROWS)
    p.ns = (32,)
    p.steps = 800
  elif variant == "table":
    pass
  elif variant == "table_gpu":
    p.seeds = (0, 1, 2, 3, 4)
    p.steps = 3000
  elif variant == "pretrain":
    cfg.parts = ("pretrain",)
  elif variant == "pretrain_gpu":
    cfg.parts = ("pretrain",)
    m.arms = ("std_softmax", "std_l2", "std_l2_shrunk", "std_softmax_shrunk", "gau_softmax", "gau_l2",
              "gau_relu2")
    m.num_layers = 4
    m.d_model = 128
    m.num_heads = 8
    m.gau_key_dim = 128
    m.seq_len = 128
    m.batch_size = 64
    m.steps = 15000
    m.eval_every = 500
    m.eval_batches = 32
    m.lr = 1e-3
    m.seeds = (0, 1, 2)
  elif variant == "bench":
    cfg.parts = ("bench",)
  elif variant == "bench_gpu":
    cfg.parts = ("bench",)
    b.batch_size = 16
    b.seq_len = 1024
    b.d_model = 512
    b.num_heads = 8
    b.dtype = "bfloat16"
    b.iters = 30
  return cfg
