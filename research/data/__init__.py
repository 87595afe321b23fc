"""Dataset loaders and batching.

Every loader takes an optional ``data_dir`` (see :mod:`research.data.files` for the resolution order) and
returns numpy arrays or plain Python lists; :func:`batch_fn` turns arrays into a deterministic
``step -> batch`` function for :func:`research.train.fit` (exact resume depends on it).

Entry points: :func:`load_fashion_mnist`, :func:`load_mnist_test`, :func:`load_sklearn`,
:func:`load_senteval_cn` (ATEC / BQ / LCQMC / PAWSX / STS-B, for CoSENT 9341), :func:`load_stsb_en`,
:func:`load_tinyshakespeare` (Amos 9344), :func:`load_opinion_summ` (geodesic summaries 9368),
:func:`train_val_split`, :func:`batch_fn`. A missing or corrupt file raises :class:`DataError` naming the
file, its sha256 and how to get it.
"""
from __future__ import annotations

import csv
import gzip
import io
import os
from typing import Any, Callable, Mapping

import numpy as np

from research.data.files import DataError, cache_dir, ensure_file, resolve_data_dir, shared_data_dir, verify
from research.data.registry import FILES, FileEntry

__all__ = [
    "DataError", "FILES", "FileEntry", "batch_fn", "cache_dir", "ensure_file", "load_fashion_mnist",
    "load_mnist_test", "load_opinion_summ", "load_senteval_cn", "load_sklearn", "load_stsb_en",
    "load_tinyshakespeare", "resolve_data_dir", "shared_data_dir", "train_val_split", "verify",
]

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.int16, 0x0C: np.int32, 0x0D: np.float32, 0x0E: np.float64}


def _read_idx(path: str) -> np.ndarray:
  """Reads an IDX file (the MNIST format), gzip-compressed."""
  with gzip.open(path, "rb") as f:
    data = f.read()
  if data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
    raise DataError(f"{path} is not an IDX file (bad magic {data[:4].hex()})")
  ndim = data[3]
  shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
  dtype = np.dtype(_IDX_DTYPES[data[2]]).newbyteorder(">")
  arr = np.frombuffer(data, dtype=dtype, offset=4 + 4 * ndim)
  if arr.size != int(np.prod(shape)):
    raise DataError(f"{path}: header says {shape} but holds {arr.size} values")
  return arr.reshape(shape).astype(dtype.newbyteorder("="))


def load_fashion_mnist(split: str = "train", data_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Fashion-MNIST: ``(images uint8 [N, 28, 28], labels int64 [N])``; ``split`` is ``train`` (60k) or ``test`` (10k)."""
  prefix = {"train": "train", "test": "t10k"}.get(split)
  if prefix is None:
    raise ValueError(f"Fashion-MNIST split must be 'train' or 'test', got {split!r}")
  x = _read_idx(ensure_file(f"fashion_mnist/{prefix}-images-idx3-ubyte.gz", data_dir))
  y = _read_idx(ensure_file(f"fashion_mnist/{prefix}-labels-idx1-ubyte.gz", data_dir)).astype(np.int64)
  return x, y


def load_mnist_test(data_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
  """The MNIST test split ``(images uint8 [10000, 28, 28], labels int64)``.

  MNIST's training images are not available offline (see MANIFEST.md); use Fashion-MNIST for training.
  """
  x = _read_idx(ensure_file("mnist_partial/t10k-images-idx3-ubyte.gz", data_dir))
  y = _read_idx(ensure_file("mnist_partial/t10k-labels-idx1-ubyte.gz", data_dir)).astype(np.int64)
  return x, y


def load_sklearn(name: str) -> tuple[np.ndarray, np.ndarray]:
  """scikit-learn's bundled datasets: ``breast_cancer``, ``wine``, ``digits``, ``iris`` -> ``(X float32, y int64)``."""
  from sklearn import datasets
  loaders = {"breast_cancer": datasets.load_breast_cancer, "wine": datasets.load_wine,
             "digits": datasets.load_digits, "iris": datasets.load_iris}
  if name not in loaders:
    raise ValueError(f"Unknown scikit-learn dataset {name!r}; choose one of {sorted(loaders)}")
  d = loaders[name]()
  return d.data.astype(np.float32), d.target.astype(np.int64)


SENTEVAL_TASKS = ("ATEC", "BQ", "LCQMC", "PAWSX", "STS-B")


def load_senteval_cn(task: str, split: str, data_dir: str | None = None, *, drop_empty: bool = True
                     ) -> tuple[list[str], list[str], np.ndarray]:
  """A Chinese STS task: ``(sentence1 list, sentence2 list, labels int64)``.

  ``task`` in ATEC, BQ, LCQMC, PAWSX, STS-B; ``split`` in train, valid, test. Labels are 0/1, or 0..5 for
  STS-B. ``drop_empty`` drops the rows whose two sentences are both empty (272 rows of the rebuilt PAWSX train).
  """
  if task not in SENTEVAL_TASKS:
    raise ValueError(f"Unknown task {task!r}; choose one of {SENTEVAL_TASKS}")
  if split not in ("train", "valid", "test"):
    raise ValueError(f"split must be train, valid or test, got {split!r}")
  path = ensure_file(f"senteval_cn/{task}/{task}.{split}.data", data_dir)
  s1, s2, y = [], [], []
  with open(path, encoding="utf-8", newline="") as f:
    for row in csv.reader(f, delimiter="\t"):
      if len(row) != 3:
        raise DataError(f"{path}: expected 3 tab-separated fields, got {len(row)}: {row!r}")
      if drop_empty and not row[0] and not row[1]:
        continue
      s1.append(row[0]); s2.append(row[1]); y.append(int(row[2]))
  return s1, s2, np.asarray(y, np.int64)


def load_stsb_en(split: str, data_dir: str | None = None) -> tuple[list[str], list[str], np.ndarray]:
  """English STS Benchmark: ``(sentence1, sentence2, scores float32 in [0, 5])``; split train/dev/test."""
  if split not in ("train", "dev", "test"):
    raise ValueError(f"split must be train, dev or test, got {split!r}")
  path = ensure_file(f"stsbenchmark/sts-{split}.csv", data_dir)
  s1, s2, y = [], [], []
  with open(path, encoding="utf-8", newline="") as f:
    for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
      if len(row) < 7:
        raise DataError(f"{path}: expected at least 7 tab-separated fields, got {len(row)}")
      y.append(float(row[4])); s1.append(row[5]); s2.append(row[6])
  return s1, s2, np.asarray(y, np.float32)


def load_tinyshakespeare(data_dir: str | None = None) -> str:
  """The tiny-shakespeare corpus (1,115,394 ASCII characters). Usual split: first 90% train, last 10% val."""
  with open(ensure_file("tinyshakespeare/input.txt", data_dir), encoding="utf-8") as f:
    return f.read()


_OPINION = {
    "copycat_amazon": ("opinion_summ/copycat_amazon/{split}.csv", ("all", "dev", "test")),
    "fewsum_amazon": ("opinion_summ/fewsum/amazon/{split}.csv", ("train", "val", "test")),
    "fewsum_yelp": ("opinion_summ/fewsum/yelp/{split}.csv", ("train", "val", "test")),
}


def load_opinion_summ(name: str, split: str, data_dir: str | None = None) -> list[dict[str, Any]]:
  """Opinion-summarisation gold sets: a list of ``{"id", "category", "reviews": [8 str], "summaries": [3 str]}``.

  ``name`` in copycat_amazon (splits all/dev/test), fewsum_amazon, fewsum_yelp (splits train/val/test).
  """
  if name not in _OPINION:
    raise ValueError(f"Unknown opinion-summarisation set {name!r}; choose one of {sorted(_OPINION)}")
  pattern, splits = _OPINION[name]
  if split not in splits:
    raise ValueError(f"{name} has splits {splits}, got {split!r}")
  path = ensure_file(pattern.format(split=split), data_dir)
  out = []
  with open(path, encoding="utf-8", newline="") as f:
    reader = csv.DictReader(f, delimiter="\t")
    for row in reader:
      reviews = [row[f"rev{i}"] for i in range(1, 9) if row.get(f"rev{i}")]
      summaries = [row[f"summ{i}"] for i in range(1, 4) if row.get(f"summ{i}")]
      out.append({"id": row.get("prod_id") or row.get("group_id"), "category": row.get("cat"),
                  "reviews": reviews, "summaries": summaries})
  return out


def train_val_split(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """A seeded random split of ``range(n)`` into (train indices, validation indices)."""
  if not 0 < val_fraction < 1:
    raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
  perm = np.random.default_rng(seed).permutation(n)
  n_val = max(1, int(round(n * val_fraction)))
  return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _process_info(index: int | None, count: int | None) -> tuple[int, int]:
  """``(process index, process count)``: the arguments, else JAX's (0, 1 when JAX is not in use)."""
  if index is None or count is None:
    import jax
    index = jax.process_index() if index is None else index
    count = jax.process_count() if count is None else count
  if not 0 <= index < count:
    raise ValueError(f"process_index must be in 0..{count - 1}, got {index}")
  return int(index), int(count)


def batch_fn(arrays: Mapping[str, np.ndarray], batch_size: int, seed: int, *, drop_remainder: bool = True,
             process_index: int | None = None, process_count: int | None = None
             ) -> Callable[[int], dict[str, np.ndarray]]:
  """A deterministic ``step -> batch`` function over epochs of seeded random permutations.

  The batch of step ``s`` depends only on ``(arrays, batch_size, seed, s)``, so a resumed run sees exactly
  the batches an uninterrupted run would. ``batch_size`` is the *global* batch ``B``; in a run of ``P``
  processes (``jax.distributed``) process ``p`` gets only its rows ``[p B/P, (p+1) B/P)`` of it
  (``process_index``/``process_count`` default to JAX's, read at the first call), which is what
  ``research.train.fit`` expects from a callable marked ``process_local`` (this one is).
  """
  if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
    raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
  if not arrays:
    raise ValueError("batch_fn needs at least one array, got an empty mapping")
  arrays = {k: np.asarray(v) for k, v in arrays.items()}
  sizes = {len(v) for v in arrays.values()}
  if len(sizes) != 1:
    raise ValueError(f"All arrays must have the same leading size, got { {k: len(v) for k, v in arrays.items()} }")
  n = sizes.pop()
  if batch_size > n:
    raise ValueError(f"batch_size {batch_size} is larger than the dataset ({n} examples)")
  per_epoch = n // batch_size if drop_remainder else -(-n // batch_size)
  cache: dict[int, np.ndarray] = {}
  procs: list[int] = []

  def get(step: int) -> dict[str, np.ndarray]:
    epoch, i = divmod(int(step), per_epoch)
    if epoch not in cache:
      cache.clear()
      cache[epoch] = np.random.default_rng([seed, epoch]).permutation(n)
    idx = cache[epoch][i * batch_size:(i + 1) * batch_size]
    if not procs:
      procs.extend(_process_info(process_index, process_count))
    p, count = procs
    if count > 1:
      if len(idx) % count:
        raise ValueError(f"The batch of step {step} has {len(idx)} rows, which do not split over {count} processes; "
                         "use a batch size divisible by the number of processes and drop_remainder=True.")
      local = len(idx) // count
      idx = idx[p * local:(p + 1) * local]
    return {k: v[idx] for k, v in arrays.items()}

  get.steps_per_epoch = per_epoch  # type: ignore[attr-defined]
  get.process_local = True  # type: ignore[attr-defined]
  return get
