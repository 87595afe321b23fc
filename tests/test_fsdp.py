"""Fully sharded parameters and optimizer state on a (data, fsdp) mesh: the same training as replication,
about 1/F of the bytes per device, exact checkpoint resume."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

from research import data, train
from research.nn import bert as bert_lib
from research.nn import transformer as tf_lib
from research.optim import amos as amos_lib
from research.optim import rules
from tests import mp_worker

STEPS = 20


def test_fsdp_spec_is_the_largest_divisible_axis():
  f = "fsdp"
  assert train.fsdp_spec((16, 24), 8) == P(None, f)
  assert train.fsdp_spec((24, 16), 8) == P(f)
  assert train.fsdp_spec((1, 64), 8) == P(None, f)          # Amos's factored kernel slot
  assert train.fsdp_spec((64, 1), 8) == P(f)                # Amos's factored embedding slot
  assert train.fsdp_spec((8, 8), 8) == P(f)                 # ties: the first axis
  assert train.fsdp_spec((3, 5), 8) == P() and train.fsdp_spec((), 8) == P() and train.fsdp_spec((4,), 8) == P()
  assert train.fsdp_spec((16, 24), 1) == P()
  mesh = train.make_mesh(fsdp=4)
  assert mesh.axis_names == ("data", "fsdp") and mesh.devices.shape == (2, 4)
  assert train.num_data_shards(mesh) == 8 and train.global_batch_size(5, mesh) == 8
  with pytest.raises(ValueError, match="mesh.fsdp=3 must be a positive divisor"):
    train.make_mesh(fsdp=3)


def _bert_problem(opt: str):
  cfg = bert_lib.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                            intermediate_size=64, max_position_embeddings=16, hidden_dropout_prob=0.0,
                            attention_probs_dropout_prob=0.0)
  model = bert_lib.BertForMaskedLM(cfg)
  params = bert_lib.init_params(cfg, jax.random.key(0), mlm=True, seq_len=12)
  rng = np.random.default_rng(0)
  ids = rng.integers(1, 64, size=(128, 12)).astype(np.int32)
  pos = np.stack([rng.choice(12, 3, replace=False) for _ in range(128)]).astype(np.int32)
  targets = np.take_along_axis(ids, pos, 1)
  ids_in = ids.copy()
  np.put_along_axis(ids_in, pos, 3, 1)                       # 3 plays [MASK]

  def loss_fn(p, b, key):
    logits = model.apply({"params": p}, b["ids"], jnp.ones_like(b["ids"]), jnp.zeros_like(b["ids"]), b["pos"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, b["y"]).mean(), {}

  if opt == "amos":
    tx = amos_lib.amos(0.05, rules.eta_fn(rules.bert_eta_rules(32, 64)), rules.shape_fn(rules.bert_shape_rules()),
                       beta=0.98, clip_value=1.0)
  else:
    tx = optax.adamw(3e-3, weight_decay=0.01)
  return params, tx, loss_fn, data.batch_fn({"ids": ids_in, "pos": pos, "y": targets}, 16, seed=0)


def _transformer_problem(opt: str):
  model = tf_lib.Transformer(vocab_size=33, num_outputs=32, num_layers=1, d_model=32, num_heads=4, head="mlm")
  rng = np.random.default_rng(1)
  toks = rng.integers(0, 32, size=(128, 10)).astype(np.int32)
  params = model.init(jax.random.key(1), toks[:1])["params"]

  def loss_fn(p, b, key):
    inputs, targets, w = tf_lib.mlm_corrupt(key, b["t"], mask_id=32, vocab_size=32, rate=0.3)
    loss, acc = tf_lib.masked_cross_entropy(model.apply({"params": p}, inputs), targets, w)
    return loss, {"acc": acc}

  tx = optax.adamw(3e-3) if opt == "adamw" else amos_lib.amos(
      0.05, rules.eta_fn(rules.flax_eta_rules()), rules.shape_fn(rules.flax_shape_rules()), beta=0.98)
  return params, tx, loss_fn, data.batch_fn({"t": toks}, 16, seed=0)


def _train(problem, fsdp):
  params, tx, loss_fn, batches = problem
  mesh = train.make_mesh(fsdp=fsdp)
  state = train.TrainState.create(params=params, tx=tx, rng=0)
  state, hist = train.fit(loss_fn, state, batches, num_steps=STEPS, log_every=STEPS, progress=False, mesh=mesh)
  return state, hist, mesh


@pytest.mark.parametrize("problem,opt", [
    (_bert_problem, "amos"),
    pytest.param(_transformer_problem, "adamw", marks=pytest.mark.slow),    # ~40 s on the shared 2-core CPU
], ids=["bert-amos", "transformer_mlm-adamw"])
def test_fsdp_training_equals_replication(problem, opt):
  problem = problem(opt)
  rep, hist_rep, _ = _train(problem, 1)
  sharded, hist_sh, mesh = _train(problem, 8)
  assert hist_sh[-1]["loss"] < hist_sh[0]["loss"] or len(hist_sh) == 1
  np.testing.assert_allclose(hist_sh[-1]["loss"], hist_rep[-1]["loss"], rtol=1e-5)
  flat_rep = jax.tree_util.tree_leaves_with_path(jax.device_get(rep.params))
  flat_sh = jax.tree.leaves(jax.device_get(sharded.params))
  # Float tolerance: the sharded step reduces in another order (reduce-scatter vs all-reduce). The attention
  # key biases are left out: their exact gradient is 0 (softmax ignores a constant per query), so in both arms
  # they hold rounding noise that Adam / Amos normalise to step size; they do not change the model's output,
  # which the equal losses above check.
  for (path, a), b in zip(flat_rep, flat_sh):
    if "['key']['bias']" not in jax.tree_util.keystr(path):
      np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5, err_msg=jax.tree_util.keystr(path))
  # The state stays sharded after 20 jitted steps, every leaf by the largest-divisible-axis rule ...
  for x in jax.tree.leaves((sharded.params, sharded.opt_state)):
    assert x.sharding.spec == train.fsdp_spec(x.shape, 8), (x.shape, x.sharding.spec)
  if opt == "amos":                                          # ... Amos's factored (1, d) / (V, 1) slots too
    slots = [x for x in jax.tree.leaves(sharded.opt_state) if x.ndim == 2 and 1 in x.shape and max(x.shape) % 8 == 0]
    assert len(slots) >= 4 and all("fsdp" in tuple(x.sharding.spec) for x in slots)
  # Per device: exactly the shard bytes; about 1/8 of the replicated bytes.
  for tree in (sharded.params, (sharded.params, sharded.opt_state)):
    per_dev = train.bytes_per_device(tree)
    total = sum(x.nbytes for x in jax.tree.leaves(tree))
    want = sum(x.nbytes // 8 if "fsdp" in tuple(x.sharding.spec) else x.nbytes for x in jax.tree.leaves(tree))
    assert set(per_dev.values()) == {want} and len(per_dev) == 8
    assert train.sharded_bytes(tree, 8) == want                # the abstract count the benchmark uses
    assert total / 8 <= want <= 1.1 * total / 8
  rep_bytes = train.bytes_per_device(rep.params)
  assert set(rep_bytes.values()) == {sum(x.nbytes for x in jax.tree.leaves(rep.params))}


def test_fsdp_adamw_equals_replication_and_resumes_exactly(tmp_path):
  mesh = train.make_mesh(fsdp=8)
  wd = str(tmp_path / "resumed")
  mp_worker.train_problem(wd, 10, mesh=mesh)
  resumed, _ = mp_worker.train_problem(wd, 20, mesh=mesh)      # restores step 10 into the sharded layout
  straight, _ = mp_worker.train_problem(str(tmp_path / "straight"), 20, mesh=mesh)
  for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(straight)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert resumed.params["w1"].sharding.spec == P(None, "fsdp")
  replicated, _ = mp_worker.train_problem(None, 20, mesh=train.make_mesh())   # AdamW, 1-D mesh
  for k, v in jax.device_get(replicated.params).items():
    np.testing.assert_allclose(np.asarray(straight.params[k]), v, rtol=1e-5, atol=1e-6, err_msg=k)
