"""Volume collapse (spec 04 section 3.1): rho_n = V_n / 2^n against the spec's exact constants, Monte Carlo
rejection-sampling acceptance, the table and the plot."""
from __future__ import annotations

import numpy as np

from research import verdict as V
from research.geometry import hubness as H
from research.plotting import save_figure, subplots
from research.report import Results, fmt

# the spec's constants as printed: each is compared at its own precision (half a unit of its last digit)
RHO_SPEC = {1: "1", 2: "0.78540", 3: "0.52360", 4: "0.30843", 5: "0.16449", 6: "0.080746", 8: "0.015854",
            10: "2.4904e-3", 12: "3.2599e-4", 16: "3.5909e-6", 20: "2.4611e-8", 32: "1.0019e-15"}
LOG10_SPEC = {64: "-38.78", 128: "-95.82", 512: "-533.79"}
MC_Z = 4.5          # |p_hat - rho_n| within this many binomial standard errors, for every n
TABLE_N = (1, 2, 3, 4, 5, 8, 10, 16, 20, 32, 50, 64, 100, 128, 256, 512, 1000, 10000)


def half_unit(printed: str) -> float:
  """Half a unit of the last printed digit: '0.78540' -> 5e-6, '2.4904e-3' -> 5e-8, '-38.78' -> 5e-3."""
  mant, _, exp = printed.lower().partition("e")
  decimals = len(mant.split(".")[1]) if "." in mant else 0
  return 0.5 * 10.0 ** (int(exp or 0) - decimals)


def monte_carlo(v, seed: int) -> dict:
  """Acceptance of 'uniform in the cube, keep if in the ball' for n = 1..mc_max_n: ``{n: (p_hat, z)}``."""
  out = {}
  for n in range(1, int(v.mc_max_n) + 1):
    p, _ = H.monte_carlo_ball_in_cube(n, int(v.mc_samples), seed=(seed, n))
    rho = float(H.volume_ratio(n))
    se = np.sqrt(rho * (1 - rho) / int(v.mc_samples))
    out[n] = (p, abs(p - rho) / se if se > 0 else (0.0 if p == rho else np.inf))
  return out


def volume_rows(v, seed: int, res: Results) -> None:
  errs = {}
  for n, ref in RHO_SPEC.items():
    got = res.add(f"volume_rho_{n}", float(H.volume_ratio(n)))
    errs[n] = abs(got - float(ref)) / half_unit(ref)
  worst = max(errs.values())
  res.rows.append(V.row(
      f"rho_n = V_n/2^n, n in {{{', '.join(map(str, RHO_SPEC))}}}", "spec table (exact constants)",
      V.exact(worst <= 1.0, "every rho_n rounds to the spec's value at its printed precision"),
      measured=f"max |error| = {worst:.2f} half-units of the last digit", note="gammaln in log space"))
  for n, ref in LOG10_SPEC.items():
    got = res.add(f"volume_log10_rho_{n}", float(H.log10_volume_ratio(n)))
    res.rows.append(V.row(
        f"log10 rho_{n}", ref, V.exact(abs(got - float(ref)) <= half_unit(ref), f"|{got:.4f} - ({ref})| <= "
                                                                                   f"{half_unit(ref):g}"),
        measured=f"{got:.4f}", note="underflows float64 at n >= ~1000 without log space" if n == 512 else ""))
  mc = monte_carlo(v, seed)
  for n, (p, _) in mc.items():
    res.add(f"volume_mc_acceptance_{n}", p)
  z_max = res.add("volume_mc_max_abs_z", max(z for _, z in mc.values()))
  res.rows.append(V.row(
      f"Monte-Carlo acceptance, n = 1..{v.mc_max_n} ({int(v.mc_samples):,} samples each)",
      "rho_n (rejection-sampling reading)",
      V.exact(z_max <= MC_Z, f"every |p_hat - rho_n| <= {MC_Z} binomial standard errors"),
      measured=f"max |z| = {z_max:.2f}", note="z = (p_hat - rho_n) / sqrt(rho_n (1 - rho_n) / samples)"))
  table = ["| n | rho_n | log10 rho_n |", "|---|---|---|"]
  for m in TABLE_N:
    table.append(f"| {m} | {fmt(float(H.volume_ratio(m)))} | {float(H.log10_volume_ratio(m)):.3f} |")
  res.notes.append("Volume collapse (measured by `research.geometry.hubness`):\n\n" + "\n".join(table))


def volume_figure(v, workdir: str, res: Results) -> None:
  n = np.arange(1, int(v.max_n) + 1)
  fig, ax = subplots(1, 2, figsize=(10, 3.6))
  ax[0].plot(n[:20], H.volume_ratio(n[:20]), "o-")
  ax[0].set(xlabel="n", ylabel="V_n / 2^n", title="ball/cube volume ratio (linear)")
  ax[1].plot(n, H.log10_volume_ratio(n), label="exact (gammaln)")
  ax[1].plot(n, (H.log_ball_volume_stirling(n) - n * np.log(2)) / np.log(10), "--", label="Stirling")
  ax[1].set(xlabel="n", ylabel="log10(V_n / 2^n)", title=f"log scale, n = 1..{v.max_n}")
  ax[1].legend()
  save_figure(fig, workdir, "volume_ratio.png", res)
