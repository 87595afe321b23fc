"""Hubness in high dimensions and hub-prior GAN latent sampling (Su Jianlin, kexue.fm/archives/9147;
Liang et al., "Exploring and Exploiting Hubness Priors for High-Quality GAN Latent Sampling", ICML 2022).

Reproduces:
- `volume`: rho_n = V_n / 2^n (unit ball over its circumscribed cube) for n = 1..100 (log scale) and the
  spec's exact constants (rho_2 = 0.78540, rho_10 = 2.4904e-3, rho_32 = 1.0019e-15, log10 rho_512 =
  -533.79), plus Monte-Carlo acceptance of "uniform in the cube, keep if in the ball" for n <= 10.
- `emergence`: N(0, I_d), N = 10,000, k = 5, d in {2, 8, 32, 64, 128, 512}, 5 seeds: skewness of N_k,
  Robin Hood, antihub fraction, max N_k, fraction with N_5 > 50 (Su's rule) and 1 + N_4 >= 50 (official
  rule), Spearman(N_k, -||z||); the same on digits and Fashion-MNIST pixels. Published (Radovanovic et al.,
  qualitative): skewness grows with d; hubs are central. No numbers are published.
- `gan`: small GANs with a StyleGAN-like mapping network on digits (MLP) and Fashion-MNIST (small conv),
  3 seeds; samples from random z, hubs (Su rule in z; official rule in W), min-norm at equal acceptance
  (z and W), truncation psi in {0.5, 0.7, 0.9} (W, batch mean and EMA w_avg), anti-hubs; improved
  precision/recall (k = 3), density/coverage, Frechet distance in a small classifier's features. Paper
  (qualitative, no numbers transcribed): hubs give higher quality than random; anti-hubs are worst.
  GAN recipe: non-saturating loss, mapping layers with StyleGAN's He gain sqrt(2); digits MLP: Adam(2e-4,
  beta1 0.5), R1 gamma = 1 every step (without He gain and R1 the digits GANs mode-collapsed: recall 0);
  Fashion-MNIST conv: Adam(5e-4, beta1 0.5), R1 gamma = 0.1 applied lazily every 4 D steps, ProGAN
  pixel-wise feature norm in G and minibatch-stddev in D, 2,500 steps (the earlier 1,000 steps at 2e-4,
  R1 = 1, no normalization mode-collapsed). `gan_fashion` runs Fashion-MNIST alone. Each dataset's seeds
  train as one vmapped population through `research.train.fit_population` (a custom GAN train step:
  D then G, each player with its own Adam state), checkpointed in the workdir; the feature classifier
  trains through `research.train.fit`. Verdicts: `research.verdict` (paired per-seed differences, 95 %
  interval, 3 seeds).
- `gan_plainz`: the article's own "hubs in z" setting: the digits MLP GAN without a mapping network
  (z fed straight in, `gan.mapping=False`), so both the Su rule and the official rule select z directly
  (the *_w conditions of the driver are then in z; W = z).
- `bench`: k-occurrence for N = 10,000, d = 512, k = 5 vs scikit-learn NearestNeighbors and numpy
  (target: <= 0.5x scikit-learn's time on the same CPU; wall clock and process CPU time, plus the strip
  matmuls alone as the FLOP-bound floor); `bench_gpu`: N = 100,000.

Command: python -m experiments.run --config=configs/hubness.py:<variant> --workdir=results/hubness/<variant>

Time (2-core CPU shared with other jobs / one GPU):
  smoke       ~1-2 min (compilation; 87 s measured at load ~16) / seconds
  quick       ~20 s idle: volume table + emergence at N=4,000 for d in {2, 32, 512}, 3 seeds / seconds
              (measured 85 s at load ~16-20 from other sessions, 2026-12-06, whole command)
  volume      ~5-10 s idle (55 s measured at load ~20)
  emergence   ~1 min idle (30 exact kNN graphs of 10,000 points; 283 s measured at load ~22) / < 1 min
  gan         ~20-30 min idle: digits (3 seeds as one population, 3,000 MLP iterations, 1,000 samples per
              condition) + fashion_mnist as in gan_fashion (40 batches before recalibrating the official
              rule); 4,590 s measured at load ~13-25 (fashion GAN training ~57 min of it) / minutes
  gan_fashion ~20-30 min idle: 3 seeds as one population, 2,500 conv iterations / minutes. A convenience
              variant: its study is `gan`'s Fashion-MNIST half, so it has no committed table of its own
              (results/hubness/gan holds the measured Fashion-MNIST rows)
  gan_plainz  ~2-4 min idle: 434 s measured at load ~22-26 (GAN training 91 s) / < 1 min
  gan_gpu     GPU-sized: 20k steps, 10,000 samples per condition, N_ref 10,000 (not run on CPU)
  bench       ~1-2 min idle (329 s at load ~24) / seconds; bench_gpu N = 100,000 (GPU only)
"""
import ml_collections

from configs import common

VARIANTS = {
    "smoke": "seconds; every part at toy sizes (used by the tests)",
    "quick": "~20 s on CPU: volume collapse table + hubness emergence (N=4k, d in {2,32,512}, 3 seeds)",
    "volume": "ball/cube volume ratio table and plot (n = 1..100, log scale) + Monte Carlo n <= 10",
    "emergence": "N(0,I_d), N=10k, k=5, d in {2,8,32,64,128,512}, 5 seeds; digits + fashion pixels",
    "gan": "GANs on digits + Fashion-MNIST, 3 seeds, hub vs random/min-norm/truncation/anti-hub (CPU budget)",
    "gan_fashion": "the gan study on Fashion-MNIST only (conv GAN, 3 seeds, 2,500 steps; ~30 min on the CPU)",
    "gan_plainz": "the gan study on digits with a plain z-input generator (no mapping network; the article's "
                  "'hubs in z' setting), 3 seeds",
    "gan_gpu": "the gan study at GPU size (longer training, 10k samples per condition)",
    "bench": "k-occurrence N=10k, d=512, k=5: JAX vs sklearn NearestNeighbors vs numpy (ratios)",
    "bench_gpu": "the bench at N=100k (GPU)",
}
REPRODUCE = ["volume", "emergence", "gan", "bench"]


def _dataset(name, *, kind, hidden, steps, lr, r1_gamma, r1_every, feature_norm, mbstd, train_limit):
  """One GAN dataset (an arm with its own architecture: a separate population)."""
  return ml_collections.ConfigDict(dict(
      name=name,                    # digits (8x8, sklearn) or fashion_mnist (28x28)
      kind=kind,                    # mlp or conv G and D (and feature classifier)
      hidden=hidden,                # G/D width
      steps=steps,                  # GAN iterations (each: one D update, then one G update)
      lr=lr,                        # Adam(lr, beta1 0.5) for both players
      r1_gamma=r1_gamma,            # R1 penalty on real data (0 = off); without it the MLP GAN collapses
      r1_every=r1_every,            # lazy R1 (StyleGAN2): penalty every r1_every D steps, scaled by it
      feature_norm=feature_norm,    # G: ProGAN pixel-wise feature normalization
      mbstd=mbstd,                  # D: minibatch-stddev feature (ProGAN), counters mode collapse
      train_limit=train_limit))       # training images (0: all)


def _digits(**kw):
  return _dataset("digits", **{**dict(kind="mlp", hidden=256, steps=3000, lr=2e-4, r1_gamma=1.0, r1_every=1,
                                      feature_norm=False, mbstd=False, train_limit=0), **kw})


def _fashion(**kw):
  # lr 5e-4 (2e-4 reached recall 0.06 after 1,000 steps, 5e-4 0.12); small R1 for 784-d images
  return _dataset("fashion_mnist", **{**dict(kind="conv", hidden=64, steps=2500, lr=5e-4, r1_gamma=0.1,
                                             r1_every=4, feature_norm=True, mbstd=True, train_limit=20_000),
                                      **kw})


def get_config(variant: str = "smoke") -> ml_collections.ConfigDict:
  cfg = common.base_config("hubness", variant, VARIANTS)
  smoke = variant == "smoke"
  cfg.parts = {"smoke": ("volume", "emergence", "gan", "bench"), "quick": ("volume", "emergence"),
               "volume": ("volume",), "emergence": ("emergence",), "gan": ("gan",), "gan_fashion": ("gan",),
               "gan_plainz": ("gan",), "gan_gpu": ("gan",), "bench": ("bench",), "bench_gpu": ("bench",)}[variant]
  cfg.chunk_size = {"bench": 2048, "bench_gpu": 4096}.get(variant, 1024)   # kNN block rows

  v = cfg.volume = ml_collections.ConfigDict()
  v.max_n = 100                     # plot n = 1..max_n
  v.mc_samples = 20_000 if smoke else 1_000_000
  v.mc_max_n = 10                   # Monte Carlo acceptance for n = 1..mc_max_n

  e = cfg.emergence = ml_collections.ConfigDict()
  e.num_points = {"smoke": 400, "quick": 4000}.get(variant, 10_000)
  e.k = 5
  e.dims = {"smoke": (2, 64), "quick": (2, 32, 512)}.get(variant, (2, 8, 32, 64, 128, 512))
  e.seeds = {"smoke": 3, "quick": 3}.get(variant, 5)
  e.threshold = 50                  # Su: N_5 > 50; official: 1 + N_4 >= 50
  e.datasets = () if variant in ("smoke", "quick") else ("digits", "fashion_mnist")
  e.data_points = 10_000            # fashion-MNIST pixels subset size (digits: all 1,797)

  g = cfg.gan = ml_collections.ConfigDict()
  g.datasets = {"smoke": (_digits(hidden=32, steps=20),), "gan_plainz": (_digits(),),
                "gan_fashion": (_fashion(),),
                "gan_gpu": (_digits(steps=20_000), _fashion(hidden=128, steps=20_000, train_limit=60_000)),
                }.get(variant, (_digits(), _fashion()))
  g.seeds = 3
  g.z_dim = 64
  g.w_dim = 64
  g.mapping = variant != "gan_plainz"   # StyleGAN-like mapping network -> W; False: z fed straight in (W = z)
  g.mapping_depth = 8 if not smoke else 2
  g.batch_size = 64
  g.num_samples = {"smoke": 48, "gan_gpu": 10_000}.get(variant, 1000)   # per condition
  g.n_ref = {"smoke": 400}.get(variant, 10_000)
  g.k = 5
  g.threshold = {"smoke": 9}.get(variant, 50)
  g.fallback_acceptance = 0.01      # if the literal t = 50 passes too few latents: recalibrate to this
  # batches of n_ref before a rule that keeps too few latents is recalibrated (gan_fashion: 15, enough for
  # acceptance ~0.01 and 1,000 latents; the literal t = 50 in W keeps none, so 40 only costs kNN graphs)
  g.max_batches = {"smoke": 10, "gan_fashion": 15}.get(variant, 40)
  g.psis = (0.7,) if smoke else (0.5, 0.7, 0.9)   # truncation factors
  g.pr_k = 3                        # improved precision/recall neighbourhood
  g.health_recall = 0.05            # a generator whose random samples' recall is not above this: not learned
  g.classifier_steps = {"smoke": 10, "gan_gpu": 3000}.get(variant, 600)
  g.num_real = {"smoke": 48, "gan_gpu": 10_000}.get(variant, 1000)
  g.log_every = {"smoke": 10}.get(variant, 500)   # GAN iterations between logged records / checkpoints

  b = cfg.bench = ml_collections.ConfigDict()
  b.num_points = {"smoke": 400, "bench_gpu": 100_000}.get(variant, 10_000)
  b.dim = {"smoke": 64}.get(variant, 512)
  b.k = 5
  b.repeats = {"smoke": 1}.get(variant, 5)
  b.baselines = ("sklearn", "numpy") if variant != "bench_gpu" else ("sklearn",)
  return cfg
