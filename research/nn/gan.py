"""Small Flax GANs (MLP and DCGAN-style conv) with an optional StyleGAN-like mapping network (kexue 9147).

* ``MappingNetwork``: z -> pixel-norm z / sqrt(mean(z^2) + eps) -> ``depth`` equalized-lr Dense layers
  (He gain sqrt(2)) with leaky-ReLU(0.2) -> w (StyleGAN, arXiv:1812.04948; lr multiplier 0.01 on the mapping layers).
* ``Generator``: [mapping] -> synthesis (MLP or conv) -> images in [-1, 1] (tanh), NHWC.
  ``map(z)`` gives w (identity without mapping), ``synthesize(w)`` the images, ``__call__(z)`` both.
* ``Discriminator``: MLP or conv with leaky-ReLU, one logit.
* ``init_gan_state`` / ``make_gan_step``: both players in one ``research.train.TrainState`` (one optimizer
  state per player) and a custom train step (non-saturating loss, optional lazy R1, an EMA of the mapping
  output w_avg with beta 0.995 as StyleGAN2-ADA) that ``research.train.fit`` / ``fit_population`` run; a
  population vmaps it over independent seeds (one compile trains all seeds).
"""
from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax


class EqualDense(nn.Module):
  """Dense layer with equalized learning rate: w ~ N(0, 1/lr_mul^2), used as w * gain * lr_mul / sqrt(fan_in).

  ``gain = sqrt(2)`` (StyleGAN's He gain for leaky-ReLU layers) keeps the activations' scale through a
  deep stack; with gain 1 an 8-layer mapping network shrinks w to ~0.04 of its input scale and makes
  the w of different z nearly collinear (mean pairwise correlation ~0.7 at init), i.e. the generator
  starts from an almost constant input (mode collapse).
  """
  features: int
  lr_mul: float = 1.0
  gain: float = 1.0

  @nn.compact
  def __call__(self, x):
    fan_in = x.shape[-1]
    w = self.param("kernel", nn.initializers.normal(1.0 / self.lr_mul), (fan_in, self.features))
    b = self.param("bias", nn.initializers.zeros, (self.features,))
    return x @ (w * (self.gain * self.lr_mul / math.sqrt(fan_in))) + b * self.lr_mul


def pixel_norm(z, eps: float = 1e-8):
  return z * jax.lax.rsqrt(jnp.mean(z * z, axis=-1, keepdims=True) + eps)


class MappingNetwork(nn.Module):
  w_dim: int = 64
  depth: int = 8
  lr_mul: float = 0.01

  @nn.compact
  def __call__(self, z):
    h = pixel_norm(z)
    for _ in range(self.depth):
      h = nn.leaky_relu(EqualDense(self.w_dim, self.lr_mul, math.sqrt(2.0))(h), 0.2)
    return h


class Generator(nn.Module):
  image_shape: Sequence[int] = (8, 8, 1)
  kind: str = "mlp"                 # "mlp" or "conv" (conv expects 28x28: 7 -> 14 -> 28)
  hidden: int = 256
  mapping: bool = False
  w_dim: int = 64
  mapping_depth: int = 8
  mapping_lr_mul: float = 0.01
  feature_norm: bool = False        # conv: ProGAN pixel-wise feature normalization after each hidden layer

  def setup(self):
    if self.kind not in ("mlp", "conv"):
      raise ValueError(f"Generator kind must be 'mlp' or 'conv'; got {self.kind!r}.")
    if self.mapping:
      self.mapper = MappingNetwork(self.w_dim, self.mapping_depth, self.mapping_lr_mul)
    n_out = int(math.prod(self.image_shape))
    if self.kind == "mlp":
      self.layers = [nn.Dense(self.hidden), nn.Dense(self.hidden), nn.Dense(n_out)]
    else:
      h, w, c = self.image_shape
      if h % 4 or w % 4:
        raise ValueError(f"conv generator needs H, W divisible by 4; got {self.image_shape}.")
      self.fc = nn.Dense((h // 4) * (w // 4) * 2 * self.hidden // 4)
      self.up1 = nn.ConvTranspose(self.hidden // 4, (4, 4), strides=(2, 2), padding="SAME")
      self.up2 = nn.ConvTranspose(c, (4, 4), strides=(2, 2), padding="SAME")

  def map(self, z):
    return self.mapper(z) if self.mapping else z

  def synthesize(self, w):
    if self.kind == "mlp":
      h = nn.leaky_relu(self.layers[0](w), 0.2)
      h = nn.leaky_relu(self.layers[1](h), 0.2)
      return jnp.tanh(self.layers[2](h)).reshape(w.shape[:-1] + tuple(self.image_shape))
    hh, ww, _ = self.image_shape
    fn = pixel_norm if self.feature_norm else (lambda a: a)
    h = fn(nn.leaky_relu(self.fc(w), 0.2).reshape(w.shape[:-1] + (hh // 4, ww // 4, -1)))
    h = fn(nn.leaky_relu(self.up1(h), 0.2))
    return jnp.tanh(self.up2(h))

  def __call__(self, z):
    return self.synthesize(self.map(z))


def minibatch_stddev(h, group: int = 4, eps: float = 1e-8):
  """ProGAN/StyleGAN minibatch standard deviation: appends one feature map holding the mean (over
  features) std of h within groups of ``group`` samples, so D can see a lack of variety (mode collapse).
  h [B, ...]; B must be divisible by the group size (else the whole batch is one group)."""
  b = h.shape[0]
  g = group if b % group == 0 else b
  y = h.reshape((g, b // g) + h.shape[1:])
  sd = jnp.sqrt(jnp.var(y, axis=0) + eps)                        # [B/g, ...]
  sd = jnp.mean(sd, axis=tuple(range(1, sd.ndim)))                # [B/g]
  sd = jnp.tile(sd, g)                                            # sample i belongs to group i % (B/g)
  return jnp.concatenate([h, jnp.broadcast_to(sd.reshape((b,) + (1,) * (h.ndim - 1)),
                                              h.shape[:-1] + (1,))], axis=-1)


class Discriminator(nn.Module):
  kind: str = "mlp"
  hidden: int = 256
  mbstd: bool = False               # conv: minibatch-stddev feature before the last conv (ProGAN)

  @nn.compact
  def __call__(self, x):
    if self.kind == "mlp":
      h = x.reshape(x.shape[0], -1)
      h = nn.leaky_relu(nn.Dense(self.hidden)(h), 0.2)
      h = nn.leaky_relu(nn.Dense(self.hidden)(h), 0.2)
    else:
      h = nn.leaky_relu(nn.Conv(self.hidden // 4, (4, 4), strides=(2, 2))(x), 0.2)
      if self.mbstd:
        h = minibatch_stddev(h)
      h = nn.leaky_relu(nn.Conv(self.hidden // 2, (4, 4), strides=(2, 2))(h), 0.2)
      h = h.reshape(h.shape[0], -1)
    return nn.Dense(1)(h)[:, 0]


def init_gan_state(gen: Generator, disc: Discriminator, z_dim: int, key: jax.Array,
                   tx: optax.GradientTransformation):
  """The two players in one :class:`research.train.TrainState`: ``params = {g, d, w_avg}`` (``w_avg``: the EMA
  of the mapping output, not optimized) and ``opt_state = {g: tx.init(g), d: tx.init(d)}`` (one state per
  player, see :mod:`research.train.players`). ``key`` gives the initial parameters and the step keys."""
  from research.train.players import create_players
  kg, kd, kr = jax.random.split(key, 3)
  h, w, c = gen.image_shape
  g = gen.init(kg, jnp.zeros((2, z_dim)))["params"]
  d = disc.init(kd, jnp.zeros((2, h, w, c)))["params"]
  w_dim = gen.w_dim if gen.mapping else z_dim
  return create_players(params={"g": g, "d": d, "w_avg": jnp.zeros((w_dim,))}, players=("g", "d"), tx=tx,
                        rng=kr)


def make_gan_step(gen: Generator, disc: Discriminator, z_dim: int, *, w_avg_beta: float = 0.995,
                  r1_gamma: float = 0.0, r1_every: int = 1):
  """A ``train_step(state, batch) -> (state, metrics)`` for :func:`research.train.fit` /
  :func:`research.train.fit_population`: one step = ``r1_every`` GAN iterations on ``batch`` (real images
  ``[B, r1_every, H, W, C]``), each a discriminator update and then a generator update against the updated
  discriminator, each player with its own optimizer state (``state.tx``, e.g. Adam(2e-4, beta1 0.5)).
  ``batch[:, i]`` is iteration ``i``'s real minibatch (the example axis leads, so the trainers shard it).

  Losses (non-saturating): L_D = softplus(-D(x)) + softplus(D(G(z))), L_G = softplus(-D(G(z))).
  ``r1_gamma > 0`` adds the R1 penalty (gamma / 2) E ||grad_x D(x)||^2 on real data to L_D (Mescheder et
  al. 2018; StyleGAN2), which keeps the discriminator from overpowering a small generator. Lazy R1
  (StyleGAN2): only the first iteration of a step carries it, scaled by ``r1_every`` so its average strength
  is unchanged (one step holds the ``r1_every`` iterations because under ``vmap`` a per-iteration switch
  would compute both branches). ``w_avg`` tracks the EMA (beta 0.995, as StyleGAN2-ADA) of the mapping
  output. The step keys are ``fold_in(fold_in(state.key, state.step), i)``; a non-finite iteration leaves
  the state unchanged (``finite`` False).
  """
  from research.train.players import all_finite, player_update

  def iteration(state, real, key, with_r1: bool):
    z = jax.random.normal(key, (real.shape[0], z_dim))
    g = state.params["g"]

    def d_loss(dp):
      fake = gen.apply({"params": g}, z)
      lr_, lf = disc.apply({"params": dp}, real), disc.apply({"params": dp}, fake)
      adv = jnp.mean(jax.nn.softplus(-lr_) + jax.nn.softplus(lf))
      r1 = jnp.zeros(())
      if r1_gamma > 0 and with_r1:
        gx = jax.grad(lambda xr: jnp.sum(disc.apply({"params": dp}, xr)))(real)
        r1 = 0.5 * r1_gamma * r1_every * jnp.mean(jnp.sum(gx.reshape(gx.shape[0], -1) ** 2, axis=-1))
      return adv + r1, (adv, r1, jnp.mean(lr_), jnp.mean(lf))

    (_, (ld, r1, dr, df)), gd = jax.value_and_grad(d_loss, has_aux=True)(state.params["d"])
    state = player_update(state, "d", gd)
    dp = state.params["d"]

    def g_loss(gp):
      wz = gen.apply({"params": gp}, z, method=Generator.map)
      fake = gen.apply({"params": gp}, wz, method=Generator.synthesize)
      return jnp.mean(jax.nn.softplus(-disc.apply({"params": dp}, fake))), wz

    (lg, wz), gg = jax.value_and_grad(g_loss, has_aux=True)(g)
    state = player_update(state, "g", gg)
    w_avg = w_avg_beta * state.params["w_avg"] + (1 - w_avg_beta) * jax.lax.stop_gradient(wz.mean(0))
    state = state.replace(params={**state.params, "w_avg": w_avg})
    gnorm = optax.global_norm(gd) + optax.global_norm(gg)
    return state, {"loss_d": ld, "loss_g": lg, "r1": r1, "d_real": dr, "d_fake": df, "grad_norm": gnorm}

  def step(state, batch):
    rng = jax.random.fold_in(state.key, state.step)
    batch = jnp.swapaxes(batch, 0, 1)
    new, m = iteration(state, batch[0], jax.random.fold_in(rng, 0), True)
    if batch.shape[0] > 1:
      def body(st, inp):
        real, i = inp
        return iteration(st, real, jax.random.fold_in(rng, i), False)
      new, ms = jax.lax.scan(body, new, (batch[1:], jnp.arange(1, batch.shape[0])))
      m = {k: (v + ms[k].sum()) / batch.shape[0] if k != "r1" else v for k, v in m.items()}
    finite = all_finite(m, new.params)
    keep = lambda a, b: jax.tree.map(lambda x, y: jnp.where(finite, x, y), a, b)
    new = new.replace(step=state.step + 1, params=keep(new.params, state.params),
                      opt_state=keep(new.opt_state, state.opt_state))
    return new, {"loss": m["loss_d"], **m, "finite": finite}

  return step


def image_grid(images, nrow: int):
  """[n, H, W, C] in [-1, 1] -> one [nrow*H, ncol*W] (or C=3) array in [0, 1] for plotting."""
  import numpy as np
  x = (np.asarray(images) + 1.0) / 2.0
  n, hh, ww, c = x.shape
  ncol = int(math.ceil(n / nrow))
  grid = np.ones((nrow * (hh + 1) + 1, ncol * (ww + 1) + 1, c))
  for i in range(n):
    r, q = divmod(i, ncol)
    grid[1 + r * (hh + 1): 1 + r * (hh + 1) + hh, 1 + q * (ww + 1): 1 + q * (ww + 1) + ww] = x[i]
  return np.clip(grid[..., 0] if c == 1 else grid, 0.0, 1.0)
