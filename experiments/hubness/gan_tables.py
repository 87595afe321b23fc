"""Rows (shared verdict rule), notes and figures of the GAN study."""
from __future__ import annotations

import numpy as np

from research import verdict as V
from research.eval import generative as gen_eval
from research.nn import gan as gan_lib
from research.plotting import save_figure, subplots
from research.report import Results

SHOW = ("random", "hub_su_z", "minnorm_z", "hub_official_w", "minnorm_w", "trunc0.7_mean", "antihub_w")


def _pr(per, c) -> str:
  iv = {k: V.interval(per[c][k]) for k in ("precision", "recall", "fd")}
  return f"P {iv['precision'].format()}, R {iv['recall'].mean:.3f}, FD {iv['fd'].mean:.3g}"


def gan_rows(ds, g, per: dict, infos: list, res: Results) -> None:
  """Health (learned), hubs vs random, hubs vs min-norm, anti-hubs vs random, truncation; metrics."""
  name = ds.name
  for c, ms in per.items():
    for kk, vals in ms.items():
      iv = V.interval(vals)
      res.add(f"gan_{name}_{c}_{kk}", iv.mean)
      res.add(f"gan_{name}_{c}_{kk}_ci", iv.half_width if iv.n > 1 else np.nan)
  for key in ("acc_su_z", "t_su_z", "acc_official_w", "t_official_w"):
    res.add(f"gan_{name}_{key}", np.mean([i[key] for i in infos]))
  health = V.learned(per["random"]["recall"], float(g.health_recall))
  res.rows.append(V.row(f"{name}: GAN learned (recall of random samples)", f"> {g.health_recall:g} (not mode-"
                        "collapsed)", health, note="a collapsed generator makes the sampler comparisons "
                        "meaningless: they are 'not learned' then"))

  def judged(assessment: V.Assessment) -> V.Assessment:
    if health.verdict is V.Verdict.AGREES:
      return assessment
    return V.Assessment(health.verdict, assessment.interval, f"generator: {health.reason}")

  wsp = "W" if bool(g.mapping) else "z"        # no mapping network: W = z (plain z-input generator)
  rand = per["random"]
  for hub, mn, tag, acc, t in (("hub_su_z", "minnorm_z", "Su rule in z", "acc_su_z", "t_su_z"),
                               ("hub_official_w", "minnorm_w", f"official rule in {wsp}", "acc_official_w",
                                "t_official_w")):
    accs = ", ".join(f"{i[acc]:.4f}" for i in infos)
    ts = ", ".join(f"{i[t]:g}" for i in infos)
    res.rows.append(V.row(
        f"{name}: hubs ({tag}) vs random, precision (paired difference)", "hubs higher quality (qualitative)",
        judged(V.compare(per[hub]["precision"], rand["precision"], claim="greater")),
        note=f"hubs {_pr(per, hub)}; random {_pr(per, 'random')}; t per seed {ts}, acceptance {accs}"))
    diff = np.asarray(per[hub]["precision"]) - np.asarray(per[mn]["precision"])
    iv = V.interval(diff)
    side = ("interval contains 0" if iv.lo <= 0 <= iv.hi else ("hubs higher" if iv.lo > 0 else "min-norm higher"))
    res.rows.append(V.row(
        f"{name}: hubs ({tag}) - min-norm at equal acceptance, precision", "not published (project control)",
        judged(V.measured(diff, f"paired difference, {side}")),
        note=f"hubs {_pr(per, hub)}; min-norm {_pr(per, mn)}; same candidate batches, same count per batch"))
  res.rows.append(V.row(
      f"{name}: anti-hubs ({wsp}) below random, precision (paired difference)", "lowest quality (qualitative)",
      judged(V.compare(per["antihub_w"]["precision"], rand["precision"], claim="less")),
      note=f"anti-hubs {_pr(per, 'antihub_w')}; N_k({wsp}, official count) = self only"))
  trunc = [c for c in per if c.startswith("trunc") and c.endswith("_mean")]
  res.rows.append(V.row(
      f"{name}: truncation psi ({wsp}, batch-mean center), precision", "behaves like hubs (qualitative)",
      V.measured(None, "no number published; EMA w_avg center in results.json"),
      measured="; ".join(f"psi {c[5:-5]}: {_pr(per, c)}" for c in trunc)))


def gan_notes(ds, g, *, n_train: int, n_real: int, acc: float, n_params: int, seconds: float, resumed: bool,
              res: Results) -> None:
  conv = ds.kind == "conv"
  arch = (f"with a {g.mapping_depth}-layer mapping network (z_dim {g.z_dim}, w_dim {g.w_dim})" if bool(g.mapping)
          else f"without a mapping network (plain z input, z_dim {g.z_dim}; W = z, so the *_w conditions and the "
          "official rule act on z itself)")
  recipe = f"Adam(lr {ds.lr:g}, beta1 0.5), R1 gamma {ds.r1_gamma:g} " + (
      f"applied every {ds.r1_every} D steps (lazy, scaled by {ds.r1_every})" if ds.r1_every > 1 else "every step")
  if conv:
    recipe += f", pixel-wise feature norm in G: {bool(ds.feature_norm)}, minibatch-stddev in D: {bool(ds.mbstd)}"
  res.notes.append(
      f"{ds.name}: {ds.kind} GAN {arch}, {n_params / 1e6:.2f}M parameters (G + D); {g.seeds} seeds trained as one "
      f"vmapped population (research.train.fit_population, custom two-player step: D then G, each with its own "
      f"Adam state), {ds.steps} iterations of batch {g.batch_size} on {n_train:,} training images; non-saturating "
      f"loss, {recipe}. GAN training in this process: {seconds:.0f} s"
      + (" (resumed from a checkpoint: only the remaining steps)" if resumed else "") + ". "
      f"{g.num_samples} samples per condition vs {n_real} real images; features: penultimate layer "
      f"({gen_eval.FeatureClassifier.feature_dim}-d) of a small classifier trained with research.train.fit "
      f"(accuracy {acc:.3f} on the real set). Hub rule N = {g.n_ref:,}, k = {g.k}, t = {g.threshold:g} where some "
      f"latent passes (else recalibrated to acceptance {g.fallback_acceptance}). Reduced from the paper's "
      "StyleGAN2-ADA on FFHQ (512-d W, FID on 50k Inception features).")


def gan_figures(name: str, per: dict, grids: dict, pop, workdir: str, res: Results) -> None:
  show = [c for c in SHOW if c in grids]
  fig, axs = subplots(1, len(show), figsize=(2.4 * len(show), 2.8), squeeze=False)
  for ax, c in zip(axs[0], show):
    ax.imshow(gan_lib.image_grid(grids[c], 4), cmap="gray", vmin=0, vmax=1)
    ax.set_title(c, fontsize=8)
    ax.axis("off")
  save_figure(fig, workdir, f"gan_{name}_samples.png", res)
  fig, ax = subplots(figsize=(5, 4))
  for c in per:
    p, r = V.interval(per[c]["precision"]), V.interval(per[c]["recall"])
    err = lambda iv: iv.half_width if iv.n > 1 else 0.0
    ax.errorbar(r.mean, p.mean, xerr=err(r), yerr=err(p), fmt="o", ms=3, capsize=2)
    ax.annotate(c, (r.mean, p.mean), fontsize=6)
  ax.set(xlabel="recall", ylabel="precision", title=f"{name}: quality vs diversity (mean, 95% CI)")
  save_figure(fig, workdir, f"gan_{name}_precision_recall.png", res)
  fig, ax = subplots(1, 2, figsize=(10, 3.4))
  for i, key in enumerate(("loss_d", "loss_g")):
    steps, vals = pop.curves(key)
    for run, v in zip(pop.run_ids, vals):
      ax[i].plot(steps, v, label=run.rsplit("/", 1)[-1])
    ax[i].set(xlabel="trainer step", ylabel=key, title=f"{name}: {key} (metrics.jsonl)")
    ax[i].legend(fontsize=7)
  save_figure(fig, workdir, f"gan_{name}_train.png", res)
