"""The identities and quadrature errors of kexue 9085, measured against a float64 scipy.integrate.quad reference.

p_i = int pdf(e) prod_{j != i} cdf(mu_i - mu_j + e) de for every noise; Gumbel noise gives softmax(mu).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy import integrate, stats

from research.distributions import perturb_max as pm

SCIPY = {"gumbel": stats.gumbel_r, "normal": stats.norm, "logistic": stats.logistic, "cauchy": stats.cauchy}
FIXED_VECTOR = (2.0, 1.0, 0.5, 0.0, -1.0, -3.0)   # the probability table's logits (first n used)
N2_CASES = (("normal", "gauss_hermite", 16, 1e-6), ("cauchy", "midpoint", 256, 5e-3), ("gumbel", "midpoint", 256, 5e-3))
N2_FORM = {"normal": "Phi(D/sqrt2)", "cauchy": "1/2+arctan(D/2)/pi", "gumbel": "sigmoid(D)"}


def reference(mu: np.ndarray, noise: str) -> np.ndarray:
  """float64 p_i by adaptive quadrature (scipy); Gumbel by its closed form."""
  if noise == "gumbel":
    e = np.exp(mu - mu.max())
    return e / e.sum()
  d = SCIPY[noise]
  out = np.zeros(len(mu))
  for i in range(len(mu)):
    diffs = np.delete(mu[i] - mu, i)
    f = lambda e: d.pdf(e) * np.prod(d.cdf(diffs + e))
    pts = sorted(set(np.clip(-diffs, -50, 50).tolist() + [0.0]))
    lo, hi = (-60.0, 60.0) if noise != "cauchy" else (-1e4, 1e4)
    val = integrate.quad(f, lo, hi, points=pts, limit=500, epsabs=1e-15, epsrel=1e-11)[0]
    if noise == "cauchy":  # tails beyond +-1e4: int_{1e4}^inf pdf ~ prod cdf ~ 1, and ~0 below
      val += d.sf(hi)
    out[i] = val
  return out


def vectors(t, seed: int) -> np.ndarray:
  """The fixed vector, ``t.num_vectors`` random N(0, spread^2) vectors (from ``seed``) and an all-ties vector."""
  n = int(t.num_classes)
  fixed = np.asarray(FIXED_VECTOR[:n], np.float64)
  if len(fixed) < n:
    fixed = np.concatenate([fixed, -np.arange(1, n - len(fixed) + 1.0) * 2])
  rnd = np.random.default_rng([seed, 1]).normal(size=(int(t.num_vectors), n)) * float(t.logit_spread)
  return np.concatenate([fixed[None], rnd, np.zeros((1, n))])


def defaults(noises, n: int) -> str:
  """The library's default rule and K per noise for n classes (read from the library, so the note follows it)."""
  out = []
  for nz in noises:
    if nz == "gumbel":
      out.append("gumbel: softmax (closed form)")
      continue
    d = pm.default_settings(nz, n)   # the library's own choice, not restated here
    out.append(f"{nz}: {d.rule} K={d.num_nodes}")
  return "; ".join(out)


def rules_of(noise: str) -> list[str]:
  return (["grid", "midpoint"] + (["gauss_hermite"] if noise == "normal" else []) + ["adaptive"]
          + (["gauss_legendre"] if noise == "cauchy" else []))


def measure(t, seed: int) -> dict:
  """Probabilities, errors per (noise, rule, K), the n = 2 closed forms and the four properties."""
  vecs = vectors(t, seed)
  noises, ks = list(t.noises), [int(k) for k in t.ks]
  refs = {nz: np.stack([reference(v, nz) for v in vecs]) for nz in noises}
  x32 = jnp.asarray(vecs, jnp.float32)
  out = {"defaults": defaults(noises, vecs.shape[1]), "fixed": vecs[0], "ks": ks, "noises": noises, "probs": {},
         "fixed_err": {}, "errors": {}, "n2": [], "default_k_err": {}}
  for nz in noises:
    p = np.asarray(pm.perturb_max_probs(x32[:1], nz))[0]
    out["probs"][nz], out["fixed_err"][nz] = p, float(np.max(np.abs(p - refs[nz][0])))
  out["gumbel_softmax_err"] = float(np.max(np.abs(np.asarray(pm.perturb_max_probs(x32, "gumbel"))
                                                  - np.asarray(jax.nn.softmax(x32)))))
  with jax.enable_x64(True):
    x64 = jnp.asarray(vecs, jnp.float64)
    for nz in noises:
      for rule in rules_of(nz):
        out["errors"][(nz, rule)] = [float(np.max(np.abs(np.asarray(
            pm.perturb_max_probs(x64, nz, rule, k, closed_form=False)) - refs[nz]))) for k in ks]
        if rule in ("adaptive", "gauss_legendre"):     # the library's default K for this rule (maybe off the grid)
          k_def = pm.default_settings(nz, vecs.shape[1], rule=rule).num_nodes
          out["default_k_err"][(nz, rule)] = (k_def, out["errors"][(nz, rule)][ks.index(k_def)] if k_def in ks
                                              else float(np.max(np.abs(np.asarray(pm.perturb_max_probs(
                                                  x64, nz, rule, k_def, closed_form=False)) - refs[nz]))))
    deltas = np.linspace(-4, 4, 17)
    x2 = jnp.asarray(np.stack([deltas, np.zeros_like(deltas)], -1))
    for nz, rule, k, tol in N2_CASES:
      p = np.asarray(pm.perturb_max_probs(x2, nz, rule, k, closed_form=False))[:, 0]
      out["n2"].append((nz, rule, k, tol, float(np.max(np.abs(p - pm.two_class_closed_form(deltas, nz))))))
  out["f32_k16"] = {rule: float(np.max(np.abs(np.asarray(pm.perturb_max_probs(x32, "normal", rule, 16))
                                              - refs["normal"]))) for rule in ("grid", "midpoint", "gauss_hermite")}
  out["slopes"] = {}
  for (nz, rule), errs in out["errors"].items():   # log-log slope over K >= 4 where above float64 noise
    kk, ee = np.asarray(ks, float), np.asarray(errs)
    sel = (kk >= 4) & (ee > 1e-13)
    if rule in ("grid", "midpoint") and sel.sum() >= 2:
      out["slopes"][(nz, rule)] = float(np.polyfit(np.log(kk[sel]), np.log(ee[sel]), 1)[0])
  out["properties"] = properties(x32, vecs, noises)
  return out


def properties(x32, vecs: np.ndarray, noises: list[str]) -> dict:
  """Properties 1-4 over every vector and noise (float32, library defaults)."""
  min_p, sum_err, mono, shift, ties = 1.0, 0.0, 0, 0.0, 0.0
  for nz in noises:
    p = np.asarray(pm.perturb_max_probs(x32, nz))
    ps = np.asarray(pm.perturb_max_probs(x32 + 11.3, nz))
    min_p = min(min_p, float(p.min()))
    sum_err = max(sum_err, float(np.max(np.abs(p.sum(-1) - 1))))
    for row, pr in zip(vecs, p):
      mono += int(np.sum(np.diff(pr[np.argsort(row)]) < -1e-7))
    ties = max(ties, float(np.ptp(p[-1])))
    shift = max(shift, float(np.max(np.abs(ps - p))))
  return {"min_p": min_p, "sum_err": sum_err, "monotonicity_violations": mono, "shift_err": shift, "ties": ties}
