"""The two training tasks of kexue 9344: the README's MNIST CNN on Fashion-MNIST, and a char-level LM."""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from research import data as data_lib
from research.optim import rules


class MnistCNN(nn.Module):
  """jestimator README's MNIST CNN: Conv32-ReLU-avgpool-Conv64-ReLU-avgpool-Dense256-ReLU-Dense10."""

  @nn.compact
  def __call__(self, x):
    x = nn.avg_pool(nn.relu(nn.Conv(32, (3, 3))(x)), (2, 2), (2, 2))
    x = nn.avg_pool(nn.relu(nn.Conv(64, (3, 3))(x)), (2, 2), (2, 2))
    x = x.reshape(x.shape[:-3] + (-1,))
    return nn.Dense(10)(nn.relu(nn.Dense(256)(x)))


class Task(NamedTuple):
  """Everything the trainer needs of a task (all functions are for ONE run)."""
  name: str
  init: Callable[[jax.Array], Any]                        # key -> params
  loss: Callable[[Any, dict, bool], tuple]                 # (params, batch, summed) -> (loss, accuracy)
  eval_loss: Callable[[Any], jax.Array]                    # params -> validation loss
  batches: Callable[[int], Callable[[int], dict]]          # run seed -> (step -> batch)
  steps_per_epoch: int
  chance_loss: float                                       # the loss of a uniform prediction
  rules: tuple                                             # (eta_fn, shape_fn, sigma_fn) of the Amos / Su arms
  test_accuracy: Callable[[Any], jax.Array] | None = None  # params -> test accuracy


def fashion(c, data_dir, seed: int) -> Task:
  x, y = data_lib.load_fashion_mnist("train", data_dir)
  xt, yt = data_lib.load_fashion_mnist("test", data_dir)
  if c.test_limit:
    xt, yt = xt[:c.test_limit], yt[:c.test_limit]
  tr, va = data_lib.train_val_split(len(x), c.val_size / len(x), seed=seed)
  if c.train_limit:
    tr = tr[:c.train_limit]
  norm = lambda a: (a.astype(np.float32) / 255.0)[..., None]
  xtr, ytr = norm(x[tr]), y[tr].astype(np.int32)
  xva, yva = jnp.asarray(norm(x[va][:c.val_eval_size])), jnp.asarray(y[va][:c.val_eval_size].astype(np.int32))
  xte, yte = norm(xt), yt.astype(np.int32)
  model = MnistCNN()
  per_epoch = len(xtr) // c.batch_size

  def loss(p, b, summed):
    logits = model.apply(p, b["x"])
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, b["y"])
    return (jnp.sum(ce) if summed else jnp.mean(ce)), jnp.mean(jnp.argmax(logits, -1) == b["y"])

  def eval_loss(p):
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(model.apply(p, xva), yva))

  def test_accuracy(p):
    correct = 0
    for i in range(0, len(xte), 2000):
      logits = model.apply(p, jnp.asarray(xte[i:i + 2000]))
      correct += jnp.sum(jnp.argmax(logits, -1) == jnp.asarray(yte[i:i + 2000]))
    return correct / len(xte)

  eta_f = rules.eta_fn(rules.mnist_cnn_eta_rules())
  return Task("fashion_cnn", lambda k: model.init(k, jnp.zeros((1, 28, 28, 1))), loss, eval_loss,
              lambda s: data_lib.batch_fn({"x": xtr, "y": ytr}, c.batch_size, seed=s), per_epoch, float(np.log(10)),
              (eta_f, rules.shape_fn(rules.mnist_cnn_shape_rules()), eta_f), test_accuracy)


def char_lm(c, data_dir, seed: int) -> Task:
  from research.nn import attention as attn_lib
  from research.nn import transformer as tr_lib
  text = data_lib.load_tinyshakespeare(data_dir)
  lut = {ch: i for i, ch in enumerate(sorted(set(text)))}
  tok = np.fromiter((lut[ch] for ch in text), np.int32, len(text))
  n_tr = int(0.9 * len(tok))
  train_tok, val_tok = tok[:n_tr], tok[n_tr:]
  V, L, bs = len(lut), int(c.seq_len), int(c.batch_size)
  vstarts = np.linspace(0, len(val_tok) - L - 2, c.val_batches * bs).astype(int)
  val = jnp.asarray(np.stack([val_tok[i:i + L + 1] for i in vstarts]))
  model = tr_lib.Transformer(vocab_size=V, num_outputs=V, num_layers=c.num_layers, d_model=c.d_model,
                             num_heads=c.num_heads, d_ff=c.d_ff, post_ln=False, max_len=L,
                             attention=attn_lib.AttentionConfig(causal=True, pe="rope"))

  def batches(s):
    def get(step):
      starts = np.random.default_rng([s, int(step)]).integers(0, n_tr - L - 1, size=bs)
      return {"tokens": np.stack([train_tok[i:i + L + 1] for i in starts])}
    return get

  def loss(p, b, summed):
    t = b["tokens"]
    logits = model.apply(p, t[:, :-1])
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, t[:, 1:])
    return (jnp.sum(ce) if summed else jnp.mean(ce)), jnp.mean(jnp.argmax(logits, -1) == t[:, 1:])

  def eval_loss(p):
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(model.apply(p, val[:, :-1]), val[:, 1:]))

  rl = (rules.eta_fn(rules.bert_eta_rules(c.d_model, c.d_ff)), rules.shape_fn(rules.bert_shape_rules()),
        rules.sigma_fn(rules.su_sigma_rules()))
  return Task("lm", lambda k: model.init(k, jnp.zeros((1, L), jnp.int32)), loss, eval_loss, batches,
              n_tr // (bs * L), float(np.log(V)), rl)
