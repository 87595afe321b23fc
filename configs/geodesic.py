"""Geodesic distance for semantic similarity (kexue 9368): kNN graph + shortest paths, tested.

The article (Su Jianlin, 2022-12-07, after GeoSumm arXiv:2209.07496) has **no experiment of its own**: it
claims that contrastively trained distances are reliable only locally, and that shortest paths over a kNN
graph (an approximate geodesic) fix the far range; its example is the Earth, pole to pole = pi R, not the
chord 2R. The variants test that claim (spec 05 section 6.3):

* ``sanity``: unit sphere S^2 (N in {500, 2000, 8000} uniform points + both poles): pole-to-pole graph
  distance vs pi (and the chord 2), Spearman of graph distance with arccos; swiss roll (N = 2000): Spearman
  of Euclidean and of geodesic distance with the intrinsic distance; k in {5, 10, 20}.
* ``retrieval``: same-class retrieval on digits (1797 x 64) and Fashion-MNIST (5000 test images, pixels
  and PCA-50): mAP, P@10 (near) and precision in a far band of ranks (101-150 for digits, the same
  fraction of the class size for Fashion-MNIST), Euclidean vs geodesic, k in {5, 10, 20}; plus class
  centroid as a theme node (AUC / AP of class membership).
* ``sts``: English STS-B test pairs embedded with all-MiniLM-L6-v2 (Flax BERT): Spearman of cosine and of
  -d_geo with the gold scores, overall and by gold band (0-2, 3-5).
* ``summarization``: extractive opinion summarisation (Copycat-Amazon, FewSum-Amazon, FewSum-Yelp test
  splits): MiniLM sentences ranked against the entity centroid by Euclidean vs geodesic distance, word
  budget = mean gold length, TF-IDF redundancy filter 0.75, ROUGE-1/2/L (rouge-score, stemming).
* ``bench``: single-source shortest paths on a 10,000-node k = 10 union kNN graph (swiss roll): JAX
  Bellman-Ford and the CPU host-callback path vs scipy Dijkstra (time ratio, agreement); multi-source;
  all-pairs on 2,000 nodes (Floyd-Warshall in JAX vs scipy).
* ``quick``: the headline in ~20 s: sphere pole-to-pole vs pi, swiss roll Spearman, digits near/far.
* ``full``: GPU-sized (Fashion-MNIST 10k, STS with a train-split background pool, larger spheres).

Published numbers: none in the article; GeoSumm Table 8 is not transcribed (spec 05 section 5), so rows
compare geodesic against the base distance measured in the same run, and the sphere against pi.
Verdicts (research.verdict): sanity over ``sanity.seeds`` independent point draws; retrieval and STS over
``folds`` disjoint query / pair groups (assigned from ``config.seed``); summarisation over entities; every
comparison is paired (geodesic - base on the same seed, fold or entity) with a 95% t-interval.

Command: python -m experiments.run --config=configs/geodesic.py:<variant> --workdir=results/geodesic/<variant>
Time on the 2-core CPU: smoke ~10 s without / ~15 s with the MiniLM parts (idle); measured at load ~20-25
(2026-12-06, shared with other jobs; expect several times less on an idle machine): quick 306 s, sanity 811 s
(3 seeds), retrieval 1239 s, sts 184 s, summarization 1098 s, bench: see its results. On one GPU each is well
under a minute except MiniLM encoding for ``full``.
"""
import ml_collections

from configs import common

VARIANTS = {
    "smoke": "seconds; every part at toy size (used by the tests)",
    "quick": "~1-5 min CPU: sphere pole-to-pole vs pi, swiss roll Spearman (3 seeds), digits near/far retrieval",
    "sanity": "sphere S^2 (N 500/2000/8000) and swiss roll (N 2000), k in {5,10,20}, 3 seeds",
    "retrieval": "digits + Fashion-MNIST 5k (pixels, PCA-50): mAP, P@10, far-band precision; centroid themes",
    "sts": "STS-B test with MiniLM: Spearman of cosine vs geodesic, overall and by gold band",
    "summarization": "Copycat/FewSum Amazon + FewSum Yelp test: ROUGE of Euclidean vs geodesic centroid ranking",
    "bench": "SSSP on a 10k-node k=10 graph vs scipy Dijkstra; all-pairs on 2k nodes",
    "full": "GPU-sized version of every part (not run on the CPU)",
}
REPRODUCE = ["sanity", "retrieval", "sts", "summarization", "bench"]

ALL_PARTS = ("sanity", "retrieval", "sts", "summarization", "bench")


def get_config(variant: str = "smoke") -> ml_collections.ConfigDict:
  cfg = common.base_config("geodesic", variant, VARIANTS)
  cfg.parts = {"smoke": ALL_PARTS, "quick": ("sanity", "retrieval"), "full": ALL_PARTS}.get(variant, (variant,))
  small = variant == "smoke"

  g = cfg.graph = ml_collections.ConfigDict()
  g.method = "auto"           # shortest-path solver: auto = scipy via callback on CPU, Bellman-Ford on GPU
  g.mode = "union"            # graph symmetrisation for the geodesic arms
  g.headline_k = 10           # the k whose metrics are also reported without a _k suffix

  s = cfg.sanity = ml_collections.ConfigDict()      # G1 sphere, G2 swiss roll
  s.seeds = 3                 # independent point draws (rng [config.seed, s])
  s.sphere_ns = {"smoke": (300,), "quick": (2000,), "full": (2000, 8000, 32000)}.get(variant, (500, 2000, 8000))
  s.ks = (10,) if small else (5, 10, 20)
  s.spearman_sources = 50 if small else 200          # sphere: rows of the Spearman(graph, arccos) check
  s.swiss_n = {"smoke": 300, "quick": 1000}.get(variant, 2000)
  s.swiss_noise = 0.0

  r = cfg.retrieval = ml_collections.ConfigDict()   # G3 near vs far retrieval, G4 centroid themes
  r.datasets = ("digits",) if variant in ("smoke", "quick") else ("digits", "fashion_mnist_pixels",
                                                                  "fashion_mnist_pca")
  r.ks = (10,) if small else (5, 10, 20)
  r.folds = 10                # disjoint query groups (from config.seed): the samples of every verdict
  r.digits_n = 300 if small else 0                  # 0 = all 1797
  r.fashion_n = 10000 if variant == "full" else 5000
  r.pca_dim = 50
  r.near_band = (1, 10)
  r.near_tol = 0.01           # "P@10 unchanged" (spec G3): |geodesic - Euclidean| <= this
  r.far_band_fraction = (100 / 180, 150 / 180)      # digits: ranks 101-150 of ~180 class members
  r.theme_k = 10

  cfg.encoder = ml_collections.ConfigDict()          # all-MiniLM-L6-v2 (Flax port)
  cfg.encoder.batch_size = 32 if small else 64
  cfg.encoder.max_len = 128

  t = cfg.sts = ml_collections.ConfigDict()         # G5
  t.split = "test"
  t.pairs_limit = 40 if small else 0                   # 0 = all
  t.ks = (5,) if small else (5, 10, 20)
  t.folds = 4 if small else 10                       # disjoint pair groups (from config.seed)
  t.background_limit = 5000 if variant == "full" else 0    # extra train-split sentences in the graph pool

  u = cfg.summarization = ml_collections.ConfigDict()   # G6
  u.datasets = ("copycat_amazon",) if small else ("copycat_amazon", "fewsum_amazon", "fewsum_yelp")
  u.split = "test"
  u.entities_limit = 3 if small else 0                 # 0 = all entities of the split
  u.ks = (5,) if small else (5, 10, 20)
  u.pools = ("entity", "background")   # graph over the entity's sentences / + all split sentences
  u.headline_pool = "background"
  u.redundancy = 0.75
  u.min_words = 4
  u.word_budget = 0                    # 0 = mean gold summary length (words) of the split
  u.oracle = not small

  b = cfg.bench = ml_collections.ConfigDict()
  b.n = 500 if small else 10000
  b.k = 10
  b.apsp_n = 100 if small else 2000
  b.sources = 4 if small else 64
  b.repeats = 3 if small else 20       # interleaved rounds of the single-source timings
  b.slow_repeats = 2 if small else 3   # rounds of the multi-source and all-pairs timings
  b.target_ratio_tol = 1.5             # issue target: best CPU SSSP path <= 1.5x scipy Dijkstra
  return cfg
