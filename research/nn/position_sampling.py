"""Position samplers for length extrapolation through position robustness (kexue 9444, spec 07 §3.3-3.5).

All samplers are pure functions of a PRNG key and return explicit positions ``[..., n]`` that any PE of
:mod:`research.nn.position` accepts (integer positions for learned tables, float for functional PEs).

* :func:`sequential` -- ``0, 1, ..., n-1`` (the plain baseline).
* :func:`rpe_random` -- Ruoss et al.: ``n`` distinct integers drawn uniformly from ``{0..L-1}``, sorted.
* :func:`rpe_grid` -- Su's test grid ``p_k = k L / M`` (spacing ``L/M``, or ``L/n`` with ``spacing="per_length"``).
* :func:`equal_mean` -- Su's equal-mean random positions: a span ``s >= 0`` with ``E[s] = n`` (exponential,
  Poisson, or ``s = r M`` with ``r ~ Beta(mu kappa, (1-mu) kappa)``, ``mu = n / M``) and
  ``p_k = k s / (n - 1)`` (float positions). Test positions are then plain ``p_k = k``.
* :func:`rpe_distances` -- the reference code's per-layer variant for relative/ALiBi PEs: ``n-1`` distinct
  sorted distances from ``[1, L)``.
* :func:`sample_positions` -- one entry point driven by a :class:`PositionConfig`: mode, granularity (per
  batch / per example), sharing across layers, and the train vs test protocol.

Granularity: ``per_example=False`` draws one position set for the whole batch (reference-code default);
``per_example=True`` draws one per example. ``num_layers`` > 0 with ``per_layer=True`` adds a leading layer
axis (reference code: RoPE/relative/ALiBi resample in every layer).

Bad input raises ``ValueError``/``TypeError`` that say what is wrong: ``L`` smaller than the longest test
length, ``n > L`` for distinct draws, float positions for a learned table (:func:`check_learned_positions`).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

MODES = ("sequential", "random", "grid", "equal_mean")
DISTRIBUTIONS = ("exponential", "beta", "poisson")


# ------------------------------------------------------------------------------------------ validation

def check_support(max_len: int, max_test_len: int) -> None:
  """Requires ``L >= M`` so that every test position lies in the training support (spec 07 §4)."""
  if int(max_len) < int(max_test_len):
    raise ValueError(
        f"position range L={max_len} is smaller than the longest test length M={max_test_len}: test "
        f"positions would fall outside the positions seen in training. Use L >= M (the paper uses "
        f"L=2048 for M=500).")


def _check_n_le_L(n: int, max_len: int) -> None:
  if int(n) > int(max_len):
    raise ValueError(
        f"cannot draw n={n} distinct positions from [0, L={max_len}): n must be <= L. Increase the "
        f"position range L (max_len) or shorten the sequence.")
  if int(n) < 0:
    raise ValueError(f"sequence length n must be >= 0, got {n}.")


def check_learned_positions(positions, table_size: int | None = None) -> None:
  """Learned tables are indexed by integers: float positions (equal-mean, grids with non-integer
  spacing) are rejected, as are (concrete) positions outside ``[0, table_size)``."""
  dtype = jnp.asarray(positions).dtype if not hasattr(positions, "dtype") else positions.dtype
  if not jnp.issubdtype(dtype, jnp.integer):
    raise TypeError(
        f"a learned position table needs integer positions, got dtype {dtype}. Float positions (equal-mean "
        f"sampling, fractional grids) only work with functional PEs (sin/cos, RoPE, ALiBi); use mode "
        f"'random' or an integer grid (L divisible by M) for learned tables.")
  if table_size is not None and not isinstance(positions, jax.core.Tracer):
    p = np.asarray(positions)
    if p.size and (p.min() < 0 or p.max() >= table_size):
      raise ValueError(
          f"positions span [{p.min()}, {p.max()}] but the learned table has {table_size} rows; use a table "
          f"with L >= max position + 1 rows.")


# ------------------------------------------------------------------------------------------- samplers

def sequential(n: int, batch_shape: Sequence[int] = (), dtype=jnp.int32) -> jax.Array:
  """Plain positions ``0..n-1`` broadcast to ``batch_shape + (n,)``."""
  return jnp.broadcast_to(jnp.arange(n, dtype=dtype), tuple(batch_shape) + (n,))


def _sorted_subset(key, n: int, max_len: int) -> jax.Array:
  # The n largest of L iid uniforms are a uniformly random n-subset of {0..L-1}.
  u = jax.random.uniform(key, (max_len,))
  _, idx = jax.lax.top_k(u, n)
  return jnp.sort(idx).astype(jnp.int32)


def rpe_random(key, n: int, max_len: int, batch_shape: Sequence[int] = (), *,
               length: jax.Array | None = None) -> jax.Array:
  """Sorted uniform draw of ``n`` distinct integer positions from ``[0, L)`` (Ruoss et al.).

  ``batch_shape`` independent draws (pass ``()`` for one set shared by the batch). ``length`` (a traced int
  <= n) draws only ``length`` positions, sorted and placed first; the remaining ``n - length`` slots (padding)
  get ``L - 1`` -- a uniform ``length``-subset under one compiled shape.
  """
  _check_n_le_L(n, max_len)
  batch_shape = tuple(batch_shape)
  keys = jax.random.split(key, int(np.prod(batch_shape, dtype=np.int64))) if batch_shape else key[None]
  if length is None:
    out = jax.vmap(lambda k: _sorted_subset(k, n, max_len))(keys)
  else:
    def one(k):
      u = jax.random.uniform(k, (max_len,))
      _, idx = jax.lax.top_k(u, n)      # a uniform n-subset in random order
      keep = jnp.arange(n) < length     # its first `length` entries: a uniform length-subset
      return jnp.sort(jnp.where(keep, idx, max_len + jnp.arange(n))).clip(0, max_len - 1).astype(jnp.int32)
    out = jax.vmap(one)(keys)
  return out.reshape(batch_shape + (n,))


def rpe_grid(n: int, max_len: int, max_test_len: int | None = None, *, spacing: str = "L/M",
             batch_shape: Sequence[int] = (), integer: bool | None = None) -> jax.Array:
  """Su's evenly spaced test grid ``p_k = k * L / M`` for ``k < n``.

  ``spacing="L/M"`` (default) keeps the spacing of the longest test length M for every n (so the prefix of
  the grid is the same for all lengths); ``spacing="per_length"`` uses ``L / n`` (the article leaves this
  open). Returns int32 when every position is an integer (or ``integer=True``: floor), else float32.
  """
  if spacing not in ("L/M", "per_length"):
    raise ValueError(f"spacing must be 'L/M' or 'per_length', got {spacing!r}.")
  if spacing == "L/M":
    if max_test_len is None:
      raise ValueError("rpe_grid(spacing='L/M') needs max_test_len (M).")
    check_support(max_len, max_test_len)
    if n > max_test_len:
      raise ValueError(f"grid length n={n} exceeds the test length M={max_test_len} it was built for.")
    m = max_test_len
  else:
    _check_n_le_L(n, max_len)
    m = max(n, 1)
  step = max_len / m
  if integer is None:
    integer = float(step).is_integer()
  p = jnp.arange(n, dtype=jnp.float32) * step
  p = jnp.floor(p).astype(jnp.int32) if integer else p
  return jnp.broadcast_to(p, tuple(batch_shape) + (n,))


def sample_span(key, n: int, distribution: str = "exponential", shape: Sequence[int] = (), *,
                mean: float | None = None, max_test_len: int | None = None, kappa: float = 8.0,
                min_span: float = 0.0) -> jax.Array:
  """The random span ``s`` of equal-mean positions, with ``E[s] = mean`` (default ``n``).

  exponential: ``s ~ Exp(mean)``; poisson: ``s ~ Poisson(mean)``; beta: ``s = r M``, ``r ~ Beta(mu kappa,
  (1 - mu) kappa)``, ``mu = mean / M``. ``min_span`` floors ``s`` (0 = no floor, the article's choice).
  """
  mean = float(n if mean is None else mean)
  shape = tuple(shape)
  if distribution == "exponential":
    s = mean * jax.random.exponential(key, shape)
  elif distribution == "poisson":
    s = jax.random.poisson(key, mean, shape).astype(jnp.float32)
  elif distribution == "beta":
    if max_test_len is None:
      raise ValueError("the Beta equal-mean sampler needs max_test_len (M): lengths are in units of M.")
    mu = mean / float(max_test_len)
    if not 0.0 < mu < 1.0:
      raise ValueError(f"Beta sampler needs 0 < mean/M < 1, got mean={mean}, M={max_test_len}.")
    if kappa <= 0:
      raise ValueError(f"kappa (alpha + beta) must be > 0, got {kappa}.")
    s = float(max_test_len) * jax.random.beta(key, mu * kappa, (1 - mu) * kappa, shape)
  else:
    raise ValueError(f"unknown distribution {distribution!r}; valid: {DISTRIBUTIONS}.")
  return jnp.maximum(s, min_span) if min_span > 0 else s


def equal_mean(key, n: int, distribution: str = "exponential", batch_shape: Sequence[int] = (), *,
               mean: float | None = None, max_test_len: int | None = None, kappa: float = 8.0,
               min_span: float = 0.0, length: jax.Array | None = None) -> jax.Array:
  """Equal-mean random positions (Su): ``p_k = k s / (m - 1)``, ``s`` from :func:`sample_span` with
  ``E[s] = mean`` (default: the sequence length), so ``E[p_k] = k * mean / (m - 1)``. Float32 ``[..., n]``.

  ``length`` (traced, <= n) uses ``m = length`` for the spacing (padding slots continue the grid).
  """
  m = jnp.asarray(n if length is None else length, jnp.float32)
  if mean is None and distribution == "exponential":
    s = m * jax.random.exponential(key, tuple(batch_shape))  # Exp(1) * m: mean m, also for traced m
    s = jnp.maximum(s, min_span) if min_span > 0 else s
  else:
    s = sample_span(key, n, distribution, batch_shape, mean=n if mean is None else mean,
                    max_test_len=max_test_len, kappa=kappa, min_span=min_span)
  k = jnp.arange(n, dtype=jnp.float32)
  return k * (s[..., None] / jnp.maximum(m - 1.0, 1.0))


def rpe_distances(key, n: int, max_len: int, shape: Sequence[int] = ()) -> jax.Array:
  """Reference-code relative/ALiBi variant: ``n - 1`` distinct sorted distances ``d_1 < ... < d_{n-1}``
  from ``[1, L)``, returned with ``d_0 = 0`` prepended (int32 ``[..., n]``): offset ``+-k`` uses ``+-d_k``."""
  if n < 1:
    raise ValueError(f"n must be >= 1, got {n}.")
  _check_n_le_L(n, max_len)  # n-1 distances from L-1 values
  shape = tuple(shape)
  keys = jax.random.split(key, int(np.prod(shape, dtype=np.int64))) if shape else key[None]
  d = jax.vmap(lambda k: _sorted_subset(k, n - 1, max_len - 1) + 1)(keys)
  d = jnp.concatenate([jnp.zeros(d.shape[:-1] + (1,), jnp.int32), d], axis=-1)
  return d.reshape(shape + (n,))


def distances_to_relative(d: jax.Array, mirrored: bool = True, d_left: jax.Array | None = None) -> jax.Array:
  """Signed pairwise 'distances' ``D[i, j]`` for the reference variant: ``j - i = +k -> d_k``, ``-k -> -d_k``
  (or ``-d_left_k`` when the left side is sampled independently, ``mirrored=False``). ``d`` is [..., n]."""
  n = d.shape[-1]
  off = jnp.arange(n)[None, :] - jnp.arange(n)[:, None]
  right = jnp.take(d, jnp.abs(off), axis=-1)
  left = right if (mirrored or d_left is None) else jnp.take(d_left, jnp.abs(off), axis=-1)
  return jnp.where(off >= 0, right, -left)


# ---------------------------------------------------------------------------------- config entry point

@dataclasses.dataclass(frozen=True)
class PositionConfig:
  """How positions are produced for training and for testing.

  train_mode: 'sequential' | 'random' (RPE) | 'equal_mean'; test_mode: 'sequential' | 'random' | 'grid'.
  max_len: L (position range of 'random'/'grid'); max_test_len: M (longest test length; grid spacing L/M).
  """
  train_mode: str = "sequential"
  test_mode: str = "sequential"
  max_len: int = 2048
  max_test_len: int = 512
  per_example: bool = False
  per_layer: bool = False
  distribution: str = "exponential"
  kappa: float = 8.0
  min_span: float = 0.0
  grid_spacing: str = "L/M"

  def __post_init__(self):
    for name, mode in (("train_mode", self.train_mode), ("test_mode", self.test_mode)):
      if mode not in MODES:
        raise ValueError(f"{name} must be one of {MODES}, got {mode!r}.")
    if self.train_mode == "grid":
      raise ValueError("train_mode='grid' is a test-time protocol; train with 'random' and test with 'grid'.")
    if self.train_mode == "random" or self.test_mode in ("random", "grid"):
      check_support(self.max_len, self.max_test_len)
    if self.distribution not in DISTRIBUTIONS:
      raise ValueError(f"distribution must be one of {DISTRIBUTIONS}, got {self.distribution!r}.")

  @property
  def float_positions(self) -> bool:
    return self.train_mode == "equal_mean"


def sample_positions(cfg: PositionConfig, key, n: int, *, batch_size: int = 1, train: bool = True,
                     num_layers: int = 0, length: jax.Array | None = None) -> jax.Array:
  """Positions for one forward call: ``[B or 1, n]``, or ``[layers, B or 1, n]`` when ``cfg.per_layer`` and
  ``num_layers > 0`` (one independent draw per layer; the shared case broadcasts one draw to every layer).

  Training uses ``cfg.train_mode``; testing ``cfg.test_mode`` (for an equal-mean model test positions are
  plain ``k``: ``test_mode='sequential'``). Float32 positions for equal-mean training, int32 otherwise
  (grid: int32 when L/M is an integer).
  """
  mode = cfg.train_mode if train else cfg.test_mode
  if not train and mode in ("random", "grid"):
    if n > cfg.max_test_len:
      raise ValueError(
          f"test length {n} exceeds max_test_len M={cfg.max_test_len}; raise M (and keep L >= M).")
  bshape = (batch_size,) if cfg.per_example else (1,)
  layers = num_layers if (cfg.per_layer and num_layers > 0) else 0

  def draw(k):
    if mode == "sequential":
      return sequential(n, bshape, jnp.float32 if (train and cfg.float_positions) else jnp.int32)
    if mode == "random":
      return rpe_random(k, n, cfg.max_len, bshape, length=length)
    if mode == "grid":
      return rpe_grid(n, cfg.max_len, cfg.max_test_len if cfg.grid_spacing == "L/M" else None,
                      spacing=cfg.grid_spacing, batch_shape=bshape)
    return equal_mean(k, n, cfg.distribution, bshape, max_test_len=cfg.max_test_len, kappa=cfg.kappa,
                      min_span=cfg.min_span, length=length)

  if layers:
    return jax.vmap(draw)(jax.random.split(key, layers))
  return draw(key)


def logn_factor(n, train_len: int, clamp: bool = False):
  """The log-n attention scale ``log_m n = ln n / ln m`` (1 at n = m; < 1 for n < m unless clamped)."""
  if train_len < 2:
    raise ValueError(f"log-n scaling needs a training length m >= 2, got {train_len}.")
  f = jnp.log(jnp.maximum(jnp.asarray(n, jnp.float32), 1.0)) / math.log(train_len)
  return jnp.maximum(f, 1.0) if clamp else f
