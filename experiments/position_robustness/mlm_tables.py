"""MLM rows (shared verdict rule: paired per-seed differences of masked-token accuracy), table and figure."""
from __future__ import annotations

import numpy as np

from research import verdict as V
from research.plotting import save_figure, subplots
from research.report import Results

BEST = "7"   # the article: equal-mean (exponential) + log n extrapolates best
PAIRS = (("log n helps (baseline)", "1", "2"), ("log n helps (RPE grid)", "4", "5"),
         ("log n helps (equal-mean)", "6", "7"), ("grid test beats random test (RPE)", "3", "4"),
         ("grid beats random, + log n", "4b", "5"), ("super-baseline (window = N) beats baseline", "1", "9"))


def mlm_rows(m, acc: dict, majority: dict, res: Results, train_s: float, eval_s: float) -> None:
  N, M = int(m.train_len), int(m.test_len)
  label = {a.name: f"{a.name} {a.label}" for a in m.arms}
  pts = {name: {n: 100 * np.asarray(v) for n, v in r.items()} for name, r in acc.items()}
  for name, r in acc.items():
    for n, v in r.items():
      res.add(f"mlm/{name}/acc_{n}", np.mean(v))
  res.add("mlm/train_s", train_s)
  res.add("mlm/eval_s", eval_s)
  chance = 100 * majority[M]
  def row(name, published, hi, lo, note):   # the differences' interval, also when the learned check decides
    a = V.compare(pts[hi][M], pts[lo][M], claim="greater", chance_a=chance, chance_b=chance)
    return V.row(name, published, a, measured=V.interval(pts[hi][M] - pts[lo][M]).format(), note=note)

  note = (f"char-level tinyshakespeare, {m.num_layers} layers d={m.d_model}, {m.train_steps} steps (reduced); "
          f"Su's model/data/numbers unpublished")
  if BEST in pts:
    others = [k for k in pts if k != BEST]
    runner_up = max(others, key=lambda k: pts[k][M].mean())
    best = max(pts, key=lambda k: pts[k][M].mean())
    res.rows.append(row(f"MLM acc@{M}: arm 7 - the best other arm ({label[runner_up]}; points, per seed)",
                        "7 equal-mean (exp) + log n is best", BEST, runner_up,
                        note=f"best arm by mean: {label[best]} ({pts[best][M].mean():.1f}%); {note}"))
  for text, lo, hi in PAIRS:
    if lo in pts and hi in pts:
      res.rows.append(row(f"MLM acc@{M}: {text} (arm {hi} - arm {lo}, points, per seed)",
                          f"arm {hi} > arm {lo}" + (" (9431: window ~ SOTA)" if hi == "9" else ""), hi, lo,
                          note=f"{pts[hi][M].mean():.1f}% vs {pts[lo][M].mean():.1f}% (means)"))
  lines = [f"MLM masked-token accuracy (%, mean ± 95% interval over {m.seeds} seed(s); train length {N}, test "
           f"{M}; random-test arms: mean over {m.random_test_draws} position draws x {m.eval_chunks} chunks). "
           f"Majority-class accuracy on the masked targets: {100 * majority[N]:.1f}% at {N}, {chance:.1f}% at {M}; "
           "an arm that does not clear it has not learned and is compared with nothing. Verdicts: "
           "research.verdict (paired per-seed differences, 95% t-interval).", "",
           f"| arm | acc@{N} | acc@{M} |", "|---|---|---|"]
  for name, r in pts.items():
    lines.append(f"| {label[name]} | {V.interval(r[N]).format(4)} | {V.interval(r[M]).format(4)} |")
  res.notes.append("\n".join(lines))
  res.notes.append(
      "MLM: char-level tinyshakespeare (90/10 split), pre-LN RoPE encoder, 15% BERT masking; the training "
      "schemes (sequential, RPE random with L = " f"{m.max_len}, equal-mean exponential / Beta) are one "
      "population of seeds x schemes (research.train.fit_population, checkpointed); the schemes of a seed share "
      "the initialisation, the windows and the masks. log n only changes the test-time factor (1 at the "
      "training length), so each '+ log n' arm equals its twin at length N.")


def mlm_figure(m, trained: dict, acc: dict, workdir: str, res: Results) -> None:
  N, M = int(m.train_len), int(m.test_len)
  fig, (ax0, ax1) = subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [1, 2]})
  steps, loss = trained["pop"].curves("loss")
  K = len(trained["schemes"])
  for k, (kind, kappa) in enumerate(trained["schemes"]):
    if steps.size:
      ax0.plot(steps, loss[k::K].mean(0), marker=".", label=kind + (f" k={kappa:g}" if kappa else ""))
  ax0.set_xlabel("step")
  ax0.set_ylabel("training MLM loss (mean over seeds)")
  ax0.legend(fontsize=7)
  names = list(acc)
  x = np.arange(len(names))
  for off, n in ((-0.2, N), (0.2, M)):
    ivs = [V.interval(100 * np.asarray(acc[k][n])) for k in names]
    err = [iv.half_width if iv.n > 1 else 0.0 for iv in ivs]
    ax1.bar(x + off, [iv.mean for iv in ivs], 0.4, yerr=err, capsize=2, label=f"test {n}")
  ax1.set_xticks(x)
  ax1.set_xticklabels([f"{a.name} {a.label}" for a in m.arms], rotation=60, ha="right", fontsize=7)
  ax1.set_ylabel("masked-token accuracy (%, mean ± 95% CI)")
  ax1.legend()
  save_figure(fig, workdir, "mlm_extrapolation.png", res)
