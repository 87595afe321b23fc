"""A generic, data-parallel training loop.

``fit(loss_fn, state, batches, num_steps=...)`` runs

    (loss, metrics), g = value_and_grad(loss_fn)(params, batch, rng_t)      # rng_t = fold_in(rng, t)
    updates, opt_state = tx.update(g, opt_state, params);  params += updates

under ``jit`` with the batch sharded over a 1-D device mesh and the state replicated; optionally averages
gradients over ``accum_steps`` micro-batches (``g = (1/A) sum_a g_a``). It logs to ``metrics.jsonl``, shows a
tqdm bar with loss and throughput, evaluates periodically, checkpoints with orbax and resumes exactly from
the latest checkpoint (the batch of step ``t`` is ``batches(t)`` and the step key is derived from ``t``), and
stops with :class:`NonFiniteLossError` when the loss or gradient becomes NaN/inf: the offending update is
not applied, and the last good checkpoint is kept.

On a ``("data", "fsdp")`` mesh (``make_mesh(fsdp=F)``) the state is instead sharded by
:mod:`research.train.fsdp` and stays sharded across steps (fixed ``out_shardings``). In a multi-process job
(:mod:`research.train.distributed`) every process runs ``fit`` with the same arguments: each places only its
rows of the global batch (``research.data.batch_fn`` already returns just those; other callables' global
batches are sliced), process 0 alone logs and shows progress, and all processes checkpoint together.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable, Iterable

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from research.report import MetricLogger
from research.train import checkpoint as ckpt_lib
from research.train.records import drop_records_after
from research.train import distributed
from research.train.fsdp import place_state, state_shardings
from research.train.sharding import make_mesh, replicated_sharding, shard_batch


class NonFiniteLossError(FloatingPointError):
  """Raised when the training loss (or gradient) becomes NaN or infinite."""


@flax.struct.dataclass
class TrainState:
  """Parameters, optimizer state, step counter and PRNG key (raw ``uint32[2]`` key data) of a run."""
  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)

  @classmethod
  def create(cls, *, params: Any, tx: optax.GradientTransformation, rng: jax.Array | int = 0) -> "TrainState":
    if isinstance(rng, int):
      rng = jax.random.key(rng)
    raw = jax.random.key_data(rng) if _is_typed_key(rng) else jnp.asarray(rng, jnp.uint32)
    return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), rng=raw, tx=tx)

  @property
  def key(self) -> jax.Array:
    return jax.random.wrap_key_data(self.rng)


def _is_typed_key(x) -> bool:
  return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


LossFn = Callable[[Any, Any, jax.Array], tuple[jax.Array, dict[str, jax.Array]]]


def make_train_step(loss_fn: LossFn, accum_steps: int = 1) -> Callable:
  """The (un-jitted) train step ``(state, batch) -> (state, metrics)``.

  ``metrics`` holds ``loss``, the loss function's metrics, ``grad_norm`` and ``finite`` (whether the update
  was applied).
  """
  if accum_steps < 1:
    raise ValueError(f"accum_steps must be >= 1, got {accum_steps}")
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def step(state: TrainState, batch: Any):
    rng = jax.random.fold_in(state.key, state.step)
    if accum_steps == 1:
      (loss, aux), grads = grad_fn(state.params, batch, rng)
    else:
      def split(x):
        if x.shape[0] % accum_steps:
          raise ValueError(f"Batch axis {x.shape[0]} is not divisible by accum_steps={accum_steps}")
        return x.reshape((accum_steps, x.shape[0] // accum_steps) + x.shape[1:])
      micro = jax.tree.map(split, batch)

      def body(carry, inp):
        i, mb = inp
        (l, a), g = grad_fn(state.params, mb, jax.random.fold_in(rng, i))
        acc_g, acc_l, acc_a = carry
        return (jax.tree.map(jnp.add, acc_g, g), acc_l + l, jax.tree.map(jnp.add, acc_a, a)), None

      (l0, a0), g0 = jax.eval_shape(grad_fn, state.params, jax.tree.map(lambda x: x[0], micro), rng)
      zeros = lambda t: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), t)
      (grads, loss, aux), _ = jax.lax.scan(body, (zeros(g0), zeros(l0), zeros(a0)),
                                           (jnp.arange(accum_steps), micro))
      scale = 1.0 / accum_steps
      grads = jax.tree.map(lambda g: g * scale, grads)
      loss = loss * scale
      aux = jax.tree.map(lambda a: a * scale, aux)
    grad_norm = optax.global_norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    new_state = state.replace(step=state.step + 1, params=keep(params, state.params),
                              opt_state=keep(opt_state, state.opt_state))
    metrics = {"loss": loss, **aux, "grad_norm": grad_norm, "finite": finite}
    return new_state, metrics

  return step


def _resolve_step(loss_fn: LossFn | None, train_step: Callable | None, accum_steps: int) -> Callable:
  """``train_step`` when given (then ``accum_steps`` must be 1), else ``make_train_step(loss_fn)``."""
  if train_step is None:
    if loss_fn is None:
      raise ValueError("give a loss_fn, or a custom train_step(state, batch) -> (state, metrics)")
    return make_train_step(loss_fn, accum_steps)
  if accum_steps != 1:
    raise ValueError(f"accum_steps={accum_steps} needs the built-in step; a custom train_step accumulates itself")
  return train_step


def _batch_size(batch: Any) -> int:
  leaves = jax.tree.leaves(batch)
  return int(np.shape(leaves[0])[0]) if leaves else 0


def fit(loss_fn: LossFn, state: TrainState, batches: Callable[[int], Any] | Iterable[Any], *,
        num_steps: int, workdir: str | None = None, eval_fn: Callable[[Any], dict] | None = None,
        eval_every: int = 0, checkpoint_every: int = 0, log_every: int = 50, accum_steps: int = 1,
        desc: str = "train", mesh: jax.sharding.Mesh | None = None, progress: bool = True,
        keep_checkpoints: int = 2, run_name: str = "",
        train_step: Callable[[TrainState, Any], tuple[TrainState, dict]] | None = None
        ) -> tuple[TrainState, list[dict]]:
  """Trains ``state`` for ``num_steps`` steps in total (counting steps restored from a checkpoint).

  Args:
    loss_fn: ``(params, batch, rng) -> (scalar loss, dict of scalar metrics)``.
    state: a :class:`TrainState`.
    batches: ``step -> batch`` (a pytree of host arrays whose leading axis is the global batch; required
      for exact resume) or an iterable of batches.
    num_steps: total number of optimizer steps.
    workdir: where ``metrics.jsonl`` and ``checkpoints/`` go (``None``: no files, no resume).
    eval_fn: ``params -> dict of scalars``, run every ``eval_every`` steps and at the end.
    checkpoint_every: save every this many steps (and at the end) when ``workdir`` is set; 0 saves only at
      the end.
    log_every: how often metrics are fetched from the device, logged and checked for NaN/inf.
    accum_steps: gradient accumulation micro-batches per step.
    mesh: device mesh (default: all devices; ``make_mesh(fsdp=F)`` for sharded parameters).
    run_name: tag written in every ``metrics.jsonl`` record (and checkpoint sub-directory) of this run.
    train_step: a custom step ``(state, batch) -> (state, metrics)`` for updates that are not one gradient
      step of ``loss_fn`` (e.g. a GAN's alternating discriminator and generator updates); it replaces
      ``make_train_step(loss_fn)`` (``loss_fn`` may then be ``None``). Its metrics need ``loss`` and
      ``finite`` (whether the update was applied), and it must increment ``state.step``.

  Returns:
    The final state and the history: a list of dicts ``{"step", "loss", ...}`` (one per log/eval point).
  """
  if num_steps < 0:
    raise ValueError(f"num_steps must be >= 0, got {num_steps}")
  if log_every < 1:
    raise ValueError(f"log_every must be >= 1, got {log_every}")
  mesh = mesh or make_mesh()
  logger = MetricLogger(workdir if distributed.is_main_process() else None, prefix=run_name)  # process 0 logs
  manager = None
  if workdir is not None:
    ckpt_dir = os.path.join(workdir, "checkpoints", run_name) if run_name else os.path.join(workdir, "checkpoints")
    manager = ckpt_lib.Checkpointer(ckpt_dir, keep=keep_checkpoints)
    restored = manager.restore_latest(place_state(state, mesh))   # every process restores its own shards
    if restored is not None:
      state = restored
      print(f"[{desc}] resumed from step {int(np.asarray(jax.device_get(state.step)))}", file=sys.stderr,
            flush=True)
    # the records past the step training starts from are re-trained now: those a killed run logged after its
    # last checkpoint, or all of them when there is no checkpoint (a new machine, deleted checkpoints)
    if logger.path:
      drop_records_after(logger.path, [run_name or None], int(np.asarray(jax.device_get(state.step))))
  # A private copy, replicated (or FSDP-sharded on a (data, fsdp) mesh): the jitted step donates its input
  # state, and the caller's arrays stay valid.
  state = jax.tree.map(lambda x: x.copy() if isinstance(x, jax.Array) else x, place_state(state, mesh))
  start = int(state.step)
  get_batch = batches if callable(batches) else None
  iterator = None if callable(batches) else iter(batches)
  step_fn = jax.jit(_resolve_step(loss_fn, train_step, accum_steps), donate_argnums=(0,),
                    out_shardings=(state_shardings(state, mesh), replicated_sharding(mesh)))
  # Several processes: each places only its rows of the global batch (batch_fn's batches are already those).
  local = jax.process_count() == 1 or getattr(batches, "process_local", False)

  history: list[dict] = []
  pending: list[tuple[int, dict]] = []
  examples, t0 = 0, time.perf_counter()
  bar = None
  if progress and num_steps > start and distributed.is_main_process():
    from tqdm.auto import tqdm
    # No rate or ETA until the first metrics come back from the device: the first steps include jit
    # compilation (seconds), which would otherwise set the ETA of a short run to minutes.
    bar = tqdm(total=num_steps, initial=start, desc=f"{desc} (compiling)", dynamic_ncols=True, leave=False,
               disable=os.environ.get("RESEARCH_NO_PROGRESS") == "1",
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}]")

  def flush(step_done: int) -> None:
    nonlocal examples, t0
    if not pending:
      return
    fetched = jax.device_get([m for _, m in pending])
    for (s, _), m in zip(pending, fetched):
      if not bool(m["finite"]):
        last = manager.latest_step() if manager else None
        raise NonFiniteLossError(
            f"[{desc}] loss or gradient became non-finite at step {s} (loss={float(m['loss'])}, "
            f"grad_norm={float(m['grad_norm'])}). The update was not applied; "
            + (f"the last good checkpoint is step {last} in {manager.directory}. " if last is not None else "")
            + "Lower the learning rate, check the inputs for NaN/inf, or use gradient clipping.")
    s, m = pending[-1][0], fetched[-1]
    dt = max(time.perf_counter() - t0, 1e-9)
    rec = {"step": s, **{k: float(v) for k, v in m.items() if k != "finite"},
           "examples_per_s": examples / dt}
    history.append(rec)
    logger.write(s, **{k: v for k, v in rec.items() if k != "step"})
    if bar is not None:
      if getattr(bar, "bar_format", None) is not None:   # first device sync: start the rate clock here
        bar.reset(total=num_steps)
        bar.initial = bar.n = bar.last_print_n = s
        bar.bar_format = None
        bar.set_description(desc, refresh=False)
      bar.set_postfix(loss=f"{rec['loss']:.4g}", ex_s=f"{rec['examples_per_s']:.3g}")
    pending.clear()
    examples, t0 = 0, time.perf_counter()

  def evaluate(step_done: int, log: bool = True) -> None:
    if eval_fn is None:
      return
    ev = {k: float(v) for k, v in eval_fn(state.params).items()}
    rec = {"step": step_done, **ev}
    history.append(rec)
    if log:        # a re-run of a finished run returns its final evaluation but logs it only once
      logger.write(step_done, **ev)

  try:
    for s in range(start, num_steps):
      batch = get_batch(s) if get_batch is not None else next(iterator)
      if not local:
        batch = distributed.process_rows(batch)
      examples += _batch_size(batch) * jax.process_count()
      state, metrics = step_fn(state, shard_batch(batch, mesh))
      pending.append((s + 1, metrics))
      done = s + 1
      if bar is not None:
        bar.update(1)
      is_ckpt = manager is not None and checkpoint_every and done % checkpoint_every == 0
      if done % log_every == 0 or done == num_steps or is_ckpt:
        flush(done)
      if eval_every and done % eval_every == 0 and done != num_steps:
        evaluate(done)
      if is_ckpt:
        manager.save(done, state)
    flush(num_steps)
    if manager is not None and num_steps > start:
      manager.save(num_steps, state)
    if num_steps > start or not any("step" in h for h in history):
      evaluate(int(state.step), log=num_steps > start)
  finally:
    if bar is not None:
      bar.close()
    if manager is not None:
      manager.close()
    logger.close()
  return state, history
