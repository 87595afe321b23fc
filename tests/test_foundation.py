"""Foundation: runner, sharded training loop (1 vs 8 devices), kill-and-resume, NaN guard, data layer."""
import functools
import hashlib
import http.server
import os
import subprocess
import sys
import textwrap
import threading

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from research import data, train
from tests.helpers import run_experiment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = data.shared_data_dir()
needs_shared = pytest.mark.skipif(SHARED is None, reason="../shared/data is not present")


# ----------------------------------------------------------------------------------------------- runner
def test_runner_smoke_with_override(tmp_path):
  rec = run_experiment("demo.py", "smoke", tmp_path, {"num_steps": "24", "hidden": 32})
  assert rec["config"]["num_steps"] == 24 and rec["config"]["hidden"] == 32
  assert rec["metrics"]["test_acc"] > 0.5
  assert rec["machine"]["device_count"] == 8
  for f in ("results.json", "results.md", "metrics.jsonl", "loss.png"):
    assert (tmp_path / f).exists(), f
  assert os.listdir(tmp_path / "checkpoints")
  md = (tmp_path / "results.md").read_text()
  assert "| quantity | published | measured |" in md


def test_runner_rejects_unknown_key_and_lists():
  from experiments import run as runner
  with pytest.raises(KeyError, match="Valid keys:.*num_steps"):
    runner.load_config("configs/demo.py:smoke", {"num_stepz": "3"})
  env = dict(os.environ, XLA_FLAGS="")
  out = subprocess.run([sys.executable, "-m", "experiments.run", "--config=configs/demo.py:smoke",
                        "--config.learning_rat=0.1"], cwd=ROOT, capture_output=True, text=True, env=env)
  assert out.returncode != 0 and "learning_rate" in out.stderr and "Unknown config key" in out.stderr
  out = subprocess.run([sys.executable, "-m", "experiments.run", "--list"], cwd=ROOT, capture_output=True,
                       text=True, env=env)
  assert out.returncode == 0 and "configs/demo.py" in out.stdout and ":smoke" in out.stdout


# ------------------------------------------------------------------------------------------ training loop
def _problem(seed=0, n=256, d=8):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, d)).astype(np.float32)
  w = rng.normal(size=(d, 3)).astype(np.float32)
  y = (x @ w).argmax(-1)
  params = {"w": jnp.zeros((d, 3)), "b": jnp.zeros((3,))}

  def loss_fn(p, batch, rng):
    logits = batch["x"] @ p["w"] + p["b"]
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()
    return loss, {"acc": jnp.mean(logits.argmax(-1) == batch["y"])}

  return params, loss_fn, data.batch_fn({"x": x, "y": y}, 32, seed)


def test_one_vs_eight_devices_same_curve():
  params, loss_fn, batches = _problem()
  curves = []
  for devs in (jax.devices()[:1], jax.devices()):
    state = train.TrainState.create(params=params, tx=optax.sgd(0.5, momentum=0.9), rng=0)
    state, hist = train.fit(loss_fn, state, batches, num_steps=30, log_every=1, progress=False,
                            mesh=train.make_mesh(devs))
    curves.append(np.array([h["loss"] for h in hist if "loss" in h]))
  assert len(jax.devices()) == 8
  np.testing.assert_allclose(curves[0], curves[1], rtol=1e-5, atol=1e-6)
  assert curves[0][-1] < curves[0][0]


def test_set_cpu_devices_before_and_after_first_op():
  """``cpu_devices`` (runner / research.train.set_cpu_devices): applied before JAX's first operation, it
  exposes the CPU as that many devices; afterwards it warns and keeps the current devices."""
  assert len(jax.devices()) == 8                            # initialises the backends (conftest: 8 devices)
  with pytest.raises(ValueError, match="cpu_devices"):
    train.set_cpu_devices(-2)
  assert train.set_cpu_devices(0) is False                  # JAX's default: nothing to do
  with pytest.warns(UserWarning, match="not applied"):
    assert train.set_cpu_devices(3) is False                # the backends exist already
  assert len(jax.devices()) == 8
  code = ("import jax; from research.train import set_cpu_devices; "
          "assert set_cpu_devices(3); print(len(jax.devices()))")
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  assert out.stdout.strip().splitlines()[-1] == "3"


def test_time_interleaved_round_robin_order():
  from research.benchmark import time_interleaved
  order = []
  samples = time_interleaved({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, 3)
  assert order == ["a", "b", "b", "a", "a", "b"]             # reversed every other round
  assert {k: len(v) for k, v in samples.items()} == {"a": 3, "b": 3} and min(samples["a"]) >= 0
  order.clear()
  time_interleaved({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, 2, alternate=False)
  assert order == ["a", "b", "a", "b"]
  with pytest.raises(ValueError, match="rounds"):
    time_interleaved({"a": lambda: None}, 0)


def test_gradient_accumulation_matches_full_batch():
  params, loss_fn, batches = _problem()
  finals = []
  for accum in (1, 4):
    state = train.TrainState.create(params=params, tx=optax.sgd(0.3), rng=0)
    state, _ = train.fit(loss_fn, state, batches, num_steps=5, accum_steps=accum, progress=False)
    finals.append(jax.device_get(state.params))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), *finals)


_KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {root!r})
    import numpy as np, optax
    from research import train
    from tests.test_foundation import _problem
    workdir, total, kill_at = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    params, loss_fn, batches = _problem()
    def batch_or_die(step):
      if step == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)   # no clean exit
      return batches(step)
    state = train.TrainState.create(params=params, tx=optax.adam(0.05), rng=0)
    state, _ = train.fit(loss_fn, state, batch_or_die, num_steps=total, workdir=workdir,
                         checkpoint_every=4, progress=False)
    np.save(os.path.join(workdir, "final_w.npy"), np.asarray(state.params["w"]))
""")


def test_killed_run_resumes_exactly(tmp_path):
  script = tmp_path / "train_script.py"
  script.write_text(_KILL_SCRIPT.format(root=ROOT))
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
  killed = subprocess.run([sys.executable, str(script), str(tmp_path / "a"), "20", "10"], env=env, cwd=ROOT)
  assert killed.returncode == -9                       # SIGKILL, mid-run (after the step-8 checkpoint)
  assert not (tmp_path / "a" / "final_w.npy").exists()
  assert sorted(os.listdir(tmp_path / "a" / "checkpoints")) == ["4", "8"]
  resumed = subprocess.run([sys.executable, str(script), str(tmp_path / "a"), "20", "-1"], env=env, cwd=ROOT)
  straight = subprocess.run([sys.executable, str(script), str(tmp_path / "b"), "20", "-1"], env=env, cwd=ROOT)
  assert resumed.returncode == 0 and straight.returncode == 0
  np.testing.assert_array_equal(np.load(tmp_path / "a" / "final_w.npy"), np.load(tmp_path / "b" / "final_w.npy"))


def test_nan_guard_keeps_last_good_checkpoint(tmp_path):
  params, loss_fn, batches = _problem()

  def poisoned(step):
    b = batches(step)
    if step >= 6:
      b = dict(b, x=np.full_like(b["x"], np.nan))
    return b

  state = train.TrainState.create(params=params, tx=optax.adam(0.05), rng=0)
  with pytest.raises(train.NonFiniteLossError, match="non-finite at step 7.*last good checkpoint is step 4"):
    train.fit(loss_fn, state, poisoned, num_steps=12, workdir=str(tmp_path), checkpoint_every=4,
              log_every=1, progress=False)
  ck = train.Checkpointer(str(tmp_path / "checkpoints"))
  restored = ck.restore(ck.latest_step(), state)
  ck.close()
  assert ck.latest_step() == 4
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(restored.params))


def test_batch_fn_is_deterministic_and_covers_epoch():
  arrays = {"i": np.arange(10)}
  f, g = data.batch_fn(arrays, 3, seed=1), data.batch_fn(arrays, 3, seed=1)
  assert f.steps_per_epoch == 3
  seen = np.concatenate([f(s)["i"] for s in range(3)])
  assert len(set(seen.tolist())) == 9
  np.testing.assert_array_equal(f(7)["i"], g(7)["i"])
  with pytest.raises(ValueError, match="larger than the dataset"):
    data.batch_fn(arrays, 11, 0)


# ------------------------------------------------------------------------------------------------- data
@needs_shared
def test_loaders_on_shared_data():
  x, y = data.load_fashion_mnist("train")
  assert x.shape == (60000, 28, 28) and x.dtype == np.uint8
  assert np.bincount(y).tolist() == [6000] * 10
  x, y = data.load_fashion_mnist("test")
  assert x.shape == (10000, 28, 28) and np.bincount(y).tolist() == [1000] * 10
  x, y = data.load_mnist_test()
  assert x.shape == (10000, 28, 28) and np.bincount(y)[:2].tolist() == [980, 1135]
  counts = {("ATEC", "train"): [51090, 11387], ("ATEC", "valid"): [16312, 3688],
            ("BQ", "test"): [5000, 5000], ("LCQMC", "train"): [100192, 138574],
            ("LCQMC", "valid"): [4400, 4402], ("PAWSX", "test"): [1106, 894],
            ("STS-B", "train"): [836, 807, 887, 1416, 1033, 252]}
  for (task, split), want in counts.items():
    s1, s2, lab = data.load_senteval_cn(task, split)
    assert np.bincount(lab).tolist() == want, (task, split)
    assert len(s1) == len(s2) == len(lab)
  # PAWSX train: 49,401 rows of which 272 are empty pairs (dropped by default).
  assert len(data.load_senteval_cn("PAWSX", "train", drop_empty=False)[0]) == 49401
  assert len(data.load_senteval_cn("PAWSX", "train")[0]) == 49401 - 272
  assert [len(data.load_stsb_en(s)[0]) for s in ("train", "dev", "test")] == [5749, 1500, 1379]
  assert data.load_stsb_en("test")[2].max() <= 5.0
  assert len(data.load_tinyshakespeare()) == 1115394
  sizes = {("copycat_amazon", "test"): 32, ("copycat_amazon", "dev"): 28, ("fewsum_amazon", "test"): 20,
           ("fewsum_yelp", "test"): 40}
  for (name, split), n in sizes.items():
    groups = data.load_opinion_summ(name, split)
    assert len(groups) == n and all(len(g["reviews"]) == 8 and len(g["summaries"]) == 3 for g in groups)
  X, y = data.load_sklearn("breast_cancer")
  assert X.shape == (569, 30) and np.bincount(y).tolist() == [212, 357]


def test_missing_file_error_names_file_and_checksum(tmp_path):
  with pytest.raises(data.DataError, match="tinyshakespeare/input.txt.*86c4e6aa"):
    data.load_tinyshakespeare(data_dir=str(tmp_path))
  with pytest.raises(data.DataError, match="rebuilt offline"):
    data.load_senteval_cn("ATEC", "train", data_dir=str(tmp_path))
  with pytest.raises(data.DataError, match="does not exist"):
    data.load_tinyshakespeare(data_dir=str(tmp_path / "nope"))


def test_corrupt_file_is_rejected(tmp_path):
  d = tmp_path / "tinyshakespeare"
  d.mkdir()
  (d / "input.txt").write_text("not shakespeare")
  with pytest.raises(data.DataError, match="Checksum mismatch.*86c4e6aa"):
    data.load_tinyshakespeare(data_dir=str(tmp_path))


@pytest.fixture
def local_server(tmp_path):
  served = tmp_path / "served"
  served.mkdir()
  handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
  handler.log_message = lambda *a, **k: None
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  yield served, f"http://127.0.0.1:{server.server_address[1]}"
  server.shutdown()


def test_download_into_cache_with_checksum(local_server, tmp_path, monkeypatch):
  served, url = local_server
  cache = tmp_path / "cache"
  monkeypatch.delenv("RESEARCH_DATA_DIR", raising=False)
  monkeypatch.setenv("RESEARCH_CACHE_DIR", str(cache))
  monkeypatch.setenv("RESEARCH_DATA_MIRROR", url)
  monkeypatch.setattr(data.files, "shared_data_dir", lambda: None)
  # A file whose registry checksum we control: register a small entry for the test.
  payload = b"hello corpus\n"
  entry = data.FileEntry("tiny/test.txt", hashlib.sha256(payload).hexdigest(), url="unused")
  monkeypatch.setitem(data.FILES, entry.path, entry)
  (served / "tiny").mkdir()
  (served / "tiny" / "test.txt").write_bytes(payload)
  path = data.ensure_file("tiny/test.txt")
  assert path == str(cache / "tiny" / "test.txt") and open(path, "rb").read() == payload
  # A corrupted download is rejected, and nothing is left in the cache.
  os.remove(path)
  (served / "tiny" / "test.txt").write_bytes(b"tampered\n")
  with pytest.raises(data.DataError, match="Checksum mismatch.*" + entry.sha256):
    data.ensure_file("tiny/test.txt")
  assert not os.path.exists(path) and not [p for p in os.listdir(cache / "tiny") if p.startswith(".download")]
  # An unreachable source says how to get the file by hand.
  monkeypatch.setenv("RESEARCH_DATA_MIRROR", url + "/missing")
  with pytest.raises(data.DataError, match="Could not download tiny/test.txt"):
    data.ensure_file("tiny/test.txt")


@needs_shared
def test_download_of_gzip_verified_by_content(local_server, tmp_path, monkeypatch):
  """gzip files are verified by the sha256 of their decompressed bytes (the public copy is re-gzipped)."""
  import gzip
  served, url = local_server
  monkeypatch.setenv("RESEARCH_CACHE_DIR", str(tmp_path / "cache"))
  monkeypatch.setenv("RESEARCH_DATA_MIRROR", url)
  monkeypatch.delenv("RESEARCH_DATA_DIR", raising=False)
  monkeypatch.setattr(data.files, "shared_data_dir", lambda: None)
  rel = "fashion_mnist/t10k-labels-idx1-ubyte.gz"
  raw = gzip.open(os.path.join(SHARED, rel)).read()
  (served / "fashion_mnist").mkdir()
  (served / rel).write_bytes(gzip.compress(raw, compresslevel=1))   # different bytes, same content
  path = data.ensure_file(rel)
  assert gzip.open(path).read() == raw
