"""Article 9098 (Su Jianlin, "How to train your accuracy?"): EXACT and smoothed-accuracy losses.

Reproduces, with the library in ``research/losses/exact.py`` (EXACT expected accuracy: Gauss-Hermite quadrature
on the shared Perturb-Max integral of 9085, and the paper's Genz sampling estimator with its coded gradient),
``research/losses/surrogates.py`` and ``research/optim/grad_normalizer.py``:

* ``toy`` -- the article's 3-point example {(-0.25,-1),(0,-1),(0.25,1)} with f(x) = x - b. Published (Su):
  CE optimum b = 0.7, hinge optimum b in [0.75, 1], perfect accuracy needs b in (0, 0.25). Also the learnable
  scale f(x) = k(x - b) (Su's objection: CE and hinge then find a correct b) and EXACT with trainable sigma.
  Measured: 65 s on the 2-core CPU at load ~25 (2026-12-06).
* ``tabular`` -- the paper's Table 1 protocol on breast-cancer and wine (scikit-learn copies of the UCI files):
  linear model, SGD + momentum, per-epoch exponential LR to 1e-4, sigma/temperature schedule 10 -> 0.01,
  gradient normaliser (EXACT) or clipping (others), 20-trial random search on a validation split, 5 seeds, each
  search and each seed set one population of research.train.fit_population. Published: breast-cancer sklearn
  95.61, CE 95.61, hinge/sigmoid/Beta-Bernoulli/polynomial/PolyLoss 97.37, EXACT 96.49; wine 100.0 for all,
  compared in whole test samples (114 / 36). The CPU budget trains ~100 steps per "epoch" (the paper ~500:
  ``--config.tab.target_steps_per_epoch=500``). Measured: 548 s for both datasets on the 2-core CPU at load ~12-20
  (2026-12-06).
* ``fashion`` -- from-scratch Flax CNN on Fashion-MNIST: CE vs softmax 1 - p vs EXACT (mean, meanlog); Su's claim
  is that CE wins from scratch. ``fashion`` is the CPU size: CNN 3x3 convs 32-64 with stride 2 (no max-pool,
  whose backward is ~7x slower on XLA CPU), dense 128, SGD only, 3 seeds x 8 "epochs" of 100 steps of batch 128
  (800 steps, ~1.7 passes over the 60k training images), full 10k test set, each run one research.train.fit:
  1,247 s on the 2-core CPU at load ~20-25 (2026-12-06). ``fashion_gpu`` is the full size for an accelerator (max-pool CNN, SGD and Adam, 5 seeds, 30 epochs of
  468 steps; not run here).
* ``estimator`` -- bias, standard deviation and time of the quadrature vs the Genz estimator, C in {2,10,100,1000}.
  The Genz value draws run only the value channel (O(n B C)); only the timed fwd+bwd pass is O(n B C^2).
  Measured: 290 s at load ~23 (2026-12-06).
* ``bench`` -- EXACT (quadrature) forward+backward vs cross-entropy, batch 256 x {10, 100, 1000} classes, with the
  library default (mode-centred, scaled and skewed adaptive Gauss-Hermite, K = 10) and the old default
  (Gauss-Hermite K=16 centred at 0); research.special.log_ndtr vs jax's log_ndtr and one exp on the B x C x K
  grid; quadrature vs Genz at equal error. Ratios only, per interleaved round. Measured: 49 s idle; 185 s at load ~20 (2026-12-06).
* ``quick`` -- toy + a reduced breast-cancer search (+ Su's CE ~ 1 - E[p] correlation) + a small estimator table.
  Measured: 434 s at load ~25 (2026-12-06).

Results: ``results/exact/<variant>/results.md``.

Command: ``python -m experiments.run --config=configs/exact.py:<variant> --workdir=results/exact/<variant>``
"""
import ml_collections

from configs import common

VARIANTS = {
    "smoke": "seconds; every part at toy size (used by the tests)",
    "quick": "~7 min on CPU under load: toy + reduced breast-cancer search + estimator (make run's tour)",
    "toy": "the article's 3-point example: CE / hinge / EXACT optima of b, learnable scale, trainable sigma",
    "tabular": "paper Table 1 protocol on breast-cancer and wine, all 8 methods, 20 trials + 5 seeds (~9 min CPU)",
    "fashion": "Fashion-MNIST CNN from scratch: CE vs 1-p vs EXACT mean/meanlog, 3 seeds x 800 steps (CPU, ~21 min)",
    "fashion_gpu": "the same at full size for an accelerator (not run on CPU)",
    "estimator": "quadrature vs Genz: bias, std and time for C in {2, 10, 100, 1000}",
    "bench": "EXACT fwd+bwd vs CE at batch 256 x {10,100,1000}; quadrature vs Genz at equal error",
}
REPRODUCE = ["toy", "tabular", "estimator", "fashion", "bench"]

TABULAR_METHODS = ("sklearn", "ce", "hinge", "sigmoid", "beta_bernoulli", "polynomial", "polyloss", "exact")


def get_config(variant: str = "smoke") -> ml_collections.ConfigDict:
  cfg = common.base_config("exact", variant, VARIANTS)
  cfg.parts = {
      "smoke": ("toy", "tabular", "estimator"),
      "quick": ("toy", "tabular", "estimator"),
      "fashion_gpu": ("fashion",),
  }.get(variant, (variant,))
  small = variant == "smoke"

  # ---- toy (spec 02 §3.7) ----
  t = cfg.toy = ml_collections.ConfigDict()
  t.b_min, t.b_max, t.b_step = -0.5, 1.5, 0.001    # the grid of b for the CE / hinge optima
  t.exact_steps = 300 if small else 5000           # SGD lr 0.01 on (b, log sigma), as the fork's toy example
  t.exact_lr = 0.01
  t.exact_init_b = 0.7                             # start from the CE optimum
  t.exact_init_log_sigma = 0.0
  t.scale_steps = 300 if small else 5000           # learnable k(x - b), Adam
  t.scale_lr = 0.01
  t.plot_sigmas = (1.0, 0.1) if small else (1.0, 0.3, 0.1, 0.03)
  t.steps_per_call = 100                           # steps per jitted call of the trainer

  # ---- tabular (spec 02 §5.2) ----
  tb = cfg.tab = ml_collections.ConfigDict()
  tb.datasets = ("wine",) if small else ("breast_cancer", "wine")
  tb.methods = ("sklearn", "exact") if small else TABULAR_METHODS
  if variant == "quick":
    tb.datasets = ("breast_cancer",)
    tb.methods = ("sklearn", "ce", "hinge", "exact")
  tb.num_trials = {"smoke": 2, "quick": 8}.get(variant, 20)   # random-search trials (one population)
  tb.seeds = {"smoke": 3, "quick": 3}.get(variant, 5)         # final runs (one population)
  tb.num_epochs = {"smoke": 2, "quick": 8}.get(variant, 16)
  tb.target_steps_per_epoch = {"smoke": 10}.get(variant, 100)  # the paper: 500 (CPU budget: 100)
  tb.batch_size = 256
  tb.test_size = 0.2
  tb.val_size = 0.2
  tb.split_seed = 0                                # the paper's train_test_split(random_state=0): same test set
  tb.final_lr = 1e-4
  tb.sigma_initial = 10.0
  tb.sigma_min = 0.01
  tb.num_samples = 16                              # Genz samples for EXACT

  # ---- fashion (spec 02 §6) ----
  # ``fashion`` is the CPU size (stride-2 convs instead of max-pool: XLA's max-pool backward is ~7x slower on the
  # CPU); ``fashion_gpu`` the full size for an accelerator.
  f = cfg.fm = ml_collections.ConfigDict()
  gpu = variant == "fashion_gpu"
  f.arms = ("ce", "smoothed_accuracy", "exact_mean", "exact_meanlog")   # or also "hinge", "polyloss"
  f.optimizers = ("sgd", "adam") if gpu else ("sgd",)
  f.train_size = {"smoke": 512}.get(variant, 60000)
  f.test_size = {"smoke": 500}.get(variant, 10000)
  f.seeds = {"smoke": 3, "fashion_gpu": 5}.get(variant, 3)  # run s of every arm: same init and data order
  f.num_epochs = {"smoke": 2, "fashion_gpu": 30}.get(variant, 8)
  f.steps_per_epoch = {"smoke": 4, "fashion_gpu": 468}.get(variant, 100)
  f.batch_size = 128
  f.channels = (32, 64)
  f.pool = "max" if gpu else "stride"
  f.hidden = 128
  f.weight_decay = 1e-4
  f.final_lr = 1e-4
  f.lr_ce = 0.1                                    # CE / 1-p / PolyLoss / hinge arms: SGD + clip
  f.clip_ce = 10.0
  f.lr_exact = 0.5                                 # paper's selected MNIST settings
  f.lr_adam = 1e-3                                 # paper: Adam lr 1e-3 for every loss
  f.initial_variance = 100.0
  f.min_variance = 1.0
  f.margin = 0.5
  f.num_samples = 16
  f.estimator = "sampling"                         # the paper's Genz estimator; or "quadrature"
  f.log_every = 4 if small else 20

  # ---- estimator ----
  e = cfg.est = ml_collections.ConfigDict()
  e.classes = (10,) if small else (2, 10, 100, 1000)
  e.rows = 8 if small else 16
  e.repeats = 4 if small else 12                   # Genz keys per C
  e.num_samples = 16
  e.num_nodes = 16
  e.k_ladder = (16,) if small else (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
  e.logit_scale = 2.0
  e.sigma = 1.0
  e.rounds = 3 if small else 7                     # interleaved timing rounds
  if variant == "quick":
    e.classes = (2, 10, 100)
    e.repeats = 10
    e.k_ladder = (2, 4, 8, 16)

  # ---- bench ----
  b = cfg.bench = ml_collections.ConfigDict()
  b.classes = (10, 100) if small else (10, 100, 1000)
  b.batch_size = 32 if small else 256
  b.rounds = 3 if small else 20
  b.genz_max_batch = 32                            # Genz is O(n B C^2): time it on <= this many rows at C=1000
  b.num_nodes = 16
  b.small_nodes = 4                                # also timed: a K that already matches Genz(n=16)'s error
  b.num_samples = 16
  b.k_ladder = (2, 4, 8, 16) if small else (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
  b.genz_repeats = 5
  return cfg
