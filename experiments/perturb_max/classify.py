"""The `classify` part: one Flax CNN on Fashion-MNIST with a softmax head vs Perturb-Max heads (Su, 10145).

Each arm (a head of ``c.arms``) trains its ``c.seeds`` runs as populations (research.train.fit_population),
checkpointed in the workdir and resumed on a re-run. Run ``s`` of every arm starts from the same key
(``fold_in(key(config.seed), s)``) and sees the same batches, so arms are paired by seed.
"""
from __future__ import annotations

import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from research import data, train
from research.nn import heads


class CNN(nn.Module):
  """Conv-ReLU-AvgPool blocks, a ReLU dense layer, then the arm's output head (log-probabilities)."""
  head: nn.Module
  features: tuple
  hidden: int

  @nn.compact
  def __call__(self, x):
    for f in self.features:
      x = nn.avg_pool(nn.relu(nn.Conv(f, (3, 3))(x)), (2, 2), (2, 2))
    x = nn.relu(nn.Dense(self.hidden)(x.reshape(x.shape[:-3] + (-1,))))
    return self.head(x)


def make_head(arm, num_classes: int = 10) -> nn.Module:
  if arm.noise == "softmax":
    return heads.SoftmaxHead(num_classes)
  return heads.PerturbMaxHead(num_classes, noise=arm.noise, rule=arm.rule or None, num_nodes=int(arm.num_nodes),
                              init_scale=float(arm.init_scale), learn_temperature=bool(arm.learn_temperature))


def load(c, data_dir, seed: int) -> dict:
  """A ``c.train_size`` training subset (drawn from ``seed``) and the first ``c.test_size`` test images."""
  xtr, ytr = data.load_fashion_mnist("train", data_dir)
  xte, yte = data.load_fashion_mnist("test", data_dir)
  sub = np.random.default_rng([seed, 2]).permutation(len(xtr))[: int(c.train_size)]
  prep = lambda im: (im.astype(np.float32) / 255.0)[..., None]
  return {"x": prep(xtr[sub]), "y": ytr[sub].astype(np.int32), "x_test": prep(xte[: int(c.test_size)]),
          "y_test": np.asarray(yte[: int(c.test_size)])}


def run_seed(config_seed: int, s: int) -> int:
  """The data-order seed of run ``s``, derived from ``config.seed``."""
  return 1000 * config_seed + s


def evaluate(apply, params, d: dict, eval_batch: int) -> tuple[float, float]:
  """Test accuracy and mean NLL of one run (``apply``: the jitted model)."""
  correct, nll = 0.0, 0.0
  for i in range(0, len(d["x_test"]), eval_batch):
    lp = np.asarray(apply(params, d["x_test"][i:i + eval_batch]))
    yb = d["y_test"][i:i + eval_batch]
    correct += float(np.sum(lp.argmax(-1) == yb))
    nll -= float(np.sum(lp[np.arange(len(yb)), yb]))
  return correct / len(d["y_test"]), nll / len(d["y_test"])


def train_arm(arm, c, d: dict, *, seed: int, workdir: str, mesh) -> dict:
  """Trains one arm's seeds; returns per-seed test accuracy / NLL / learned scale and the train-loss curves."""
  model = CNN(head=make_head(arm), features=tuple(int(f) for f in c.conv_features), hidden=int(c.hidden))
  tx = optax.adam(float(c.learning_rate))
  bs = train.global_batch_size(int(c.batch_size), mesh)

  def loss_fn(params, batch, rng):
    lp = model.apply(params, batch["x"])
    return heads.nll_loss(lp, batch["y"]), {"acc": jnp.mean(jnp.argmax(lp, -1) == batch["y"])}

  seeds = list(range(int(c.seeds)))
  groups = [[s] for s in seeds] if c.seed_loop else [seeds]
  t0 = time.time()
  params, loss, steps = [], [], None
  for group in groups:
    keys = [jax.random.fold_in(jax.random.key(seed), s) for s in group]
    states = [train.TrainState.create(params=model.init(k, d["x"][:1]), tx=tx, rng=k) for k in keys]
    pop = train.fit_population(
        loss_fn, states, [data.batch_fn({"x": d["x"], "y": d["y"]}, bs, seed=run_seed(seed, s)) for s in group],
        num_steps=int(c.num_steps), run_ids=[f"classify/{arm.name}/seed{s}" for s in group], workdir=workdir,
        name=f"classify/{arm.name}/{'-'.join(map(str, group))}", log_every=int(c.log_every),
        checkpoint_every=int(c.log_every) * max(1, int(c.num_steps) // int(c.log_every) // 4),
        steps_per_call=int(c.log_every), desc=f"classify/{arm.name}", mesh=mesh)
    if not pop.alive.all():
      raise FloatingPointError(f"classify/{arm.name}: runs {np.flatnonzero(~pop.alive).tolist()} diverged")
    params += [jax.device_get(pop.run(i).params) for i in range(len(group))]
    steps, lv = pop.curves("loss")
    loss.append(lv)
  apply = jax.jit(model.apply)
  acc, nll = zip(*(evaluate(apply, p, d, int(c.eval_batch)) for p in params))
  scale = [float(arm.init_scale * np.exp(p["params"]["head"]["log_temperature"])) for p in params
           if "log_temperature" in p["params"].get("head", {})]
  return {"acc": np.asarray(acc), "nll": np.asarray(nll), "scale": np.asarray(scale), "steps": steps,
          "loss": np.concatenate(loss), "seconds": time.time() - t0}
