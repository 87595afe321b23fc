"""Packaging (issue 21): `pip install .` into a fresh venv without torch installs only the library."""
import glob
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_fresh_venv_install_without_torch(tmp_path):
  """`pip install .` (PyPI reachable; several minutes), then a library call and the demo from the checkout."""
  venv = tmp_path / "venv"
  subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
  py = str(venv / "bin" / "python")
  subprocess.run([py, "-m", "pip", "install", "-q", ROOT], check=True, cwd=tmp_path)
  site = glob.glob(str(venv / "lib" / "python*" / "site-packages"))[0]
  top = set(os.listdir(site))
  assert "research" in top and "configs" not in top and "experiments" not in top, sorted(top)
  assert not os.path.exists(os.path.join(site, "torch"))
  env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu", MPLBACKEND="Agg", PYTHONPATH="")
  code = ("import jax.numpy as jnp, research; "
          "v = research.losses.cosent_loss(jnp.array([0.1, 0.9]), jnp.array([0, 1])); "
          "print(research.__file__, float(v))")
  out = subprocess.run([py, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
  assert out.returncode == 0, out.stderr
  assert "site-packages" in out.stdout and abs(float(out.stdout.split()[-1]) - 0.37110) < 1e-3
  # From the checkout: the experiments run against the installed library, with the short config name.
  out = subprocess.run([py, "-m", "experiments.run", "--config=demo:smoke", f"--workdir={tmp_path / 'w'}"],
                       cwd=ROOT, env=env, capture_output=True, text=True)
  assert out.returncode == 0, out.stderr[-3000:]
  assert (tmp_path / "w" / "results.json").exists() and list((tmp_path / "w" / "tensorboard").iterdir())
  # The console script resolves configs the same way from a sub-directory of the checkout.
  out = subprocess.run([str(venv / "bin" / "research-run"), "--list"], cwd=os.path.join(ROOT, "tests"), env=env,
                       capture_output=True, text=True)
  assert out.returncode == 0 and "  demo:smoke " in out.stdout, out.stderr
