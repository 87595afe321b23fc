"""Rows (shared verdict rule) and metrics of kexue 9341 (cross-encoders) and 8847 (bi-encoders).

Each run keeps the epoch the reference selects: best valid accuracy at the Powell threshold (strictly better,
from 0) for the Chinese cross-encoders; best valid Spearman for STS-B-en and the bi-encoders. The
"exact valid accuracy" rows select by the threshold sweep instead (Powell can stay on its starting plateau
when the scores are poorly separated). Scores are x100. Arms are compared by paired per-seed differences.
"""
from __future__ import annotations

import numpy as np

from research import verdict as V
from research.eval import sts
from research.report import Results

# Published tables (x100). 9341 (interactive), BERT and RoBERTa rows.
PUB_9341 = {
    "spearman": {("BERT", "ce"): dict(ATEC=48.01, BQ=71.96, LCQMC=78.53, PAWSX=68.59, avg=66.77),
                 ("BERT", "cosent"): dict(ATEC=48.09, BQ=72.25, LCQMC=78.70, PAWSX=69.34, avg=67.10),
                 ("RoBERTa", "ce"): dict(ATEC=49.70, BQ=73.20, LCQMC=79.13, PAWSX=70.52, avg=68.14),
                 ("RoBERTa", "cosent"): dict(ATEC=49.82, BQ=73.09, LCQMC=78.78, PAWSX=70.54, avg=68.06)},
    "acc": {("BERT", "ce"): dict(ATEC=85.38, BQ=83.57, LCQMC=88.10, PAWSX=81.45, avg=84.63),
            ("BERT", "cosent"): dict(ATEC=85.55, BQ=83.73, LCQMC=87.92, PAWSX=81.85, avg=84.76),
            ("RoBERTa", "ce"): dict(ATEC=85.97, BQ=84.67, LCQMC=88.14, PAWSX=82.85, avg=85.41),
            ("RoBERTa", "cosent"): dict(ATEC=86.06, BQ=84.23, LCQMC=88.14, PAWSX=83.03, avg=85.37)},
}
# 8847 (bi-encoders, own train split, test Spearman), BERT rows.
PUB_8847 = {"cosent": {"ATEC": 49.74, "BQ": 72.38, "LCQMC": 78.69, "PAWSX": 60.00, "STS-B": 80.14},
            "sbert": {"ATEC": 46.36, "BQ": 70.36, "LCQMC": 78.72, "PAWSX": 46.86, "STS-B": 66.41}}
SELECTIONS = {"protocol": ("valid_acc", 0.0, "test_acc"), "sweep": ("valid_acc_sweep", 0.0, "test_acc_sweep"),
              "spearman": ("valid_spearman", -2.0, None)}


def selected(hist: list[list[dict]], selection: str) -> list[dict]:
  """Per seed, the evaluation of the epoch kept by ``selection`` (the last epoch if none improves on start)."""
  key, start = SELECTIONS[selection][:2]
  return [h[sts.select_best(h, key, start=start)] if sts.select_best(h, key, start=start) >= 0 else h[-1]
          for h in hist]


def per_seed(recs: list[dict], key: str) -> np.ndarray:
  return 100 * np.array([r[key] for r in recs], np.float64)


def majority(y) -> float:
  """The chance level of a test accuracy (x100): always predicting the majority class (labels > 0.5 are
  positive), plus half a test sample, so a model that predicts one class is never above it by rounding."""
  pos = int(np.sum(np.asarray(y) > 0.5))
  return 100 * (max(pos, len(y) - pos) + 0.5) / len(y)


def _pub_pair(metric: str, task: str) -> str:
  pb = PUB_9341[metric]
  b = lambda m: pb[(m, "cosent")][task] - pb[(m, "ce")][task]
  return (f"BERT {pb[('BERT', 'ce')][task]:.2f} | {pb[('BERT', 'cosent')][task]:.2f} ({b('BERT'):+.2f}); "
          f"RoBERTa {pb[('RoBERTa', 'ce')][task]:.2f} | {pb[('RoBERTa', 'cosent')][task]:.2f} ({b('RoBERTa'):+.2f})")


def _pair_row(res: Results, name: str, published: str, a: np.ndarray, b: np.ndarray, assess: V.Assessment,
              labels=("CE", "CoSENT"), note: str = "") -> None:
  measured = (f"{labels[0]} {V.interval(b).format(4)} | {labels[1]} {V.interval(a).format(4)}; "
              f"{labels[1]} - {labels[0]} {V.interval(a - b).format(4)}")
  res.rows.append(V.row(name, published, assess, measured=measured, note=note))


def _average_row(res: Results, name: str, published: str, per_task: dict, tol: float, note: str) -> None:
  """CoSENT - CE averaged over the tasks where both arms learned (per seed), as a no-gain claim."""
  learned = [t for t, (co, ce, a) in per_task.items() if a.verdict is not V.Verdict.NOT_LEARNED]
  if not learned:
    iv = V.interval(np.mean([co - ce for co, ce, _ in per_task.values()], axis=0))
    a = V.Assessment(V.Verdict.NOT_LEARNED, iv, "no task has both arms above chance")
  else:
    co = np.mean([per_task[t][0] for t in learned], axis=0)
    ce = np.mean([per_task[t][1] for t in learned], axis=0)
    a = V.compare(co, ce, claim="equal", tolerance=tol)
  res.rows.append(V.row(name, published, a, note=f"{note}; tasks averaged (both arms learned): "
                        f"{', '.join(learned) or 'none'} of {', '.join(per_task)}"))


def cross_rows(res: Results, hist: dict, tests: dict, config) -> None:
  """9341's table: per task CE (b32) vs CoSENT (b64) test Spearman and accuracy, claim "no real improvement"
  (|CoSENT - CE| <= ``no_gain_tol`` points); the average over tasks; the sweep-selection view; controls."""
  tol = config.no_gain_tol
  tasks = [t for t in tests if ("ce" in hist[t] and "cosent" in hist[t])]
  for sel, label in (("protocol", "epoch by valid accuracy (Powell, the reference)"),
                     ("sweep", "epoch by exact valid accuracy (threshold sweep)")):
    acc_key = SELECTIONS[sel][2]
    avg = {"spearman": {}, "acc": {}}
    for task in tasks:
      ce, co = selected(hist[task]["ce"], sel), selected(hist[task]["cosent"], sel)
      for metric, key, chance in (("spearman", "test_spearman", 0.0), ("acc", acc_key, majority(tests[task]))):
        a_ce, a_co = per_seed(ce, key), per_seed(co, key)
        res.add(f"{task}_cosent_minus_ce{'' if metric == 'spearman' else '_acc'}{'' if sel == 'protocol' else '_sweepsel'}_mean",
                float(np.mean(a_co - a_ce)))
        if sel == "protocol":
          res.add(f"{task}_ce_{key}", float(a_ce.mean()))
          res.add(f"{task}_cosent_{key}", float(a_co.mean()))
        assess = V.compare(a_co, a_ce, claim="equal", tolerance=tol, chance_a=chance, chance_b=chance)
        avg[metric][task] = (a_co, a_ce, assess)
        what = "Spearman" if metric == "spearman" else f"accuracy ({'Powell' if sel == 'protocol' else 'sweep'} threshold)"
        _pair_row(res, f"{task} test {what}, {label}: CE (b32) | CoSENT (b64)", _pub_pair(metric, task),
                  a_co, a_ce, assess, note=f"claim: |CoSENT - CE| <= {tol:g} points; chance {chance:.2f}"
                  + ("" if metric == "spearman" else " (majority class + half a test sample)"))
    for metric, what in (("spearman", "test Spearman"), ("acc", "test accuracy")):
      pb = PUB_9341[metric]
      pub = (f"BERT {pb[('BERT', 'cosent')]['avg'] - pb[('BERT', 'ce')]['avg']:+.2f}, RoBERTa "
             f"{pb[('RoBERTa', 'cosent')]['avg'] - pb[('RoBERTa', 'ce')]['avg']:+.2f} (4 tasks, 1 run each): "
             "'feasible, but no real improvement'")
      _average_row(res, f"average over tasks, {label}: {what} CoSENT - CE", pub, avg[metric], tol,
                   f"claim: |CoSENT - CE| <= {tol:g} points")
  for task in tasks:
    for ctrl, base, what in (("cosent_b32", "ce", "equal-batch control CoSENT(b32) - CE(b32)"),
                             ("ce_proper", "ce", "CE proper - zero segment ids"),
                             ("cosent_proper", "cosent", "CoSENT proper - zero segment ids")):
      if ctrl in hist[task]:
        d = per_seed(selected(hist[task][ctrl], "protocol"), "test_spearman") - \
            per_seed(selected(hist[task][base], "protocol"), "test_spearman")
        res.add(f"{task}_{ctrl}_minus_{base}_spearman_mean", float(d.mean()))
        res.rows.append(V.row(f"{task}: {what}, test Spearman", "not published", V.measured(d, "control"),
                              note="is the batch-size difference a confound?" if ctrl == "cosent_b32"
                              else "Su feeds all-zero segment ids"))


def graded_rows(res: Results, hist: dict, task: str) -> None:
  """STS-B-en (not in 9341): CE on labels binarised at > 2.5 vs CoSENT on the 0-5 grades; hypothesis CoSENT > CE."""
  ce, co = (per_seed(selected(hist[a], "spearman"), "test_spearman") for a in ("ce", "cosent"))
  res.add(f"{task}_ce_test_spearman", float(ce.mean()))
  res.add(f"{task}_cosent_test_spearman", float(co.mean()))
  res.add(f"{task}_cosent_minus_ce_mean", float(np.mean(co - ce)))
  assess = V.compare(co, ce, claim="greater", chance_a=0.0, chance_b=0.0)
  _pair_row(res, f"{task} cross-encoder test Spearman: CE (binarised > 2.5) | CoSENT (graded)",
            "not tested in 9341 (hypothesis: CoSENT > CE, only it uses the grading)", co, ce, assess,
            note="MiniLM cross-encoder, best epoch by valid Spearman")


def bi_rows(res: Results, hist: dict, untrained: dict) -> None:
  """8847: CoSENT vs Sentence-BERT bi-encoders, claim CoSENT > SBERT (test Spearman, best epoch by valid)."""
  per_task = {}
  for task, h in hist.items():
    co, sb = (per_seed(selected(h[a], "spearman"), "test_spearman") for a in ("cosent", "sbert"))
    res.add(f"{task}_cosent_test_spearman", float(co.mean()))
    res.add(f"{task}_sbert_test_spearman", float(sb.mean()))
    res.add(f"{task}_cosent_minus_sbert_mean", float(np.mean(co - sb)))
    res.add(f"{task}_untrained_test_spearman", 100 * untrained[task])
    res.add(f"{task}_cosent_first_epoch_valid_spearman", float(np.mean([100 * r[0]["valid_spearman"] for r in h["cosent"]])))
    pk = "STS-B" if task == "STS-B-en" else task
    pub = (f"BERT CoSENT {PUB_8847['cosent'][pk]:.2f} vs SBERT {PUB_8847['sbert'][pk]:.2f} "
           f"({PUB_8847['cosent'][pk] - PUB_8847['sbert'][pk]:+.2f})" + (" [Chinese STS-B]" if pk == "STS-B" else ""))
    assess = V.compare(co, sb, claim="greater", chance_a=0.0, chance_b=0.0)
    if task != "STS-B-en":
      per_task[task] = (co, sb, assess)
    _pair_row(res, f"{task} bi-encoder test Spearman: SBERT | CoSENT", pub, co, sb, assess, labels=("SBERT", "CoSENT"),
              note=("all-MiniLM-L6-v2, already a tuned sentence encoder" if task == "STS-B-en" else "offline char-BERT")
              + f"; untrained {100 * untrained[task]:.2f}")
  if len(per_task) > 1:
    learned = [t for t, (_, _, a) in per_task.items() if a.verdict is not V.Verdict.NOT_LEARNED]
    pub = np.mean([PUB_8847["cosent"][t] - PUB_8847["sbert"][t] for t in per_task])
    if learned:
      a = V.compare(np.mean([per_task[t][0] for t in learned], 0), np.mean([per_task[t][1] for t in learned], 0),
                    claim="greater")
    else:
      a = V.Assessment(V.Verdict.NOT_LEARNED, V.interval(np.mean([c - s for c, s, _ in per_task.values()], 0)),
                       "no task has both arms above chance")
    res.rows.append(V.row("average over the Chinese tasks: bi-encoder test Spearman CoSENT - SBERT",
                          f"BERT {pub:+.2f} (CoSENT > SBERT)", a,
                          note=f"tasks averaged (both arms learned): {', '.join(learned) or 'none'} of {', '.join(per_task)}"))


def selection_note(hist: dict) -> str:
  """The epochs kept per run (reference / sweep selection): where they differ, Powell stayed on a plateau."""
  parts = []
  for task, arms in hist.items():
    for arm, runs in arms.items():
      for s, h in enumerate(runs):
        e = [sts.select_best(h, SELECTIONS[k][0]) + 1 for k in ("protocol", "sweep")]
        parts.append(f"{task}/{arm}/s{s}: {e[0] or '-'}/{e[1] or '-'}")
  return "Selected epochs (valid accuracy at the Powell / sweep threshold; - none above 0): " + "; ".join(parts)
