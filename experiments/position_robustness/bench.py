"""Step time of a CHE population with randomized vs plain positions (same model, batch, population size)."""
from __future__ import annotations

import jax
import numpy as np

from experiments.position_robustness.che_train import Group, stable_id
from research import train
from research import verdict as V
from research.benchmark import ratio_vs_target, time_interleaved
from research.report import Results
from research.tasks import che
from research.train.population import make_population_step

TARGET = 1.05   # issue target: randomized positions cost at most 5% more per step


def _timed_call(group: Group, steps: int, seed: int):
  """A zero-argument call that runs ``steps`` population steps (the trainer's step, one jitted lax.scan)."""
  root = jax.random.fold_in(jax.random.key(seed), stable_id(group.task.name))
  state = train.stack_states(group.states(root))
  get = group.batches(root)
  batch = jax.tree.map(lambda *xs: np.stack(xs), *[get(t) for t in range(steps)])
  args = group.run_args()
  step = make_population_step(group.loss_fn, with_args=True)

  @jax.jit
  def run(state, alive, batch, args):
    def body(carry, b):
      st, al, _ = step(*carry, b, args)
      return (st, al), None
    return jax.lax.scan(body, (state, alive), batch)[0]

  alive = np.ones((group.size,), bool)
  jax.block_until_ready(run(state, alive, batch, args))      # compile
  return lambda: jax.block_until_ready(run(state, alive, batch, args))


def run_bench(config, res: Results) -> None:
  b, c = config.bench, config.che
  task = che.get_task(b.task)
  calls = {}
  for pe in b.pes:
    for arm in b.arms:
      group = Group(task, pe, [arm], c, int(b.seeds), batch_size=int(b.batch_size))
      calls[(pe, arm.name)] = _timed_call(group, int(b.steps), int(config.seed))
  samples = time_interleaved({f"{pe}/{a}": f for (pe, a), f in calls.items()}, int(b.repeats))
  step_s = {k: float(np.median(v)) / int(b.steps) for k, v in samples.items()}
  worst = 0.0
  plain, rand = (a.name for a in b.arms)
  for pe in b.pes:
    tp, tr = step_s[f"{pe}/{plain}"], step_s[f"{pe}/{rand}"]
    ratio = tr / tp
    worst = max(worst, ratio)
    ex = int(b.seeds) * int(b.batch_size) / tp
    res.add(f"bench/{pe}/step_ms_plain", 1e3 * tp)
    res.add(f"bench/{pe}/step_ms_randomized", 1e3 * tr)
    res.add(f"bench/{pe}/overhead_ratio", ratio)
    res.add(f"bench/{pe}/examples_per_s_plain", ex)
    a, m = ratio_vs_target(np.asarray(samples[f"{pe}/{rand}"]) / np.asarray(samples[f"{pe}/{plain}"]), TARGET,
                           "less")   # per interleaved round
    res.rows.append(V.row(f"step time randomized / plain ({pe})", f"<= {TARGET} (issue target)", a,
                        measured=f"{m} (medians {1e3 * tr:.2f} vs {1e3 * tp:.2f} ms/step)",
                        note=f"{task.name}, population of {b.seeds} runs vmapped x batch {b.batch_size}, "
                             f"{c.num_layers}L d={c.d_model}; {ex:.0f} examples/s (plain)"))
  res.add("bench/worst_overhead_ratio", worst)
  res.notes.append(
      f"Timings: research.benchmark.time_interleaved, median of {b.repeats} interleaved rounds (order reversed "
      f"every other round) of one jitted lax.scan of {b.steps} steps of the population trainer's step "
      "(research.train.population.make_population_step: gradient, clipped Adam update, per-run NaN guard); "
      "position sampling runs inside the step, the curriculum batches are generated before (as the trainer's "
      "host pipeline does). On a shared CPU the ratio moves by several percent between runs.")
