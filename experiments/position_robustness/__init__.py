"""Driver for configs/position_robustness.py (kexue 9444): CHE with randomized PEs, MLM 64 -> 512, bench.

Parts (``config.parts``):
  che    the encoder of spec 07 §3.7 (:mod:`.models`) trained on CHE tasks at lengths 1..N and tested on
         longer ones: per (task, PE) the seeds x arms of ``che.arms`` as one population (:mod:`.che_train`),
         judged by :mod:`.che_tables`; ``che.load_raw`` re-renders a committed ``che_raw.json`` instead.
  mlm    char-level masked LM trained at 64, tested at 64 and 512, the arms of spec 07 §6.3 C2: seeds x
         training schemes as one population (:mod:`.mlm`), judged by :mod:`.mlm_tables`.
  bench  step time with randomized vs plain positions (:mod:`.bench`).
"""
from __future__ import annotations

import os
import time

from experiments.position_robustness import bench, che_tables, che_train, mlm, mlm_tables
from research.report import Results, RunLog

PARTS = ("che", "mlm", "bench")


def che_groups(c):
  """(task, PE, arms) of every population: the arms that agree on log n (learned tables: no equal-mean)."""
  for task in c.tasks:
    for pe in c.pes:
      for logn in dict.fromkeys(bool(a.logn) for a in c.arms):
        arms = [a for a in c.arms if bool(a.logn) == logn and not (pe == "learned" and a.train == "equal_mean")]
        if arms:
          yield task, pe, arms


def run_che(config, workdir: str, res: Results, log) -> None:
  c = config.che
  names = [a.name for a in c.arms]
  t0 = time.time()
  if len(c.load_raw):
    table = che_tables.load_raw(c.load_raw, c, names, res)
  else:
    fp = che_tables.fingerprint(c, config.seed)
    done = che_tables.finished_groups(workdir, fp)   # groups of an earlier run of this config (committed raw)
    table, reused = {}, []
    for task, pe, arms in che_groups(c):
      keys = [(task, pe, a.name) for a in arms]
      if all(k in done for k in keys):
        table.update({k: done[k] for k in keys})
        reused.append(f"{task}/{pe}")
        log(f"  {task:20s} {pe:8s} finished earlier: records from che_raw.json (fingerprint {fp}), not retrained")
        continue
      out = che_train.run_group(task, pe, arms, c, seed=config.seed, workdir=workdir, log=log)
      table.update({(task, pe, a): dict(rec, fingerprint=fp) for a, rec in out.items()})
      che_tables.save_raw(workdir, table)       # after every group: partial results survive a kill
    if reused:
      res.notes.append(f"{len(reused)} (task, PE) group(s) were trained by an earlier run of this config (same "
                       f"fingerprint {fp}) and read back from che_raw.json: " + ", ".join(reused) + ".")
  res.add("che/wall_s", time.time() - t0)
  che_tables.che_rows(c, table, names, res)
  che_tables.per_task_note(c, table, names, res)
  che_tables.figures(c, table, names, workdir, res)


def run_mlm(config, workdir: str, res: Results, log) -> None:
  m = config.mlm
  trained = mlm.train_schemes(m, seed=config.seed, workdir=workdir, data_dir=config.data_dir)
  log(f"  mlm: {m.seeds} seed(s) x {len(trained['schemes'])} schemes x {m.train_steps} steps in "
      f"{trained['train_s']:.1f}s (this process)")
  acc, majority, eval_s = mlm.evaluate(trained, m, seed=config.seed)
  for a in m.arms:
    log(f"  mlm {a.name:3s} {a.label:40s} acc@{m.train_len}={acc[a.name][m.train_len].mean():.4f} "
        f"acc@{m.test_len}={acc[a.name][m.test_len].mean():.4f}")
  mlm_tables.mlm_rows(m, acc, majority, res, trained["train_s"], eval_s)
  mlm_tables.mlm_figure(m, trained, acc, workdir, res)


def run(config, workdir: str) -> Results:
  os.makedirs(workdir, exist_ok=True)
  res = Results(title=f"Position robustness (kexue 9444): {config.variant}")
  unknown = [p for p in config.parts if p not in PARTS]
  if unknown:
    raise ValueError(f"Unknown part(s) {unknown} in config.parts; valid: {PARTS}")
  log = RunLog(workdir)
  if "che" in config.parts:
    run_che(config, workdir, res, log)
  if "mlm" in config.parts:
    run_mlm(config, workdir, res, log)
  if "bench" in config.parts:
    bench.run_bench(config, res)
  res.notes.append(config.notes)
  return res
