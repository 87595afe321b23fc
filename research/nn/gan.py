"""Small Flax GANs (MLP and DCGAN-style conv) with an optional StyleGAN-like mapping network (kexue 9147).

* ``MappingNetwork``: z -> pixel-norm z / sqrt(mean(z^2) + eps) -> ``depth`` equalized-lr Dense layers
  (He gain sqrt(2)) with leaky-ReLU(0.2) -> w (StyleGAN, arXiv:1812.04948; lr multiplier 0.01 on the mapping layers).
* ``Generator``: [mapping] -> synthesis (MLP or conv) -> images in [-1, 1] (tanh), NHWC.
  ``map(z)`` gives w (identity without mapping), ``synthesize(w)`` the images, ``__call__(z)`` both.
* ``Discriminator``: MLP or conv with leaky-ReLU, one logit.
* ``make_gan_trainer``: non-saturating GAN loss, Adam(lr 2e-4, beta1 0.5) for both players, an EMA of
  the mapping output w_avg (beta 0.995, as StyleGAN2-ADA), and a jitted step that is ``vmap``-ed over
  independent seeds (one compile trains all seeds).
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


def make_gan_trainer(gen: Generator, disc: Discriminator, z_dim: int, batch_size: int,
                     lr: float = 2e-4, b1: float = 0.5, w_avg_beta: float = 0.995,
                     r1_gamma: float = 0.0, r1_every: int = 1):
  """Returns (init(key) -> state, step(state, real_batch, key, with_r1=True) -> (state, metrics)), both
  vmap-able (``with_r1`` is a Python bool: bind it with functools.partial before jit/vmap).

  state = dict(g=gen params, d=disc params, og/od=Adam states, w_avg=EMA of mapping outputs).
  Losses (non-saturating): L_D = softplus(-D(x)) + softplus(D(G(z))), L_G = softplus(-D(G(z))).
  ``r1_gamma > 0`` adds the R1 penalty (gamma / 2) E ||grad_x D(x)||^2 on real data to L_D (Mescheder et
  al. 2018; StyleGAN2), which keeps the discriminator from overpowering a small generator.
  ``r1_every > 1``: lazy R1 (StyleGAN2): the caller applies the penalty only every ``r1_every`` steps
  (``with_r1=True`` on those steps), scaled by ``r1_every`` so its average strength is unchanged.
  """
  tx = optax.adam(lr, b1=b1, b2=0.999)
  h, w, c = gen.image_shape

  def init(key):
    kg, kd = jax.random.split(key)
    z = jnp.zeros((2, z_dim))
    g = gen.init(kg, z)["params"]
    d = disc.init(kd, jnp.zeros((2, h, w, c)))["params"]
    w_dim = gen.w_dim if gen.mapping else z_dim
    return {"g": g, "d": d, "og": tx.init(g), "od": tx.init(d), "w_avg": jnp.zeros((w_dim,))}

  def step(state, real, key, with_r1: bool = True):
    z = jax.random.normal(key, (batch_size, z_dim))

    def d_loss(dp):
      fake = gen.apply({"params": state["g"]}, z)
      lr_, lf = disc.apply({"params": dp}, real), disc.apply({"params": dp}, fake)
      loss = jnp.mean(jax.nn.softplus(-lr_) + jax.nn.softplus(lf))
      if r1_gamma > 0 and with_r1:
        gx = jax.grad(lambda xr: jnp.sum(disc.apply({"params": dp}, xr)))(real)
        loss = loss + 0.5 * r1_gamma * r1_every * jnp.mean(jnp.sum(gx.reshape(gx.shape[0], -1) ** 2,
                                                                   axis=-1))
      return loss, (jnp.mean(lr_), jnp.mean(lf))

    (ld, (dr, df)), gd = jax.value_and_grad(d_loss, has_aux=True)(state["d"])
    upd, od = tx.update(gd, state["od"], state["d"])
    dp = optax.apply_updates(state["d"], upd)

    def g_loss(gp):
      wz = gen.apply({"params": gp}, z, method=Generator.map)
      fake = gen.apply({"params": gp}, wz, method=Generator.synthesize)
      return jnp.mean(jax.nn.softplus(-disc.apply({"params": dp}, fake))), wz

    (lg, wz), gg = jax.value_and_grad(g_loss, has_aux=True)(state["g"])
    upd, og = tx.update(gg, state["og"], state["g"])
    gp = optax.apply_updates(state["g"], upd)
    w_avg = w_avg_beta * state["w_avg"] + (1 - w_avg_beta) * jax.lax.stop_gradient(wz.mean(0))
    new = {"g": gp, "d": dp, "og": og, "od": od, "w_avg": w_avg}
    return new, {"loss_d": ld, "loss_g": lg, "d_real": dr, "d_fake": df}

  return init, step


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
