"""The main job of `make run`: a quick tour of every article, each article's `quick` variant in turn.

Runs `configs/demo.py:quick` (the foundation) and then the `quick` variant of each article config that
exists, each into `<workdir>/<config>/`, and prints one combined published-vs-measured table (the tables of
each part are in its own `results.md`).

Command: python -m experiments.run --config=configs/tour.py:main --workdir=workdirs/tour
Time: about 1 minute per article on the 2-core CPU (about 10 minutes in all); a few minutes on a GPU.
"""
import ml_collections

from configs import common

VARIANTS = {
    "main": "every article's `quick` variant (make run)",
    "smoke": "every article's `smoke` variant (seconds each)",
}
REPRODUCE = []

# Order of the tour: the foundation, then the articles in the order of the mission table.
PARTS = ("demo", "perturb_max", "exact", "relpos_probe", "hubness", "geodesic", "amos",
         "position_robustness", "cosent")


def get_config(variant: str = "main") -> ml_collections.ConfigDict:
  cfg = common.base_config("tour", variant, VARIANTS)
  cfg.parts = ",".join(PARTS)
  cfg.part_variant = {"main": "quick", "smoke": "smoke"}[variant]
  cfg.keep_going = True
  return cfg
