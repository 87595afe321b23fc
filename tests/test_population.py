"""The population trainer: P runs as one vmapped program equal P separate `fit` runs; exact resume; NaN mask."""
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from research import data, train
from research.train import population as pop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _problem(n=256, d=8):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(n, d)).astype(np.float32)
  w = rng.normal(size=(d, 3)).astype(np.float32)
  y = (x @ w).argmax(-1)

  def init(seed):
    k = jax.random.key(seed)
    return {"w": 0.1 * jax.random.normal(k, (d, 3)), "b": jnp.zeros((3,))}

  def loss_fn(p, batch, rng):
    logits = batch["x"] @ p["w"] + p["b"]
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()
    return loss, {"acc": jnp.mean(logits.argmax(-1) == batch["y"])}

  arrays = {"x": x, "y": y}
  return init, loss_fn, (lambda seed: data.batch_fn(arrays, 32, seed))


@pytest.mark.parametrize("num_devices,steps_per_call", [(1, 1), (8, 5)])
def test_population_equals_separate_fits(num_devices, steps_per_call):
  init, loss_fn, batches = _problem()
  mesh = train.make_mesh(jax.devices()[:num_devices])
  tx = optax.adam(0.05)
  seeds = [0, 1, 2, 3]
  solo = []
  for s in seeds:
    st, _ = train.fit(loss_fn, train.TrainState.create(params=init(s), tx=tx, rng=s), batches(s), num_steps=12,
                      progress=False, mesh=mesh)
    solo.append(jax.device_get(st.params))
  states = [train.TrainState.create(params=init(s), tx=tx, rng=s) for s in seeds]
  out = pop.fit_population(loss_fn, states, [batches(s) for s in seeds], num_steps=12, progress=False, mesh=mesh,
                           log_every=4, steps_per_call=steps_per_call)
  assert out.alive.all() and (out.diverged_at == -1).all()
  for i, ref in enumerate(solo):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6), jax.device_get(out.run(i).params),
                 ref)
  assert {h["run"] for h in out.history} == {"run0", "run1", "run2", "run3"}


def test_per_run_hyperparameters_and_arm_args():
  init, loss_fn, batches = _problem()
  lrs = [0.01, 0.1]
  solo = []
  for lr in lrs:
    st, _ = train.fit(loss_fn, train.TrainState.create(params=init(0), tx=optax.sgd(lr), rng=0), batches(0),
                      num_steps=6, progress=False)
    solo.append(jax.device_get(st.params))
  tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.5)
  state = pop.stack_states([train.TrainState.create(params=init(0), tx=tx, rng=0) for _ in lrs])
  state = pop.with_hyperparams(state, learning_rate=lrs)
  out = pop.fit_population(loss_fn, state, batches(0), shared_batch=True, num_steps=6, progress=False)
  for i, ref in enumerate(solo):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), jax.device_get(out.run(i).params),
                 ref)
  # an arm switch through run_args: arm 1 scales its loss by 0 and so never moves
  scaled = lambda p, b, r, arm: jax.tree.map(lambda v: v * arm["scale"], loss_fn(p, b, r))
  st = [train.TrainState.create(params=init(0), tx=optax.sgd(0.1), rng=0)]
  st = st + [st[0].replace()]
  out = pop.fit_population(scaled, st, batches(0), shared_batch=True, num_steps=3, progress=False,
                           run_args={"scale": jnp.array([1.0, 0.0])})
  np.testing.assert_array_equal(out.run(1).params["w"], init(0)["w"])
  assert not np.allclose(out.run(0).params["w"], init(0)["w"])


def test_bad_population_input_is_explained():
  init, loss_fn, batches = _problem()
  a = train.TrainState.create(params=init(0), tx=optax.sgd(0.1), rng=0)
  b = train.TrainState.create(params=init(1), tx=optax.sgd(0.1), rng=1)
  with pytest.raises(ValueError, match="same `tx`"):
    pop.stack_states([a, b])
  c = train.TrainState.create(params={"w": jnp.zeros((8, 4)), "b": jnp.zeros((4,))}, tx=a.tx, rng=0)
  with pytest.raises(ValueError, match="separate populations"):
    pop.stack_states([a, c])
  with pytest.raises(ValueError, match="inject_hyperparams"):
    pop.with_hyperparams(pop.stack_states([a, a]), learning_rate=[0.1, 0.2])
  with pytest.raises(ValueError, match="run_ids"):
    pop.fit_population(loss_fn, [a, a], [batches(0)] * 2, num_steps=1, run_ids=["x", "x"], progress=False)


def test_diverging_run_is_masked_and_others_finish(tmp_path):
  init, loss_fn, batches = _problem()
  tx = optax.adam(0.05)
  state = pop.stack_states([train.TrainState.create(params=init(s), tx=tx, rng=s) for s in range(3)])
  fns = [batches(s) for s in range(3)]
  poisoned = lambda t: fns[1](t) if t != 4 else dict(fns[1](t), x=np.full_like(fns[1](t)["x"], np.inf))
  out = pop.fit_population(loss_fn, state, [fns[0], poisoned, fns[2]], num_steps=10, log_every=3,
                           run_ids=["a", "b", "c"], workdir=str(tmp_path), progress=False)
  assert out.alive.tolist() == [True, False, True]
  assert out.diverged_at.tolist() == [-1, 5, -1]          # the update of step 5 (batch 4) was not applied
  # run b keeps the parameters of its last finite step (4) although its later batches are clean again
  solo, _ = train.fit(loss_fn, train.TrainState.create(params=init(1), tx=tx, rng=1), fns[1], num_steps=4,
                      progress=False)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               jax.device_get(out.run(1).params), jax.device_get(solo.params))
  recs = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  assert any(r["run"] == "b" and r.get("diverged") == 1.0 for r in recs)
  assert max(r["step"] for r in recs if r["run"] == "a" and "loss" in r) == 10
  assert max(r["step"] for r in recs if r["run"] == "b" and "loss" in r) < int(out.diverged_at[1])


_KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {root!r})
    import numpy as np, optax
    from research import train
    from research.train import population as pop
    from tests.test_population import _problem
    workdir, total, kill_at = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    init, loss_fn, batches = _problem()
    fns = [batches(s) for s in range(4)]
    def or_die(f):
      def g(step):
        if step == kill_at:
          os.kill(os.getpid(), signal.SIGKILL)
        return f(step)
      return g
    tx = optax.adam(0.05)
    states = [train.TrainState.create(params=init(s), tx=tx, rng=s) for s in range(4)]
    out = pop.fit_population(loss_fn, states, [or_die(f) for f in fns], num_steps=total, workdir=workdir,
                             checkpoint_every=4, log_every=2, progress=False, steps_per_call=3)
    np.save(os.path.join(workdir, "final_w.npy"), np.asarray(out.state.params["w"]))
""")


def test_killed_population_resumes_bit_identically(tmp_path):
  script = tmp_path / "pop_script.py"
  script.write_text(_KILL_SCRIPT.format(root=ROOT))
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
  run = lambda wd, kill: subprocess.run([sys.executable, str(script), str(tmp_path / wd), "16", str(kill)],
                                        env=env, cwd=ROOT, capture_output=True, text=True)
  killed = run("a", 11)
  assert killed.returncode == -9
  assert sorted(os.listdir(tmp_path / "a" / "checkpoints" / "population")) == ["4", "8"]
  resumed, straight = run("a", -1), run("b", -1)
  assert resumed.returncode == 0 and straight.returncode == 0, resumed.stderr + straight.stderr
  assert "resumed from step 8" in resumed.stderr
  np.testing.assert_array_equal(np.load(tmp_path / "a" / "final_w.npy"), np.load(tmp_path / "b" / "final_w.npy"))
  # no duplicate (run, step) records after the resume, and the same steps as the uninterrupted run
  def keys(wd):
    recs = [json.loads(line) for line in open(tmp_path / wd / "metrics.jsonl")]
    return sorted((r["run"], r["step"]) for r in recs)
  assert keys("a") == keys("b") and len(set(keys("a"))) == len(keys("a"))
  # a re-run of the finished population trains nothing and changes no record
  before = (tmp_path / "b" / "metrics.jsonl").read_text()
  again = run("b", -1)
  assert again.returncode == 0 and "resumed from step 16" in again.stderr
  assert (tmp_path / "b" / "metrics.jsonl").read_text() == before


def test_fit_resume_logs_each_step_once(tmp_path, capfd):
  """``fit`` after a kill between checkpoints: says where it resumed and logs no step twice."""
  import shutil
  init, loss_fn, batches = _problem()
  state = train.TrainState.create(params=init(0), tx=optax.adam(0.05), rng=0)
  kw = dict(num_steps=6, workdir=str(tmp_path), checkpoint_every=4, log_every=1, progress=False)
  train.fit(loss_fn, state, batches(0), **kw)
  first = (tmp_path / "metrics.jsonl").read_text()
  shutil.rmtree(tmp_path / "checkpoints" / "6")           # as if killed after logging step 6, before saving it
  capfd.readouterr()
  train.fit(loss_fn, state, batches(0), **kw)
  assert "resumed from step 4" in capfd.readouterr().err
  steps = [json.loads(line)["step"] for line in open(tmp_path / "metrics.jsonl")]
  assert steps == sorted(set(steps)) and steps[-1] == 6
  strip = lambda text: [{k: v for k, v in json.loads(x).items() if k != "examples_per_s"} for x in text.splitlines()]
  assert strip((tmp_path / "metrics.jsonl").read_text()) == strip(first)


def test_rerun_without_checkpoints_replaces_records(tmp_path):
  """A re-run in a workdir whose checkpoints are gone (a new machine) re-trains from the start: each run's
  old records are replaced, not repeated; other runs' records stay."""
  import shutil
  init, loss_fn, batches = _problem()
  tx = optax.adam(0.05)
  kw = dict(num_steps=6, workdir=str(tmp_path), checkpoint_every=3, log_every=1, progress=False)
  train.fit(loss_fn, train.TrainState.create(params=init(0), tx=tx, rng=0), batches(0), run_name="a", **kw)
  states = pop.stack_states([train.TrainState.create(params=init(s), tx=tx, rng=s) for s in (1, 2)])
  fit_pop = lambda: pop.fit_population(loss_fn, states, [batches(1), batches(2)], run_ids=["p1", "p2"],
                                       name="pop", **kw)
  fit_pop()
  first = (tmp_path / "metrics.jsonl").read_text()
  shutil.rmtree(tmp_path / "checkpoints")
  train.fit(loss_fn, train.TrainState.create(params=init(0), tx=tx, rng=0), batches(0), run_name="a", **kw)
  fit_pop()
  keys = lambda text: sorted((json.loads(x)["run"], json.loads(x)["step"]) for x in text.splitlines())
  again = (tmp_path / "metrics.jsonl").read_text()
  assert keys(again) == keys(first) and len(set(keys(again))) == len(keys(again))


def test_rerun_of_finished_smoke_changes_no_record_or_plot(tmp_path):
  """Re-running a finished config resumes at its last step: metrics.jsonl and the loss plot stay the same."""
  from tests.helpers import run_experiment
  first = run_experiment("demo.py", "smoke", tmp_path)
  records, plot = (tmp_path / "metrics.jsonl").read_text(), (tmp_path / "loss.png").read_bytes()
  again = run_experiment("demo.py", "smoke", tmp_path)
  assert (tmp_path / "metrics.jsonl").read_text() == records
  assert (tmp_path / "loss.png").read_bytes() == plot
  assert again["metrics"]["test_acc"] == first["metrics"]["test_acc"]
  rate = again["metrics"]["train_examples_per_s"]                   # no step was trained by the re-run
  assert rate is None or np.isnan(float(rate))


def test_population_on_fsdp_mesh_equals_replicated():
  """A population on a (data=2, fsdp=4) mesh: stacked params/opt state sharded, same result as replicated."""
  init, loss_fn, batches = _problem()
  tx = optax.adam(0.05)
  outs = []
  for mesh in (train.make_mesh(), train.make_mesh(fsdp=4)):
    states = [train.TrainState.create(params=init(s), tx=tx, rng=s) for s in range(4)]
    out = pop.fit_population(loss_fn, states, [batches(s) for s in range(4)], num_steps=6, progress=False,
                             mesh=mesh, steps_per_call=3)
    outs.append(out)
  w = outs[1].state.params["w"]
  assert w.sharding.shard_shape(w.shape) != w.shape                   # actually sharded
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6),
               jax.device_get(outs[0].state.params), jax.device_get(outs[1].state.params))


def _two_player_step(state, batch):
  """A custom step that is not one gradient step: x moves, then y moves against the updated x (like a GAN)."""
  x, y = state.params["x"], state.params["y"]
  batch = batch.mean()
  gx = y * batch - x                      # d/dx of -(x·y·b - x²/2): x descends
  x = x + 0.1 * gx
  gy = x * batch - 0.5 * y                # y ascends with the updated x (alternating, like a GAN)
  y = y + 0.1 * gy
  loss = -(x * y).mean() * batch
  params = {"x": x, "y": y}
  return state.replace(step=state.step + 1, params=params), {"loss": loss, "finite": jnp.isfinite(loss)}


def test_custom_train_step_fit_and_population_agree(tmp_path):
  """A custom train_step (alternating updates) runs through fit and fit_population with the same result."""
  params = lambda s: {"x": jnp.full((3,), 0.1 * (s + 1)), "y": jnp.full((3,), 0.2)}
  batches = lambda t: jnp.full((8,), 1.0 + 0.01 * t)
  tx = optax.identity()
  mk = lambda s: train.TrainState.create(params=params(s), tx=tx, rng=s)
  singles = [train.fit(None, mk(s), batches, num_steps=7, train_step=_two_player_step, progress=False,
                       log_every=7)[0] for s in range(2)]
  popn = train.fit_population(None, [mk(s) for s in range(2)], [batches] * 2, num_steps=7, progress=False,
                              train_step=_two_player_step, log_every=7, workdir=str(tmp_path))
  for s in range(2):
    np.testing.assert_allclose(popn.run(s).params["x"], singles[s].params["x"], rtol=1e-6)
    np.testing.assert_allclose(popn.run(s).params["y"], singles[s].params["y"], rtol=1e-6)
  with pytest.raises(ValueError, match="custom train_step"):
    train.fit(None, mk(0), batches, num_steps=1, progress=False)
