"""Latent sampling conditions of the GAN study (spec 04 section 3.5) and their metrics per seed.

Conditions: random; hubs by Su's rule in z (N_5 > 50) and by the official rule in W (1 + N_4 >= 50; W = z
without a mapping network); min-norm at equal acceptance and anti-hubs from the same candidate batches;
truncation psi about the batch mean and about the EMA w_avg. Every condition is synthesized from w.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from research.eval import generative as gen_eval
from research.geometry import hub_sampler as S
from research.nn import gan as gan_lib

METRICS = ("precision", "recall", "fd", "density", "coverage", "confidence")


def _select(key, g, rule, map_fn, notes, tag):
  """``select_with_controls`` under ``rule``; when the literal threshold keeps too few latents within
  ``g.max_batches`` batches, t is recalibrated to ``g.fallback_acceptance`` on a fresh batch (and a note says so)."""
  kw = dict(mapping=map_fn, max_batches=int(g.max_batches))
  try:
    return S.select_with_controls(key, int(g.num_samples), int(g.z_dim), rule, **kw), rule
  except RuntimeError:
    # a fresh batch: the first index past the max_batches ones already tried
    z = jax.random.normal(jax.random.fold_in(key, int(g.max_batches)), (rule.n_ref, int(g.z_dim)))
    vals = S.hub_values(map_fn(z) if rule.space == "w" else z, rule)
    t_new = S.calibrate_threshold(vals, float(g.fallback_acceptance), strict=rule.strict)
    new = S.HubRule(**{**rule.__dict__, "threshold": t_new})
    notes.append(f"{tag} with t={rule.threshold:g} kept too few latents within {g.max_batches} batches; t "
                 f"recalibrated to {t_new:g} (target acceptance {g.fallback_acceptance}).")
    return S.select_with_controls(key, int(g.num_samples), int(g.z_dim), new, **kw), new


def condition_latents(map_fn, w_avg, g, key, notes: list, tag: str):
  """``({condition: w [num_samples, w_dim]}, info)`` for one generator; ``info`` has acceptances and t's."""
  num, z_dim = int(g.num_samples), int(g.z_dim)
  conds = {"random": np.asarray(map_fn(jax.random.normal(jax.random.fold_in(key, 7), (num, z_dim))))}
  base = dict(n_ref=int(g.n_ref), k=int(g.k), threshold=float(g.threshold))
  su = S.HubRule(**base, strict=True, include_self=False, space="z")
  off = S.HubRule(**base, strict=False, include_self=True, space="w")
  wsp = "W" if bool(g.mapping) else "z (no mapping network: W = z)"
  out_z, su = _select(jax.random.fold_in(key, 1), g, su, map_fn, notes, f"{tag}: Su rule (z)")
  out_w, off = _select(jax.random.fold_in(key, 2), g, off, map_fn, notes, f"{tag}: official rule ({wsp})")
  for c, out, sp in (("z", out_z, "z"), ("w", out_w, "w")):
    conds[f"hub_{'su' if sp == 'z' else 'official'}_{c}"] = out["w_hub"]
    conds[f"minnorm_{c}"] = out["w_minnorm"]
    conds[f"antihub_{c}"] = out["w_antihub"]
  info = {"acc_su_z": out_z["acceptance"], "t_su_z": su.threshold,
          "acc_official_w": out_w["acceptance"], "t_official_w": off.threshold}
  for psi in g.psis:
    conds[f"trunc{psi:g}_mean"] = S.truncate(conds["random"], psi, center=conds["random"].mean(0))
    conds[f"trunc{psi:g}_ema"] = S.truncate(conds["random"], psi, center=np.asarray(w_avg))
  return {c: np.asarray(v)[:num] for c, v in conds.items()}, info


def evaluate_seeds(gen, pop, clf, cparams, real_feats, g, key, notes: list, name: str):
  """Per condition, per metric, the list of per-seed values; per-seed info; seed 0's sample images."""
  map_p = jax.jit(lambda p, z: gen.apply({"params": p}, z, method=gan_lib.Generator.map))
  synth_p = jax.jit(lambda p, w: gen.apply({"params": p}, w, method=gan_lib.Generator.synthesize))
  per, infos, grids = {}, [], {}
  for s in range(len(pop.run_ids)):
    params = jax.device_get(pop.run(s).params)
    conds, info = condition_latents(lambda z, p=params["g"]: map_p(p, z), params["w_avg"], g,
                                    jax.random.fold_in(key, s), notes, f"{name} seed {s}")
    infos.append(info)
    for c, w in conds.items():
      imgs = np.asarray(synth_p(params["g"], jnp.asarray(w)))
      f, conf = gen_eval.classifier_features(clf, cparams, imgs)
      m = dict(gen_eval.evaluate_samples(real_feats, f, k=int(g.pr_k)), confidence=float(conf.mean()))
      for kk in METRICS:
        per.setdefault(c, {}).setdefault(kk, []).append(m[kk])
      if s == 0:
        grids[c] = imgs[:16]
  return per, infos, grids
