"""Rows (the shared verdict rule of :mod:`research.verdict`) of the `table` and `classify` parts of kexue 9085.

The article publishes identities (Gumbel noise gives softmax; the n = 2 closed forms; properties 1-4): each is
an exact statement with the test written in its row. Quadrature errors have no published value (measured).
Su's "no special effect" of Perturb-Max heads (10145) is a no-gain claim: paired per-seed accuracy
differences to the softmax head, whose 95% interval must lie within +-``no_gain_tol``.
"""
from __future__ import annotations

import numpy as np

from experiments.perturb_max.table import N2_FORM
from research import verdict as V
from research.report import Results


def table_rows(m: dict, res: Results) -> None:
  ks = m["ks"]
  res.notes.append(
      "Article 9085 has no experiments and no choice of K; the published results are identities (Gumbel "
      "noise => softmax; properties 1-4), each checked by the exact test stated in its row. Errors are against "
      "a float64 scipy.integrate.quad reference.")
  for nz, p in m["probs"].items():
    e = res.add(f"default_{nz}_fixed_vector_max_abs_err", m["fixed_err"][nz])
    res.rows.append(V.row(f"p({nz}) for mu={np.round(m['fixed'], 2).tolist()}",
                          "softmax(mu)" if nz == "gumbel" else "- (no closed form)",
                          V.measured(None, f"library defaults (float32): max |p - p_quad| = {e:.1e} ({m['defaults']})"),
                          measured=", ".join(f"{v:.4f}" for v in p)))
  e = res.add("gumbel_vs_softmax_max_abs_err", m["gumbel_softmax_err"])
  res.rows.append(V.row("Gumbel PM = softmax (max abs err, float32)", "0 (exact closed form)",
                        V.exact(e <= 1e-6, "max |p - softmax| <= 1e-6 over every vector"), measured=f"{e:.3g}"))
  for nz, rule, k, tol, e2 in m["n2"]:
    res.add(f"n2_closed_form_{nz}_{rule}{k}_max_abs_err", e2)
    res.rows.append(V.row(f"n=2 {nz}: quadrature ({rule}, K={k}) vs {N2_FORM[nz]}", "exact identity",
                          V.exact(e2 < tol, f"max |err| < {tol:g} over D in [-4, 4], float64"), measured=f"{e2:.3g}"))
  f32 = m["f32_k16"]
  for rule, key, label, note in (
      ("gauss_hermite", "normal_gh16_max_abs_err", "normal, Gauss-Hermite K=16: max abs err (float32)",
       "the old default for normal noise (nodes centred at 0); the default is now the adaptive rule"),
      ("grid", "grid16_max_abs_err", "normal, article grid k/(K+1), K=16: max abs err",
       "first order; sum_i p_i != 1 (weights 1/K on a 1/(K+1) grid)"),
      ("midpoint", "midpoint16_max_abs_err", "normal, midpoint K=16: max abs err", "float32")):
    res.rows.append(V.row(label, "- (article gives no K)", V.measured(None, note), measured=f"{res.add(key, f32[rule]):.4g}"))
  errs = m["errors"]
  if 16 in ks:
    for (nz, rule), e in errs.items():
      res.add(f"{nz}_{rule}_K16_max_abs_err_f64", e[ks.index(16)])
  gq = errs.get(("gumbel", "midpoint"))
  if gq:
    res.add("gumbel_quadrature_midpoint_maxK_abs_err", gq[-1])
    res.rows.append(V.row(f"Gumbel via quadrature (midpoint, K={ks[-1]}) vs softmax", "-> 0 as K grows",
                          V.exact(gq[-1] < gq[0] and gq[-1] < 1e-2,
                                  f"error at K={ks[-1]} < error at K={ks[0]} ({gq[0]:.3g}) and < 1e-2"),
                          measured=f"{gq[-1]:.3g}"))
  for (nz, rule), s in m["slopes"].items():
    res.add(f"{nz}_{rule}_error_slope", s)
  k_to = {}
  for (nz, rule), e in errs.items():
    if rule in ("adaptive", "gauss_legendre"):
      k_to[(nz, rule)] = next((k for k, v in zip(ks, e) if v <= 1e-5), None)
      res.add(f"{nz}_{rule}_K_to_1e-5", float("nan") if k_to[(nz, rule)] is None else k_to[(nz, rule)])
  if k_to:
    res.rows.append(V.row(
        "smallest K with max |p - p_quad| <= 1e-5 (float64), adaptive / Gauss-Legendre rules",
        "- (issue 20 target for the defaults: 1e-5)",
        V.measured(None, "over the fixed vector, the random vectors and the all-ties vector (K on the grid "
                         f"{ks}); library defaults: {m['defaults']}; None: not reached by the largest K; "
                         "at each rule's default K: " + ", ".join(
                             f"{nz} {rule} K={k}: {e:.1e}"
                             for (nz, rule), (k, e) in m["default_k_err"].items())),
        measured=", ".join(f"{nz} {rule}: {k}" for (nz, rule), k in k_to.items())))
  gh = errs.get(("normal", "gauss_hermite"), [])
  k_gh = next((k for k, e in zip(ks, gh) if e < 1e-12), None)
  if k_gh:
    res.add("normal_gauss_hermite_K_to_1e-12", k_gh)
  if ("normal", "grid") in m["slopes"]:
    s_grid, s_mid = m["slopes"][("normal", "grid")], m["slopes"].get(("normal", "midpoint"), float("nan"))
    gh_note = (f"Gauss-Hermite reaches float64 round-off (<1e-12) at K={k_gh}" if k_gh else
               f"Gauss-Hermite error at K={ks[-1]}: {gh[-1]:.3g}" if gh else "")
    res.rows.append(V.row(
        "normal: log-log slope of error vs K (grid / midpoint)", "grid O(1/K) (spec analysis; not in the article)",
        V.exact(-1.4 < s_grid < -0.6, "grid slope (least squares over K >= 4) in (-1.4, -0.6)"),
        measured=f"{s_grid:.2f} / {s_mid:.2f}",
        note="midpoint is also ~1/K for normal noise (Gaussian tails in probability space); " + gh_note))
  p = m["properties"]
  for key, v in (("prop_min_p", p["min_p"]), ("prop_max_abs_sum_minus_1", p["sum_err"]),
                 ("prop_monotonicity_violations", p["monotonicity_violations"]),
                 ("prop_shift_invariance_max_abs_diff", p["shift_err"]), ("prop_ties_max_spread", p["ties"])):
    res.add(key, v)
  res.rows += [
      V.row("property 1: min p_i (all noises)", ">= 0", V.exact(p["min_p"] >= 0, "every p_i >= 0"),
            measured=f"{p['min_p']:.3g}"),
      V.row("property 2: max |sum p - 1| (all noises)", "0",
            V.exact(p["sum_err"] < 1e-3, "max |sum p - 1| < 1e-3 (library defaults; the residual is quadrature error)"),
            measured=f"{p['sum_err']:.3g}"),
      V.row("property 3: order violations (all vectors, noises)", "0",
            V.exact(p["monotonicity_violations"] == 0, "no p decreases along increasing logits by > 1e-7"),
            measured=str(p["monotonicity_violations"]), note=f"equal logits give equal p (spread {p['ties']:.3g})"),
      V.row("property 4: max |p(mu + 11.3) - p(mu)|", "0", V.exact(p["shift_err"] < 1e-5, "max |diff| < 1e-5, float32"),
            measured=f"{p['shift_err']:.3g}"),
  ]


def classify_rows(c, out: dict, res: Results, train_size: int, test_size: int) -> None:
  """Per arm: test accuracy (learned above chance 0.1?) and, for a Perturb-Max head, the paired accuracy
  difference to the softmax head against "no special benefit" (|diff| <= no_gain_tol); then all heads combined."""
  soft = out.get("softmax")
  judged = []
  for name, o in out.items():
    acc, nll = o["acc"], o["nll"]
    res.add(f"classify_acc_{name}", float(acc.mean()))
    res.add(f"classify_nll_{name}", float(nll.mean()))
    note = f"test acc {V.interval(100 * acc).format(4)} %, NLL {V.interval(nll).format(4)}"
    if o["scale"].size:
      res.add(f"classify_scale_{name}", float(o["scale"].mean()))
      note += f"; learned noise scale {V.interval(o['scale']).format(3)}"
    if name == "softmax" or soft is None:
      lrn = V.learned(100 * acc, 10.0)
      a = V.measured(100 * acc, "the baseline (learned: above chance 10%)") if lrn.verdict is V.Verdict.AGREES else lrn
      res.rows.append(V.row(f"Fashion-MNIST test acc (%), head={name}", "-", a, note=note))
      continue
    a = V.compare(100 * acc, 100 * soft["acc"], claim="equal", tolerance=100 * float(c.no_gain_tol),
                  chance_a=10.0, chance_b=10.0)
    judged.append(a)
    res.add(f"classify_acc_minus_softmax_{name}", float(100 * (acc - soft["acc"]).mean()))
    res.rows.append(V.row(f"Fashion-MNIST test acc (points), head={name} - softmax",
                          f"no special benefit (Su, 10145; no numbers): |diff| <= {100 * c.no_gain_tol:g} point", a,
                          measured=V.interval(100 * (acc - soft["acc"])).format(),
                          note=note + f"; NLL - softmax {V.interval(nll - soft['nll']).format(3)}"))
  if judged:
    pm_arms = [k for k in out if k != "softmax"]
    res.rows.append(V.row("Perturb-Max heads vs softmax head (all arms)", "no special benefit (Su, 10145)",
                          V.Assessment(V.combine(judged), None, "combined: differs if any arm differs, agrees if "
                                       "all agree, else inconclusive"),
                          measured=", ".join(f"{n}: {a.verdict}" for n, a in zip(pm_arms, judged))))
  res.notes.append(
      f"classify: the same CNN (conv {list(c.conv_features)}, dense {c.hidden}) with each head, Adam lr "
      f"{c.learning_rate}, {c.num_steps} steps of batch {c.batch_size} on a {train_size}-image training subset "
      f"(drawn from config.seed), test on {test_size} test images, {c.seeds} seed(s) per arm (each arm's seeds a "
      "population, paired across arms by initial key and batch order); "
      + ", ".join(f"{n} {o['seconds']:.0f} s" for n, o in out.items()) + ". Heads: "
      + "; ".join(f"{a.name}: {a.noise}" + (f" {a.rule or 'default'} K={a.num_nodes}, scale {a.init_scale:.4g}"
                                            + (" (learned)" if a.learn_temperature else "") if a.noise != "softmax" else "")
                  for a in c.arms) +
      f". Verdict (research.verdict): each arm must beat chance (10%) by its seed interval; a Perturb-Max head "
      f"agrees with 'no special benefit' when the 95% t-interval of its paired accuracy difference to softmax "
      f"lies within +-{100 * c.no_gain_tol:g} point, differs when it lies outside, else inconclusive (< 3 seeds: "
      "at most inconclusive).")
