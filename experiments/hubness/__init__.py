"""Driver for configs/hubness.py (kexue 9147): volume collapse, hubness emergence, hub-prior GAN sampling,
k-occurrence benchmark.

Parts (``config.parts``): ``volume`` (:mod:`.volume`), ``emergence`` (:mod:`.emergence`), ``gan`` (per dataset:
:mod:`.gan_train` trains the feature classifier and the seeds' GAN population, :mod:`.conditions` samples and
scores the latent conditions, :mod:`.gan_tables` judges and plots), ``bench`` (:mod:`.bench`). See the config's
docstring for what is reproduced.
"""
from __future__ import annotations

import os

import jax
import numpy as np

from experiments.hubness import bench, conditions, emergence, gan_tables, gan_train, volume
from experiments.hubness.data import load_images
from research.eval import generative as gen_eval
from research.report import Results

PARTS = ("volume", "emergence", "gan", "bench")


def run_gan(config, workdir: str, res: Results) -> None:
  g = config.gan
  for ds in g.datasets:
    x_train, y_train = load_images(ds.name, "train", int(ds.train_limit), seed=config.seed, data_dir=config.data_dir)
    x_real, y_real = ((x_train, y_train) if ds.name == "digits"      # digits has no separate test split here
                      else load_images(ds.name, "test", int(g.num_real), seed=config.seed, data_dir=config.data_dir))
    x_real, y_real = x_real[: int(g.num_real)], y_real[: int(g.num_real)]
    clf, cparams = gan_train.train_classifier(ds, g, x_train, y_train, seed=config.seed, workdir=workdir)
    acc = res.add(f"gan_{ds.name}_classifier_acc", gen_eval.accuracy(clf, cparams, x_real, y_real))
    real_feats, _ = gen_eval.classifier_features(clf, cparams, x_real)
    resumed = os.path.isdir(os.path.join(workdir, "checkpoints", f"gan_{ds.name}"))
    gen, pop, seconds = gan_train.train_gans(ds, g, x_train, seed=config.seed, workdir=workdir)
    res.add(f"gan_{ds.name}_train_seconds_this_process", seconds)
    key = jax.random.fold_in(gan_train.base_key(config.seed, ds.name), 1)
    per, infos, grids = conditions.evaluate_seeds(gen, pop, clf, cparams, real_feats, g, key, res.notes, ds.name)
    gan_tables.gan_rows(ds, g, per, infos, res)
    n_params = sum(int(np.prod(a.shape[1:])) for a in jax.tree.leaves((pop.state.params["g"],
                                                                         pop.state.params["d"])))
    gan_tables.gan_notes(ds, g, n_train=len(x_train), n_real=len(x_real), acc=acc, n_params=n_params,
                         seconds=seconds, resumed=resumed, res=res)
    gan_tables.gan_figures(ds.name, per, grids, pop, workdir, res)


def run(config, workdir: str) -> Results:
  os.makedirs(workdir, exist_ok=True)
  res = Results(title=f"Hubness (kexue 9147): {config.variant}")
  unknown = [p for p in config.parts if p not in PARTS]
  if unknown:
    raise ValueError(f"Unknown part(s) {unknown} in config.parts; valid: {PARTS}")
  if "volume" in config.parts:
    volume.volume_rows(config.volume, config.seed, res)
    volume.volume_figure(config.volume, workdir, res)
  if "emergence" in config.parts:
    e = config.emergence
    stats = emergence.gaussian_stats(e, config.seed, int(config.chunk_size))
    pixels = emergence.pixel_stats(e, config.seed, config.data_dir, int(config.chunk_size))
    emergence.emergence_rows(e, stats, pixels, res)
    emergence.write_seeds(stats, workdir)
    emergence.emergence_figures(e, stats, workdir, res)
  if "gan" in config.parts:
    run_gan(config, workdir, res)
  if "bench" in config.parts:
    bench.bench_rows(config.bench, int(config.chunk_size), config.seed, res)
  return res
