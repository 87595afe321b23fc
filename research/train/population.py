"""Populations: P independent runs (seeds x arms of one architecture) trained as one vmapped program.

``fit_population(loss_fn, states, batches, num_steps=...)`` runs, for every run ``r`` of the population,
exactly the step of :func:`research.train.fit`

    (loss_r, metrics_r), g_r = value_and_grad(loss_fn)(params_r, batch_r, fold_in(key_r, t) [, args_r])
    updates_r, opt_state_r = tx.update(g_r, opt_state_r, params_r);  params_r += updates_r

as ``jax.vmap`` over the run axis of one ``jit``-compiled step, with each batch's example axis sharded over
the mesh's ``"data"`` axis and the stacked states replicated. A population of P runs gives, to float
tolerance, the parameters of P separate ``fit`` runs with the same initial states and batches.

What may differ between runs:
  * initial parameters and PRNG keys (seeds): build one :class:`TrainState` per run and pass the list;
  * data order: ``batches`` is a list of per-run ``step -> batch`` callables (or one callable returning
    batches with a leading run axis; or ``shared_batch=True`` for one batch seen by every run);
  * hyperparameters: build the optimizer with ``optax.inject_hyperparams`` and set per-run values with
    :func:`with_hyperparams`;
  * loss, position encoding or any other arm switch: ``run_args`` (a pytree with a leading run axis, e.g.
    an integer arm id) is passed to ``loss_fn(params, batch, rng, args)``, which selects with
    ``jnp.where``/``lax.switch``.
Arms with different architectures (different parameter shapes) are separate populations.

Per-run NaN guard: a run whose loss or gradient becomes non-finite is not updated at that step and is
masked from then on (its parameters stay at the last finite values); the others finish. The result says
which runs diverged and at which step, and ``metrics.jsonl`` gets a ``diverged`` record for each.

With a ``workdir``: per-run metrics (tagged ``"run": run_id``) are appended to ``metrics.jsonl``, the whole
population (states + alive mask) is checkpointed with orbax, and a re-run resumes from the latest
checkpoint exactly (the batch of step ``t`` is ``batches(t)``, the step key is derived from ``t``), prints
``resumed from step N``, and drops the records that the interrupted run logged after that checkpoint so
that no step appears twice. Throughput counts only the steps trained in this process.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from research.report import MetricLogger
from research.train import checkpoint as ckpt_lib
from research.train.records import curves, drop_records_after, read_records
from research.train.loop import NonFiniteLossError, TrainState, _resolve_step
from research.train import distributed
from research.train.fsdp import place_state
from research.train.sharding import make_mesh, replicate, shard_batch

__all__ = ["Population", "fit_population", "stack_states", "unstack_state", "with_hyperparams"]


class Population(NamedTuple):
  """What :func:`fit_population` returns."""
  state: TrainState            # every array leaf has a leading run axis of size P
  alive: np.ndarray            # bool[P]: False for runs masked after a non-finite step
  diverged_at: np.ndarray      # int[P]: the step whose update was non-finite, -1 for runs that never diverged
  run_ids: tuple[str, ...]
  history: list[dict]          # records {"step", "run", "loss", ...} (one per run per log/eval point) of this call
  metrics_path: str | None = None   # the metrics.jsonl the records went to (None: no workdir)

  def run(self, i: int) -> TrainState:
    """The state of run ``i`` (no run axis)."""
    return unstack_state(self.state, i)

  def curves(self, key: str = "loss") -> tuple[np.ndarray, np.ndarray]:
    """``(steps [T], values [P, T])`` of a logged quantity for every run: the whole curve, read back from
    ``metrics.jsonl`` when there is one (so a resumed or re-run population has it too), else from ``history``.
    The runs must share their logged steps (they do unless one diverged)."""
    recs = read_records(self.metrics_path, self.run_ids) if self.metrics_path else self.history
    cv = curves(recs, key)
    if not all(r in cv for r in self.run_ids):
      return np.zeros((0,), int), np.zeros((len(self.run_ids), 0))
    return np.asarray(cv[self.run_ids[0]][0]), np.asarray([cv[r][1] for r in self.run_ids])


def stack_states(states: Sequence[TrainState]) -> TrainState:
  """Stacks per-run :class:`TrainState`\\ s (same optimizer object, same shapes) along a new leading axis."""
  states = list(states)
  if not states:
    raise ValueError("stack_states needs at least one TrainState")
  tx = states[0].tx
  for i, s in enumerate(states[1:], 1):
    if s.tx is not tx:
      raise ValueError(
          f"run {i} has a different optimizer object than run 0. A population shares one optimizer: create "
          "every run's TrainState with the same `tx`, and give per-run hyperparameters with "
          "optax.inject_hyperparams + research.train.with_hyperparams.")
  ref = jax.tree.structure(states[0])
  for i, s in enumerate(states[1:], 1):
    if jax.tree.structure(s) != ref:
      raise ValueError(f"run {i}'s state has a different structure than run 0's; arms with different "
                       "architectures must be trained as separate populations.")
    bad = [(a.shape, b.shape) for a, b in zip(jax.tree.leaves(states[0]), jax.tree.leaves(s))
           if np.shape(a) != np.shape(b)]
    if bad:
      raise ValueError(f"run {i}'s parameter shapes differ from run 0's (first: {bad[0][1]} vs {bad[0][0]}); "
                       "arms with different architectures must be trained as separate populations.")
  return jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *states)


def _stack_host(trees: Sequence[Any]) -> Any:
  """Host (numpy) pytrees of the same structure stacked along a new leading axis."""
  return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)


def unstack_state(state: TrainState, i: int) -> TrainState:
  """Run ``i`` of a stacked state."""
  return jax.tree.map(lambda x: x[i], state)


def with_hyperparams(state: TrainState, **values: Any) -> TrainState:
  """Sets per-run values of hyperparameters injected with ``optax.inject_hyperparams``.

  ``with_hyperparams(state, learning_rate=[1e-3, 3e-3, 1e-2])`` writes run ``r``'s value into every
  ``InjectHyperparamsState`` of the stacked optimizer state that has that hyperparameter.
  """
  p = _population_size(state)
  found = set()
  state_types = tuple(t for t in (getattr(optax, "InjectHyperparamsState", None),
                                  getattr(optax, "InjectStatefulHyperparamsState", None)) if t is not None)

  def fix(node):
    if not isinstance(node, state_types):
      return node
    hp = dict(node.hyperparams)
    for name, v in values.items():
      if name in hp:
        v = jnp.asarray(v, dtype=jnp.asarray(hp[name]).dtype)
        if v.shape != (p,):
          raise ValueError(f"{name} needs one value per run: shape ({p},), got {v.shape}")
        hp[name] = v
        found.add(name)
    return node._replace(hyperparams=hp)

  opt_state = jax.tree.map(fix, state.opt_state, is_leaf=lambda n: isinstance(n, state_types))
  missing = set(values) - found
  if missing:
    raise ValueError(f"hyperparameter(s) {sorted(missing)} not found in the optimizer state; build the "
                     "optimizer with optax.inject_hyperparams(...)(...) so they are part of its state.")
  return state.replace(opt_state=opt_state)


def _population_size(state: TrainState) -> int:
  step = np.shape(state.step)
  if len(step) != 1:
    raise ValueError(f"expected a stacked population state (step of shape (P,)), got step shape {step}; "
                     "build it with research.train.stack_states")
  return step[0]


def make_population_step(loss_fn: Callable | None, accum_steps: int = 1, *, shared_batch: bool = False,
                         with_args: bool = False, train_step: Callable | None = None) -> Callable:
  """The (un-jitted) population step ``(state, alive, batch, args) -> (state, alive, metrics)``.

  ``metrics`` has a leading run axis; ``finite`` says whether each run's update was applied.
  """
  def one(state, batch, args):
    if train_step is not None:
      return _resolve_step(None, train_step, accum_steps)(*((state, batch, args) if with_args else (state, batch)))
    lf = (lambda p, b, r: loss_fn(p, b, r, args)) if with_args else loss_fn
    return _resolve_step(lf, None, accum_steps)(state, batch)

  vstep = jax.vmap(one, in_axes=(0, None if shared_batch else 0, 0 if with_args else None))

  def step(state: TrainState, alive: jax.Array, batch: Any, args: Any):
    new, metrics = vstep(state, batch, args)
    ok = alive & metrics["finite"]

    def keep(n, o):
      return jnp.where(ok.reshape(ok.shape + (1,) * (n.ndim - 1)), n, o)

    state = new.replace(params=jax.tree.map(keep, new.params, state.params),
                        opt_state=jax.tree.map(keep, new.opt_state, state.opt_state))
    return state, ok, {**metrics, "finite": metrics["finite"]}

  return step


def fit_population(loss_fn: Callable, states: TrainState | Sequence[TrainState],
                   batches: Callable[[int], Any] | Sequence[Callable[[int], Any]], *, num_steps: int,
                   run_ids: Sequence[str] | None = None, run_args: Any = None, shared_batch: bool = False,
                   workdir: str | None = None, eval_fn: Callable[[Any], dict] | None = None, eval_every: int = 0,
                   checkpoint_every: int = 0, log_every: int = 50, accum_steps: int = 1,
                   desc: str = "population", mesh: jax.sharding.Mesh | None = None, progress: bool = True,
                   keep_checkpoints: int = 2, name: str = "population", steps_per_call: int = 1,
                   train_step: Callable | None = None) -> Population:
  """Trains a population of runs for ``num_steps`` steps in total (counting restored steps).

  Args:
    loss_fn: ``(params, batch, rng) -> (loss, metrics)``, or ``(params, batch, rng, args)`` with ``run_args``.
    states: one :class:`TrainState` per run (same ``tx`` object), or a state stacked by :func:`stack_states`.
    batches: a list of per-run ``step -> batch`` callables; or one ``step -> batch`` whose leaves have a
      leading run axis ``[P, B, ...]``; or, with ``shared_batch=True``, one ``step -> batch`` of ``[B, ...]``.
    num_steps: total optimizer steps of every run.
    run_ids: a name per run (default ``run0..``), written in every ``metrics.jsonl`` record.
    run_args: optional pytree with a leading run axis, passed to ``loss_fn`` as its fourth argument.
    workdir: where ``metrics.jsonl`` and ``checkpoints/<name>`` go (``None``: no files, no resume).
    eval_fn: ``params -> dict of scalars`` for ONE run; it is vmapped and jitted over the population, run
      every ``eval_every`` steps and at the end.
    checkpoint_every, log_every, accum_steps, mesh, progress, keep_checkpoints: as in ``fit``.
    steps_per_call: run up to this many steps in one jitted call (a ``lax.scan`` over their stacked
      batches), which removes the per-step dispatch cost of small models; a call never crosses a log,
      eval or checkpoint step, so the records and the resumed states are the same for every value.
    train_step: a custom step for ONE run, ``(state, batch[, args]) -> (state, metrics)``, as in ``fit``
      (``loss_fn`` may then be ``None``); it is vmapped over the population like the built-in one.

  Returns:
    A :class:`Population`. Raises :class:`NonFiniteLossError` only when every run has diverged.
  """
  if num_steps < 0:
    raise ValueError(f"num_steps must be >= 0, got {num_steps}")
  if log_every < 1:
    raise ValueError(f"log_every must be >= 1, got {log_every}")
  if steps_per_call < 1:
    raise ValueError(f"steps_per_call must be >= 1, got {steps_per_call}")
  if checkpoint_every < 0 or eval_every < 0:
    raise ValueError(f"checkpoint_every and eval_every must be >= 0, got {checkpoint_every}, {eval_every}")
  state = stack_states(states) if isinstance(states, (list, tuple)) else states
  p = _population_size(state)
  run_ids = tuple(run_ids) if run_ids is not None else tuple(f"run{i}" for i in range(p))
  if len(run_ids) != p or len(set(run_ids)) != p:
    raise ValueError(f"run_ids must name each of the {p} runs once, got {run_ids}")
  if isinstance(batches, (list, tuple)):
    if shared_batch:
      raise ValueError("shared_batch=True takes one step -> batch callable, not a list")
    if len(batches) != p:
      raise ValueError(f"got {len(batches)} batch functions for {p} runs")
    fns = list(batches)
    get_batch = lambda t: _stack_host([f(t) for f in fns])
  elif callable(batches):
    get_batch = batches
  else:
    raise TypeError("batches must be a step -> batch callable or a list of them (one per run)")
  with_args = run_args is not None
  if with_args:
    bad = [np.shape(x) for x in jax.tree.leaves(run_args) if np.shape(x)[:1] != (p,)]
    if bad:
      raise ValueError(f"run_args leaves need a leading run axis of size {p}; got shapes {bad}")

  mesh = mesh or make_mesh()
  writer = jax.process_index() == 0
  loggers = {r: MetricLogger(workdir if writer else None, prefix=r) for r in run_ids}
  alive = jnp.ones((p,), bool)
  diverged_at = np.full((p,), -1, np.int64)
  manager = None
  if workdir is not None:
    manager = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints", name), keep=keep_checkpoints)
    restored = manager.restore_latest({"state": place_state(state, mesh), "alive": alive,  # each process: its shards
                                       "diverged_at": diverged_at})
    if restored is not None:
      state, alive = restored["state"], jnp.asarray(restored["alive"])
      diverged_at = np.asarray(restored["diverged_at"]).copy()
      print(f"[{desc}] resumed from step {int(np.asarray(state.step).max())}", file=sys.stderr, flush=True)
    # the records past the step training starts from are re-trained now: those a killed run logged after its
    # last checkpoint, or all of them when there is no checkpoint (a new machine, deleted checkpoints)
    if writer:
      drop_records_after(os.path.join(workdir, "metrics.jsonl"), run_ids, int(np.asarray(state.step).max()))
  # a private copy (the step donates it), replicated or FSDP-sharded on a (data, fsdp) mesh
  state = jax.tree.map(lambda x: x.copy() if isinstance(x, jax.Array) else x, place_state(state, mesh))
  alive = replicate(alive, mesh)
  args = replicate(run_args, mesh) if with_args else None
  start = int(np.asarray(jax.device_get(state.step)).max())
  one_step = make_population_step(loss_fn, accum_steps, shared_batch=shared_batch, with_args=with_args,
                                  train_step=train_step)

  def chunk_fn(state, alive, batches_k, args):
    def body(carry, b):
      st, al = carry
      st, al, m = one_step(st, al, b, args)
      return (st, al), m
    (state, alive), ms = jax.lax.scan(body, (state, alive), batches_k)
    return state, alive, ms

  step_fn = jax.jit(chunk_fn, donate_argnums=(0,))
  batch_axis = 0 if shared_batch else 1
  # several processes: each places only its rows of the global batch (batch_fn's batches already are those)
  fn_list = batches if isinstance(batches, (list, tuple)) else [batches]
  local = jax.process_count() == 1 or all(getattr(f, "process_local", False) for f in fn_list)

  my_rows = (lambda b: b) if local else (lambda b: distributed.process_rows(b, batch_axis))

  stops = [e for e in (log_every, checkpoint_every if manager is not None else 0, eval_every) if e]

  def chunk_end(s: int) -> int:       # the next step at which something is logged, evaluated or saved
    return min([num_steps, s + steps_per_call] + [(s // e + 1) * e for e in stops])
  veval = jax.jit(jax.vmap(eval_fn)) if eval_fn is not None else None

  history: list[dict] = []
  pending: list[tuple[int, dict]] = []
  examples, t0 = 0, time.perf_counter()
  bar = None
  if progress and num_steps > start:
    from tqdm.auto import tqdm
    bar = tqdm(total=num_steps, initial=start, desc=f"{desc} ({p} runs)", dynamic_ncols=True, leave=False,
               disable=os.environ.get("RESEARCH_NO_PROGRESS") == "1")

  def flush() -> None:
    nonlocal examples, t0
    if not pending:
      return
    fetched = jax.device_get([m for _, m in pending])
    for (end, _), ms in zip(pending, fetched):
      k = np.shape(ms["finite"])[0]
      for j in range(k):
        s = end - k + 1 + j
        for i in np.flatnonzero(~np.asarray(ms["finite"][j], bool) & (diverged_at < 0)):
          diverged_at[i] = s
          loggers[run_ids[i]].write(s, diverged=1.0)
          print(f"[{desc}] run {run_ids[i]} became non-finite at step {s} (loss={float(ms['loss'][j][i])}); "
                "it keeps its last finite parameters and is masked from now on", file=sys.stderr, flush=True)
    s = pending[-1][0]
    m = jax.tree.map(lambda x: x[-1], fetched[-1])
    dt = max(time.perf_counter() - t0, 1e-9)
    rate = examples / dt
    for i, r in enumerate(run_ids):
      if diverged_at[i] >= 0:
        continue
      rec = {k: float(np.asarray(v)[i]) for k, v in m.items() if k != "finite"}
      rec["examples_per_s"] = rate / p
      history.append({"step": s, "run": r, **rec})
      loggers[r].write(s, **rec)
    if bar is not None:
      live = diverged_at < 0
      mean_loss = float(np.mean(np.asarray(m["loss"])[live])) if live.any() else float("nan")
      bar.set_postfix(loss=f"{mean_loss:.4g}", alive=f"{int(live.sum())}/{p}", ex_s=f"{rate:.3g}")
    pending.clear()
    examples, t0 = 0, time.perf_counter()
    if not (diverged_at < 0).any():
      raise NonFiniteLossError(f"[{desc}] every run of the population became non-finite (steps "
                               f"{diverged_at.tolist()}). Lower the learning rate or check the inputs.")

  def evaluate(step_done: int) -> None:
    if veval is None:
      return
    ev = jax.device_get(veval(state.params))
    for i, r in enumerate(run_ids):
      rec = {k: float(np.asarray(v)[i]) for k, v in ev.items()}
      history.append({"step": step_done, "run": r, **rec})
      loggers[r].write(step_done, **rec)

  try:
    s = start
    while s < num_steps:
      done = chunk_end(s)
      per_step = [my_rows(get_batch(t)) for t in range(s, done)]
      batch = _stack_host(per_step)
      leaves = jax.tree.leaves(per_step[0])
      rows = int(np.shape(leaves[0])[batch_axis]) * jax.process_count()     # this process's rows x processes
      examples += (done - s) * rows * (1 if shared_batch else p) if leaves else 0
      state, alive, metrics = step_fn(state, alive, shard_batch(batch, mesh, batch_axis + 1), args)
      pending.append((done, metrics))
      if bar is not None:
        if s == start:     # the first call includes jit compilation: restart the clock so the ETA excludes it
          bar.reset(total=num_steps)
          bar.initial = bar.n = bar.last_print_n = done
          bar.refresh()
        else:
          bar.update(done - s)
      s = done
      is_ckpt = manager is not None and checkpoint_every and done % checkpoint_every == 0
      if done % log_every == 0 or done == num_steps or is_ckpt:
        flush()
      if eval_every and done % eval_every == 0 and done != num_steps:
        evaluate(done)
      if is_ckpt:
        manager.save(done, {"state": state, "alive": alive, "diverged_at": diverged_at})
    flush()
    if manager is not None and num_steps > start:
      manager.save(num_steps, {"state": state, "alive": alive, "diverged_at": diverged_at})
    if num_steps > start:
      evaluate(num_steps)
  finally:
    if bar is not None:
      bar.close()
    if manager is not None:
      manager.close()
    for lg in loggers.values():
      getattr(lg, "close", lambda: None)()
  return Population(state=state, alive=np.asarray(jax.device_get(alive)), diverged_at=diverged_at,
                    run_ids=run_ids, history=history,
                    metrics_path=os.path.join(workdir, "metrics.jsonl") if workdir is not None else None)
