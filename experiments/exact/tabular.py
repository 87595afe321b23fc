"""The paper's Table 1 protocol (spec 02 §5.2) on scikit-learn's breast-cancer and wine: a linear C-1 model,
a random search over the paper's grids as one population of trials, then the final seeds as one population.

Each run of a population has its own hyperparameters (``optax.inject_hyperparams``: lr, weight decay, clip;
``run_args``: margin, PolyLoss eps), its own initialisation and its own data order, all derived from
``config.seed`` and the run's seed.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from research import train
from research.losses import exact, surrogates
from research.optim import grad_normalizer as gn

REG_GRID = (0.0, 1e-4, 1e-3, 1e-2, 0.1, 1.0)
CLIP_GRID = (0.01, 0.1, 1.0, 10.0)
LR_GRID = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0)
MARGIN_GRID = (None, 0.0, 0.1, 0.5, 1.0, 5.0, 10.0)
EPS_GRID = (0.1, 0.5, 1.0, 2.0, 4.0, 10.0)
SEED_GRID = 10                       # the paper searches the seed too: {0..9}


@dataclasses.dataclass
class Split:
  X: np.ndarray
  y: np.ndarray


def standardise(train_x, *others):
  mu = train_x.mean(0)
  sd = np.maximum(train_x.std(0), 1e-6)
  return [((a - mu) / sd).astype(np.float32) for a in (train_x,) + others]


def load(name: str, t) -> dict:
  """The paper's splits: test = 20 % (random_state 0), validation = 20 % of train; standardised features."""
  from sklearn.model_selection import train_test_split
  from research import data
  X, y = data.load_sklearn(name)
  Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=t.test_size, random_state=t.split_seed)
  Xsub, Xval, ysub, yval = train_test_split(Xtr, ytr, test_size=t.val_size, random_state=t.split_seed)
  sub, val = standardise(Xsub, Xval)
  full, test = standardise(Xtr, Xte)
  i32 = lambda a: a.astype(np.int32)
  return {"sub": Split(sub, i32(ysub)), "val": Split(val, i32(yval)), "train": Split(full, i32(ytr)),
          "test": Split(test, i32(yte)), "num_classes": int(y.max()) + 1}


def sample_trials(method: str, num_trials: int, rng: np.random.Generator) -> dict:
  """Random-search trials from the paper's grids (one float array per hyperparameter, one entry per trial)."""
  hp = {"seed": [], "reg": [], "clip": [], "lr": [], "margin": [], "eps": []}
  for _ in range(num_trials):
    hp["seed"].append(rng.integers(SEED_GRID))
    hp["reg"].append(rng.choice(REG_GRID))
    hp["clip"].append(rng.choice(CLIP_GRID))
    hp["lr"].append(rng.choice(LR_GRID))
    m = MARGIN_GRID[rng.integers(len(MARGIN_GRID))]
    if m is None:  # "none": no margin clipping for EXACT, the default margin 1 for hinge
      m = np.inf if method == "exact" else 1.0
    hp["margin"].append(m)
    hp["eps"].append(rng.choice(EPS_GRID))
  return {k: np.asarray(v, np.int64 if k == "seed" else np.float32) for k, v in hp.items()}


def describe(method: str, hp: dict) -> str:
  """The selected hyperparameters that matter for ``method``."""
  keep = {"reg", "lr"} | ({"clip"} if method != "exact" else set()) | (
      {"margin"} if method in ("exact", "hinge") else set()) | ({"eps"} if method == "polyloss" else set())
  return ", ".join(f"{k}={float(hp[k]):g}" for k in ("reg", "clip", "lr", "margin", "eps") if k in keep and k in hp)


def linear_logits(params, x):
  z = x @ params["W"] + params["b"]
  return jnp.concatenate([jnp.zeros(z.shape[:-1] + (1,), z.dtype), z], -1)  # constant zero logit, class 0


def method_loss(method, logits, y, temperature, args, key, num_samples):
  if method == "ce":
    return surrogates.cross_entropy(logits, y)
  if method == "hinge":
    return surrogates.hinge(logits, y, margin=args["margin"])
  if method == "sigmoid":
    return surrogates.sigmoid_loss(logits, y, temperature)
  if method == "beta_bernoulli":
    return surrogates.beta_bernoulli_loss(logits, y, temperature)  # h frozen at 0, as in the script
  if method == "polynomial":
    return surrogates.polynomial_loss(logits, y, temperature)
  if method == "polyloss":
    return surrogates.poly1_loss(logits, y, args["eps"])
  if method == "exact":
    return exact.exact_loss(logits, y, temperature, margin=args["margin"], standardize=True,
                            method="sampling", key=key, num_samples=num_samples)
  raise ValueError(f"unknown tabular method {method!r}")


def schedule(n_train: int, t) -> tuple[int, int]:
  """(repeats R, steps per epoch): each epoch repeats the train set floor(target * batch / N) times."""
  reps = max(1, (int(t.target_steps_per_epoch) * int(t.batch_size)) // n_train)
  return reps, max(1, (reps * n_train) // int(t.batch_size))


def optimizer(method: str, num_epochs: int, spe: int, final_lr: float):
  """normaliser (EXACT) or clipping -> weight decay on W only -> SGD momentum 0.9 with the per-epoch LR decay;
  lr, reg and clip are injected hyperparameters (one value per run of a population)."""
  def make(lr, reg, clip):
    first = gn.gradient_normalizer() if method == "exact" else optax.clip_by_global_norm(clip)
    return optax.chain(first, optax.add_decayed_weights(reg, mask={"W": True, "b": False}),
                       optax.sgd(gn.epoch_exponential_lr(lr, final_lr, num_epochs, spe), momentum=0.9))
  return optax.inject_hyperparams(make)(lr=1.0, reg=0.0, clip=1.0)


def train_runs(method: str, split: Split, num_classes: int, hp: dict, t, *, seed: int, workdir: str,
               run_prefix: str) -> train.Population:
  """Trains one run per entry of ``hp`` (its ``seed`` picks initialisation and data order) on ``split``."""
  n, nf = split.X.shape
  E, B = int(t.num_epochs), int(t.batch_size)
  reps, spe = schedule(n, t)
  sigma_t = gn.sigma_schedule(t.sigma_initial, t.sigma_min, E, spe)
  X, Y = jnp.asarray(split.X), jnp.asarray(split.y)
  tx = optimizer(method, E, spe, float(t.final_lr))
  seeds = [int(s) for s in hp["seed"]]
  root = jax.random.key(seed)
  bound = 1.0 / np.sqrt(nf)                               # torch nn.Linear default init

  def init(s):
    kw, kb = jax.random.split(jax.random.fold_in(root, s))
    return {"W": jax.random.uniform(kw, (nf, num_classes - 1), jnp.float32, -bound, bound),
            "b": jax.random.uniform(kb, (num_classes - 1,), jnp.float32, -bound, bound)}

  states = [train.TrainState.create(params=init(s), tx=tx, rng=jax.random.fold_in(root, 1_000_000 + s))
            for s in seeds]
  state = train.with_hyperparams(train.stack_states(states), lr=hp["lr"], reg=hp["reg"], clip=hp["clip"])
  args = {"margin": jnp.asarray(hp["margin"]), "eps": jnp.asarray(hp["eps"])}
  orders: dict[int, np.ndarray] = {}

  def epoch_order(e: int) -> np.ndarray:        # [P, spe, B]: the train set repeated R times, shuffled, drop_last
    if e not in orders:
      orders.clear()
      orders[e] = np.stack([(np.random.default_rng([seed, s, e]).permutation(reps * n) % n)[: spe * B]
                            .reshape(spe, B) for s in seeds]).astype(np.int32)
    return orders[e]

  def batches(step: int) -> dict:
    idx = epoch_order(step // spe)[:, step % spe]
    return {"idx": idx, "step": np.full(idx.shape, step, np.int32)}

  def loss_fn(params, batch, rng, a):
    logits = linear_logits(params, X[batch["idx"]])
    loss = method_loss(method, logits, Y[batch["idx"]], sigma_t(batch["step"][0]), a, rng, int(t.num_samples))
    return loss, {}

  def eval_fn(params):      # Su's first-order argument, on the whole train split after every epoch
    ce, one_minus_p = exact.ce_and_smoothed_accuracy(linear_logits(params, X), Y)
    return {"train_ce": jnp.mean(ce), "train_1mp": jnp.mean(one_minus_p)}

  ids = [f"{run_prefix}{i}" for i in range(len(seeds))]
  return train.fit_population(loss_fn, state, batches, num_steps=E * spe, run_ids=ids, run_args=args,
                              workdir=workdir, name=run_prefix.rstrip("/"), eval_fn=eval_fn, eval_every=spe,
                              log_every=spe, steps_per_call=spe, checkpoint_every=spe * max(1, E // 2),
                              desc=run_prefix.rstrip("/"), mesh=train.make_mesh(jax.devices()[:1]))


def correct_counts(params, split: Split) -> np.ndarray:
  """Whole test samples classified correctly by each run of stacked ``params``."""
  logits = jax.vmap(linear_logits, in_axes=(0, None))(params, jnp.asarray(split.X))
  return np.asarray(jnp.sum(jnp.argmax(logits, -1) == jnp.asarray(split.y)[None], axis=-1)).astype(np.int64)


def search_and_train(method: str, d: dict, t, *, seed: int, rng: np.random.Generator, workdir: str,
                     prefix: str) -> dict:
  """Random search (best validation accuracy, ties by train accuracy), then ``t.seeds`` final runs."""
  trials = sample_trials(method, int(t.num_trials), rng)
  C = d["num_classes"]
  pop = train_runs(method, d["sub"], C, trials, t, seed=seed, workdir=workdir, run_prefix=f"{prefix}/search/")
  params = jax.device_get(pop.state.params)
  val, tr = correct_counts(params, d["val"]), correct_counts(params, d["sub"])
  i = max(range(len(val)), key=lambda j: (val[j], tr[j]))
  best = {k: v[i] for k, v in trials.items()}
  S = int(t.seeds)
  final = {k: np.repeat(v[i:i + 1], S) for k, v in trials.items()}
  final["seed"] = np.arange(S)
  pop = train_runs(method, d["train"], C, final, t, seed=seed, workdir=workdir, run_prefix=f"{prefix}/seed/")
  _, ce = pop.curves("train_ce")
  _, omp = pop.curves("train_1mp")
  return {"correct": correct_counts(jax.device_get(pop.state.params), d["test"]), "best": best,
          "diverged": int((~pop.alive).sum()), "train_ce": ce, "train_1mp": omp}


def sklearn_baseline(d: dict) -> dict:
  """LogisticRegression (C = 1/reg, L2; reg 0: no penalty) with reg chosen on the validation split."""
  from sklearn.linear_model import LogisticRegression

  def fit(reg, X, y):
    return LogisticRegression(max_iter=100000, C=1.0 / reg if reg > 0 else np.inf).fit(X, y)
  sub, val = d["sub"], d["val"]
  best = max(REG_GRID, key=lambda r: (lambda m: (m.score(val.X, val.y), m.score(sub.X, sub.y)))(fit(r, sub.X, sub.y)))
  m = fit(best, d["train"].X, d["train"].y)
  correct = int(np.sum(m.predict(d["test"].X) == d["test"].y))
  return {"correct": np.array([correct]), "best": {"reg": best}}
