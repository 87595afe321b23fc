"""The `bench` part: fwd+bwd time of normal Perturb-Max vs softmax and vs Monte Carlo, and the errors.

Every timing is a list of per-round samples from :func:`research.benchmark.time_interleaved` (after
compilation; all arms interleaved round-robin), so a ratio is measured per round. Every random draw
derives from ``config.seed``.
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from research import special
from research.benchmark import time_interleaved
from research.distributions import perturb_max as pm


def rms(a, b) -> float:
  return float(np.sqrt(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)))


def timed(fns: dict, x, rounds: int) -> dict:
  """Per-round seconds ``{name: [rounds]}`` of each jitted ``fn(x)``, compiled and warmed up first."""
  for fn in fns.values():
    jax.block_until_ready(fn(x))
  return {k: np.asarray(v) for k, v in time_interleaved(
      {k: (lambda fn=fn: jax.block_until_ready(fn(x))) for k, fn in fns.items()}, rounds).items()}


def _functions(w, y, mc_key, ks, K, S) -> dict:
  def full(method, k):
    return jax.jit(jax.value_and_grad(
        lambda z: jnp.sum(w * pm.perturb_max_log_probs(z, "normal", "gauss_hermite", k, method=method))))

  fns = {"softmax": jax.jit(jax.value_and_grad(lambda z: jnp.sum(w * jax.nn.log_softmax(z)))),
         "default": jax.jit(jax.value_and_grad(lambda z: jnp.sum(w * pm.perturb_max_log_probs(z, "normal"))))}
  for k in ks:
    fns[f"mq{k}"] = full("max_quantile", k)
  fns["mc"] = jax.jit(jax.value_and_grad(
      lambda z: jnp.sum(w * jnp.log(pm.perturb_max_probs_mc(mc_key, z, "normal", S, method="max_quantile")))))
  fns["nll_soft"] = jax.jit(jax.value_and_grad(
      lambda z: -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(z), y[:, None], -1))))
  fns["nll_pm"] = jax.jit(jax.value_and_grad(lambda z: -jnp.mean(pm.perturb_max_log_prob_of(z, y, "normal"))))
  fns["nll_pm_gh"] = jax.jit(jax.value_and_grad(
      lambda z: -jnp.mean(pm.perturb_max_log_prob_of(z, y, "normal", "gauss_hermite", K))))
  # log Phi on the B x n x K grid: research.special's and jax's, fwd and fwd+bwd, against one exp pass
  nodes = jnp.asarray(pm.quadrature("normal", "gauss_hermite", K)[0], jnp.float32)
  grid_sum = lambda f: (lambda z: jnp.sum(f(z[..., None] + nodes)))
  fns["logcdf_pass"] = jax.jit(grid_sum(special.log_ndtr))
  fns["logcdf_grad"] = jax.jit(jax.grad(grid_sum(special.log_ndtr)))
  fns["jax_logcdf_pass"] = jax.jit(grid_sum(jax.scipy.special.log_ndtr))
  fns["jax_logcdf_grad"] = jax.jit(jax.grad(grid_sum(jax.scipy.special.log_ndtr)))
  fns["exp_pass"] = jax.jit(grid_sum(jnp.exp))
  return fns, full


def measure(b, seed: int) -> dict:
  B, n, K, S = int(b.batch), int(b.num_classes), int(b.num_nodes), int(b.mc_samples)
  key = jax.random.key(seed)
  x = jax.random.normal(jax.random.fold_in(key, 0), (B, n)) * float(b.logit_spread)
  w = jax.random.normal(jax.random.fold_in(key, 1), (B, n))
  y = jax.random.randint(jax.random.fold_in(key, 2), (B,), 0, n)
  ks = sorted(set(int(k) for k in b.mq_nodes) | {K})
  noise = pm.get_noise("normal")
  d_full = pm.default_settings(noise, n, method="max_quantile")
  d_nll = pm.default_settings(noise, n, label_only=True)
  out = {"B": B, "n": n, "K": K, "S": S, "ks": ks, "load_start": os.getloadavg()[0],   # the library's defaults:
         "default_full": f"{d_full.rule} K={d_full.num_nodes}", "default_nll": f"{d_nll.rule} K={d_nll.num_nodes}"}
  fns, full = _functions(w, y, jax.random.fold_in(key, 3), ks, K, S)
  out["t"] = timed(fns, x, int(b.fast_repeats))
  # the article's O(n^2 K) formula: seconds per call at n = 1000, timed alone with fewer rounds
  out["t_pair"] = timed({"pairwise": full("pairwise", K)}, x, int(b.repeats))["pairwise"] if b.time_pairwise else None
  # errors on a few rows against a float64 max-quantile reference at high K (error ~1e-13)
  rows = min(B, 8)
  xs = np.asarray(x[:rows], np.float64)
  with jax.enable_x64(True):
    ref = np.asarray(pm.perturb_max_probs(jnp.asarray(xs), "normal", "gauss_hermite", int(b.reference_nodes),
                                          method="max_quantile"))
    ref_pair = np.asarray(pm.perturb_max_probs(jnp.asarray(xs), "normal", "gauss_hermite", int(b.reference_nodes),
                                               method="pairwise"))
    lp_ref = np.asarray(pm.perturb_max_log_prob_of(jnp.asarray(xs), y[:rows], "normal", "adaptive", 64))
  errs = {f"mq{k}": rms(pm.perturb_max_probs(x[:rows], "normal", "gauss_hermite", k, method="max_quantile"), ref)
          for k in ks}
  errs["pairwise"] = rms(pm.perturb_max_probs(x[:rows], "normal", "gauss_hermite", K, method="pairwise"), ref)
  errs["default"] = rms(pm.perturb_max_probs(x[:rows], "normal"), ref)
  errs["reference_pairwise"] = rms(ref_pair, ref)
  errs["nll_default"] = float(np.max(np.abs(np.asarray(pm.perturb_max_log_prob_of(x[:rows], y[:rows], "normal"))
                                            - lp_ref)))
  errs["nll_gh"] = float(np.max(np.abs(np.asarray(
      pm.perturb_max_log_prob_of(x[:rows], y[:rows], "normal", "gauss_hermite", K)) - lp_ref)))
  mc_key = jax.random.fold_in(key, 4)
  errs["mc"] = float(np.mean([rms(pm.perturb_max_probs_mc(jax.random.fold_in(mc_key, s), x[:rows], "normal", S,
                                                          method="max_quantile"), ref) for s in range(4)]))
  errs["mc_argmax"] = float(np.mean([rms(pm.perturb_max_probs_mc(jax.random.fold_in(mc_key, 100 + s), x[:rows],
                                                                 "normal", S, method="argmax"), ref)
                                     for s in range(2)]))
  out.update(errs=errs, rows=rows, load_end=os.getloadavg()[0], device=jax.devices()[0].device_kind,
             backend=jax.default_backend(), device_count=jax.device_count())
  return out
