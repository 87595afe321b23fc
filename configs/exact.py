"""Article 9098 (Su Jianlin, "How to train your accuracy?"): EXACT and smoothed-accuracy losses.

Reproduces, with the library in ``research/losses/exact.py`` (EXACT expected accuracy: Gauss-Hermite quadrature
on the shared Perturb-Max integral of 9085, and the paper's Genz sampling estimator with its coded gradient),
``research/losses/surrogates.py`` and ``research/optim/grad_normalizer.py``:

* ``toy`` -- the article's 3-point example {(-0.25,-1),(0,-1),(0.25,1)} with f(x) = x - b. Published (Su):
  CE optimum b = 0.7, hinge optimum b in [0.75, 1], perfect accuracy needs b in (0, 0.25). Also the learnable
  scale f(x) = k(x - b) (Su's objection: CE and hinge then find a correct b) and EXACT with trainable sigma.
* ``tabular`` -- the paper's Table 1 protocol on breast-cancer and wine (scikit-learn copies of the UCI files):
  linear model, SGD + momentum, per-epoch exponential LR to 1e-4, sigma/temperature schedule 10 -> 0.01,
  gradient normaliser (EXACT) or clipping (others), 20-trial random search on a validation split, 5 seeds.
  Published: breast-cancer sklearn 95.61, CE 95.61, hinge/sigmoid/Beta-Bernoulli/polynomial/PolyLoss 97.37,
  EXACT 96.49; wine 100.0 for all. The whole search is one jitted ``vmap`` over trials per method.
* ``fashion`` -- from-scratch Flax CNN on Fashion-MNIST: CE vs softmax 1 - p vs EXACT (mean, meanlog); Su's claim
  is that CE wins from scratch. ``fashion`` is the CPU size: CNN 3x3 convs 32-64 with stride 2 (no max-pool,
  whose backward is ~7x slower on XLA CPU), dense 128, SGD only, 3 seeds x 8 "epochs" of 100 steps of batch 128
  (800 steps, ~1.7 passes over the 60k training images), full 10k test set: 16 min on the shared 2-core CPU
  (load ~15). ``fashion_gpu`` is the full size for an accelerator (max-pool CNN, SGD and Adam, 5 seeds, 30 epochs
  of 468 steps; not run here).
* ``estimator`` -- bias, standard deviation and time of the quadrature vs the Genz estimator, C in {2,10,100,1000}.
  The Genz value draws run only the value channel (O(n B C)); only the timed fwd+bwd pass is O(n B C^2).
* ``bench`` -- EXACT (quadrature) forward+backward vs cross-entropy, batch 256 x {10, 100, 1000} classes, with the
  library default (mode-centred adaptive Gauss-Hermite, K = 12/16/24 for C <= 16/128/more: ~1e-5 relative error
  in value and gradient) and the old default (Gauss-Hermite K=16 centred at 0, ~1e-3 relative at C = 1000);
  research.special.log_ndtr vs jax's log_ndtr and one exp on the B x C x K grid; quadrature vs Genz at equal
  error. Ratios only. Measured 2026-12-06 (2-core CPU, load ~3-4, results/exact/bench): EXACT / CE at
  C = 1000 122x (target <= 20x: missed; 262x in an earlier run at load ~10); research.special.log_ndtr
  fwd+bwd = 0.16x / 0.29x / 0.50x jax's on the C = 1000 / 100 / 10 grids (target <= 0.5x: met).
* ``quick`` -- toy + a reduced breast-cancer search (+ Su's CE ~ 1 - E[p] correlation) + a small estimator table.

Command: ``python -m experiments.run --config=configs/exact.py:<variant> --workdir=results/exact/<variant>``

Time: jit compilation dominates on CPU. Measured on the 2-core CPU while ~8 other jobs ran (load 20-40):
smoke ~1.5-3 min, quick ~14 min, toy 43 s, tabular with ``--config.tab.target_steps_per_epoch=100`` ~25 min
per dataset, bench 50 s (2026-12-06, load ~3-4; 205 s at load ~10); estimator 94 s (2026-12-06, load ~10; the quadrature now uses the
adaptive rule: rmse 8.2e-6 at C=1000, K=16) (load ~15; it exceeded 15 min before the Genz value draws skipped
the gradient channels), fashion 16 min (load ~15). Expect roughly
5-10x less on an idle 2-core machine: quick measured 24 s (load ~1, 2026-12-06, whole command). On a GPU: everything except fashion_gpu takes
seconds to a few minutes; fashion_gpu ~10 min.
"""
import ml_collections

from configs import common

VARIANTS = {
    "smoke": "seconds; every part at toy size (used by the tests)",
    "quick": "~25 s on CPU (idle): toy + reduced breast-cancer search + estimator (make run's tour)",
    "toy": "the article's 3-point example: CE / hinge / EXACT optima of b, learnable scale, trainable sigma",
    "tabular": "paper Table 1 protocol on breast-cancer and wine, all 8 methods, 20 trials + 5 seeds",
    "fashion": "Fashion-MNIST CNN from scratch: CE vs 1-p vs EXACT mean/meanlog, 3 seeds x 800 steps (CPU, ~16 min)",
    "fashion_gpu": "the same at full size for an accelerator (not run on CPU)",
    "estimator": "quadrature vs Genz: bias, std and time for C in {2, 10, 100, 1000}",
    "bench": "EXACT fwd+bwd vs CE at batch 256 x {10,100,1000}; quadrature vs Genz at equal error",
}
REPRODUCE = ["toy", "tabular", "estimator", "fashion", "bench"]

TABULAR_METHODS = ("sklearn", "ce", "hinge", "sigmoid", "beta_bernoulli", "polynomial", "polyloss", "exact")


def get_config(variant: str = "smoke") -> ml_collections.ConfigDict:
  cfg = common.base_config("exact", variant, VARIANTS)
  parts = {
      "smoke": "toy,tabular,estimator",
      "quick": "toy,tabular,estimator",
      "toy": "toy",
      "tabular": "tabular",
      "fashion": "fashion",
      "fashion_gpu": "fashion",
      "estimator": "estimator",
      "bench": "bench",
  }[variant]
  cfg.parts = parts
  small = variant == "smoke"

  # ---- toy (spec 02 §3.7) ----
  cfg.toy = ml_collections.ConfigDict()
  cfg.toy.b_min, cfg.toy.b_max, cfg.toy.b_step = -0.5, 1.5, 0.001
  cfg.toy.exact_steps = 300 if small else 5000     # SGD lr 0.01 on (b, log sigma), as the fork's toy example
  cfg.toy.exact_lr = 0.01
  cfg.toy.exact_init_b = 0.7                       # start from the CE optimum
  cfg.toy.exact_init_log_sigma = 0.0
  cfg.toy.scale_steps = 300 if small else 5000     # learnable k(x - b), Adam
  cfg.toy.scale_lr = 0.01
  cfg.toy.plot_sigmas = "1.0,0.1" if small else "1.0,0.3,0.1,0.03"

  # ---- tabular (spec 02 §5.2) ----
  cfg.tab = ml_collections.ConfigDict()
  cfg.tab.datasets = "wine" if small else "breast_cancer,wine"
  cfg.tab.methods = "sklearn,exact" if small else ",".join(TABULAR_METHODS)
  if variant == "quick":
    cfg.tab.datasets = "breast_cancer"
    cfg.tab.methods = "sklearn,ce,hinge,exact"
  cfg.tab.num_trials = {"smoke": 2, "quick": 8}.get(variant, 20)
  cfg.tab.num_seeds = {"smoke": 2, "quick": 3}.get(variant, 5)
  cfg.tab.num_epochs = {"smoke": 2, "quick": 8}.get(variant, 16)
  cfg.tab.target_steps_per_epoch = {"smoke": 10, "quick": 100}.get(variant, 500)
  cfg.tab.batch_size = 256
  cfg.tab.test_size = 0.2
  cfg.tab.val_size = 0.2
  cfg.tab.split_seed = 0
  cfg.tab.final_lr = 1e-4
  cfg.tab.sigma_initial = 10.0
  cfg.tab.sigma_min = 0.01
  cfg.tab.num_samples = 16                        # Genz samples for EXACT
  cfg.tab.search_seed = 0

  # ---- fashion (spec 02 §6) ----
  # ``fashion`` is the CPU size (stride-2 convs instead of max-pool: XLA's max-pool backward is ~7x slower on the
  # CPU); ``fashion_gpu`` the full size for an accelerator.
  cfg.fm = ml_collections.ConfigDict()
  gpu = variant == "fashion_gpu"
  cfg.fm.arms = "ce,smoothed_accuracy,exact_mean,exact_meanlog"
  cfg.fm.optimizers = "sgd,adam" if gpu else "sgd"
  cfg.fm.train_size = {"smoke": 512}.get(variant, 60000)
  cfg.fm.test_size = {"smoke": 500}.get(variant, 10000)
  cfg.fm.num_seeds = {"smoke": 1, "fashion_gpu": 5}.get(variant, 3)
  cfg.fm.num_epochs = {"smoke": 2, "fashion_gpu": 30}.get(variant, 8)
  cfg.fm.steps_per_epoch = {"smoke": 4, "fashion_gpu": 468}.get(variant, 100)
  cfg.fm.batch_size = 128
  cfg.fm.channels = "32,64"
  cfg.fm.pool = "max" if gpu else "stride"
  cfg.fm.hidden = 128
  cfg.fm.weight_decay = 1e-4
  cfg.fm.final_lr = 1e-4
  cfg.fm.lr_ce = 0.1                              # CE / 1-p / PolyLoss arms: SGD + clip
  cfg.fm.clip_ce = 10.0
  cfg.fm.lr_exact = 0.5                           # paper's selected MNIST settings
  cfg.fm.lr_adam = 1e-3                           # paper: Adam lr 1e-3 for every loss
  cfg.fm.initial_variance = 100.0
  cfg.fm.min_variance = 1.0
  cfg.fm.margin = 0.5
  cfg.fm.num_samples = 16
  cfg.fm.estimator = "sampling"                   # the paper's Genz estimator; or "quadrature"
  cfg.fm.log_every = 5 if small else 20

  # ---- estimator ----
  cfg.est = ml_collections.ConfigDict()
  cfg.est.classes = "10" if small else "2,10,100,1000"
  cfg.est.rows = 8 if small else 16
  cfg.est.repeats = 4 if small else 12
  cfg.est.num_samples = 16
  cfg.est.num_nodes = 16
  cfg.est.k_ladder = "16" if small else "1,2,3,4,6,8,12,16,24,32"
  cfg.est.logit_scale = 2.0
  cfg.est.sigma = 1.0
  if variant == "quick":
    cfg.est.classes = "2,10,100"
    cfg.est.repeats = 10
    cfg.est.k_ladder = "2,4,8,16"

  # ---- bench ----
  cfg.bench = ml_collections.ConfigDict()
  cfg.bench.classes = "10,100" if small else "10,100,1000"
  cfg.bench.batch_size = 32 if small else 256
  cfg.bench.repeats = 3 if small else 20
  cfg.bench.genz_max_batch = 32                   # Genz is O(n B C^2): time it on <= this many rows at C=1000
  cfg.bench.num_nodes = 16
  cfg.bench.small_nodes = 4                       # also timed: a K that already matches Genz(n=16)'s error
  cfg.bench.num_samples = 16
  cfg.bench.k_ladder = "2,4,8,16" if small else "1,2,3,4,6,8,12,16,24,32"
  return cfg
