"""Demo: a Flax MLP on scikit-learn's digits through the full runner (sharded training, checkpoints, table).

Not an article reproduction: it exercises the foundation (data-parallel `research.train.fit` over every
device, orbax checkpoints with resume, metrics.jsonl, results.json/results.md) on data that needs no
download, and compares the test accuracy with scikit-learn's LogisticRegression measured in the same run
(the "published" column holds that anchor, since no article number applies).

Command: python -m experiments.run --config=configs/demo.py:quick --workdir=workdirs/demo
Time: smoke ~5 s, quick ~9 s on the 2-core CPU (quick measured 8.6 s idle, 2026-12-06, whole command);
negligible on a GPU.
"""
import ml_collections

from configs import common

VARIANTS = {
    "smoke": "seconds; the foundation end to end (used by the tests)",
    "quick": "~9 s on CPU: MLP on digits, 8-way data parallel, checkpointed",
    "bench": "training throughput (examples/s) of the jitted sharded step",
}
REPRODUCE = []


def get_config(variant: str = "smoke") -> ml_collections.ConfigDict:
  cfg = common.base_config("demo", variant, VARIANTS)
  cfg.mesh = common.mesh_config()   # --config.mesh.fsdp=8: parameters and Adam state sharded over 8 devices
  cfg.hidden = 128
  cfg.batch_size = 64
  cfg.learning_rate = 3e-3
  cfg.num_steps = {"smoke": 40, "quick": 600, "bench": 300}[variant]
  cfg.eval_every = {"smoke": 20, "quick": 200, "bench": 0}[variant]
  cfg.checkpoint_every = {"smoke": 20, "quick": 200, "bench": 0}[variant]
  cfg.accum_steps = 1
  cfg.test_fraction = 0.25
  return cfg
