"""Driver for configs/cosent.py: CoSENT vs CE cross-encoders (kexue.fm 9341), bi-encoders (8847), bench.

Parts (``config.parts``): ``interactive`` (the Chinese tasks with the offline char-BERT or a checkpoint),
``interactive_en`` (MiniLM on STS-B-en), ``bi_encoder`` and ``bench``. Data in :mod:`.data`, encoders in
:mod:`.encoder`, the populations in :mod:`.train`, rows (shared verdict rule) in :mod:`.tables`, figures in
:mod:`.plots`, timings in :mod:`.bench`.
"""
from __future__ import annotations

import os

from experiments.cosent import bench, data, encoder, plots, tables
from experiments.cosent import train as train_arms
from research.report import Results, RunLog

PARTS = ("interactive", "interactive_en", "bi_encoder", "bench")


def _sizes(config, minilm: bool = False) -> dict:
  sizes = {"train": config.n_train, "valid": config.n_valid, "test": config.n_test}
  if minilm:                                  # MiniLM costs ~100x more per pair than the offline model
    sizes = {k: data.cap(n, config.minilm_n_train if k == "train" else config.minilm_n_eval) for k, n in sizes.items()}
  return sizes


def _encoder_note(res: Results, enc, lr: float, config) -> None:
  bcfg, info = enc[0], enc[3]
  res.notes.append(f"Encoder: {info['source']}; {bcfg.num_hidden_layers} layers, hidden {bcfg.hidden_size}, vocab "
                   f"{bcfg.vocab_size}. Fine-tuning: Adam lr {lr:g}, eps {config.adam_eps:g}, constant, no weight "
                   f"decay, {config.epochs} epoch(s), dropout {bcfg.hidden_dropout_prob}, {config.seeds} seeds.")
  if "mlm_acc" in info:
    res.add("mlm_final_loss", info["mlm_loss"])
    res.add("mlm_final_acc", info["mlm_acc"])
    res.notes.append(f"MLM pretraining: {info['steps']} steps x {config.pretrain.batch_size} pairs on "
                     f"{info['n_pairs']} unlabelled train pairs; final masked-token accuracy {info['mlm_acc']:.3f}.")


def _data_note(res: Results, task: str, info: dict, max_len: int, what: str = "") -> None:
  res.notes.append(f"{what}{task}: {info['train_n']} train / {info['valid_n']} valid / {info['test_n']} test pairs "
                   f"(max_len {max_len}; truncated {info['train_truncated']}/{info['valid_truncated']}/"
                   f"{info['test_truncated']})")


def run(config, workdir: str) -> Results:
  res = Results(title=f"CoSENT (kexue.fm 9341): {config.variant}")
  unknown = [p for p in config.parts if p not in PARTS]
  if unknown:
    raise ValueError(f"Unknown part(s) {unknown} in config.parts; valid: {PARTS}")
  os.makedirs(workdir, exist_ok=True)
  log = RunLog(workdir)
  if "interactive" in config.parts:
    enc = encoder.offline_encoder(config, workdir, log)
    lr = enc[3]["lr"]
    _encoder_note(res, enc, lr, config)
    hist, tests = {}, {}
    for task in config.tasks:
      max_len = config.max_len_pawsx if task == "PAWSX" else config.max_len
      splits, info = data.pair_splits(enc[2], task, _sizes(config), max_len, config.seed, config.data_dir)
      _data_note(res, task, info, max_len)
      hist[task] = train_arms.train_cross(config, enc, splits, config.arms, task=task, lr=lr, workdir=workdir)
      tests[task] = splits["test"]["y"]
    tables.cross_rows(res, hist, tests, config)
    res.notes.append(tables.selection_note(hist))
    plots.cross_figures(hist, workdir, res)
  if "interactive_en" in config.parts:
    lr = config.lr_minilm_cross
    enc = encoder.minilm(lr)
    _encoder_note(res, enc, lr, config)
    task = "STS-B-en"
    res.add(f"{task}_unk_rate", enc[2].unk_rate(data.load_task(task, "valid", config.data_dir)[0][:200]))
    splits, info = data.pair_splits(enc[2], task, _sizes(config), config.max_len, config.seed, config.data_dir)
    _data_note(res, task, info, config.max_len)
    hist = train_arms.train_cross(config, enc, splits, config.arms, task=task, lr=lr, workdir=workdir, graded=True)
    tables.graded_rows(res, hist, task)
    plots.cross_figures({task: hist}, workdir, res, selection="spearman")
  if "bi_encoder" in config.parts:
    hist, untrained, encs = {}, {}, {}
    for task in config.bi_tasks:
      minilm = task == "STS-B-en"
      if minilm not in encs:
        encs[minilm] = encoder.minilm(config.lr) if minilm else encoder.offline_encoder(config, workdir, log)
      enc = encs[minilm]
      pooling = config.bi_pooling_minilm if minilm else config.bi_pooling_offline
      max_len = config.max_len_pawsx // 2 if task == "PAWSX" else config.bi_max_len
      splits, info = data.sentence_splits(enc[2], task, _sizes(config, minilm), max_len, config.seed, config.data_dir)
      _data_note(res, task, info, max_len, f"bi-encoder ({'all-MiniLM-L6-v2' if minilm else 'offline char-BERT'}, "
                 f"{pooling} pooling, lr {enc[3]['lr']:g}) ")
      hist[task], untrained[task] = train_arms.train_bi(config, enc, splits, task=task, pooling=pooling,
                                                        lr=enc[3]["lr"], workdir=workdir, graded=minilm,
                                                        seed_loop=minilm and config.minilm_seed_loop)
    tables.bi_rows(res, hist, untrained)
  if "bench" in config.parts:
    bench.run_bench(config, config.seed, res)
  if config.n_train or config.n_valid:
    res.notes.append(f"CPU-sized run: train subset {config.n_train or 'all'}, valid/test subsets {config.n_valid or 'all'}"
                     f"/{config.n_test or 'all'} pairs per task, {config.seeds} seeds, {config.epochs} epoch(s); the "
                     "article uses the full splits and 5 epochs, one run per cell.")
  return res
