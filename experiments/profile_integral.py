"""Where the time goes in the three issue-20 speed targets (a profile, not an estimate).

    .venv/bin/python experiments/profile_integral.py [--batch 256] [--classes 1000] [--rounds 5] [--out DIR]

For each target (Perturb-Max full distribution fwd+bwd vs softmax; label-only NLL vs softmax NLL; EXACT vs
cross-entropy, all normal noise at the defaults, logits N(0, 2^2) as in the bench) it
1. times the pair with :func:`research.benchmark.time_interleaved` (compiled, warmed up; median ratio), and
2. traces a few calls with ``jax.profiler`` (perfetto JSON under /tmp) and sums the trace's per-op wall time on
   the XLA:CPU thread(s), grouped by the op's name (a fusion, a while loop, ...), and
3. prints the compiled HLO of the top ops (what the fusion computes) and XLA's cost analysis (flops,
   transcendentals) of the whole program.
Prints markdown; results/perturb_max/profile.md holds one run.
"""
from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

from research.benchmark import time_interleaved
from research.distributions import perturb_max as pm
from research.losses import exact, surrogates


def targets(B, n):
  key = jax.random.key(0)
  x = jax.random.normal(jax.random.fold_in(key, 0), (B, n)) * 2.0
  w = jax.random.normal(jax.random.fold_in(key, 1), (B, n))
  y = jax.random.randint(jax.random.fold_in(key, 2), (B,), 0, n)
  vg = lambda f: jax.jit(jax.value_and_grad(f))
  nll_soft = vg(lambda z: -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(z), y[:, None], -1)))
  return x, {
      "full distribution (max-quantile) / softmax": (
          vg(lambda z: jnp.sum(w * pm.perturb_max_log_probs(z, "normal"))),
          vg(lambda z: jnp.sum(w * jax.nn.log_softmax(z)))),
      "label-only NLL / softmax NLL": (
          vg(lambda z: -jnp.mean(pm.perturb_max_log_prob_of(z, y, "normal"))), nll_soft),
      "EXACT / cross-entropy": (
          vg(lambda z: exact.exact_loss(z, y, 1.0)), vg(lambda z: surrogates.cross_entropy(z, y))),
  }


def trace_op_times(fn, x, calls, outdir):
  """{op name: total seconds} over ``calls`` traced calls, from the perfetto trace's complete events."""
  with jax.profiler.trace(outdir, create_perfetto_trace=True):
    for _ in range(calls):
      jax.block_until_ready(fn(x))
  path = sorted(glob.glob(os.path.join(outdir, "**", "perfetto_trace.json.gz"), recursive=True))[-1]
  with gzip.open(path, "rt") as f:
    events = json.load(f)
  events = events["traceEvents"] if isinstance(events, dict) else events
  threads = {(e.get("pid"), e.get("tid")): e.get("args", {}).get("name", "")
             for e in events if e.get("ph") == "M" and e.get("name") == "thread_name"}
  ops = collections.Counter()
  for e in events:
    if e.get("ph") != "X" or "dur" not in e:
      continue
    thread = threads.get((e.get("pid"), e.get("tid")), "")
    name = re.sub(r"\.\d+$", "", e.get("name", "")) if e.get("name", "").startswith(("while", "cond")) \
        else e.get("name", "")
    # XLA:CPU runs the program's thunks on its own threads; python/pjit dispatch events are skipped
    if "python" in thread.lower() or name.startswith(("PjitFunction", "$", "pjit", "ThunkExecutor")):
      continue
    ops[name] += e["dur"] * 1e-6 / calls      # summed over the CPU client's threads
  return ops


def hlo_of(fn, x, names):
  """The fused computation text of each named op in the optimised HLO (first lines only)."""
  text = fn.lower(x).compile().as_text()
  out = {}
  for nm in names:
    m = re.search(rf"^\s*(ROOT )?%?{re.escape(nm)} = .*$", text, re.M)
    if m:
      line = m.group(0).strip()
      calls = re.search(r"calls=%?([\w.\-]+)", line)
      body = ""
      if calls:
        b = re.search(rf"^%?{re.escape(calls.group(1))} .*?^}}", text, re.M | re.S)
        body = b.group(0) if b else ""
      kinds = collections.Counter(k for k in re.findall(r"\s([a-z][\w\-]*)\(", body)
                                  if k not in ("parameter", "constant", "broadcast"))
      src = re.search(r'op_name="([^"]+)"', line)       # the jax op path: while = a solver loop, transpose = bwd
      where = re.sub(r"^jit\([^)]*\)/", "", src.group(1))[-90:] if src else "?"
      out[nm] = (where, dict(kinds.most_common(8)))
  return out


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--batch", type=int, default=256)
  ap.add_argument("--classes", type=int, default=1000)
  ap.add_argument("--rounds", type=int, default=5)
  ap.add_argument("--calls", type=int, default=3)
  ap.add_argument("--top", type=int, default=6)
  ap.add_argument("--out", default=tempfile.mkdtemp(prefix="profile_integral_"))
  a = ap.parse_args()
  x, pairs = targets(a.batch, a.classes)
  print(f"# profile, {a.batch}x{a.classes}, jax {jax.__version__}, {jax.devices()[0].platform}, "
        f"load {os.getloadavg()[0]:.1f} (1-min average at start)\n")
  for title, (fn, base) in pairs.items():
    for f in (fn, base):
      jax.block_until_ready(f(x))
    t = time_interleaved({"fn": lambda: jax.block_until_ready(fn(x)),
                          "base": lambda: jax.block_until_ready(base(x))}, a.rounds)
    ratio = np.median(np.asarray(t["fn"]) / np.asarray(t["base"]))
    ops = trace_op_times(fn, x, a.calls, os.path.join(a.out, re.sub(r"\W+", "_", title)))
    # while/cond events enclose the ops of their bodies: report them inclusive, keep them out of the total
    loops = {k: ops.pop(k) for k in [k for k in ops if k in ("while", "cond")]}
    total = sum(ops.values())
    cost = fn.lower(x).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    print(f"## {title}: median ratio {ratio:.1f}x ({np.median(t['fn']) * 1e3:.1f} ms vs "
          f"{np.median(t['base']) * 1e3:.2f} ms, {a.rounds} interleaved rounds)\n")
    print(f"XLA cost analysis: {cost.get('flops', 0):.3g} flops, {cost.get('transcendentals', 0):.3g} "
          f"transcendentals, {cost.get('bytes accessed', 0):.3g} bytes\n")
    print(f"traced op time per call: {total * 1e3:.1f} ms (leaf ops, summed over XLA:CPU threads); inclusive: "
          + ", ".join(f"{k} {v * 1e3:.1f} ms ({v / total:.0%})" for k, v in loops.items()) + "\n")
    top = ops.most_common(a.top)
    info = hlo_of(fn, x, [name for name, _ in top])
    print("| op | jax op path (HLO metadata) | ms per call | share | main HLO ops inside |\n|---|---|---|---|---|")
    for name, s in top:
      where, kinds = info.get(name, ("?", {}))
      print(f"| `{name}` | {where} | {s * 1e3:.2f} | {s / total:.0%} | {kinds} |")
    print()


if __name__ == "__main__":
  main()
