"""Several JAX processes on 127.0.0.1 (jax.distributed + gloo) as one 8-device mesh: the same training as one
process with 8 devices, exact resume after killing both processes, bounded failure without a coordinator."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from experiments import launch
from research import data
from research.train import distributed
from tests import helpers, mp_worker

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 20
WORKER = [sys.executable, os.path.join(ROOT, "tests", "mp_worker.py")]


def _records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def _losses(workdir):
  return {r["step"]: r["loss"] for r in _records(workdir) if "loss" in r}


def _final(workdir):
  with np.load(os.path.join(workdir, "final.npz")) as z:
    return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
  """One uninterrupted 2 processes x 4 devices run of the worker (shared by the tests below)."""
  wd = str(tmp_path_factory.mktemp("straight"))
  assert launch.launch(WORKER + [wd, str(STEPS)], processes=2, devices_per_process=4, quiet_others=True,
                       wall_limit_s=300) == 0
  return wd


def test_two_processes_match_one_process_with_eight_devices(two_process_run, tmp_path):
  import jax
  assert jax.device_count() == 8 and jax.process_count() == 1
  state, _ = mp_worker.train_problem(str(tmp_path), STEPS)
  one, two = _losses(str(tmp_path)), _losses(two_process_run)
  assert sorted(one) == sorted(two) == list(range(1, STEPS + 1))        # process 0 logged each step once
  np.testing.assert_allclose([two[s] for s in one], [one[s] for s in one], rtol=1e-5, atol=1e-7)
  assert two[STEPS] < 0.5 * two[1]                                       # it did train
  final1 = {k: np.asarray(v) for k, v in jax.device_get(state.params).items()}
  for k, v in _final(two_process_run).items():
    np.testing.assert_allclose(v, final1[k], rtol=1e-5, atol=1e-6)


def test_killing_both_processes_and_resuming_is_bit_identical(two_process_run, tmp_path):
  wd = str(tmp_path)
  killed = launch.launch(WORKER + [wd, str(STEPS), "13"], processes=2, devices_per_process=4, quiet_others=True,
                         wall_limit_s=300)
  assert killed == 128 + 9, f"the worker should have been SIGKILLed at step 13, exit status {killed}"
  assert sorted(int(d) for d in os.listdir(os.path.join(wd, "checkpoints")) if d.isdigit())[-1] == 10
  assert not os.path.exists(os.path.join(wd, "final.npz"))
  assert launch.launch(WORKER + [wd, str(STEPS)], processes=2, devices_per_process=4, quiet_others=True,
                       wall_limit_s=300) == 0
  straight, resumed = _final(two_process_run), _final(wd)
  for k in straight:
    np.testing.assert_array_equal(resumed[k], straight[k])
  a, b = _losses(two_process_run), _losses(wd)
  assert sorted(b) == list(range(1, STEPS + 1))                          # steps 11..13 logged once, not twice
  assert [b[s] for s in sorted(b)] == [a[s] for s in sorted(a)]          # the whole curve, bit for bit


def test_unreachable_coordinator_fails_fast_with_a_clear_message():
  port = launch.free_port()                                              # nobody listens there
  env = launch.process_env(1, 2, port, 4, timeout_s=2)
  assert env["JAX_COORDINATOR_ADDRESS"] == env["JAX_COORDINATOR_BIND_ADDRESS"] == f"127.0.0.1:{port}"
  t0 = time.monotonic()
  out = subprocess.run([sys.executable, "-c", "from research import train; train.maybe_initialize_distributed()"],
                       env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert out.returncode != 0
  assert "CoordinatorUnreachableError" in out.stderr and f"No JAX coordinator answered at 127.0.0.1:{port}" in out.stderr
  assert time.monotonic() - t0 < 120


def test_spec_from_env_and_bad_specs(monkeypatch):
  for var in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "SLURM_NTASKS",
              "OMPI_COMM_WORLD_SIZE"):
    monkeypatch.delenv(var, raising=False)
  assert distributed.spec_from_env() is None
  monkeypatch.setenv("SLURM_NTASKS", "4")
  assert distributed.spec_from_env() == distributed.DistributedSpec(None, None, None, distributed.DEFAULT_TIMEOUT_S)
  monkeypatch.delenv("SLURM_NTASKS")                     # outside SLURM / Open MPI the address needs N and i
  monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "127.0.0.1:1234")
  monkeypatch.setenv("JAX_NUM_PROCESSES", "2")
  monkeypatch.setenv("JAX_PROCESS_ID", "x")
  with pytest.raises(ValueError, match="JAX_PROCESS_ID='x' is not an integer"):
    distributed.spec_from_env()
  with pytest.raises(ValueError, match="needs JAX_NUM_PROCESSES and JAX_PROCESS_ID"):
    distributed.initialize(distributed.DistributedSpec("127.0.0.1:1234", None, 0))
  with pytest.raises(ValueError, match=r"process_id must be in 0..1"):
    distributed.initialize(distributed.DistributedSpec("127.0.0.1:1234", 2, 2))
  with pytest.raises(ValueError, match="HOST:PORT"):
    distributed.wait_for_coordinator("127.0.0.1", 0.1)


def test_process_rows_of_batch_fn_make_up_the_global_batch():
  arrays = {"i": np.arange(50), "x": np.arange(100).reshape(50, 2)}
  whole = data.batch_fn(arrays, 12, seed=3)
  parts = [data.batch_fn(arrays, 12, seed=3, process_index=p, process_count=3) for p in range(3)]
  for step in (0, 4, 9):                                                 # 9: second epoch
    for k in arrays:
      np.testing.assert_array_equal(np.concatenate([f(step)[k] for f in parts]), whole(step)[k])
  assert whole.process_local and all(f.process_local for f in parts)
  assert distributed.process_slice(12, 1, 3) == slice(4, 8)
  with pytest.raises(ValueError, match="divide by the number of processes"):
    distributed.process_slice(10, 0, 3)
  with pytest.raises(ValueError, match="do not split over 5 processes"):
    data.batch_fn(arrays, 12, seed=3, process_index=0, process_count=5)(0)


def test_scaling_smoke_end_to_end(tmp_path):
  """configs/scaling.py:smoke through the runner: a small config launched as 1 x 8 and as 2 x 4 (experiments.launch
  + experiments.run) gives the same loss curve; the BERT-base FSDP-8 bytes are ~1/8 of the replicated ones."""
  rec = helpers.run_experiment("scaling.py", "smoke", tmp_path)
  m = rec["metrics"]
  assert m["loss_curve_max_rel_diff_2x4_vs_1x8"] < 1e-5
  for opt in ("adamw", "amos"):
    assert 0.125 <= m[f"{opt}_fsdp_bytes_ratio"] <= 0.13 and 0.125 <= m[f"{opt}_params_bytes_ratio"] <= 0.13
  assert m["step_time_1x8_s"] > 0 and m["step_time_2x4_s"] > 0
