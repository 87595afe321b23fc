"""CHE training and evaluation: per (task, PE, log-n group), the seeds x arms as one population.

Run ``s * A + a`` is seed ``s`` of arm ``a``. The arms of one seed start from the same parameters, see the
same batches and share their step keys (dropout, position draws), so arms are compared seed by seed. Every
key derives from ``config.seed``.
"""
from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.position_robustness import models
from research import train
from research.nn import position_sampling as ps
from research.tasks import che

BATCH_FIELDS = ("tokens", "targets", "loss_mask", "padding_mask", "total")


def eval_lengths(task: che.Task, lengths) -> list[int]:
  """The lengths evaluated for the requested ``lengths``: each mapped to the largest valid length <= it
  (:meth:`che.Task.fix_length`; only Modular Arithmetic, defined at odd lengths, moves, as in the official
  generator), without repeats. :func:`length_remaps` lists the moves for the report."""
  out = []
  for n in lengths:
    m = task.fix_length(int(n))
    if m not in out:
      out.append(m)
  return out


def length_remaps(task: che.Task, lengths, train_max_length: int) -> str:
  """'' when every requested length is evaluated as is, else a sentence naming each move and each length
  that thereby falls into the training range (and out of the score)."""
  moved = [(int(n), task.fix_length(int(n))) for n in lengths if task.fix_length(int(n)) != int(n)]
  if not moved:
    return ""
  txt = f"{task.name}: " + ", ".join(f"{a} evaluated at {b}" for a, b in moved)
  dropped = [a for a, b in moved if a > train_max_length >= b]
  if dropped:
    txt += f" (so test length(s) {dropped} drop out of the score: they land in the training range)"
  return txt


class Group:
  """The model, loss and data of one population: a task, a PE and arms that agree on log n."""

  def __init__(self, task: che.Task, pe: str, arms, c, num_seeds: int, batch_size: int | None = None):
    logn = {bool(a.logn) for a in arms}
    if len(logn) != 1:
      raise ValueError("arms of one population must agree on log n (it changes the model)")
    models.check_arms(arms, pe)
    self.task, self.pe, self.arms, self.c, self.num_seeds = task, pe, list(arms), c, num_seeds
    self.total = che.max_total_tokens(task, int(c.train_max_length))
    # log n / log m with m = the training sequence length in tokens (spec 07 §3.2): task tokens plus one empty
    # token per output at the longest training length N (Reverse String, N = 40: m = 80), since n counts the
    # tokens the model sees (the non-padding keys), so the factor is 1 at the training length.
    self.model = models.che_model(task, pe, c, self.total if logn.pop() else None)
    self.train_modes = tuple(dict.fromkeys(a.train for a in self.arms))
    self.sampler = jax.jit(jax.vmap(che.curriculum_sampler(
        task, int(batch_size or c.batch_size), int(c.train_max_length), self.total)))
    self.tx = optax.chain(optax.clip_by_global_norm(float(c.grad_clip)), optax.adam(float(c.learning_rate)))

  @property
  def size(self) -> int:
    return self.num_seeds * len(self.arms)

  def run_args(self) -> dict:
    ids = [self.train_modes.index(a.train) for _ in range(self.num_seeds) for a in self.arms]
    return {"train_mode": np.asarray(ids, np.int32)}

  def loss_fn(self, params, batch, rng, args):
    kp, kd = jax.random.split(rng)
    total = batch["total"][0]
    pos = models.select_positions(args["train_mode"], self.train_modes, kp, self.total, total, self.c, self.pe,
                                  self.total)
    logits = models.apply(self.model, params, self.task, batch["tokens"], pos, batch["padding_mask"], self.c,
                          self.pe, dropout_key=kd)
    loss = che.masked_cross_entropy(logits, batch["targets"], batch["loss_mask"])
    return loss, {"acc": che.masked_accuracy(logits, batch["targets"], batch["loss_mask"])}

  def states(self, root) -> list[train.TrainState]:
    """Run s * A + a: seed s's initial parameters (``fold_in(root, 1, s)``) and step key (``fold_in(root, 2, s)``)."""
    out = []
    for s in range(self.num_seeds):
      init = models.init_params(self.model, self.task, jax.random.fold_in(jax.random.fold_in(root, 1), s),
                                self.total, self.pe)
      key = jax.random.fold_in(jax.random.fold_in(root, 2), s)
      out += [train.TrainState.create(params=init, tx=self.tx, rng=key) for _ in self.arms]
    return out

  def batches(self, root):
    """``step -> batch [P, B, T]``: seed s's curriculum batch of step t (key ``fold_in(root, 3, s, t)``),
    repeated for the arms of the seed."""
    data = jax.random.fold_in(root, 3)
    A, S = len(self.arms), self.num_seeds

    def get(t: int) -> dict:
      keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.fold_in(data, s), t))(jnp.arange(S))
      mb = jax.device_get(self.sampler(keys))._asdict()
      mb["total"] = np.broadcast_to(np.asarray(mb["total"])[:, None], mb["tokens"].shape[:2])
      return {k: np.repeat(np.asarray(mb[k]), A, axis=0) for k in BATCH_FIELDS}
    return get


def train_group(group: Group, c, *, seed: int, workdir: str | None, tag: str) -> tuple[train.Population, float]:
  """Trains the group's population for ``c.train_steps`` (checkpointed in ``workdir``; a re-run resumes)."""
  # keyed by the task only: every PE and log-n group of a task sees the same data (seed by seed)
  root = jax.random.fold_in(jax.random.key(seed), stable_id(group.task.name))
  ids = [f"che/{tag}/{a.name}/seed{s}" for s in range(group.num_seeds) for a in group.arms]
  le = int(c.log_every)
  t0 = time.time()
  pop = train.fit_population(
      group.loss_fn, group.states(root), group.batches(root), num_steps=int(c.train_steps), run_ids=ids,
      run_args=group.run_args(), workdir=workdir, name=f"che/{tag}", log_every=le, steps_per_call=le,
      checkpoint_every=le * max(1, int(c.train_steps) // le // 3), desc=f"che {tag}")
  return pop, time.time() - t0


def stable_id(name: str) -> int:
  """A number for a name, the same in every process (Python's ``hash`` of a str is salted per process)."""
  return int.from_bytes(name.encode(), "little") % (2 ** 31 - 1)


def evaluate(group: Group, params, c, *, seed: int) -> tuple[list[int], np.ndarray, float]:
  """Per-token accuracy ``[lengths, S, A]`` of every run at every test length, deterministic (no dropout);
  each run's positions follow its arm's test protocol. The test batches derive from ``config.seed`` and are
  the same for every run, task group and PE."""
  task, S, A = group.task, group.num_seeds, len(group.arms)
  lengths = eval_lengths(task, c.test_lengths)
  grid_m = max(n + task.output_length(n) for n in lengths)
  ps.check_support(int(c.max_len), grid_m)
  modes = [group.arms[r % A].test for r in range(S * A)]
  root = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), 4), stable_id(task.name))
  accs = np.zeros((len(lengths), S, A))
  t0 = time.time()
  for li, n in enumerate(lengths):
    t = n + task.output_length(n)

    @jax.jit
    def acc_all(params, mb, key, t=t):
      keys = jax.random.split(key, S * A)
      pos = jnp.stack([models.positions(modes[r], keys[r], t, jnp.int32(t), c, group.pe, grid_m)
                       for r in range(S * A)])

      def one(args):   # lax.map over runs: one model's [B, H, T, T] attention in memory at a time
        p, q = args
        logits = models.apply(group.model, p, task, mb.tokens, q, mb.padding_mask, c, group.pe)
        return che.masked_accuracy(logits, mb.targets, mb.loss_mask)

      return jax.lax.map(one, (params, pos))

    vals = []
    for bi in range(max(1, int(c.eval_samples) // int(c.eval_batch))):
      k = jax.random.fold_in(jax.random.fold_in(root, n), bi)
      mb = che.to_model_batch(task, che.sample(task.name, k, int(c.eval_batch), n), t)
      vals.append(np.asarray(acc_all(params, mb, jax.random.fold_in(k, 7))))
    accs[li] = np.mean(vals, axis=0).reshape(S, A)
  return lengths, accs, time.time() - t0


def run_group(task_name: str, pe: str, arms, c, *, seed: int, workdir: str | None, log) -> dict[str, Any]:
  """Trains and evaluates one group; returns ``{arm: record}`` (the records of ``che_raw.json``)."""
  task = che.get_task(task_name)
  group = Group(task, pe, arms, c, int(c.seeds))
  tag = f"{task_name}/{pe}" + ("/logn" if arms[0].logn else "")
  pop, train_s = train_group(group, c, seed=seed, workdir=workdir, tag=tag)
  steps, acc_curve = pop.curves("acc")
  tail = acc_curve[:, -3:].mean(1) if acc_curve.size else np.full((group.size,), np.nan)
  lengths, accs, eval_s = evaluate(group, pop.state.params, c, seed=seed)
  A = len(arms)
  log(f"  {task_name:20s} {pe:8s} train {train_s:6.1f}s eval {eval_s:6.1f}s  mean acc per arm: "
      + ", ".join(f"{a.name}={accs[:, :, i].mean():.3f}" for i, a in enumerate(arms)))
  return {a.name: {"lengths": lengths, "acc": accs[:, :, i], "train_acc": tail.reshape(-1, A)[:, i].tolist(),
                   "steps": int(c.train_steps), "train_s": train_s,
                   "acc_curve": {"steps": np.asarray(steps).tolist(),
                                 "acc": acc_curve.reshape(-1, A, acc_curve.shape[-1])[:, i].tolist()}}
          for i, a in enumerate(arms)}
