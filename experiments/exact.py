"""Driver for article 9098 (EXACT / smoothed accuracy); see ``configs/exact.py`` for the variants."""
from __future__ import annotations

import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy import special as sp_special

from research.plotting import write_figure  # noqa: E402
from research import special
from research.benchmark import time_interleaved
from research.distributions import perturb_max
from research.losses import exact, surrogates
from research.optim import grad_normalizer as gn
from research.report import Results, RunLog, Row, fmt

PUBLISHED_TABULAR = {
    "breast_cancer": {"sklearn": 95.61, "ce": 95.61, "hinge": 97.37, "sigmoid": 97.37, "beta_bernoulli": 97.37,
                      "polynomial": 97.37, "polyloss": 97.37, "exact": 96.49},
    "wine": {m: 100.0 for m in ("sklearn", "ce", "hinge", "sigmoid", "beta_bernoulli", "polynomial",
                                "polyloss", "exact")},
}
TEST_SIZES = {"breast_cancer": 114, "wine": 36}


def _csv(s, typ=str):
  return [typ(v) for v in str(s).split(",") if v.strip()]


def _plt():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def _timeit(fn, *args, repeats=5):
  """Median wall time (s) of a jitted call after one warm-up (compile) call."""
  jax.block_until_ready(fn(*args))
  ts = []
  for _ in range(max(1, repeats)):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    ts.append(time.perf_counter() - t0)
  return float(np.median(ts))


def reference_orthant_prob(m, num_points: int = 4001, half_width: float = 9.0):
  """float64 oracle: trapezoid rule of int phi(e) prod_j Phi(m_j + e) de on a fine grid (numpy/scipy)."""
  m = np.asarray(m, np.float64)
  e = np.linspace(-half_width, half_width, num_points)
  out = np.empty(m.shape[:-1])
  flat = m.reshape(-1, m.shape[-1])
  res = []
  for row in flat:
    lp = -0.5 * e ** 2 - 0.5 * np.log(2 * np.pi) + sp_special.log_ndtr(row[:, None] + e[None]).sum(0)
    res.append(np.trapezoid(np.exp(lp), e))
  out[...] = np.asarray(res).reshape(out.shape)
  return out


# ==========================================================================================================
# toy
# ==========================================================================================================

TOY_X = np.array([-0.25, 0.0, 0.25], np.float32)
TOY_L = np.array([-1.0, -1.0, 1.0], np.float32)


def _toy_logits(k, b):
  f = k * (jnp.asarray(TOY_X) - b)
  return jnp.stack([jnp.zeros_like(f), f], -1)


def _toy_labels():
  return jnp.asarray((TOY_L > 0).astype(np.int32))


def _toy_ce(k, b):
  return jnp.mean(jax.nn.softplus(-jnp.asarray(TOY_L) * k * (jnp.asarray(TOY_X) - b)))


def _toy_hinge(k, b):
  return jnp.mean(jax.nn.relu(1.0 - jnp.asarray(TOY_L) * k * (jnp.asarray(TOY_X) - b)))


def _toy_acc(k, b):
  return float(np.mean(np.sign(k * (TOY_X - b)) == TOY_L))


def _train(loss, params, steps, tx):
  @jax.jit
  def run(params):
    def step(carry, _):
      p, st = carry
      g = jax.grad(loss)(p)
      u, st = tx.update(g, st, p)
      return (optax.apply_updates(p, u), st), None
    (p, _), _ = jax.lax.scan(step, (params, tx.init(params)), None, length=steps)
    return p
  return jax.tree_util.tree_map(float, run(params))


def run_toy(cfg, workdir, res: Results):
  t = cfg.toy
  bs = np.arange(t.b_min, t.b_max + t.b_step / 2, t.b_step).astype(np.float32)
  ce = np.asarray(jax.vmap(lambda b: _toy_ce(1.0, b))(bs))
  hi = np.asarray(jax.vmap(lambda b: _toy_hinge(1.0, b))(bs))
  b_ce = float(bs[np.argmin(ce)])
  hmin = hi.min()
  flat = bs[hi <= hmin + 1e-6]
  b_h_lo, b_h_hi = float(flat.min()), float(flat.max())
  b_h = float(bs[np.argmin(hi)])
  res.add("toy_ce_b", b_ce)
  res.add("toy_ce_acc", _toy_acc(1.0, b_ce))
  res.add("toy_hinge_b", b_h)
  res.add("toy_hinge_b_lo", b_h_lo)
  res.add("toy_hinge_b_hi", b_h_hi)
  res.add("toy_hinge_acc", _toy_acc(1.0, 0.5 * (b_h_lo + b_h_hi)))
  res.rows.append(Row("toy: CE optimum b (f = x - b, grid step %g)" % t.b_step, "0.7", fmt(b_ce, 3),
                      "agrees" if abs(b_ce - 0.7) <= 0.01 else "differs",
                      f"accuracy {_toy_acc(1.0, b_ce) * 3:.0f}/3 (the point (0.25,+1) is misclassified)"))
  res.rows.append(Row("toy: hinge optimal set of b", "[0.75, 1]", f"[{b_h_lo:.3f}, {b_h_hi:.3f}]",
                      "agrees" if abs(b_h_lo - 0.75) < 0.01 and abs(b_h_hi - 1.0) < 0.01 else "differs",
                      "hinge is flat (=1.75/3) on this interval; accuracy 2/3 there"))
  perfect = bs[(np.sign(TOY_X[None] - bs[:, None]) == TOY_L[None]).all(1)]
  res.rows.append(Row("toy: region of perfect accuracy", "(0, 0.25)",
                      f"[{perfect.min():.3f}, {perfect.max():.3f}] on the grid", "agrees"
                      if perfect.min() > 0 and perfect.max() < 0.25 else "differs", ""))

  # EXACT with trainable log sigma (1-D model f = x - b), SGD as the fork's toy example.
  labels = _toy_labels()

  def exact_toy(p):
    return exact.exact_loss(_toy_logits(1.0, p["b"]), labels, jnp.exp(p["log_sigma"]))

  p = _train(exact_toy, {"b": jnp.float32(t.exact_init_b), "log_sigma": jnp.float32(t.exact_init_log_sigma)},
             int(t.exact_steps), optax.sgd(t.exact_lr))
  acc = _toy_acc(1.0, p["b"])
  res.add("toy_exact_b", p["b"])
  res.add("toy_exact_sigma", np.exp(p["log_sigma"]))
  res.add("toy_exact_acc", acc)
  res.rows.append(Row("toy: EXACT (trainable sigma) final b / accuracy", "b in (0, 0.25), acc 1 (paper)",
                      f"b = {p['b']:.3f}, sigma = {np.exp(p['log_sigma']):.3g}, acc = {acc:.3f}",
                      "agrees" if acc == 1.0 else "differs",
                      f"SGD lr {t.exact_lr}, {t.exact_steps} steps from b = {t.exact_init_b} (the CE optimum), "
                      f"sigma = {np.exp(t.exact_init_log_sigma):.3g}"))

  # Su's objection: give CE and hinge the same scale freedom, f = k (x - b).
  for name, fn in (("ce", _toy_ce), ("hinge", _toy_hinge)):
    q = _train(lambda p, fn=fn: fn(p["k"], p["b"]), {"k": jnp.float32(1.0), "b": jnp.float32(0.7)},
               int(t.scale_steps), optax.adam(t.scale_lr))
    a = _toy_acc(q["k"], q["b"])
    res.add(f"toy_scale_{name}_b", q["b"])
    res.add(f"toy_scale_{name}_k", q["k"])
    res.add(f"toy_scale_{name}_acc", a)
    res.rows.append(Row(f"toy: {name} with learnable scale k(x - b)", "correct b, acc 1 (Su's objection)",
                        f"b = {q['b']:.3f}, k = {q['k']:.3g}, acc = {a:.3f}",
                        "agrees" if a == 1.0 else "differs",
                        f"Adam lr {t.scale_lr}, {t.scale_steps} steps from (k, b) = (1, 0.7)"))

  plt = _plt()
  fig, ax = plt.subplots(figsize=(7, 4.2))
  ax.plot(bs, ce, label="sigmoid-CE")
  ax.plot(bs, hi, label="hinge")
  for s in _csv(t.plot_sigmas, float):
    ex = np.asarray(jax.vmap(lambda b: exact.exact_loss(_toy_logits(1.0, b), labels, s))(bs))
    ax.plot(bs, ex, "--", label=f"EXACT 1-E[p], sigma={s:g}")
  err = 1.0 - (np.sign(TOY_X[None] - bs[:, None]) == TOY_L[None]).mean(1)
  ax.plot(bs, err, "k:", label="0-1 error")
  ax.axvspan(0, 0.25, color="g", alpha=0.1, label="perfect accuracy")
  ax.axvline(b_ce, color="C0", lw=0.5)
  ax.set_xlabel("b"); ax.set_ylabel("loss"); ax.set_title("Toy example (f(x) = x - b): loss vs b")
  ax.legend(fontsize=7); fig.tight_layout()
  path = os.path.join(workdir, "toy_losses.png"); write_figure(fig, path, dpi=110); plt.close(fig)
  res.plots.append(path)


# ==========================================================================================================
# tabular (paper Table 1 protocol)
# ==========================================================================================================

REG_GRID = (0.0, 1e-4, 1e-3, 1e-2, 0.1, 1.0)
CLIP_GRID = (0.01, 0.1, 1.0, 10.0)
LR_GRID = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0)
MARGIN_GRID = (None, 0.0, 0.1, 0.5, 1.0, 5.0, 10.0)
EPS_GRID = (0.1, 0.5, 1.0, 2.0, 4.0, 10.0)


def _standardise(train, *others):
  mu = train.mean(0)
  sd = np.maximum(train.std(0), 1e-6)
  return [(a - mu) / sd for a in (train,) + others]


def load_tabular(name, t):
  from sklearn.model_selection import train_test_split
  try:
    from research import data
    X, y = data.load_sklearn(name)
  except ImportError:  # pragma: no cover - foundation not present
    from sklearn import datasets
    d = {"breast_cancer": datasets.load_breast_cancer, "wine": datasets.load_wine}[name]()
    X, y = d.data.astype(np.float32), d.target.astype(np.int64)
  Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=t.test_size, random_state=t.split_seed)
  Xsub, Xval, ysub, yval = train_test_split(Xtr, ytr, test_size=t.val_size, random_state=t.split_seed)
  return {"train": (Xtr, ytr), "test": (Xte, yte), "sub": (Xsub, ysub), "val": (Xval, yval),
          "num_classes": int(y.max()) + 1}


def sample_trials(method, num_trials, rng):
  """Random-search trials from the paper's grids (dict of float arrays, one entry per trial)."""
  hp = {"seed": [], "reg": [], "clip": [], "lr": [], "margin": [], "eps": []}
  for _ in range(num_trials):
    hp["seed"].append(rng.integers(10))
    hp["reg"].append(rng.choice(REG_GRID))
    hp["clip"].append(rng.choice(CLIP_GRID))
    hp["lr"].append(rng.choice(LR_GRID))
    m = MARGIN_GRID[rng.integers(len(MARGIN_GRID))]
    if m is None:  # "none": no margin clipping for EXACT, the default margin 1 for hinge
      m = np.inf if method == "exact" else 1.0
    hp["margin"].append(m)
    hp["eps"].append(rng.choice(EPS_GRID))
  return {k: np.asarray(v, np.int32 if k == "seed" else np.float32) for k, v in hp.items()}


def _tab_loss(method, logits, yb, temperature, hp, key, num_samples):
  if method == "ce":
    return surrogates.cross_entropy(logits, yb)
  if method == "hinge":
    return surrogates.hinge(logits, yb, margin=hp["margin"])
  if method == "sigmoid":
    return surrogates.sigmoid_loss(logits, yb, temperature)
  if method == "beta_bernoulli":
    return surrogates.beta_bernoulli_loss(logits, yb, temperature)  # h frozen at 0, as in the script
  if method == "polynomial":
    return surrogates.polynomial_loss(logits, yb, temperature)
  if method == "polyloss":
    return surrogates.poly1_loss(logits, yb, hp["eps"])
  if method == "exact":
    return exact.exact_loss(logits, yb, temperature, margin=hp["margin"], standardize=True,
                            method="sampling", key=key, num_samples=num_samples)
  raise ValueError(f"unknown tabular method {method!r}")


def _linear_logits(params, x):
  z = x @ params["W"] + params["b"]
  return jnp.concatenate([jnp.zeros(z.shape[:-1] + (1,), z.dtype), z], -1)  # constant zero logit, class 0


def tabular_schedule(n_train, t):
  """(repeats R, steps per epoch): the train set is repeated floor(target*256/N) times per epoch."""
  reps = max(1, (int(t.target_steps_per_epoch) * int(t.batch_size)) // n_train)
  spe = max(1, (reps * n_train) // int(t.batch_size))
  return reps, spe


@functools.lru_cache(maxsize=64)
def make_tabular_trainer(method, num_features, num_classes, n_train, num_epochs, spe, reps, batch_size,
                         sigma_initial, sigma_min, final_lr, num_samples):
  """jit(vmap(train)) over trials: returns final params and per-epoch (train CE, 1 - E[p]) diagnostics."""
  sched_t = gn.sigma_schedule(sigma_initial, sigma_min, num_epochs, spe)

  def train(hp, X, y):
    key = jax.random.key(hp["seed"])
    kw, kb, kdata, kloss = jax.random.split(key, 4)
    bound = 1.0 / np.sqrt(num_features)  # torch nn.Linear default init
    params = {"W": jax.random.uniform(kw, (num_features, num_classes - 1), jnp.float32, -bound, bound),
              "b": jax.random.uniform(kb, (num_classes - 1,), jnp.float32, -bound, bound)}
    first = gn.gradient_normalizer() if method == "exact" else optax.clip_by_global_norm(hp["clip"])
    tx = optax.chain(first, optax.add_decayed_weights(hp["reg"], mask={"W": True, "b": False}),
                     optax.sgd(gn.epoch_exponential_lr(hp["lr"], final_lr, num_epochs, spe), momentum=0.9))
    opt = tx.init(params)

    def step(carry, xs):
      params, opt = carry
      idx, count = xs
      xb, yb = X[idx], y[idx]
      g = jax.grad(lambda p: _tab_loss(method, _linear_logits(p, xb), yb, sched_t(count), hp,
                                       jax.random.fold_in(kloss, count), num_samples))(params)
      upd, opt = tx.update(g, opt, params)
      return (optax.apply_updates(params, upd), opt), None

    def epoch(carry, e):
      perm = jax.random.permutation(jax.random.fold_in(kdata, e), reps * n_train) % n_train
      idx = perm[: spe * batch_size].reshape(spe, batch_size)
      carry, _ = jax.lax.scan(step, carry, (idx, e * spe + jnp.arange(spe)))
      ce, one_minus_p = exact.ce_and_smoothed_accuracy(_linear_logits(carry[0], X), y)
      return carry, (jnp.mean(ce), jnp.mean(one_minus_p))

    (params, _), diag = jax.lax.scan(epoch, (params, opt), jnp.arange(num_epochs))
    return params, diag

  return jax.jit(jax.vmap(train, in_axes=(0, None, None)))


def _acc_many(params, X, y):
  logits = jax.vmap(_linear_logits, in_axes=(0, None))(params, jnp.asarray(X))
  return np.asarray(jnp.mean(jnp.argmax(logits, -1) == jnp.asarray(y)[None], axis=-1))


def _sklearn_baseline(d):
  from sklearn.linear_model import LogisticRegression
  def fit(reg, X, y):
    kw = {"C": 1.0 / reg} if reg > 0 else {"C": np.inf}   # L2 penalty; reg 0 = no penalty
    return LogisticRegression(max_iter=100000, **kw).fit(X, y)
  Xs, Xv = _standardise(d["sub"][0], d["val"][0])
  best = None
  for reg in REG_GRID:
    m = fit(reg, Xs, d["sub"][1])
    key = (m.score(Xv, d["val"][1]), m.score(Xs, d["sub"][1]))
    if best is None or key > best[0]:
      best = (key, reg)
  Xtr, Xte = _standardise(d["train"][0], d["test"][0])
  m = fit(best[1], Xtr, d["train"][1])
  return 100.0 * m.score(Xte, d["test"][1]), {"reg": best[1]}


def run_tabular(cfg, workdir, res: Results):
  t = cfg.tab
  methods = _csv(t.methods)
  summary = {}
  corr_rows = []
  for name in _csv(t.datasets):
    d = load_tabular(name, t)
    C = d["num_classes"]
    summary[name] = {}
    for mi, method in enumerate(methods):
      t0 = time.time()
      if method == "sklearn":
        acc, best = _sklearn_baseline(d)
        accs = np.array([acc])
      else:
        rng = np.random.default_rng([int(t.search_seed), mi, len(name)])
        trials = sample_trials(method, int(t.num_trials), rng)
        Xs, Xv = _standardise(d["sub"][0], d["val"][0])
        reps, spe = tabular_schedule(len(Xs), t)
        trainer = make_tabular_trainer(method, Xs.shape[1], C, len(Xs), int(t.num_epochs), spe, reps,
                                       int(t.batch_size), float(t.sigma_initial), float(t.sigma_min),
                                       float(t.final_lr), int(t.num_samples))
        params, _ = trainer(trials, jnp.asarray(Xs, jnp.float32), jnp.asarray(d["sub"][1], jnp.int32))
        val = _acc_many(params, Xv, d["val"][1])
        tr = _acc_many(params, Xs, d["sub"][1])
        i = max(range(len(val)), key=lambda j: (val[j], tr[j]))   # best val, ties by train accuracy
        best = {k: float(v[i]) for k, v in trials.items() if k != "seed"}
        final = {k: np.repeat(v[i:i + 1], int(t.num_seeds)) for k, v in trials.items()}
        final["seed"] = np.arange(int(t.num_seeds), dtype=np.int32)
        Xtr, Xte = _standardise(d["train"][0], d["test"][0])
        reps, spe = tabular_schedule(len(Xtr), t)
        trainer = make_tabular_trainer(method, Xtr.shape[1], C, len(Xtr), int(t.num_epochs), spe, reps,
                                       int(t.batch_size), float(t.sigma_initial), float(t.sigma_min),
                                       float(t.final_lr), int(t.num_samples))
        params, (ce_curve, omp_curve) = trainer(final, jnp.asarray(Xtr, jnp.float32),
                                                jnp.asarray(d["train"][1], jnp.int32))
        accs = 100.0 * _acc_many(params, Xte, d["test"][1])
        if method == "ce":
          ce_c, omp_c = np.asarray(ce_curve).mean(0), np.asarray(omp_curve).mean(0)
          if len(ce_c) >= 3:
            r = exact.pearson(ce_c, omp_c)
            res.add(f"{name}_ce_vs_1mp_corr", r)
            corr_rows.append((name, r, ce_c[-1], omp_c[-1]))
      mean, std = float(np.mean(accs)), float(np.std(accs))
      print(f"[exact/tabular] {name} {method}: {mean:.2f} ± {std:.2f} ({time.time() - t0:.0f} s)", flush=True)
      summary[name][method] = (mean, std)
      res.add(f"{name}_{method}", mean)
      res.add(f"{name}_{method}_std", std)
      pub = PUBLISHED_TABULAR.get(name, {}).get(method)
      tol = 100.0 / TEST_SIZES.get(name, 100) + 1e-6
      verdict = "-" if pub is None else ("agrees" if abs(mean - pub) <= tol else "differs")
      best_s = ", ".join(f"{k}={v:g}" for k, v in best.items()
                         if not (k == "margin" and method not in ("exact", "hinge"))
                         and not (k == "clip" and method == "exact")
                         and not (k == "eps" and method != "polyloss"))
      res.rows.append(Row(f"{name}: {method} test acc (%)", "-" if pub is None else f"{pub:.2f}",
                          f"{mean:.2f} ± {std:.2f}", verdict,
                          f"tolerance one test sample ({tol:.2f}); selected {best_s}; {time.time() - t0:.0f} s"))
  for name, r, ce_last, omp_last in corr_rows:
    res.rows.append(Row(f"{name}: corr(CE, 1 - E[p]) over CE training epochs", "≈ 1 late in training (Su)",
                        f"{r:.3f}", "agrees" if r > 0.9 else "differs",
                        f"final train CE {ce_last:.3f} vs 1 - E[p] {omp_last:.3f}"))
  res.notes.append(
      "Tabular protocol: scikit-learn's copies of the UCI files, `train_test_split(test_size=0.2, random_state=0)` "
      "(test: 114 breast-cancer / 36 wine samples, so one sample = 0.88 / 2.78 points), validation = 20 % of train, "
      f"{t.num_trials} random trials from the paper's grids (best val, ties by train acc), then {t.num_seeds} seeds; "
      f"linear C-1 model + zero logit; SGD momentum 0.9, {t.num_epochs} epochs of ~{t.target_steps_per_epoch} "
      "steps (train set repeated), LR decays per epoch to 1e-4; sigma / temperature 10 -> 0.01; EXACT: Genz "
      f"estimator ({t.num_samples} samples), logit standardisation, gradient normaliser; others: gradient clipping. "
      "Each method's search is one jitted vmap over trials. Random-search draws and initialisation differ from "
      "the paper's (torch) run, so the selected hyperparameters, and thus single-sample differences, can differ.")
  plt = _plt()
  fig, axes = plt.subplots(1, len(summary), figsize=(5 * len(summary), 3.8), squeeze=False)
  for ax, (name, s) in zip(axes[0], summary.items()):
    ms = list(s)
    ax.bar(range(len(ms)), [s[m][0] for m in ms], yerr=[s[m][1] for m in ms], color="C0", alpha=0.7,
           label="measured")
    pubs = [PUBLISHED_TABULAR.get(name, {}).get(m, np.nan) for m in ms]
    ax.plot(range(len(ms)), pubs, "r_", ms=18, mew=2, label="published")
    ax.set_xticks(range(len(ms))); ax.set_xticklabels(ms, rotation=45, ha="right", fontsize=8)
    ax.bar_label(ax.containers[-1], fmt="%.1f", fontsize=7)   # bars start at 0; the labels carry the differences
    ax.set_ylim(0, 100.5); ax.set_title(f"{name}: test accuracy (%)"); ax.legend(fontsize=7)
  fig.tight_layout()
  path = os.path.join(workdir, "tabular.png"); write_figure(fig, path, dpi=110); plt.close(fig)
  res.plots.append(path)


# ==========================================================================================================
# fashion (from-scratch CNN)
# ==========================================================================================================

def _load_fashion(cfg):
  from research import data
  xtr, ytr = data.load_fashion_mnist("train", cfg.data_dir)
  xte, yte = data.load_fashion_mnist("test", cfg.data_dir)
  n, m = int(cfg.fm.train_size), int(cfg.fm.test_size)
  rng = np.random.default_rng(0)
  itr = rng.permutation(len(xtr))[:n]
  prep = lambda x: (x.astype(np.float32) / 255.0 - 0.2860) / 0.3530
  return prep(xtr[itr])[..., None], ytr[itr].astype(np.int32), prep(xte[:m])[..., None], yte[:m].astype(np.int32)


def _fashion_arm_loss(arm, logits, y, count, key, f, sigma_fn):
  if arm == "ce":
    return surrogates.cross_entropy(logits, y)
  if arm == "smoothed_accuracy":
    return surrogates.smoothed_accuracy_loss(logits, y)
  if arm == "polyloss":
    return surrogates.poly1_loss(logits, y, 1.0)
  if arm == "hinge":
    return surrogates.hinge(logits, y, 1.0)
  if arm in ("exact_mean", "exact_meanlog"):
    return exact.exact_loss(logits, y, sigma_fn(count), aggregation=arm.split("_")[1], margin=f.margin,
                            standardize=True, method=f.estimator, key=key, num_samples=int(f.num_samples))
  raise ValueError(f"unknown fashion arm {arm!r}")


def _fashion_model(f):
  """The small from-scratch CNN: 3x3 convs (``pool="max"``: conv + 2x2 max-pool; ``"stride"``: stride-2 conv,
  ~7x cheaper on the CPU, where XLA's max-pool backward is slow), a hidden dense layer, 10 logits."""
  import flax.linen as nn
  channels = tuple(_csv(f.channels, int))
  pool = str(f.pool)
  if pool not in ("max", "stride"):
    raise ValueError(f"fashion: pool must be 'max' or 'stride', got {pool!r}.")
  hidden = int(f.hidden)

  class CNN(nn.Module):
    @nn.compact
    def __call__(self, x):
      for c in channels:
        if pool == "max":
          x = nn.max_pool(nn.relu(nn.Conv(c, (3, 3))(x)), (2, 2), (2, 2))
        else:
          x = nn.relu(nn.Conv(c, (3, 3), strides=(2, 2))(x))
      x = nn.relu(nn.Dense(hidden)(x.reshape(x.shape[0], -1)))
      return nn.Dense(10)(x)
  return CNN()


def _fashion_tx(arm, opt, f, E, spe):
  """normaliser (EXACT) or clipping (others) -> weight decay -> SGD momentum 0.9 / Adam, LR decayed per epoch."""
  is_exact = arm.startswith("exact")
  if opt == "sgd":
    base = optax.sgd(gn.epoch_exponential_lr(f.lr_exact if is_exact else f.lr_ce, f.final_lr, E, spe),
                     momentum=0.9)
  elif opt == "adam":
    base = optax.adam(gn.epoch_exponential_lr(f.lr_adam, f.final_lr, E, spe))
  else:
    raise ValueError(f"fashion: unknown optimizer {opt!r}; use 'sgd' or 'adam'.")
  first = gn.gradient_normalizer() if is_exact else optax.clip_by_global_norm(f.clip_ce)
  return optax.chain(first, optax.add_decayed_weights(f.weight_decay), base)


def run_fashion(cfg, workdir, res: Results):
  f = cfg.fm
  log = RunLog(workdir)
  xtr, ytr, xte, yte = _load_fashion(cfg)
  E, spe, bs = int(f.num_epochs), int(f.steps_per_epoch), int(f.batch_size)
  S = int(f.num_seeds)
  if spe * bs > len(xtr):
    raise ValueError(f"fashion: steps_per_epoch * batch_size = {spe * bs} exceeds train_size {len(xtr)}.")
  if xte.shape[0] % 500 and xte.shape[0] > 500:
    raise ValueError("fashion: test_size must be <= 500 or a multiple of 500.")
  chunk = min(500, xte.shape[0])
  model = _fashion_model(f)
  sigma_fn = gn.variance_schedule(f.initial_variance, f.min_variance, E, spe)
  Xtr, Ytr, Xte, Yte = map(jnp.asarray, (xtr, ytr, xte, yte))
  arms, opts = _csv(f.arms), _csv(f.optimizers)
  total_units, done = len(opts) * len(arms) * S * E, 0
  t_start = time.time()
  log(f"[exact/fashion] {len(opts)} optimizer(s) x {len(arms)} arms x {S} seeds x {E} epochs of {spe} steps "
      f"(batch {bs}, {len(xtr)} train / {len(xte)} test images); progress every epoch")
  out, curves = {}, {}
  for opt in opts:
    for arm in arms:
      t0 = time.time()
      tx = _fashion_tx(arm, opt, f, E, spe)

      def init(seed, tx=tx):
        kinit, kdata, kloss = jax.random.split(jax.random.key(seed), 3)
        params = model.init(kinit, jnp.zeros((1, 28, 28, 1), jnp.float32))
        return (params, tx.init(params)), kdata, kloss

      # One jitted step driven from Python: on the XLA CPU a lax.scan over these steps runs ~30x slower
      # (measured: 1.65 s vs 0.05 s per step), so only the step is compiled.
      def train_step(carry, idx, count, kloss, X, Y, arm=arm, tx=tx):
        params, opt_state = carry
        xb, yb = X[idx], Y[idx]

        def loss_fn(p):
          logits = model.apply(p, xb)
          loss = _fashion_arm_loss(arm, logits, yb, count, jax.random.fold_in(kloss, count), f, sigma_fn)
          return loss, logits
        (loss, logits), g = jax.value_and_grad(loss_fn, has_aux=True)(params)
        upd, opt_state = tx.update(g, opt_state, params)
        ce, omp = exact.ce_and_smoothed_accuracy(jax.lax.stop_gradient(logits), yb)
        return (optax.apply_updates(params, upd), opt_state), jnp.stack(
            [loss, jnp.mean(ce), jnp.mean(omp), surrogates.accuracy(logits, yb)])

      def epoch_perm(kdata, e, n=Xtr.shape[0]):
        return jax.random.permutation(jax.random.fold_in(kdata, e), n)[: spe * bs].reshape(spe, bs)

      def evaluate(params, X, Y):   # chunks from Python too (a lax.map over convs is slow on the CPU)
        hits = [jnp.sum(jnp.argmax(apply_j(params, X[i:i + chunk]), -1) == Y[i:i + chunk])
                for i in range(0, X.shape[0], chunk)]
        return float(sum(int(h) for h in hits)) / X.shape[0]

      init_j, step_j, perm_j = jax.jit(init), jax.jit(train_step), jax.jit(epoch_perm)
      apply_j = jax.jit(model.apply)
      accs, logs = [], []
      for s in range(S):
        carry, kdata, kloss = init_j(int(cfg.seed) + s)
        seed_logs = []
        for e in range(E):
          perm = perm_j(kdata, e)
          step_logs = []
          for i in range(spe):
            carry, m = step_j(carry, perm[i], jnp.int32(e * spe + i), kloss, Xtr, Ytr)
            step_logs.append(m)
          lg = list(np.asarray(jnp.stack(step_logs)).T)   # loss, ce, 1-p, acc per step
          seed_logs.append(lg)
          done += 1
          el = time.time() - t_start
          log(f"[exact/fashion] {opt}/{arm} seed {s + 1}/{S} epoch {e + 1}/{E}: loss {lg[0].mean():.4f}, "
              f"train batch acc {lg[3].mean():.3f} | {el:.0f} s elapsed, ETA {el / done * (total_units - done):.0f} s")
        accs.append(100.0 * evaluate(carry[0], Xte, Yte))
        logs.append([np.concatenate([lg[i] for lg in seed_logs]) for i in range(4)])
        log(f"[exact/fashion] {opt}/{arm} seed {s + 1}/{S}: test acc {accs[-1]:.2f}")
      accs = np.asarray(accs)
      name = arm if opt == "sgd" else f"{opt}_{arm}"
      out[(opt, arm)] = accs
      curves[(opt, arm)] = [np.mean([lg[i] for lg in logs], 0) for i in range(4)]  # loss, ce, 1-p, acc
      log(f"[exact/fashion] {opt}/{arm}: {accs.mean():.2f} ± {accs.std():.2f} ({time.time() - t0:.0f} s)")
      res.add(f"fashion_{name}_acc", accs.mean())
      res.add(f"fashion_{name}_acc_std", accs.std())
      res.add(f"fashion_{name}_time_s", time.time() - t0)

  expect = {"ce": "best from scratch (Su)", "smoothed_accuracy": "below CE from scratch (Su, 10145)",
            "exact_mean": "below CE (Su); ≈ CE (paper Table 2)", "exact_meanlog": "no better than exact_mean (Su)",
            "polyloss": "≈ CE", "hinge": "below CE"}
  steps_note = f"{S} seeds, {E * spe} steps of batch {bs} on {len(xtr)} train images, {len(xte)} test images"
  for opt in opts:
    ce = out.get((opt, "ce"))
    for arm in arms:
      accs = out[(opt, arm)]
      if ce is None or arm == "ce":
        verdict = "-"
      else:
        diff = accs.mean() - ce.mean()
        noise = max(2 * np.sqrt(np.std(ce) ** 2 + np.std(accs) ** 2), 0.1)
        verdict = ("CE wins: agrees with Su" if diff < -noise else
                   "within seed noise of CE" if abs(diff) <= noise else "beats CE: agrees with the paper, not Su")
      if arm == "exact_meanlog" and (opt, "exact_mean") in out:
        verdict += f"; vs exact_mean {accs.mean() - out[(opt, 'exact_mean')].mean():+.2f}"
      seeds_s = ", ".join(f"{a:.2f}" for a in accs)
      res.rows.append(Row(f"fashion ({opt}): {arm} test acc (%)", expect.get(arm, "-"),
                          f"{accs.mean():.2f} ± {accs.std():.2f}", verdict,
                          f"per seed: {seeds_s}; {steps_note}"))
    if ce is not None and len(arms) > 1:
      others = {a: out[(opt, a)] for a in arms if a != "ce"}
      best = max(others, key=lambda a: others[a].mean())
      b = others[best]
      gap = ce.mean() - b.mean()
      noise = max(2 * np.sqrt(np.std(ce) ** 2 + np.std(b) ** 2), 0.1)
      wins = bool(gap > noise)
      res.add(f"fashion_{opt}_ce_wins", float(wins))
      res.add(f"fashion_{opt}_ce_minus_best_other", gap)
      res.rows.append(Row(f"fashion ({opt}): does CE win from scratch?", "yes (Su); EXACT ≈ CE (paper)",
                          f"{'yes' if wins else 'no' if gap < -noise else 'tie'}: CE {ce.mean():.2f} ± "
                          f"{ce.std():.2f} vs best other ({best}) {b.mean():.2f} ± {b.std():.2f}",
                          "agrees with Su" if wins else "differs from Su",
                          f"gap {gap:+.2f} points; seed noise 2·sqrt(std_CE² + std_other²) = {noise:.2f} "
                          f"({S} seeds, std over seeds)"))
  ce_key = ("sgd", "ce") if ("sgd", "ce") in curves else next((k for k in curves if k[1] == "ce"), None)
  if ce_key is not None:
    ce_c, omp_c = curves[ce_key][1], curves[ce_key][2]
    w = max(1, int(f.log_every))
    n = len(ce_c) // w
    ce_w, omp_w = ce_c[: n * w].reshape(n, w).mean(1), omp_c[: n * w].reshape(n, w).mean(1)
    if n >= 3:
      r = exact.pearson(ce_w, omp_w)
      half = n // 2
      r_late = exact.pearson(ce_w[half:], omp_w[half:]) if n - half >= 3 else float("nan")
      res.add("fashion_ce_vs_1mp_corr", r)
      res.add("fashion_ce_vs_1mp_corr_late", r_late)
      res.add("fashion_ce_over_1mp_late", float(np.mean(ce_w[half:] / omp_w[half:])))
      res.rows.append(Row(f"fashion ({ce_key[0]}): corr(CE, 1 - E[p]) over CE training (all / 2nd half)",
                          "CE ≈ 1 - E[p] late in training (Su)", f"{r:.3f} / {r_late:.3f}",
                          "agrees" if r > 0.9 else "differs",
                          f"train-batch means over windows of {w} steps; ratio CE/(1-E[p]) in the 2nd half "
                          f"{np.mean(ce_w[half:] / omp_w[half:]):.2f} (>1: CE additionally weights the wrong "
                          "samples, -log p > 1 - p)"))
  res.notes.append(
      f"Fashion-MNIST from scratch: CNN {f.channels} channels ({f.pool} downsampling), dense {f.hidden}; "
      f"{steps_note}; optimizers {f.optimizers}. CE / 1-p: SGD momentum 0.9, lr {f.lr_ce}, clip {f.clip_ce}; "
      f"EXACT: lr {f.lr_exact}, gradient normaliser, variance {f.initial_variance} -> {f.min_variance}, margin "
      f"{f.margin}, logit standardisation, {f.estimator} estimator ({f.num_samples} samples); "
      + (f"Adam lr {f.lr_adam}; " if "adam" in opts else "") +
      f"weight decay {f.weight_decay}; LR decays per epoch of {spe} steps to {f.final_lr}. No hyperparameter "
      "search (the paper's selected MNIST settings for EXACT, a common CE setting). The paper's vision protocol "
      "(WRN / M3, 150-500 epochs, tuned lr / clip / min-variance, augmentation) is far beyond this CPU: compare "
      f"directions only. Wall time of the fashion part: {time.time() - t_start:.0f} s.")
  plt = _plt()
  fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
  for (opt, arm), c in curves.items():
    k = max(1, len(c[3]) // 50)
    sm = lambda a, k=k: np.convolve(a, np.ones(k) / k, mode="valid")
    axes[0].plot(sm(c[3]), label=f"{opt}/{arm}")
  axes[0].set_xlabel("step"); axes[0].set_ylabel("train batch accuracy (seed mean)"); axes[0].legend(fontsize=7)
  if ce_key is not None:
    axes[1].plot(curves[ce_key][1], label="CE (-log p)", alpha=0.7)
    axes[1].plot(curves[ce_key][2], label="1 - p", alpha=0.7)
    axes[1].set_yscale("log"); axes[1].set_xlabel("step"); axes[1].legend(fontsize=7)
    axes[1].set_title(f"{ce_key[0]}/CE arm: CE vs smoothed accuracy")
  fig.tight_layout()
  path = os.path.join(workdir, "fashion.png"); write_figure(fig, path, dpi=110); plt.close(fig)
  res.plots.append(path)


# ==========================================================================================================
# estimator: quadrature vs Genz
# ==========================================================================================================

def _moderate_logits(rng, rows, C, scale):
  """Logits whose label class is competitive (p in a training-like range), float32."""
  z = rng.normal(size=(rows, C)) * scale
  y = rng.integers(0, C, rows)
  others = np.where(np.arange(C)[None] == y[:, None], -np.inf, z).max(1)
  z[np.arange(rows), y] = others + rng.normal(size=rows) * scale
  return z.astype(np.float32), y.astype(np.int32)


@functools.lru_cache(maxsize=None)
def _quad_fn(K):
  return jax.jit(lambda z, y: exact.exact_prob(z, y, 1.0, method="quadrature", num_nodes=K))


@functools.lru_cache(maxsize=None)
def _quad_grad_fn(K):
  return jax.jit(jax.grad(lambda z, y: jnp.sum(exact.exact_prob(z, y, 1.0, method="quadrature", num_nodes=K))))


@functools.lru_cache(maxsize=None)
def _genz_fn(n):
  return jax.jit(lambda k, z, y: exact.exact_prob(z, y, 1.0, method="sampling", key=k, num_samples=n))


@functools.lru_cache(maxsize=None)
def _genz_grad_fn(n):
  return jax.jit(jax.grad(lambda z, k, y: jnp.sum(exact.exact_prob(z, y, 1.0, method="sampling", key=k,
                                                                      num_samples=n))))


K_LADDER = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)


def compare_estimators(z, y, sigma, num_samples, num_nodes, repeats, seed=0, k_ladder=K_LADDER):
  """Bias/std/rmse of Genz(n), error of quadrature(K), and the smallest K with error <= Genz rmse."""
  m = np.asarray(exact.exact_margins(z, y, sigma))
  ref = reference_orthant_prob(m)
  zs = z / sigma
  genz = _genz_fn(num_samples)
  draws = np.stack([np.asarray(genz(jax.random.key(seed * 1000 + r), zs, y)) for r in range(repeats)])
  bias = np.abs(draws.mean(0) - ref)
  std = draws.std(0)
  rmse = float(np.sqrt(np.mean((draws - ref[None]) ** 2)))
  q = np.asarray(_quad_fn(num_nodes)(zs, y))
  q_err = float(np.sqrt(np.mean((q - ref) ** 2)))
  q_again = np.asarray(_quad_fn(num_nodes)(zs, y))
  k_eq = None
  for K in k_ladder:
    e = float(np.sqrt(np.mean((np.asarray(_quad_fn(K)(zs, y)) - ref) ** 2)))
    if e <= rmse:
      k_eq = K
      break
  return {"ref_mean_p": float(ref.mean()), "genz_max_bias": float(bias.max()),
          "genz_bias_se": float((std / np.sqrt(repeats)).max()), "genz_mean_std": float(std.mean()),
          "genz_rmse": rmse, "quad_rmse": q_err, "quad_std": float(np.abs(q - q_again).max()),
          "k_equal_error": k_eq if k_eq is not None else k_ladder[-1]}


def run_estimator(cfg, workdir, res: Results):
  e = cfg.est
  log = RunLog(workdir)
  rng = np.random.default_rng(cfg.seed)
  table = {}
  t_start = time.time()
  for C in _csv(e.classes, int):
    log(f"[exact/estimator] C={C}: {e.rows} rows, {e.repeats} Genz draws ... ({time.time() - t_start:.0f} s elapsed)")
    z, y = _moderate_logits(rng, int(e.rows), C, float(e.logit_scale))
    st = compare_estimators(z, y, float(e.sigma), int(e.num_samples), int(e.num_nodes), int(e.repeats),
                            k_ladder=tuple(_csv(e.k_ladder, int)))
    zs = jnp.asarray(z / float(e.sigma)); yj = jnp.asarray(y)
    key = jax.random.key(0)
    st["t_genz"] = _timeit(_genz_grad_fn(int(e.num_samples)), zs, key, yj, repeats=3)
    st["t_quad"] = _timeit(_quad_grad_fn(int(e.num_nodes)), zs, yj, repeats=5)
    st["t_quad_eq"] = _timeit(_quad_grad_fn(st["k_equal_error"]), zs, yj, repeats=5)
    if C == 2:
      closed = np.asarray(exact.two_class_prob(jnp.asarray(z), yj, float(e.sigma)))
      q = np.asarray(_quad_fn(int(e.num_nodes))(zs, yj))
      st["quad_vs_closed_form"] = float(np.abs(q - closed).max())
      res.add("est_C2_quad_vs_closed_form", st["quad_vs_closed_form"])
    table[C] = st
    log(f"[exact/estimator] C={C}: Genz rmse {st['genz_rmse']:.1e}, quadrature rmse {st['quad_rmse']:.1e}, "
        f"fwd+bwd Genz {st['t_genz']:.3g} s / quadrature {st['t_quad']:.3g} s ({time.time() - t_start:.0f} s elapsed)")
    for k, v in st.items():
      res.add(f"est_C{C}_{k}", v)
    res.rows.append(Row(
        f"estimator C={C}: Genz(n={e.num_samples}) |bias| / std / rmse", "unbiased, stochastic (paper)",
        f"{st['genz_max_bias']:.1e} / {st['genz_mean_std']:.1e} / {st['genz_rmse']:.1e}",
        "agrees" if st["genz_max_bias"] <= 4 * st["genz_bias_se"] + 1e-6 else "biased?",
        f"mean p {st['ref_mean_p']:.3f}; bias within 4 SE ({4 * st['genz_bias_se']:.1e}) of the float64 oracle"))
    res.rows.append(Row(
        f"estimator C={C}: quadrature(K={e.num_nodes}) rmse / run-to-run spread", "deterministic (target)",
        f"{st['quad_rmse']:.1e} / {st['quad_std']:.0e}", "agrees" if st["quad_std"] == 0 else "differs",
        f"K={st['k_equal_error']} already matches Genz's rmse; fwd+bwd time Genz / quad(K={e.num_nodes}) = "
        f"{st['t_genz'] / st['t_quad']:.1f}x, Genz / quad(K={st['k_equal_error']}) = "
        f"{st['t_genz'] / st['t_quad_eq']:.1f}x"))
  res.notes.append(
      f"Estimator study: {e.rows} rows per C whose label class is competitive (label logit = max of the others + "
      f"N(0, {e.logit_scale}^2)), sigma = {e.sigma}; oracle = float64 trapezoid of the 1-D integral (4001 points "
      f"on [-9, 9]); Genz statistics over {e.repeats} keys; times are fwd+bwd (value and gradient) on the "
      "shared 2-core CPU.")
  plt = _plt()
  Cs = sorted(table)
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
  axes[0].loglog(Cs, [table[c]["genz_rmse"] for c in Cs], "o-", label=f"Genz n={e.num_samples} rmse")
  axes[0].loglog(Cs, [max(table[c]["quad_rmse"], 1e-12) for c in Cs], "s-", label=f"quadrature K={e.num_nodes}")
  axes[0].set_xlabel("classes C"); axes[0].set_ylabel("error of p"); axes[0].legend(fontsize=7)
  axes[1].loglog(Cs, [table[c]["t_genz"] for c in Cs], "o-", label="Genz fwd+bwd")
  axes[1].loglog(Cs, [table[c]["t_quad"] for c in Cs], "s-", label=f"quadrature K={e.num_nodes} fwd+bwd")
  axes[1].set_xlabel("classes C"); axes[1].set_ylabel("seconds"); axes[1].legend(fontsize=7)
  fig.tight_layout()
  path = os.path.join(workdir, "estimator.png"); write_figure(fig, path, dpi=110); plt.close(fig)
  res.plots.append(path)


# ==========================================================================================================
# bench
# ==========================================================================================================

def run_bench(cfg, workdir, res: Results):
  b = cfg.bench
  rng = np.random.default_rng(1)
  B = int(b.batch_size)
  ce_grad = jax.jit(jax.grad(lambda z, y: surrogates.cross_entropy(z, y)))
  for C in _csv(b.classes, int):
    z, y = _moderate_logits(rng, B, C, 2.0)
    zj, yj = jnp.asarray(z), jnp.asarray(y)
    # the library default (adaptive, mode-centred Gauss-Hermite; K from C) and the old default (GH K=16 at 0)
    ex_grad = jax.jit(jax.grad(lambda z, y: exact.exact_loss(z, y, 1.0)))
    ex_gh = jax.jit(jax.grad(lambda z, y: exact.exact_loss(z, y, 1.0, rule="gauss_hermite",
                                                           num_nodes=int(b.num_nodes))))
    for f in (ce_grad, ex_grad, ex_gh):
      jax.block_until_ready(f(zj, yj))
    ts = time_interleaved({"ce": lambda: jax.block_until_ready(ce_grad(zj, yj)),
                           "ex": lambda: jax.block_until_ready(ex_grad(zj, yj)),
                           "gh": lambda: jax.block_until_ready(ex_gh(zj, yj))}, int(b.repeats))
    t_ce, t_ex, t_gh = (float(np.median(ts[k])) for k in ("ce", "ex", "gh"))
    ratio = t_ex / t_ce
    k_def = perturb_max._default_num_nodes(perturb_max.get_noise("normal"), "adaptive", "pairwise", C)
    res.add(f"bench_C{C}_exact_over_ce", ratio)
    res.add(f"bench_C{C}_exact_gh{b.num_nodes}_over_ce", t_gh / t_ce)
    res.add(f"bench_C{C}_ce_ms", 1e3 * t_ce)
    res.add(f"bench_C{C}_exact_ms", 1e3 * t_ex)
    target = "<= 20x at C=1000 (issue target)" if C == 1000 else "-"
    res.rows.append(Row(f"bench B={B} C={C}: EXACT quadrature, library default (adaptive GH, K={k_def}) fwd+bwd / CE",
                        target, f"{ratio:.1f}x",
                        ("meets target" if ratio <= 20 else "misses target") if C == 1000 else "-",
                        f"CE {1e3 * t_ce:.3f} ms, EXACT {1e3 * t_ex:.3f} ms; old default (GH K={b.num_nodes} centred "
                        f"at 0, ~1e-3 relative error at C=1000): {t_gh / t_ce:.1f}x"))
    # Floors for any K-node quadrature: the B x C x K grid of integrand evaluations alone, (i) one exp per
    # node (the cheapest transcendental; a log-CDF costs more), (ii) jax's log-CDF forward + its backward.
    K = int(b.num_nodes)
    nodes = jnp.asarray(np.linspace(-3.0, 3.0, K), jnp.float32)
    floor_exp = jax.jit(lambda z: jnp.sum(jnp.exp(z[..., None] + nodes)))
    floor_lcdf = jax.jit(jax.grad(lambda z: jnp.sum(jax.scipy.special.log_ndtr(z[..., None] + nodes))))
    new_lcdf = jax.jit(jax.grad(lambda z: jnp.sum(special.log_ndtr(z[..., None] + nodes))))
    calls = {"ce": (ce_grad, (zj, yj)), "exp": (floor_exp, (zj,)), "jax": (floor_lcdf, (zj,)),
             "new": (new_lcdf, (zj,))}
    for f, args in calls.values():
      jax.block_until_ready(f(*args))
    ts = time_interleaved({k: (lambda f=f, a=a: jax.block_until_ready(f(*a))) for k, (f, a) in calls.items()},
                          int(b.repeats))
    t_ce2, t_fe, t_fl, t_fn = (float(np.median(ts[k])) for k in ("ce", "exp", "jax", "new"))
    res.add(f"bench_C{C}_floor_exp_over_ce", t_fe / t_ce2)
    res.add(f"bench_C{C}_floor_logcdf_over_ce", t_fl / t_ce2)
    res.add(f"bench_C{C}_new_logcdf_over_ce", t_fn / t_ce2)
    res.add(f"bench_C{C}_new_logcdf_over_jax_logcdf", t_fn / t_fl)
    res.rows.append(Row(f"bench B={B} C={C}: log Phi on the B x C x K={K} grid, fwd+bwd / CE", "-",
                        f"{t_fe / t_ce2:.1f}x (one exp, fwd) / {t_fl / t_ce2:.1f}x (jax log_ndtr) / "
                        f"{t_fn / t_ce2:.1f}x (research.special.log_ndtr)", "-",
                        f"new / jax log_ndtr fwd+bwd = {t_fn / t_fl:.2f} (issue target <= 0.5); new = "
                        f"{t_fn / t_fe:.1f} exp passes"))
    k_small = int(b.small_nodes)
    ex_small = jax.jit(jax.grad(lambda z, y: exact.exact_loss(z, y, 1.0, rule="gauss_hermite", num_nodes=k_small)))
    t_small = _timeit(ex_small, zj, yj, repeats=int(b.repeats))
    res.add(f"bench_C{C}_exact_K{k_small}_over_ce", t_small / t_ce)
    res.rows.append(Row(f"bench B={B} C={C}: EXACT quadrature (K={k_small}) fwd+bwd / CE", "-",
                        f"{t_small / t_ce:.1f}x", "-",
                        f"EXACT {1e3 * t_small:.3f} ms; K={k_small} is already as accurate as Genz n=16 (rows below)"))
    # quadrature vs Genz at equal error (Genz is O(n B C^2); timed on at most genz_max_batch rows)
    Bg = min(B, int(b.genz_max_batch))
    zg, yg = z[:Bg], y[:Bg]
    st = compare_estimators(zg, yg, 1.0, int(b.num_samples), int(b.num_nodes), repeats=5, seed=C,
                            k_ladder=tuple(_csv(b.k_ladder, int)))
    zgj, ygj = jnp.asarray(zg), jnp.asarray(yg)
    t_g = _timeit(_genz_grad_fn(int(b.num_samples)), zgj, jax.random.key(0), ygj, repeats=3)
    t_q = _timeit(_quad_grad_fn(st["k_equal_error"]), zgj, ygj, repeats=int(b.repeats))
    res.add(f"bench_C{C}_genz_over_quad_equal_error", t_g / t_q)
    res.add(f"bench_C{C}_k_equal_error", st["k_equal_error"])
    res.rows.append(Row(f"bench B={Bg} C={C}: Genz(n={b.num_samples}) / quadrature at equal error",
                        "> 1 and quadrature deterministic (target)", f"{t_g / t_q:.1f}x",
                        "meets target" if t_g / t_q > 1 and st["quad_std"] == 0 else "misses target",
                        f"quadrature K={st['k_equal_error']} reaches Genz rmse {st['genz_rmse']:.1e}; quadrature "
                        f"run-to-run spread {st['quad_std']:.0e}"))
  load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
  res.notes.append("Bench: median of jitted fwd+bwd calls after warm-up on the shared 2-core CPU (load average "
                   f"{load:.1f} at the end of the run, other jobs running): ratios are indicative; no GPU was "
                   "available in this run. The EXACT quadrature is the shared 9085 label-only integral "
                   "(perturb_max.log_integral), differentiated by autodiff at fixed nodes; each factor's derivative "
                   "phi/Phi comes from research.special.log_ndtr's custom JVP.")
  Cmax = max(_csv(b.classes, int))
  m = res.metrics
  if Cmax >= 1000 and f"bench_C{Cmax}_floor_exp_over_ce" in m:   # the issue target is at C=1000
    res.notes.append(
        f"What bounds the ratio at C={Cmax} (target <= 20x) on this CPU: cross-entropy costs about one exp per logit "
        f"(B x C), while a K-node quadrature evaluates log Phi at the B x C x K grid forward and its derivative "
        f"backward. Measured on the K={b.num_nodes} grid: one exp per point {m[f'bench_C{Cmax}_floor_exp_over_ce']:.1f}x "
        f"CE (forward only); jax's log_ndtr fwd+bwd {m[f'bench_C{Cmax}_floor_logcdf_over_ce']:.0f}x; the shared "
        f"research.special.log_ndtr fwd+bwd {m[f'bench_C{Cmax}_new_logcdf_over_ce']:.0f}x "
        f"({m[f'bench_C{Cmax}_new_logcdf_over_jax_logcdf']:.2f}x jax's). EXACT with the default (adaptive, accurate "
        f"to ~1e-5 relative in value and gradient) measured {m[f'bench_C{Cmax}_exact_over_ce']:.0f}x: the remaining "
        "cost is the log-CDF evaluations themselves (about a dozen exp-equivalents per grid point forward: the "
        "rational erfcx, one log, one exp and two divisions), times K. The 20x target would need skipping the "
        "factors that are 1 to float precision (most of the C-1 alternatives are far behind the label), not done "
        "here, or a device where the evaluations are cheap relative to memory traffic. Fewer nodes with the old "
        f"centred rule are cheaper but less accurate (the K={b.small_nodes} row).")


PARTS = {"toy": run_toy, "tabular": run_tabular, "fashion": run_fashion, "estimator": run_estimator,
         "bench": run_bench}


def run(config, workdir: str) -> Results:
  os.makedirs(workdir, exist_ok=True)
  res = Results(title=f"Article 9098: training accuracy directly (EXACT) — {config.variant}")
  for part in _csv(config.parts):
    if part not in PARTS:
      raise ValueError(f"exact: unknown part {part!r}; valid parts: {sorted(PARTS)}")
    t0 = time.time()
    PARTS[part](config, workdir, res)
    res.add(f"time_{part}_s", time.time() - t0)
  return res
