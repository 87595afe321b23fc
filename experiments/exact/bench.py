"""EXACT (quadrature) fwd+bwd against cross-entropy, the log-CDF floors, and quadrature vs Genz at equal error.

Every ratio is taken per interleaved round (research.benchmark.time_interleaved), so a target is judged by the
shared verdict rule on the rounds' interval.
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from experiments.exact.estimator import compare_estimators, genz_grad_fn, moderate_logits, quad_grad_fn, time_ratio
from research import special
from research.benchmark import geometric, ratio_vs_target
from research import verdict as V
from research.distributions import perturb_max
from research.losses import exact, surrogates
from research.report import Results

TARGET_C1000 = 20.0      # issue target: EXACT fwd+bwd <= 20x CE at C = 1000
TARGET_LOGCDF = 0.5      # issue target: research.special.log_ndtr fwd+bwd <= 0.5x jax's


def grad_of(loss):
  return jax.jit(jax.grad(loss))


def run_bench(config, workdir: str, res: Results) -> None:
  b = config.bench
  rng = np.random.default_rng([config.seed, 3])
  root = jax.random.key(config.seed)
  B, K, rounds = int(b.batch_size), int(b.num_nodes), int(b.rounds)
  ce_grad = grad_of(surrogates.cross_entropy)
  for C in b.classes:
    C = int(C)
    z, y = moderate_logits(rng, B, C, 2.0)
    zj, yj = jnp.asarray(z), jnp.asarray(y)
    fns = {"ce": ce_grad, "default": grad_of(lambda z, y: exact.exact_loss(z, y, 1.0)),
           "gh": grad_of(lambda z, y: exact.exact_loss(z, y, 1.0, rule="gauss_hermite", num_nodes=K)),
           "small": grad_of(lambda z, y: exact.exact_loss(z, y, 1.0, rule="gauss_hermite", num_nodes=int(b.small_nodes)))}
    ts = time_ratio({k: (lambda f=f: jax.block_until_ready(f(zj, yj))) for k, f in fns.items()}, rounds)
    r_def, r_gh, r_small = ts["default"] / ts["ce"], ts["gh"] / ts["ce"], ts["small"] / ts["ce"]
    k_def = perturb_max._default_num_nodes(perturb_max.get_noise("normal"), "adaptive", "pairwise", C)
    res.add(f"bench_C{C}_exact_over_ce", np.median(r_def))
    res.add(f"bench_C{C}_exact_gh{K}_over_ce", np.median(r_gh))
    res.add(f"bench_C{C}_exact_K{b.small_nodes}_over_ce", np.median(r_small))
    res.add(f"bench_C{C}_ce_ms", 1e3 * np.median(ts["ce"]))
    res.add(f"bench_C{C}_exact_ms", 1e3 * np.median(ts["default"]))
    a = (ratio_vs_target(r_def, TARGET_C1000, "less")[0] if C == 1000
         else V.measured(r_def, "no target at this C"))
    res.rows.append(V.row(f"bench B={B} C={C}: EXACT quadrature, library default (adaptive GH, K={k_def}) fwd+bwd / CE",
                          f"<= {TARGET_C1000:g}x (issue target)" if C == 1000 else "-", a,
                          measured=f"{geometric(r_def)}x",
                          note=f"CE {1e3 * np.median(ts['ce']):.3f} ms, EXACT {1e3 * np.median(ts['default']):.3f} ms; "
                               f"old default (GH K={K} centred at 0): {np.median(r_gh):.1f}x; GH K={b.small_nodes} "
                               f"(as accurate as Genz n=16): {np.median(r_small):.1f}x (medians)"))
    # Floors for any K-node quadrature on the B x C x K grid: one exp per node (forward), jax's log-CDF and the
    # shared research.special.log_ndtr (forward + backward).
    nodes = jnp.asarray(np.linspace(-3.0, 3.0, K), jnp.float32)
    floors = {"exp": jax.jit(lambda z: jnp.sum(jnp.exp(z[..., None] + nodes))),
              "jax": grad_of(lambda z: jnp.sum(jax.scipy.special.log_ndtr(z[..., None] + nodes))),
              "new": grad_of(lambda z: jnp.sum(special.log_ndtr(z[..., None] + nodes)))}
    ts2 = time_ratio({"ce": lambda: jax.block_until_ready(ce_grad(zj, yj)),
                      **{k: (lambda f=f: jax.block_until_ready(f(zj))) for k, f in floors.items()}}, rounds)
    new_over_jax = ts2["new"] / ts2["jax"]
    for k, name in (("exp", "floor_exp"), ("jax", "floor_logcdf"), ("new", "new_logcdf")):
      res.add(f"bench_C{C}_{name}_over_ce", np.median(ts2[k] / ts2["ce"]))
    res.add(f"bench_C{C}_new_logcdf_over_jax_logcdf", np.median(new_over_jax))
    res.rows.append(V.row(f"bench B={B} C={C}: research.special.log_ndtr / jax log_ndtr fwd+bwd on the B x C x K={K} grid",
                          f"<= {TARGET_LOGCDF:g} (issue target)",
                          ratio_vs_target(new_over_jax, TARGET_LOGCDF, "less")[0],
                          measured=geometric(new_over_jax),
                          note=f"/ CE: one exp (fwd) {np.median(ts2['exp'] / ts2['ce']):.1f}x, jax log_ndtr "
                               f"{np.median(ts2['jax'] / ts2['ce']):.1f}x, research.special "
                               f"{np.median(ts2['new'] / ts2['ce']):.1f}x"))
    # quadrature vs Genz at equal error (Genz is O(n B C^2): timed on at most genz_max_batch rows)
    Bg = min(B, int(b.genz_max_batch))
    st = compare_estimators(z[:Bg], y[:Bg], 1.0, int(b.num_samples), K, int(b.genz_repeats),
                            jax.random.fold_in(root, C), tuple(int(k) for k in b.k_ladder))
    zg, yg, key = jnp.asarray(z[:Bg]), jnp.asarray(y[:Bg]), jax.random.fold_in(root, 10_000 + C)
    g, q = genz_grad_fn(int(b.num_samples)), quad_grad_fn(st["k_equal_error"])
    ts3 = time_ratio({"genz": lambda: jax.block_until_ready(g(zg, key, yg)),
                      "quad": lambda: jax.block_until_ready(q(zg, yg))}, max(3, rounds // 4))
    r = ts3["genz"] / ts3["quad"]
    res.add(f"bench_C{C}_genz_over_quad_equal_error", np.median(r))
    res.add(f"bench_C{C}_k_equal_error", st["k_equal_error"])
    res.rows.append(V.row(f"bench B={Bg} C={C}: Genz(n={b.num_samples}) / quadrature fwd+bwd at equal error",
                          "> 1 (target)", ratio_vs_target(r, 1.0, "greater")[0],
                          measured=f"{geometric(r)}x",
                          note=f"quadrature K={st['k_equal_error']} reaches Genz's rmse {st['genz_rmse']:.1e}"))
  load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
  res.notes.append(
      f"Bench: jitted fwd+bwd calls after warm-up, {rounds} interleaved rounds, on the shared 2-core CPU (load "
      f"average {load:.1f} at the end of the run): ratios are indicative; rows show the geometric mean of the per-round "
      "ratios with its 95% interval, and a target is judged on the log ratios by the shared rule; the metrics are "
      "medians. The EXACT quadrature is the shared 9085 label-only integral "
      "(perturb_max.log_integral), differentiated by autodiff at fixed nodes; each factor's derivative phi/Phi "
      "comes from research.special.log_ndtr's custom JVP. Cross-entropy costs about one exp per logit (B x C); a "
      "K-node quadrature evaluates log Phi on the B x C x K grid forward and its derivative backward, which bounds "
      "the EXACT / CE ratio from below by the log-CDF row; the 20x target at C = 1000 would need skipping the "
      "factors that are 1 to float precision (not done here) or a device where those evaluations are cheap.")
