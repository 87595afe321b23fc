"""Rows (shared verdict rule), metrics and figures of kexue 9344's training comparisons."""
from __future__ import annotations

import json
import os

import jax
import numpy as np

from experiments.amos.arms import ARM_LABEL
from research import verdict as V
from research.plotting import save_figure, subplots
from research.report import Results
from research.train.records import steps_to_target

CLAIM_FRAC = 0.70     # paper: AdamW's final loss in <= 70 % of the steps
CLAIM_MEMORY = 0.51   # paper: with <= 51 % of AdamW's slot memory


def learned(task, arm_out) -> V.Assessment:
  """An arm learned when its final validation loss is below the uniform prediction's (ln classes)."""
  return V.learned(-arm_out["val_loss"][:, -1], -task.chance_loss)


def comparison_rows(task, c, out: dict, res: Results, published_steps: str, unit: str = "") -> None:
  """Per non-AdamW arm: the fraction of the steps each seed needs to reach its paired AdamW seed's final val
  loss (claim: <= 70 % for Amos), and Amos's slot memory relative to AdamW's (claim: <= 51 %)."""
  name = task.name
  adamw = out["adamw"]
  target = adamw["val_loss"][:, -1]                  # per seed: AdamW's final val loss
  res.add(f"{name}_target_val_loss", float(target.mean()))
  for arm, o in out.items():
    res.add(f"{name}_{arm}_final_val_loss", float(o["val_loss"][:, -1].mean()))
    res.add(f"{name}_{arm}_state_bytes", o["state_bytes"])
    res.add(f"{name}_{arm}_state_bytes_ratio_to_adamw", o["state_bytes"] / adamw["state_bytes"])
    res.add(f"{name}_{arm}_train_seconds", o["seconds"])
  base_ok = learned(task, adamw)
  for arm in [a for a in ("amos", "adamw_su_r3") if a in out]:
    o = out[arm]
    frac = np.array([steps_to_target(o["steps"], o["val_loss"][s], target[s]) for s in range(len(target))]) / c.num_steps
    res.add(f"{name}_{arm}_steps_to_adamw_loss_frac", float(frac.mean()))
    res.add(f"{name}_{arm}_seeds_reaching_adamw_loss", float(np.sum(frac <= 1.0)))
    label = f"{name}: {ARM_LABEL[arm]} steps to its seed's AdamW final val loss (fraction of {c.num_steps})"
    note = (f"final val loss {V.interval(o['val_loss'][:, -1]).format(4)} vs AdamW "
            f"{V.interval(target).format(4)}{unit}; eval every {c.eval_every} steps "
            f"({100 * c.eval_every / c.num_steps:.3g} % resolution); a seed that never reaches it counts as one "
            f"evaluation past the end; per seed: {', '.join(f'{x:.3f}' for x in frac)}")
    if base_ok.verdict is not V.Verdict.AGREES:
      a = V.Assessment(base_ok.verdict, V.interval(frac), f"AdamW baseline: {base_ok.reason}")
    elif arm == "amos":
      lrn = learned(task, o)
      a = (V.compare(frac, np.full_like(frac, CLAIM_FRAC), claim="less") if lrn.verdict is V.Verdict.AGREES
           else V.Assessment(lrn.verdict, V.interval(frac), f"Amos: {lrn.reason}"))
    else:
      a = V.measured(frac, "no experiment in 9344")
    res.rows.append(V.row(label, f"<= {CLAIM_FRAC:.2f} ({published_steps})" if arm == "amos" else "-", a,
                          measured=V.interval(frac).format(), note=note))
  if "amos" in out:
    r = out["amos"]["state_bytes"] / adamw["state_bytes"]
    res.rows.append(V.row(f"{name}: Amos optimizer-state bytes / AdamW", f"<= {CLAIM_MEMORY:.2f} (paper)",
                          V.exact(r <= CLAIM_MEMORY, f"bytes ratio {r:.4f} <= {CLAIM_MEMORY}"),
                          measured=f"{r:.4f} ({out['amos']['state_bytes']} B vs {adamw['state_bytes']} B)"))


def test_accuracy_rows(task, c, out: dict, res: Results, epochs: float) -> None:
  """Test accuracy per arm (mean ± interval over seeds); the README's MNIST number is not comparable."""
  acc_fn = jax.jit(task.test_accuracy)
  for arm, o in out.items():
    accs = np.array([float(acc_fn(jax.tree.map(lambda x: x[s], o["params"]))) for s in range(int(c.seeds))])
    o["test_acc"] = accs
    res.add(f"{task.name}_{arm}_test_acc", float(accs.mean()))
    lrn = V.learned(accs, 0.1)
    a = V.measured(accs, "README: MNIST, not comparable") if lrn.verdict is V.Verdict.AGREES else lrn
    res.rows.append(V.row(f"{task.name}: {ARM_LABEL[arm]} test accuracy", "99.26 % (Amos, MNIST, 9 epochs)"
                          if arm == "amos" else "-", a,
                          note=f"Fashion-MNIST (MNIST training images are not offline), {c.num_steps} steps = "
                               f"{epochs:.2f} epochs; chance 0.1"))


def curves_figure(task, c, out: dict, workdir: str, res: Results) -> None:
  fig, ax = subplots(figsize=(6, 4))
  for arm, o in out.items():
    v = o["val_loss"]
    ax.plot(o["steps"], v.mean(0), marker=".", label=ARM_LABEL[arm])
    if v.shape[0] > 1:
      ax.fill_between(o["steps"], v.min(0), v.max(0), alpha=0.2)
  ax.axhline(float(out["adamw"]["val_loss"][:, -1].mean()), color="k", ls=":", lw=1, label="AdamW final (mean)")
  ax.set_ylim(bottom=0)
  ax.set_xlim(left=0)
  ax.set_xlabel("step")
  ax.set_ylabel("validation loss (mean, min-max over seeds)")
  ax.set_title(f"{task.name}: validation loss ({c.seeds} seeds)")
  ax.legend()
  save_figure(fig, workdir, f"{task.name}_val_loss.png", res)
  with open(os.path.join(workdir, f"{task.name}_curves.json"), "w") as fh:
    json.dump({arm: {"steps": o["steps"].tolist(), "val_loss": o["val_loss"].tolist(), "info": o["info"],
                     "test_acc": o.get("test_acc", np.zeros(0)).tolist()} for arm, o in out.items()}, fh)


def oracle_rows(found: dict | None, cases: list, steps: int, res: Results) -> None:
  if found is None:
    res.metrics["oracle_max_abs_diff"] = float("nan")
    res.notes.append("jestimator 0.3.3 is not installed: the oracle comparison was skipped "
                     "(`pip install --no-deps jestimator==0.3.3`).")
    return
  diffs = {k: v["max_abs_diff"] for k, v in found.items()}
  worst = res.add("oracle_max_abs_diff", max(diffs.values()))
  for k, v in diffs.items():
    res.add(f"oracle_{k}_max_abs_diff", v)
  res.rows.append(V.row("Amos vs jestimator 0.3.3 (max |diff|, float64)", "identical (official algorithm)",
                        V.exact(worst <= 1e-12, "max |diff| <= 1e-12 over every step and case"),
                        measured=f"{worst:.1e}", note=f"{steps} steps; cases: {', '.join(cases)}"))


ARMS_NOTE = (
    "Arms: **Amos** = `research.optim.amos.amos` with the official per-model eta/slot-shape rules (README "
    "MNIST-CNN rules for the CNN, jestimator BERT rules for the LM), xi = 1/sqrt(batches per epoch); **AdamW** = "
    "`optax.adamw` with 5 % linear warm-up then linear decay to 0, weight decay 0.01; **AdamW + Su R3** = Adam's "
    "direction followed by `research.optim.su_rules.su_rules` (per-tensor update RMS alpha0*sigma, decoupled decay "
    "alpha0^2/2, R3 factor 1/(kappa t + 1) with the half-life set to half the run). Each arm trains `seeds` runs "
    "through `research.train.fit_population` (checkpointed; a re-run resumes); run s of every arm has the same "
    "init and data order, so arms are compared seed by seed. Verdicts: research.verdict (95 % t-interval over "
    "seeds; an arm whose val loss is not below the uniform prediction's has not learned).")
