"""The Amos optimizer (Tian & Parikh, arXiv:2210.11693) as optax transforms.

This is the algorithm of the official implementation (google-research/jestimator, ``jestimator/amos.py``,
PyPI 0.3.3), re-written to work on *any* pytree (paths come from ``jax.tree_util``, not only flattened
Flax dicts) and to check its inputs. Per parameter tensor ``theta`` with path ``n`` and shape ``s``:

  xi_t  = learning_rate(t)                     (1-based step t = 1, 2, ...)
  eta   = eta_fn(n, s)                         ("expected scale of the trained entries")
  S     = shape_fn(n, s) or s                  (slot shape: () or same rank with axes equal to s's or 1)
  g2    = mean(g^2 over the axes where S < s, keepdims)      (all axes when S == ())
  v_t   = beta v_{t-1} + (1 - beta) g2,        r_t = (1 - beta^t) / max(v_t, epsilon)    (= 1 / v_hat)
  gamma = xi^2 r_t g2 / sqrt(1 + c_coef sqrt(xi) b_{t-1})
  d_t   = 1 / (1 + d_coef sqrt(xi eta) b_{t-1})
  delta = -d_t [ xi eta sqrt(r_t) g + (gamma / 2 + extra_l2) theta_{t-1} ]
  b_t   = b_{t-1} + gamma (1 + b_{t-1})       (so 1 + b_t = prod_i (1 + gamma_i))

The transform returns the *signed* ``delta``: apply it with ``optax.apply_updates``; do not chain
``optax.scale(-lr)`` after it. The weight-decay term needs ``params`` in ``update``.

Hyperparameter guidance (from the official docstrings):
  * ``learning_rate`` xi ~ 1/sqrt(N), N the number of independent batches in the training data;
  * ``1 - beta`` of the same order of magnitude as xi;
  * ``clip_value`` (element-wise) of the magnitude of the loss; sqrt(#labels) for a *summed* cross-entropy;
  * ``eta_fn`` gives the expected scale of the entries of each trained variable (see ``research.optim.rules``).

Slots ``v`` and ``b`` are kept in at least float32 (float64 for float64 parameters) even for bfloat16 /
float16 parameters, because ``epsilon = 2^-125`` underflows in half precision; the update is computed in
that precision and cast to the gradient's dtype. Integer parameters or gradients raise ``TypeError`` (at
``init`` / trace time): cast to their dtype, Amos' update of an int32 leaf would be all zeros.
"""
from __future__ import annotations

import numbers
from typing import Any, Callable, NamedTuple, Optional, Tuple, Union

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

Shape = Tuple[int, ...]
ScalarOrSchedule = Union[float, optax.Schedule]
ParamsFn = Callable[[Tuple[str, ...], Shape], Any]

__all__ = ["ScaleByAmosState", "scale_by_amos", "amos", "path_names", "slot_shape", "DEFAULT_EPSILON"]

DEFAULT_EPSILON = 1. / (1 << 125)


class ScaleByAmosState(NamedTuple):
  """State of :func:`scale_by_amos`: step count and the slot pytrees ``v`` (2nd moment) and ``b``."""
  count: jax.Array  # scalar of the default int dtype: number of updates done so far.
  v: optax.Updates
  b: optax.Updates


def _key_name(k) -> str:
  if isinstance(k, jax.tree_util.DictKey):
    return str(k.key)
  if isinstance(k, jax.tree_util.GetAttrKey):
    return str(k.name)
  if isinstance(k, jax.tree_util.SequenceKey):
    return str(k.idx)
  if isinstance(k, jax.tree_util.FlattenedIndexKey):
    return str(k.key)
  return str(k)


def path_names(path) -> Tuple[str, ...]:
  """A ``jax.tree_util`` key path as a tuple of strings (dict keys, attribute names, list indices)."""
  return tuple(_key_name(k) for k in path)


def _is_concrete(x) -> bool:
  return not isinstance(x, jax.core.Tracer)


def _check_positive_scalar(value, what: str, where: str = "") -> None:
  if value is None:
    raise ValueError(f"{what} must be given (got None){where}.")
  if isinstance(value, numbers.Number) or (hasattr(value, "shape") and _is_concrete(value)):
    arr = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
      raise ValueError(f"{what} must be a finite positive number, got {value!r}{where}.")


def slot_shape(name: Tuple[str, ...], shape: Shape, shape_fn: Optional[ParamsFn]) -> Shape:
  """The slot shape for one parameter, validated: ``()`` or same rank with each axis equal or 1."""
  if shape_fn is None:
    return tuple(shape)
  s = shape_fn(name, tuple(shape))
  try:
    s = tuple(int(d) for d in s)
  except TypeError as e:
    raise ValueError(f"shape_fn returned {s!r} for parameter {'/'.join(name)!r} of shape {tuple(shape)}; "
                     "it must return a tuple of ints") from e
  if s == ():
    return s
  if len(s) != len(shape) or any(d not in (1, k) for d, k in zip(s, shape)):
    raise ValueError(
        f"Slot shape {s} for parameter {'/'.join(name)!r} of shape {tuple(shape)} does not broadcast to it: "
        "it must be () (one scalar per tensor) or have the same rank with every axis equal to the "
        "parameter's or to 1, e.g. (1, shape[-1]) for a kernel.")
  return s


def _check_floating(x, name: Tuple[str, ...], what: str) -> None:
  """TypeError unless ``x`` has a floating dtype (an int32 leaf would get all-zero updates after the cast)."""
  try:
    chex.assert_type(x, float)
  except AssertionError:
    raise TypeError(f"Amos needs floating-point {what}; {'/'.join(name) or 'the leaf'!r} has dtype "
                    f"{jnp.result_type(x)}. Cast it (jax.tree.map(lambda x: x.astype(jnp.float32), params)) or keep "
                    "it out of the optimizer (optax.masked / optax.set_to_zero).") from None


def _slot_dtype(dtype) -> jnp.dtype:
  return jnp.promote_types(dtype, jnp.float32)


def scale_by_amos(
    learning_rate: ScalarOrSchedule,
    eta_fn: ParamsFn,
    shape_fn: Optional[ParamsFn] = None,
    beta: float = 0.999,
    extra_l2: float = 0.,
    d_coef: float = 0.25,
    c_coef: float = 0.25,
    epsilon: float = DEFAULT_EPSILON,
) -> optax.GradientTransformation:
  """Rescales gradients by the Amos algorithm (see the module docstring); returns signed updates.

  Args:
    learning_rate: xi, a positive float or a schedule ``t -> xi_t`` called with the *1-based* step count.
    eta_fn: ``(path: tuple[str, ...], shape) -> eta > 0``, the expected scale of the parameter's entries.
    shape_fn: ``(path, shape) -> slot shape``; ``None`` keeps full-size slots.
    beta: decay of the second-moment EMA, in [0, 1).
    extra_l2: additional (experimental) L2 decay, >= 0.
    d_coef, c_coef: coefficients of the decay factors d_t and c_t, >= 0.
    epsilon: floor of v (the smallest positive float32 normal by default).
  """
  return _scale_by_amos(learning_rate, eta_fn, shape_fn, beta, extra_l2, d_coef, c_coef, epsilon,
                        clip_value=None)


def _clip_and_square(grad, clip_value, cdt, slot):
  """``(clip(grad), clip(grad)^2, dtype of clip(grad))``, the first two cast to ``cdt``.

  ``clip`` is exactly ``optax.clip``'s ``jnp.clip(grad, -c, c)`` (``clip_value=None``: no clipping). The
  square feeds the slot reduction and is written as ``min(g^2, b^2)``, ``b`` the value ``clip`` saturates
  to: rounding (of the cast and of the square) is monotone, so ``min(fl(g^2), fl(b^2)) == fl(clip(g)^2)``
  bit for bit (NaN stays NaN). This is only about memory traffic: XLA:CPU's reduction kernels do not fuse a
  clamp producer, so ``mean(square(clip(g)))`` first wrote a full-size clipped copy of every gradient (418 MiB
  of temporaries per BERT-base step, also in the official code), while a ``minimum`` with a scalar is fused
  and the reduction reads ``grad`` directly. ``b`` passes through an optimization barrier together with the
  leaf's own ``slot`` so that XLA does not share one materialised full-size ``broadcast(b^2)`` between all
  same-shaped leaves. The element-wise update re-clips ``grad`` inside its own (single) fused loop.
  """
  if clip_value is None:
    g = grad.astype(cdt)
    return g, jnp.square(g), grad.dtype
  clipped = jnp.clip(grad, -clip_value, clip_value)
  bound = jnp.clip(jnp.array(jnp.inf, grad.dtype), -clip_value, clip_value).astype(cdt)
  bound, _ = jax.lax.optimization_barrier((bound, slot))
  return clipped.astype(cdt), jnp.square(jnp.minimum(jnp.abs(grad.astype(cdt)), bound)), clipped.dtype


def _scale_by_amos(learning_rate, eta_fn, shape_fn, beta, extra_l2, d_coef, c_coef, epsilon, clip_value):
  """:func:`scale_by_amos`, optionally on the element-wise clipped gradient (``clip_value``: see
  :func:`_clip_and_square`); same maths as ``optax.chain(optax.clip(clip_value), scale_by_amos(...))``."""
  if not callable(learning_rate):
    _check_positive_scalar(learning_rate, "Amos learning_rate")
  if not callable(eta_fn):
    raise TypeError(f"eta_fn must be a callable (path, shape) -> eta, got {type(eta_fn).__name__}; "
                    "build one with research.optim.rules.params_fn(...)")
  if shape_fn is not None and not callable(shape_fn):
    raise TypeError(f"shape_fn must be None or a callable (path, shape) -> slot shape, got {shape_fn!r}")
  if isinstance(beta, numbers.Number) and not 0. <= beta < 1.:
    raise ValueError(f"Amos beta must be in [0, 1), got {beta}")
  for nm, val in (("extra_l2", extra_l2), ("d_coef", d_coef), ("c_coef", c_coef)):
    if isinstance(val, numbers.Number) and val < 0:
      raise ValueError(f"Amos {nm} must be >= 0, got {val}")
  if isinstance(epsilon, numbers.Number) and not epsilon > 0:
    raise ValueError(f"Amos epsilon must be > 0, got {epsilon}")

  def init_fn(params):
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    vs = []
    for path, theta in leaves:
      name = path_names(path)
      _check_floating(theta, name, "parameters")
      s = slot_shape(name, jnp.shape(theta), shape_fn)
      vs.append(jnp.zeros(s, dtype=_slot_dtype(jnp.result_type(theta))))
    v = jax.tree_util.tree_unflatten(treedef, vs)
    b = jax.tree_util.tree_unflatten(treedef, [jnp.zeros_like(x) for x in vs])
    # Default int dtype like the official code (int64 under x64), so schedules see the same count dtype.
    return ScaleByAmosState(count=jnp.array(0), v=v, b=b)

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("Amos needs the current parameters for its weight-decay term: call "
                       "tx.update(grads, state, params).")
    count = optax.safe_int32_increment(state.count)
    if callable(learning_rate):
      xi = learning_rate(count)
    else:
      xi = learning_rate
      _check_positive_scalar(xi, "Amos learning_rate")
    bias_correction = 1. - beta**count
    xi2 = jnp.square(xi)
    c_coef_sqrt_xi = c_coef * jnp.sqrt(xi)

    p_leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    g_leaves = treedef.flatten_up_to(updates)
    v_leaves = treedef.flatten_up_to(state.v)
    b_leaves = treedef.flatten_up_to(state.b)
    new_u, new_v, new_b = [], [], []
    for (path, theta), grad, v, b in zip(p_leaves, g_leaves, v_leaves, b_leaves):
      name = path_names(path)
      _check_floating(grad, name, "gradients")
      if v.shape and v.ndim != grad.ndim:
        raise ValueError(f"Amos state slot for {'/'.join(name)!r} has shape {v.shape}, which does not "
                         f"match the gradient of shape {grad.shape}; was the state built for other params?")
      cdt = v.dtype
      # One pass over the gradient for the reduction, one fused pass for the update (XLA fuses the rest).
      g, g_sq, out_dtype = _clip_and_square(grad, clip_value, cdt, v)
      if v.shape:
        reduced = tuple(i for i, k in enumerate(g.shape) if v.shape[i] < k)
        g2 = jnp.mean(g_sq, axis=reduced, keepdims=True)
      else:
        g2 = jnp.mean(g_sq)
      v = v * beta + g2 * (1. - beta)
      rcpl_v_hat = bias_correction / jnp.maximum(v, epsilon)

      decay_factor_c = jax.lax.rsqrt(1. + c_coef_sqrt_xi * b)
      gamma = decay_factor_c * xi2 * rcpl_v_hat * g2

      eta = eta_fn(name, tuple(theta.shape))
      _check_positive_scalar(eta, "eta (eta_fn's value)", f" for parameter {'/'.join(name)!r} of shape "
                             f"{tuple(theta.shape)}")
      init_lr = xi * eta
      decay_factor_d = jnp.reciprocal(1. + d_coef * jnp.sqrt(init_lr) * b)
      l2_regularization = (-0.5 * gamma - extra_l2) * theta.astype(cdt)
      u = decay_factor_d * (l2_regularization - init_lr * jnp.sqrt(rcpl_v_hat) * g)
      new_u.append(u.astype(out_dtype))
      new_v.append(v.astype(cdt))
      new_b.append((b + gamma * (1. + b)).astype(cdt))
    unflat = lambda xs: jax.tree_util.tree_unflatten(treedef, xs)
    return unflat(new_u), ScaleByAmosState(count=count, v=unflat(new_v), b=unflat(new_b))

  return optax.GradientTransformation(init_fn, update_fn)


def _enabled(x) -> bool:
  """Whether an optional positive hyperparameter switches its transform on (traced values: yes)."""
  if x is None:
    return False
  if isinstance(x, jax.core.Tracer):
    return True
  return bool(np.asarray(x) > 0)


def amos(
    learning_rate: ScalarOrSchedule,
    eta_fn: ParamsFn,
    shape_fn: Optional[ParamsFn] = None,
    beta: float = 0.999,
    momentum: Optional[float] = None,
    clip_value: Optional[float] = None,
    extra_l2: float = 0.,
    d_coef: float = 0.25,
    c_coef: float = 0.25,
    epsilon: float = DEFAULT_EPSILON,
) -> optax.GradientTransformation:
  """The full Amos optimizer: element-wise clipping, :func:`scale_by_amos`, then an update EMA.

  1. ``clip_value > 0``: element-wise clipping of the gradient to [-clip_value, clip_value]
     (``optax.clip``, not global-norm clipping);
  2. :func:`scale_by_amos`;
  3. ``momentum > 0``: m_t = momentum m_{t-1} + (1 - momentum) delta_t, *not* debiased (the first
     applied update is scaled by 1 - momentum).

  With ``optax.inject_hyperparams`` pass ``static_args=("eta_fn", "shape_fn")``; ``momentum`` and
  ``clip_value`` may be injected when positive (a value of 0 switches the stage off and must then be
  static too).
  """
  if momentum is not None and isinstance(momentum, numbers.Number) and not 0. <= momentum < 1.:
    raise ValueError(f"Amos momentum must be in [0, 1) or None, got {momentum}")
  if clip_value is not None and isinstance(clip_value, numbers.Number) and clip_value < 0:
    raise ValueError(f"Amos clip_value must be >= 0 or None (0/None: no clipping), got {clip_value}")
  clip = clip_value if _enabled(clip_value) else None
  core = _scale_by_amos(learning_rate, eta_fn, shape_fn, beta, extra_l2, d_coef, c_coef, epsilon,
                        clip_value=clip)
  ema = optax.ema(momentum, debias=False) if _enabled(momentum) else None
  if clip is None and ema is None:
    return core

  # One transform whose state has exactly the layout of optax.chain(optax.clip(c), scale_by_amos(...),
  # optax.ema(momentum, debias=False)) (the official wrapper), so states, checkpoints and
  # inject_hyperparams see the same tree; the clipping is fused into the Amos step (see _clip_and_square).
  def init_fn(params):
    states = ([optax.EmptyState()] if clip is not None else []) + [core.init(params)]
    if ema is not None:
      states.append(ema.init(params))
    return tuple(states)

  def update_fn(updates, state, params=None):
    states = list(state)  # a tuple of >= 2 stage states, as built by init_fn
    i = 1 if clip is not None else 0
    updates, states[i] = core.update(updates, states[i], params)
    if ema is not None:
      updates, states[i + 1] = ema.update(updates, states[i + 1], params)
    return updates, tuple(states)

  return optax.GradientTransformation(init_fn, update_fn)
