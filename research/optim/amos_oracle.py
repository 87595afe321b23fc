"""The jestimator 0.3.3 oracle for :mod:`research.optim.amos`: loading it and comparing trajectories.

Shared by ``tests/test_amos.py`` and the ``oracle`` task of ``experiments/amos``. The official package's
``__init__`` does not import on current JAX, so its ``amos.py`` (which imports only flax, jax and optax) is
loaded by file path. The comparison runs both optimizers for ``steps`` steps on a noisy non-convex toy loss
over a small Flax-like pytree (dense/conv kernels, embedding, bias, norm scale) in float64.
"""
from __future__ import annotations

import glob
import importlib.util
import os
from typing import Any, Dict, Iterable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from research.optim import amos as amos_lib

__all__ = ["load_oracle", "toy_params", "toy_eta", "toy_factored", "ORACLE_CASES", "toy_noise", "trajectory",
           "oracle_diffs"]


def load_oracle():
  """jestimator 0.3.3's ``amos.py`` as a module, or ``None`` when it is not installed."""
  spec = importlib.util.find_spec("jestimator")
  paths = []
  if spec is not None and spec.submodule_search_locations:
    paths.append(os.path.join(list(spec.submodule_search_locations)[0], "amos.py"))
  paths += glob.glob("/tmp/**/jestimator/amos.py", recursive=True)
  for p in paths:
    if os.path.exists(p):
      s = importlib.util.spec_from_file_location("jestimator_amos_oracle", p)
      mod = importlib.util.module_from_spec(s)
      s.loader.exec_module(mod)
      return mod
  return None


def toy_params(dtype=jnp.float32) -> Dict[str, Any]:
  k = jax.random.split(jax.random.key(1), 4)
  return {"Dense_0": {"kernel": 0.3 * jax.random.normal(k[0], (4, 3), dtype), "bias": jnp.zeros(3, dtype)},
          "Embed_0": {"embedding": jax.random.normal(k[1], (5, 4), dtype)},
          "Conv_0": {"kernel": 0.2 * jax.random.normal(k[2], (2, 2, 3, 4), dtype)},
          "LayerNorm_0": {"scale": jnp.ones(3, dtype)}}


def toy_eta(name, shape) -> float:
  """bias 0.5, norm scale 1.0, kernels/embeddings sqrt(1 / fan-in)."""
  return {"bias": 0.5, "scale": 1.0}.get(name[-1], float(np.sqrt(1.0 / np.prod(shape[:-1]))))


def toy_factored(name, shape):
  """Kernels (1, ..., d_out), embeddings (V, 1), anything else one scalar."""
  if name[-1] == "kernel":
    return (1,) * (len(shape) - 1) + (shape[-1],)
  return (shape[0], 1) if name[-1] == "embedding" else ()


ORACLE_CASES = {
    "scalar_const": dict(learning_rate=0.08, shape_fn=lambda n, s: ()),
    "factored_warmup_mom_clip_l2_dc": dict(learning_rate=optax.linear_schedule(0.0, 0.1, 30), shape_fn=toy_factored,
                                           beta=0.9, momentum=0.9, clip_value=0.7, extra_l2=1e-3, d_coef=0.5,
                                           c_coef=0.1),
    "full_cosine_mom": dict(learning_rate=optax.cosine_decay_schedule(0.12, 250), shape_fn=None, beta=0.98,
                            momentum=0.5, d_coef=0.1, c_coef=0.4),
}


def _toy_loss(p):
  return sum(jnp.sum(jnp.sin(3 * x) * x + 0.5 * x * x) for x in jax.tree_util.tree_leaves(p))


def toy_noise(params, steps: int = 200):
  """Gradient noise per step (leading axis), deterministic."""
  rng = np.random.default_rng(0)
  return jax.tree_util.tree_map(lambda a: rng.normal(size=(steps,) + a.shape).astype(a.dtype), params)


def trajectory(tx: optax.GradientTransformation, params, noise):
  """``tx`` on the noisy toy loss: ``(parameter trajectory [steps, ...], final optimizer state)``."""
  def step(carry, eps):
    p, s = carry
    g = jax.tree_util.tree_map(jnp.add, jax.grad(_toy_loss)(p), eps)
    u, s = tx.update(g, s, p)
    return (optax.apply_updates(p, u), s), p

  (_, state), traj = jax.lax.scan(step, (params, tx.init(params)), noise)
  return traj, state


def oracle_diffs(cases: Iterable[str], steps: int = 200, oracle=None) -> Optional[Dict[str, Dict[str, float]]]:
  """Per case, in float64: ``{"max_abs_diff": max |ours - jestimator| over the trajectory and final state,
  "moved": max |theta_T - theta_0|}``; ``None`` when jestimator is not installed."""
  oracle = oracle if oracle is not None else load_oracle()
  if oracle is None:
    return None
  out = {}
  with jax.enable_x64(True):
    params = toy_params(jnp.float64)
    noise = toy_noise(params, steps)
    for name in cases:
      kw = dict(ORACLE_CASES[name], eta_fn=toy_eta)
      ours, ref = jax.jit(lambda p, n: (trajectory(amos_lib.amos(**kw), p, n),
                                        trajectory(oracle.amos(**kw), p, n)))(params, noise)
      diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in
                 zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(ref)))
      moved = max(float(jnp.max(jnp.abs(a[-1] - b))) for a, b in
                  zip(jax.tree_util.tree_leaves(ours[0]), jax.tree_util.tree_leaves(params)))
      dtype = jax.tree_util.tree_leaves(ours)[0].dtype
      out[name] = {"max_abs_diff": diff, "moved": moved, "float64": float(dtype == jnp.float64)}
  return out
