"""Runs the reproduction (or bench) variants of every config and writes one ``REPORT.md``.

Usage::

    python -m experiments.reproduce [--out=results] [--variants=bench] [--configs=amos,exact] [--report-only]
    python -m experiments.reproduce --gpu        # each config's REPRODUCE_GPU list (make reproduce-gpu)

Without ``--variants`` each config's ``REPRODUCE`` list is run (``REPRODUCE_GPU`` with ``--gpu``, which refuses
to start without an accelerator and prints the total time against the 10-minute single-GPU budget). Each run goes to
``<out>/<config>/<variant>/`` (results.json, results.md, plots, metrics.jsonl); REPORT.md then gathers every
``results.md`` under ``<out>``, in the order of the mission table, with links to the plots.
"""
from __future__ import annotations

import argparse
import glob
import os
import re
import subprocess
import sys
import time

from experiments.run import ROOT, _import_config_module

ORDER = ("demo", "perturb_max", "exact", "relpos_probe", "hubness", "geodesic", "amos",
         "position_robustness", "cosent")


def _configs(selected: list[str] | None) -> list[str]:
  names = [os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(ROOT, "configs", "*.py"))]
  names = [n for n in names if n not in ("__init__", "common", "tour")]
  names.sort(key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
  return [n for n in names if not selected or n in selected]


def _resolve_plot(link: str, md_path: str, report_path: str) -> str:
  """A plot link of a results.md, re-expressed relative to the report (older files linked from the cwd)."""
  md_dir = os.path.dirname(os.path.abspath(md_path))
  for cand in (os.path.join(md_dir, link), os.path.join(ROOT, link), os.path.join(md_dir, os.path.basename(link))):
    if os.path.exists(cand):
      return os.path.relpath(cand, os.path.dirname(os.path.abspath(report_path)))
  return os.path.relpath(os.path.join(md_dir, link), os.path.dirname(os.path.abspath(report_path)))


def build_report(out: str, path: str = os.path.join(ROOT, "REPORT.md")) -> str:
  """Concatenates every ``<out>/<config>/<variant>/results.md`` into ``path``."""
  parts = ["# Reproduction report", "",
           "Every table below was produced by running the command shown in it, on the machine it names. "
           "Regenerate with `make reproduce` (all reproduction variants) or `make bench` (benchmarks); "
           "`make report` rebuilds this file from `results/`.", ""]
  for name in _configs(None):
    mds = sorted(glob.glob(os.path.join(out, name, "*", "results.md")))
    if not mds:
      continue
    parts += [f"## {name}", ""]
    for md in mds:
      with open(md) as f:
        text = f.read()
      text = re.sub(r"!\[([^\]]*)\]\((?!http)([^)]+)\)",
                    lambda m: f"![{os.path.basename(m.group(2))}]({_resolve_plot(m.group(2), md, path)})", text)
      text = re.sub(r"^# ", "### ", text, flags=re.M)
      parts += [text.strip(), ""]
  with open(path, "w") as f:
    f.write("\n".join(parts))
  return path


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--out", default=os.path.join(ROOT, "results"))
  ap.add_argument("--variants", default=None, help="comma-separated variants to run instead of REPRODUCE")
  ap.add_argument("--configs", default=None, help="comma-separated config names (default: all)")
  ap.add_argument("--report-only", action="store_true")
  ap.add_argument("--gpu", action="store_true", help="run each config's REPRODUCE_GPU variants (needs a GPU)")
  args = ap.parse_args(argv)
  if args.gpu and not args.report_only:
    import jax
    if jax.default_backend() == "cpu":
      print("--gpu needs an accelerator, but JAX sees only the CPU. Install a CUDA build of jax in the venv "
            "(make reproduce-gpu does: pip install 'jax[cuda12]') on a machine with an NVIDIA GPU.", file=sys.stderr)
      return 2
  list_name = "REPRODUCE_GPU" if args.gpu else "REPRODUCE"
  failures = []
  t_all = time.perf_counter()
  if not args.report_only:
    for name in _configs(args.configs.split(",") if args.configs else None):
      module = _import_config_module(os.path.join(ROOT, "configs", f"{name}.py"))
      variants = args.variants.split(",") if args.variants else list(getattr(module, list_name, []))
      for variant in variants:
        if variant not in getattr(module, "VARIANTS", {variant: ""}):
          continue
        workdir = os.path.join(args.out, name, variant)
        cmd = [sys.executable, "-m", "experiments.run", f"--config=configs/{name}.py:{variant}",
               f"--workdir={workdir}"]
        print(f"=== {' '.join(cmd)}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call(cmd, cwd=ROOT)
        print(f"=== {name}:{variant} exit {rc} in {time.perf_counter() - t0:.0f} s", flush=True)
        if rc:
          failures.append(f"{name}:{variant}")
  if not args.report_only:
    print(f"=== all {list_name} variants: {time.perf_counter() - t_all:.0f} s"
          + (" (budget: 600 s on one H100)" if args.gpu else ""), flush=True)
  print(f"report: {build_report(args.out)}")
  if failures:
    print(f"FAILED: {failures}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
