"""Generative-model metrics in a feature space (kexue 9147 evaluation).

* Improved precision / recall (Kynkaenniemi et al. 2019, k = 3): the real (generated) manifold is the
  union of balls around each real (generated) feature with radius = distance to its k-th nearest
  neighbour in its own set (self excluded). precision = fraction of generated samples inside the real
  manifold; recall = fraction of real samples inside the generated manifold.
* Density / coverage (Naeem et al. 2020): density = (1/(k M)) sum_j #{i : g_j in B(r_i, NND_k(r_i))};
  coverage = fraction of real samples whose ball contains at least one generated sample.
* Frechet distance ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^{1/2}) in float64; the trace of the
  matrix square root is computed from the eigenvalues of S_r^{1/2} S_g S_r^{1/2} (symmetric PSD, eigh),
  clipped at 0 (no imaginary parts).
* ``FeatureClassifier``: a small Flax CNN/MLP trained (``train_classifier``, through ``research.train.fit``)
  on the same dataset; its penultimate layer is the
  feature space (an offline stand-in for Inception / VGG features).
kNN radii use ``research.geometry.knn`` (exact, chunked, sharded).
"""
from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from research.geometry import knn as knn_lib


def _feats(x, name):
  x = np.asarray(x, np.float32)
  if x.ndim != 2 or x.shape[0] < 2:
    raise ValueError(f"{name} must be [num_samples >= 2, feature_dim]; got shape {x.shape}.")
  if not np.all(np.isfinite(x)):
    raise ValueError(f"{name} contains non-finite values; check the generator/feature extractor.")
  return x


def knn_radii(x, k: int, chunk_size: int = 1024) -> np.ndarray:
  """Distance (Euclidean) of every point to its k-th nearest neighbour in its own set, self excluded."""
  d, _ = knn_lib.knn(x, k, metric="sqeuclidean", exclude_self=True, chunk_size=chunk_size)
  return np.sqrt(np.asarray(d[:, -1], np.float64))


@jax.jit
def _ball_hits(q, refs, radii_sq):
  """For each query: number of ref balls containing it, and whether any does. q [c, D]."""
  d = (jnp.sum(q * q, -1)[:, None] + jnp.sum(refs * refs, -1)[None, :]
       - 2.0 * jnp.matmul(q, refs.T, precision=jax.lax.Precision.HIGHEST))
  inside = jnp.maximum(d, 0.0) <= radii_sq[None, :]
  return jnp.sum(inside, axis=1)


def _count_inside(queries, refs, radii, chunk: int = 1024) -> np.ndarray:
  # radii are computed with exact differences; the expansion may be off by float32 round-off, so
  # a tiny relative slack keeps "x is inside its own set's ball" true (P/R of a set with itself = 1).
  r2 = jnp.asarray((radii.astype(np.float64) ** 2) * (1 + 1e-5) + 1e-6, jnp.float32)
  refs = jnp.asarray(refs)
  out = []
  n = queries.shape[0]
  pad = (-n) % chunk if n > chunk else 0
  qp = np.concatenate([queries, np.zeros((pad, queries.shape[1]), np.float32)]) if pad else queries
  step = min(chunk, n)
  for s in range(0, qp.shape[0], step):
    out.append(np.asarray(_ball_hits(jnp.asarray(qp[s:s + step]), refs, r2)))
  return np.concatenate(out)[:n]


def precision_recall(real, fake, k: int = 3) -> dict:
  """Improved precision and recall (k-NN manifolds). Use equal sample counts."""
  real, fake = _feats(real, "real features"), _feats(fake, "generated features")
  rr, rf = knn_radii(real, k), knn_radii(fake, k)
  precision = float(np.mean(_count_inside(fake, real, rr) > 0))
  recall = float(np.mean(_count_inside(real, fake, rf) > 0))
  return {"precision": precision, "recall": recall}


def density_coverage(real, fake, k: int = 3) -> dict:
  """Density and coverage (Naeem et al. 2020) with the real k-NN balls."""
  real, fake = _feats(real, "real features"), _feats(fake, "generated features")
  rr = knn_radii(real, k)
  density = float(np.sum(_count_inside(fake, real, rr)) / (k * fake.shape[0]))
  nearest_fake, _ = knn_lib.knn_query(real, fake, 1)
  coverage = float(np.mean(np.sqrt(np.asarray(nearest_fake[:, 0], np.float64)) <= rr * (1 + 1e-6)))
  return {"density": density, "coverage": coverage}


def frechet_distance(real, fake) -> float:
  """Frechet distance between Gaussians fitted (float64) to the two feature sets."""
  a = np.asarray(_feats(real, "real features"), np.float64)
  b = np.asarray(_feats(fake, "generated features"), np.float64)
  if a.shape[1] != b.shape[1]:
    raise ValueError(f"feature dims differ: {a.shape[1]} vs {b.shape[1]}.")
  mu_a, mu_b = a.mean(0), b.mean(0)
  ca, cb = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
  ev, evec = np.linalg.eigh(ca)
  sqrt_a = (evec * np.sqrt(np.clip(ev, 0, None))) @ evec.T
  m = sqrt_a @ cb @ sqrt_a
  tr_sqrt = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)))
  return float(np.sum((mu_a - mu_b) ** 2) + np.trace(ca) + np.trace(cb) - 2.0 * tr_sqrt)


class FeatureClassifier(nn.Module):
  """Small classifier; ``features`` is the penultimate activation used as the metric space."""
  num_classes: int = 10
  kind: str = "conv"
  width: int = 32
  feature_dim: int = 64

  @nn.compact
  def __call__(self, x, return_features: bool = False):
    if self.kind == "conv":
      h = nn.relu(nn.Conv(self.width, (3, 3))(x))
      h = nn.max_pool(h, (2, 2), (2, 2))
      h = nn.relu(nn.Conv(2 * self.width, (3, 3))(h))
      h = nn.max_pool(h, (2, 2), (2, 2))
      h = h.reshape(h.shape[0], -1)
    else:
      h = nn.relu(nn.Dense(4 * self.width)(x.reshape(x.shape[0], -1)))
    f = nn.relu(nn.Dense(self.feature_dim)(h))
    logits = nn.Dense(self.num_classes)(f)
    return (logits, f) if return_features else logits


def train_classifier(images, labels, *, kind: str = "conv", steps: int = 500, batch_size: int = 128,
                     lr: float = 1e-3, seed: int = 0, num_classes: int = 10, feature_dim: int = 64,
                     workdir: str | None = None, run_name: str = "classifier", progress: bool = True):
  """Trains ``FeatureClassifier`` with Adam through :func:`research.train.fit`; returns (model, params).

  Images NHWC in [-1, 1]. ``seed`` gives the initial parameters and the batches (batch ``t`` draws its
  indices from ``default_rng((seed, t))``, so a run resumed from a checkpoint in ``workdir`` sees the same
  batches); ``workdir`` gets ``metrics.jsonl`` records tagged ``run_name`` and the checkpoints."""
  from research import train
  model = FeatureClassifier(num_classes=num_classes, kind=kind, feature_dim=feature_dim)
  key = jax.random.key(seed)
  params = model.init(key, jnp.asarray(images[:2]))["params"]
  images, labels = np.asarray(images), np.asarray(labels)
  n = images.shape[0]

  def loss_fn(p, batch, rng):
    lg = model.apply({"params": p}, batch["x"])
    loss = optax.softmax_cross_entropy_with_integer_labels(lg, batch["y"]).mean()
    return loss, {"acc": jnp.mean(jnp.argmax(lg, -1) == batch["y"])}

  def batches(t):
    b = np.random.default_rng((seed, t)).integers(0, n, size=batch_size)
    return {"x": images[b], "y": labels[b]}

  state = train.TrainState.create(params=params, tx=optax.adam(lr), rng=jax.random.fold_in(key, 1))
  every = max(1, steps // 4)
  state, _ = train.fit(loss_fn, state, batches, num_steps=steps, workdir=workdir, run_name=run_name,
                       log_every=every, checkpoint_every=every, desc=run_name, progress=progress,
                       mesh=train.make_mesh(jax.devices()[:1]))
  return model, jax.device_get(state.params)


@functools.partial(jax.jit, static_argnums=0)
def _features(model, params, x):
  return model.apply({"params": params}, x, return_features=True)


def classifier_features(model, params, images, batch_size: int = 1000):
  """(features [n, F], softmax confidence max_c p(c|x) [n]) in float32 numpy."""
  feats, conf = [], []
  for s in range(0, images.shape[0], batch_size):
    lg, f = _features(model, params, jnp.asarray(images[s:s + batch_size]))
    feats.append(np.asarray(f))
    conf.append(np.asarray(jax.nn.softmax(lg).max(-1)))
  return np.concatenate(feats), np.concatenate(conf)


def evaluate_samples(real_feats, fake_feats, k: int = 3) -> dict:
  """precision, recall, density, coverage, fd (equal counts: the larger set is truncated)."""
  n = min(len(real_feats), len(fake_feats))
  r, f = real_feats[:n], fake_feats[:n]
  out = precision_recall(r, f, k)
  out.update(density_coverage(r, f, k))
  out["fd"] = frechet_distance(r, f)
  return out


def accuracy(model, params, images, labels) -> float:
  lg, _ = _features(model, params, jnp.asarray(images))
  return float(np.mean(np.asarray(lg).argmax(-1) == np.asarray(labels)))


__all__: Sequence[str] = ("precision_recall", "density_coverage", "frechet_distance",
                          "FeatureClassifier", "train_classifier", "classifier_features",
                          "evaluate_samples", "knn_radii")
