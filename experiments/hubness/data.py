"""Images of the GAN study and the emergence part: NHWC float32 in [-1, 1] with integer labels."""
from __future__ import annotations

import numpy as np

from research import data as data_lib

DATASETS = ("digits", "fashion_mnist")


def load_images(name: str, split: str, limit: int, *, seed: int, data_dir=None):
  """``(images [n, H, W, 1] in [-1, 1], labels [n])``; a random subset of ``limit`` images (0: all), drawn
  with ``default_rng(seed)``. Digits has no test split here: every split is the 1,797 images."""
  if name == "digits":
    x, y = data_lib.load_sklearn("digits")
    x = (np.asarray(x, np.float32) / 16.0 * 2.0 - 1.0).reshape(-1, 8, 8, 1)
  elif name == "fashion_mnist":
    x, y = data_lib.load_fashion_mnist(split, data_dir=data_dir)
    x = (np.asarray(x, np.float32) / 255.0 * 2.0 - 1.0).reshape(-1, 28, 28, 1)
  else:
    raise ValueError(f"unknown dataset {name!r}; use one of {DATASETS}.")
  y = np.asarray(y, np.int32)
  if limit and x.shape[0] > limit:
    sel = np.random.default_rng(seed).permutation(x.shape[0])[:limit]
    x, y = x[sel], y[sel]
  return x, y
