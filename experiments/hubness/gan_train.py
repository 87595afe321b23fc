"""Training for the GAN study: each dataset's seeds as one vmapped population of GANs (a custom two-player
train step run by :func:`research.train.fit_population`), and the feature classifier (:func:`research.train.fit`).

Keys: dataset ``i`` (its index in :data:`experiments.hubness.data.DATASETS`) uses ``base = fold_in(key(seed),
i)``; seed ``s``'s GAN starts from ``fold_in(fold_in(base, 0), s)`` and its latent conditions use
``fold_in(fold_in(base, 1), s)``; its real batches come from ``default_rng((seed, i, s, t))``.
"""
from __future__ import annotations

import time

import jax
import numpy as np
import optax

from experiments.hubness.data import DATASETS
from research import train
from research.eval import generative as gen_eval
from research.nn import gan as gan_lib


def base_key(seed: int, name: str) -> jax.Array:
  return jax.random.fold_in(jax.random.key(seed), DATASETS.index(name))


def models(ds, g, image_shape):
  """Generator (with the mapping network when ``g.mapping``) and discriminator of one dataset."""
  gen = gan_lib.Generator(image_shape=tuple(image_shape), kind=ds.kind, hidden=int(ds.hidden),
                          mapping=bool(g.mapping), w_dim=int(g.w_dim), mapping_depth=int(g.mapping_depth),
                          feature_norm=bool(ds.feature_norm))
  disc = gan_lib.Discriminator(kind=ds.kind, hidden=int(ds.hidden), mbstd=bool(ds.mbstd))
  return gen, disc


def train_gans(ds, g, x_train: np.ndarray, *, seed: int, workdir: str):
  """Trains ``g.seeds`` GANs of dataset ``ds`` as one population; returns ``(gen, population, seconds)``.

  One trainer step holds ``ds.r1_every`` GAN iterations (lazy R1 on the first), so the population trains
  ``ds.steps / ds.r1_every`` steps; ``seconds`` counts only the steps trained in this process."""
  r1_every = int(ds.r1_every)
  if int(ds.steps) % r1_every or int(g.log_every) % r1_every:
    raise ValueError(f"{ds.name}: steps ({ds.steps}) and gan.log_every ({g.log_every}) must be multiples of "
                     f"r1_every ({r1_every}): one trainer step holds r1_every GAN iterations")
  gen, disc = models(ds, g, x_train.shape[1:])
  tx = optax.adam(float(ds.lr), b1=0.5, b2=0.999)
  key = jax.random.fold_in(base_key(seed, ds.name), 0)
  seeds = range(int(g.seeds))
  states = [gan_lib.init_gan_state(gen, disc, int(g.z_dim), jax.random.fold_in(key, s), tx) for s in seeds]
  step = gan_lib.make_gan_step(gen, disc, int(g.z_dim), r1_gamma=float(ds.r1_gamma), r1_every=r1_every)
  di, n, bs = DATASETS.index(ds.name), x_train.shape[0], int(g.batch_size)

  def batches(s):
    return lambda t: x_train[np.random.default_rng((seed, di, s, t)).integers(0, n, size=(bs, r1_every))]

  every = int(g.log_every) // r1_every
  t0 = time.perf_counter()
  pop = train.fit_population(
      None, states, [batches(s) for s in seeds], num_steps=int(ds.steps) // r1_every, train_step=step,
      run_ids=[f"gan/{ds.name}/seed{s}" for s in seeds], workdir=workdir, name=f"gan_{ds.name}",
      log_every=every, checkpoint_every=every, steps_per_call=min(every, 25), desc=f"gan/{ds.name}",
      mesh=train.make_mesh(jax.devices()[:1]))
  return gen, pop, time.perf_counter() - t0


def train_classifier(ds, g, x_train, y_train, *, seed: int, workdir: str):
  """The feature network of the metrics (its penultimate layer), trained on the GAN's training images."""
  return gen_eval.train_classifier(x_train, y_train, kind=ds.kind, steps=int(g.classifier_steps), seed=seed,
                                   workdir=workdir, run_name=f"classifier/{ds.name}")
