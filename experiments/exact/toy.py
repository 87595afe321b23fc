"""The article's 3-point toy (spec 02 §3.7): CE / hinge optima of b on a grid, learnable scale, EXACT with
trainable sigma. The trainings go through research.train (one-run populations, checkpointed in the workdir)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from research import train
from research import verdict as V
from research.losses import exact
from research.plotting import save_figure, subplots
from research.report import Results

TOY_X = np.array([-0.25, 0.0, 0.25], np.float32)
TOY_L = np.array([-1.0, -1.0, 1.0], np.float32)
TOY_Y = (TOY_L > 0).astype(np.int32)


def logits(k, b):
  f = k * (jnp.asarray(TOY_X) - b)
  return jnp.stack([jnp.zeros_like(f), f], -1)


def ce(k, b):
  return jnp.mean(jax.nn.softplus(-jnp.asarray(TOY_L) * k * (jnp.asarray(TOY_X) - b)))


def hinge(k, b):
  return jnp.mean(jax.nn.relu(1.0 - jnp.asarray(TOY_L) * k * (jnp.asarray(TOY_X) - b)))


def accuracy(k, b) -> float:
  return float(np.mean(np.sign(k * (TOY_X - b)) == TOY_L))


def exact_toy_loss(p):
  return exact.exact_loss(logits(1.0, p["b"]), jnp.asarray(TOY_Y), jnp.exp(p["log_sigma"]))


def train_one(name: str, loss, params: dict, tx, steps: int, t, seed: int, workdir: str) -> dict:
  """Full-batch training of ``loss(params)`` through research.train.fit_population (one run)."""
  state = train.TrainState.create(params=jax.tree.map(jnp.float32, params), tx=tx,
                                  rng=jax.random.fold_in(jax.random.key(seed), len(name)))
  pop = train.fit_population(lambda p, batch, rng: (loss(p), {}), [state], lambda s: {"x": TOY_X}, shared_batch=True,
                             num_steps=steps, run_ids=[f"toy/{name}"], workdir=workdir, name=f"toy/{name}",
                             log_every=max(1, steps // 10), steps_per_call=t.steps_per_call, desc=f"toy {name}",
                             mesh=train.make_mesh(jax.devices()[:1]))
  return jax.tree.map(lambda x: float(np.asarray(x)[0]), pop.state.params)


def grid(t):
  bs = np.arange(t.b_min, t.b_max + t.b_step / 2, t.b_step).astype(np.float32)
  ce_b = np.asarray(jax.vmap(lambda b: ce(1.0, b))(bs))
  hi_b = np.asarray(jax.vmap(lambda b: hinge(1.0, b))(bs))
  return bs, ce_b, hi_b


def run_toy(config, workdir: str, res: Results) -> None:
  t = config.toy
  bs, ce_b, hi_b = grid(t)
  b_ce = res.add("toy_ce_b", float(bs[np.argmin(ce_b)]))
  flat = bs[hi_b <= hi_b.min() + 1e-6]
  lo, hi = res.add("toy_hinge_b_lo", flat.min()), res.add("toy_hinge_b_hi", flat.max())
  res.add("toy_hinge_b", float(bs[np.argmin(hi_b)]))
  res.add("toy_ce_acc", accuracy(1.0, b_ce))
  res.add("toy_hinge_acc", accuracy(1.0, 0.5 * (lo + hi)))
  step = float(t.b_step)
  res.rows.append(V.row(f"toy: CE optimum b (f = x - b, grid step {step:g})", "0.7",
                        V.exact(abs(b_ce - 0.7) <= step, f"|argmin - 0.7| <= one grid step ({step:g})"),
                        measured=f"{b_ce:.3f}",
                        note=f"accuracy {accuracy(1.0, b_ce) * 3:.0f}/3 (the point (0.25,+1) is misclassified)"))
  res.rows.append(V.row("toy: hinge optimal set of b", "[0.75, 1]",
                        V.exact(abs(lo - 0.75) <= step and abs(hi - 1.0) <= step,
                                "both ends of the flat minimum within one grid step of 0.75 and 1"),
                        measured=f"[{lo:.3f}, {hi:.3f}]", note="hinge is flat (=1.75/3) there; accuracy 2/3"))
  perfect = bs[(np.sign(TOY_X[None] - bs[:, None]) == TOY_L[None]).all(1)]
  res.rows.append(V.row("toy: region of perfect accuracy", "(0, 0.25)",
                        V.exact(perfect.min() > 0 and perfect.max() < 0.25,
                                "the grid points with 3/3 correct lie in (0, 0.25)"),
                        measured=f"[{perfect.min():.3f}, {perfect.max():.3f}] on the grid"))

  p = train_one("exact", exact_toy_loss, {"b": t.exact_init_b, "log_sigma": t.exact_init_log_sigma},
                optax.sgd(t.exact_lr), int(t.exact_steps), t, config.seed, workdir)
  acc = accuracy(1.0, p["b"])
  res.add("toy_exact_b", p["b"])
  res.add("toy_exact_sigma", np.exp(p["log_sigma"]))
  res.add("toy_exact_acc", acc)
  res.rows.append(V.row("toy: EXACT (trainable sigma) final b / accuracy", "b in (0, 0.25), acc 1 (paper)",
                        V.exact(acc == 1.0, "3/3 points correct (deterministic: quadrature loss, fixed start)"),
                        measured=f"b = {p['b']:.3f}, sigma = {np.exp(p['log_sigma']):.3g}, acc = {acc:.3f}",
                        note=f"SGD lr {t.exact_lr}, {t.exact_steps} steps from b = {t.exact_init_b} (the CE "
                             f"optimum), sigma = {np.exp(t.exact_init_log_sigma):.3g}"))
  # Su's objection: give CE and hinge the same scale freedom, f = k (x - b).
  for name, fn in (("ce", ce), ("hinge", hinge)):
    q = train_one(f"scale_{name}", lambda p, fn=fn: fn(p["k"], p["b"]), {"k": 1.0, "b": 0.7},
                  optax.adam(t.scale_lr), int(t.scale_steps), t, config.seed, workdir)
    a = accuracy(q["k"], q["b"])
    res.add(f"toy_scale_{name}_b", q["b"])
    res.add(f"toy_scale_{name}_k", q["k"])
    res.add(f"toy_scale_{name}_acc", a)
    res.rows.append(V.row(f"toy: {name} with learnable scale k(x - b)", "correct b, acc 1 (Su's objection)",
                          V.exact(a == 1.0, "3/3 points correct (deterministic full-batch training)"),
                          measured=f"b = {q['b']:.3f}, k = {q['k']:.3g}, acc = {a:.3f}",
                          note=f"Adam lr {t.scale_lr}, {t.scale_steps} steps from (k, b) = (1, 0.7)"))
  figure(t, bs, ce_b, hi_b, b_ce, workdir, res)


def figure(t, bs, ce_b, hi_b, b_ce, workdir: str, res: Results) -> None:
  fig, ax = subplots(figsize=(7, 4.2))
  ax.plot(bs, ce_b, label="sigmoid-CE")
  ax.plot(bs, hi_b, label="hinge")
  y = jnp.asarray(TOY_Y)
  for s in t.plot_sigmas:
    ex = np.asarray(jax.vmap(lambda b: exact.exact_loss(logits(1.0, b), y, s))(bs))
    ax.plot(bs, ex, "--", label=f"EXACT 1-E[p], sigma={s:g}")
  ax.plot(bs, 1.0 - (np.sign(TOY_X[None] - bs[:, None]) == TOY_L[None]).mean(1), "k:", label="0-1 error")
  ax.axvspan(0, 0.25, color="g", alpha=0.1, label="perfect accuracy")
  ax.axvline(b_ce, color="C0", lw=0.5)
  ax.set_xlabel("b")
  ax.set_ylabel("loss")
  ax.set_title("Toy example (f(x) = x - b): loss vs b")
  ax.legend(fontsize=7)
  save_figure(fig, workdir, "toy_losses.png", res)
