"""Scaling past one device: memory of fully sharded parameters (FSDP) and multi-process step time.

Not an article reproduction: it measures the two ways ``research.train`` scales (issue 19).
  * Bytes per device of parameters + optimizer state for a BERT-base-shaped MLM model (12 x 768, vocab
    30522, 110M parameters; abstract shapes from ``jax.eval_shape``, no memory allocated), replicated vs
    sharded over ``fsdp_bytes`` devices by ``research.train.fsdp`` (largest divisible axis), with AdamW and
    with Amos (BERT eta and factored slot-shape rules). Expected: ~1/F of the replicated bytes.
  * Step time of the same jitted training step (``fit``'s: sharded batch, replicated or FSDP state) on a small
    BERT MLM for 1 process x 8 devices vs 2 processes x 4 devices on this machine, joined by
    ``jax.distributed`` + gloo. The two launches alternate (``research.benchmark.time_interleaved``), each one
    a ``python -m experiments.launch`` job running this config with ``role=step``, which times ``steps`` steps
    after ``warmup_steps`` and reports the median step time; reported as the ratio 2x4 / 1x8.

Command: ``python -m experiments.run --config=configs/scaling.py:bench --workdir=results/scaling/bench``
(``--config.mesh.fsdp=8`` runs the step-time arms with FSDP instead of replication).

Time on the shared 2-core CPU (load average 10-14 from other jobs while measured): smoke 60-65 s (one round of
two launches), bench 389 s (5 rounds; results/scaling/bench). On an idle machine expect about a third.
Measured there (bench): FSDP-8 / replicated bytes 0.125 (AdamW) and 0.126 (Amos); loss curves of the two
launch layouts equal to 2e-7; step time 2x4 / 1x8 = 6.6x (the cross-process gloo all-reduce over loopback
on two shared cores), and with ``--config.mesh.fsdp=8`` both layouts give the same losses too (smoke size).
"""
import ml_collections

from configs import common

VARIANTS = {
    "smoke": "seconds: BERT-base bytes table + one round of 1x8 vs 2x4 launches of a 1-layer BERT (tests)",
    "quick": "~1 min CPU: bytes table + 2 rounds of the step-time launches",
    "bench": "BERT-base bytes replicated vs FSDP-8 (AdamW, Amos) + step time 1x8 vs 2x4, 5 interleaved rounds",
}
REPRODUCE = ["bench"]


def get_config(variant: str = "smoke") -> ml_collections.ConfigDict:
  cfg = common.base_config("scaling", variant, VARIANTS)
  cfg.role = "driver"              # "step": one process of a step-time launch (set by the driver)
  cfg.mesh = common.mesh_config()  # step-time arms: fsdp 1 = replicated, F = FSDP over F devices
  # Bytes table: a BERT-base-shaped MLM model (Hugging Face bert-base-uncased sizes).
  cfg.bytes_model = ml_collections.ConfigDict(dict(vocab_size=30522, hidden_size=768, num_layers=12, num_heads=12,
                                                   intermediate_size=3072, max_position=512))
  cfg.fsdp_bytes = 8
  # Step time: a small BERT MLM, global batch x seq_len tokens, 3 predicted positions per sequence.
  small = {"smoke": (1, 64), "quick": (2, 128), "bench": (2, 128)}[variant]
  cfg.step_model = ml_collections.ConfigDict(dict(vocab_size=1024, hidden_size=small[1], num_layers=small[0],
                                                  num_heads=4, intermediate_size=4 * small[1], max_position=64))
  cfg.batch_size = 32
  cfg.seq_len = 64
  cfg.warmup_steps = {"smoke": 2, "quick": 3, "bench": 5}[variant]
  cfg.steps = {"smoke": 5, "quick": 10, "bench": 20}[variant]
  cfg.rounds = {"smoke": 1, "quick": 2, "bench": 5}[variant]
  cfg.learning_rate = 1e-3
  cfg.launch_timeout = 600         # seconds a step-time launch may take before it is stopped
  return cfg
