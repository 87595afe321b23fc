"""Pair data of kexue 9341/8847: seeded subsets of the Chinese tasks and STS-B-en, tokenised to fixed shapes."""
from __future__ import annotations

import numpy as np

from research import data as data_lib

CN_TASKS = ("ATEC", "BQ", "LCQMC", "PAWSX", "STS-B")
SPLITS = ("train", "valid", "test")


def load_task(task: str, split: str, data_dir) -> tuple[list[str], list[str], np.ndarray]:
  """(s1, s2, labels float32). ``STS-B-en`` is the English STS benchmark (valid = its dev split)."""
  if task == "STS-B-en":
    a, b, y = data_lib.load_stsb_en({"valid": "dev"}.get(split, split), data_dir)
  elif task in CN_TASKS:
    a, b, y = data_lib.load_senteval_cn(task, split, data_dir)
  else:
    raise ValueError(f"unknown task {task!r}; use one of {CN_TASKS + ('STS-B-en',)}")
  return list(a), list(b), np.asarray(y, np.float32)


def subsample(a, b, y, n: int, rng: np.random.Generator):
  """A random subset of n rows (all rows, shuffled, if n <= 0 or n >= len)."""
  idx = rng.permutation(len(y))
  if 0 < n < len(y):
    idx = idx[:n]
  return [a[i] for i in idx], [b[i] for i in idx], y[idx]


def split_rng(seed: int, task: str, split: str) -> np.random.Generator:
  """The subset draw of one (task, split), derived from ``config.seed`` (the same for every arm and run)."""
  return np.random.default_rng([seed, sum(map(ord, task)), SPLITS.index(split)])


def cap(n: int, limit: int) -> int:
  """A subset size n (0 = the whole split) capped at ``limit`` (0 = no cap)."""
  if limit <= 0:
    return n
  return limit if n <= 0 else min(n, limit)


def pair_splits(tok, task: str, sizes: dict, max_len: int, seed: int, data_dir) -> tuple[dict, dict]:
  """Cross-encoder inputs ``[CLS] a [SEP] b [SEP]`` padded to ``max_len``: per split ``ids, mask, seg`` (BERT's
  proper 0/1 segment ids; Su's zeros are made by the batch functions) and labels ``y``; plus sizes and
  truncation counts."""
  out, info = {}, {}
  for split in SPLITS:
    a, b, y = load_task(task, split, data_dir)
    a, b, y = subsample(a, b, y, sizes[split], split_rng(seed, task, split))
    enc = tok.encode_pairs(a, b, max_len=max_len, segment_ids="proper")
    out[split] = {"ids": enc.input_ids, "mask": enc.attention_mask, "seg": enc.token_type_ids, "y": y}
    info[f"{split}_n"], info[f"{split}_truncated"] = len(y), enc.num_truncated
  return out, info


def sentence_splits(tok, task: str, sizes: dict, max_len: int, seed: int, data_dir) -> tuple[dict, dict]:
  """Bi-encoder inputs: each sentence of a pair on its own, padded to ``max_len`` (``a_ids, a_mask, b_ids,
  b_mask, y``)."""
  out, info = {}, {}
  for split in SPLITS:
    a, b, y = load_task(task, split, data_dir)
    a, b, y = subsample(a, b, y, sizes[split], split_rng(seed, task, split))
    ea, eb = tok.encode(a, max_len), tok.encode(b, max_len)
    out[split] = {"a_ids": ea.input_ids, "a_mask": ea.attention_mask, "b_ids": eb.input_ids,
                  "b_mask": eb.attention_mask, "y": y}
    info[f"{split}_n"], info[f"{split}_truncated"] = len(y), ea.num_truncated + eb.num_truncated
  return out, info


def run_seed(config_seed: int, s: int) -> int:
  """The integer seed of run ``s`` (data order), derived from ``config.seed``; arms share it (paired)."""
  return 1000 * config_seed + s


def eval_batches(arrays: dict, batch_size: int, pad_multiple: int):
  """Yields ``(rows, batch)`` over a split: rows sorted by length, each batch cut to its longest row rounded
  up to ``pad_multiple`` and padded to ``batch_size`` rows (few distinct shapes: few compilations)."""
  mask_keys = [k for k in arrays if k.endswith("mask")]
  lens = np.max([arrays[k].sum(1) for k in mask_keys], axis=0)
  order = np.argsort(lens, kind="stable")
  for s in range(0, len(order), batch_size):
    rows = order[s:s + batch_size]
    t = int(-(-int(lens[rows].max()) // pad_multiple) * pad_multiple)
    batch = {}
    for k, v in arrays.items():
      if k == "y":
        continue
      x = v[rows, :t] if v.ndim == 2 else v[:, rows, :t]
      pad = [(0, 0)] * x.ndim
      pad[-2] = (0, batch_size - len(rows))
      batch[k] = np.pad(x, pad)
    for k in mask_keys:       # padded rows see one token, so no attention row is empty
      batch[k][..., len(rows):, 0] = 1
    yield rows, batch
