"""Perturb-Max distributions (Su Jianlin, kexue.fm/archives/9085; "Perturb Max" in /archives/10145).

Reproduces the article's analytic claims and checks its qualitative remark:
- Gumbel noise gives softmax exactly (published: exact identity); the n = 2 closed forms (normal:
  Phi(Delta/sqrt 2), Cauchy: 1/2 + arctan(Delta/2)/pi); the four properties (non-negative, sums to 1,
  order-preserving, shift-invariant) for every noise.
- The article's quadrature t_k = k/(K+1) (no K published), the midpoint rule and Gauss-Hermite: error vs K
  against a float64 scipy.integrate.quad reference (no published numbers; expected orders: grid O(1/K)).
- `classify`: the same Flax CNN on Fashion-MNIST with a softmax head vs Perturb-Max heads (normal,
  normal with matched noise scale / learned temperature, logistic), same budget, several seeds; each arm's
  seeds are one population (research.train.fit_population) checkpointed in the workdir. Su (10145): his own
  experiments "showed no special effect" (no numbers published): a "no gain" claim, judged by the paired
  per-seed accuracy difference to the softmax head, whose 95% interval must lie within +-``no_gain_tol``.
- `bench`: forward+backward of normal Perturb-Max on 256 x 1000 logits vs jax.nn.softmax, and vs Monte Carlo at
  equal error (time ratios from one interleaved run). The full distribution is timed with the library default
  (O(nK) max-quantile, tail_trapezoid levels K=28), max-quantile at K=4/8/16 and the article's O(n^2 K) pairwise
  formula; the label-only NLL with the default adaptive rule (mode-centred, scaled and skewed Gauss-Hermite,
  K=10) and the old centred GH K=16;
  research.special.log_ndtr vs jax.scipy.special.log_ndtr vs one exp pass on the B x n x K grid.
  Targets (issue 20): full distribution <= 10x softmax, label-only NLL <= 5x, log_ndtr fwd+bwd <= 0.5x jax's;
  the measured ratios are in results/perturb_max/bench*/.

Command: python -m experiments.run --config=configs/perturb_max.py:<variant> --workdir=results/perturb_max/<variant>

Time (2-core CPU, shared) / GPU; "load" is the 1-min load average from other jobs (measured 2026-12-06):
  smoke          ~20-40 s idle (mostly compilation); 8 min at load ~24 / seconds
  quick          table + a 2-arm CNN run (1 seed, 100 steps): 113 s at load ~3; 1503 s at load ~20 / ~15 s
  table          371 s at load ~8; 1543 s at load ~20 / <1 min
  classify       full 60k train, 5 epochs x 5 seeds x 5 arms, seeds vmapped: hours on CPU / ~10 min on a GPU
  classify_cpu   12k-image subset, 5k test images, 3 seeds x 4 arms, 150 steps of 128 (~1.6 epochs), seeds one
                 after the other: ~8 min idle; 3392 s at load ~10-25
  bench          256 x 1000: 97 s idle; 213 s at load ~5-9; 604 s at load ~15-19 (pairwise: 28-120 s per fwd+bwd) / ~1 min GPU
  bench_cpu      32 x 1000 (ratios vs softmax scale with n, not with the batch): 26 s idle; 78 s at load ~8, 196 s at load ~15
"""
import ml_collections

from configs import common

VARIANTS = {
    "smoke": "seconds; table + classify + bench at toy sizes (used by the tests)",
    "quick": "~2 min on a lightly loaded CPU: Gumbel=softmax, quadrature error vs K, properties, a tiny CNN head comparison",
    "table": "probabilities of every noise, quadrature error vs K per rule (plot), property checks",
    "classify": "Fashion-MNIST CNN: softmax vs Perturb-Max heads, full data, 5 seeds (GPU-sized)",
    "classify_cpu": "classify at a CPU-feasible budget: 12k-image subset, 4 arms, 3 seeds, ~1.6 epochs",
    "bench": "fwd+bwd normal Perturb-Max (library defaults) on 256x1000 vs softmax and vs Monte Carlo at equal error",
    "bench_cpu": "the bench at 32x1000 (CPU-feasible; ratios vs softmax depend on n, not the batch)",
}
REPRODUCE = ["table", "classify", "bench"]


def head(name: str, noise: str = "softmax", rule: str = "", num_nodes: int = 16, init_scale: float = 1.0,
         learn_temperature: bool = False) -> ml_collections.ConfigDict:
  """One classify arm: the output head (``noise="softmax"``: a softmax head; else research.nn.heads.
  PerturbMaxHead with this noise, quadrature rule ("": the library default) and K nodes)."""
  return ml_collections.ConfigDict(dict(name=name, noise=noise, rule=rule, num_nodes=num_nodes,
                                        init_scale=init_scale, learn_temperature=learn_temperature))


def arms(*names: str) -> tuple:
  """The named heads: normal PM at scale 1 (sharper than softmax, section 3.6), at the Gumbel std pi/sqrt(6)
  (scale-matched), with a learned scale; logistic and Cauchy PM with the midpoint rule."""
  table = {"softmax": head("softmax"),
           "normal": head("normal", "normal", "gauss_hermite", 16),
           "normal_matched": head("normal_matched", "normal", "gauss_hermite", 16, init_scale=1.2825498301618641),
           "normal_learned_t": head("normal_learned_t", "normal", "gauss_hermite", 16, learn_temperature=True),
           "logistic": head("logistic", "logistic", "midpoint", 64),
           "cauchy": head("cauchy", "cauchy", "midpoint", 64)}
  return tuple(table[n] for n in names)


def get_config(variant: str = "smoke") -> ml_collections.ConfigDict:
  cfg = common.base_config("perturb_max", variant, VARIANTS)
  cfg.parts = {"smoke": ("table", "classify", "bench"), "quick": ("table", "classify"), "table": ("table",),
               "classify": ("classify",), "classify_cpu": ("classify",), "bench": ("bench",),
               "bench_cpu": ("bench",)}[variant]

  # ---- table ----
  t = cfg.table = ml_collections.ConfigDict()
  t.num_classes = 4 if variant == "smoke" else 6
  t.num_vectors = 2 if variant == "smoke" else 4       # random logit vectors (plus one fixed vector)
  t.logit_spread = 2.0                                  # std of the random logits
  t.noises = ("gumbel", "normal") if variant == "smoke" else ("gumbel", "normal", "logistic", "cauchy")
  t.ks = {"smoke": (4, 16), "quick": (1, 4, 16, 64, 256)}.get(variant, (1, 2, 4, 8, 16, 32, 64, 128, 256))

  # ---- classify ----
  c = cfg.classify = ml_collections.ConfigDict()
  c.arms = {"smoke": arms("softmax", "normal"), "quick": arms("softmax", "normal"),
            "classify_cpu": arms("softmax", "normal", "normal_learned_t", "logistic")}.get(
      variant, arms("softmax", "normal", "normal_matched", "normal_learned_t", "logistic"))
  c.seeds = {"smoke": 1, "quick": 1, "classify": 5, "classify_cpu": 3}.get(variant, 1)
  c.train_size = {"smoke": 512, "quick": 4096, "classify": 60000, "classify_cpu": 12000}.get(variant, 512)
  c.test_size = {"smoke": 128, "quick": 1000, "classify": 10000, "classify_cpu": 5000}.get(variant, 256)
  c.batch_size = {"smoke": 64}.get(variant, 128)
  c.num_steps = {"smoke": 4, "quick": 100, "classify": 2345, "classify_cpu": 150}.get(variant, 8)
  c.log_every = {"smoke": 2, "classify": 100}.get(variant, 10)    # train-loss curve resolution (and checkpoints)
  c.learning_rate = 2e-3
  # Train an arm's seeds one after the other (True) or vmapped as one program (False). On a CPU, vmapping
  # per-seed conv weights makes every convolution a slow grouped one.
  c.seed_loop = variant != "classify"
  c.no_gain_tol = 0.01            # "no special benefit": |acc(PM head) - acc(softmax)| <= 1 point
  c.conv_features = (16, 32) if variant != "smoke" else (4, 8)
  c.hidden = 64 if variant != "smoke" else 16
  c.eval_batch = 1000

  # ---- bench ----
  b = cfg.bench = ml_collections.ConfigDict()
  b.batch = {"bench": 256, "bench_cpu": 32, "smoke": 4}.get(variant, 256)
  b.num_classes = {"smoke": 20}.get(variant, 1000)
  b.num_nodes = 16
  b.mc_samples = 16        # MC timed at this S (same cost per sample as a node), extrapolated to equal error
  b.reference_nodes = 64 if variant != "smoke" else 24   # float64 max-quantile GH reference for the errors
  b.mq_nodes = (4, 8, 16) if variant != "smoke" else (4,)   # K values of the max-quantile method also timed
  b.time_pairwise = True   # also time the article's O(n^2 K) pairwise formula (slow: seconds per call at n=1000)
  b.repeats = {"smoke": 1, "bench": 3, "bench_cpu": 2}.get(variant, 2)   # rounds for the slow pairwise formula
  b.fast_repeats = {"smoke": 1}.get(variant, 9)        # interleaved rounds for everything else (noisy shared CPU)
  b.logit_spread = 2.0
  b.targets = ml_collections.ConfigDict(dict(full_tol=10.0, nll_tol=5.0, log_ndtr_tol=0.5, mc_scale=100.0))
  return cfg
