"""Bad input (issue 21): a clear ValueError/TypeError eagerly, NaN (never a finite wrong value) under jit."""
import math
import re

import chex
import jax.numpy as jnp
import numpy as np
import pytest

from configs import common
from experiments import run as runner
from research import data, train
from research.geometry import knn
from research.losses import cosent
from research.optim import amos


# ------------------------------------------------------------------------------------------------ configs
def _all_configs():
  for name in runner.config_names():
    module = runner._import_config_module(name)
    for variant in module.VARIANTS:
      yield name, variant, module.get_config(variant)


def test_every_numeric_key_of_every_variant_has_a_range_it_satisfies():
  n = 0
  for name, variant, cfg in _all_configs():
    common.validate(cfg)                    # the shipped values are in range
    for key, leaf, value in common._leaves(cfg):
      kind, lo, hi, _ = common.range_of(leaf, value)   # raises for a float key without a rule
      n += 1
  assert n > 500


def test_each_range_rule_rejects_a_value_outside_it():
  seen = set()
  for name, variant, cfg in _all_configs():
    for key, leaf, value in common._leaves(cfg):
      if "[" in key or leaf in seen:
        continue
      seen.add(leaf)
      kind, lo, hi, _ = common.range_of(leaf, value)
      bad = {"int": lo - 1, "prob": hi + 0.5, "open": float(lo), "float": lo - 1.0, "real": math.nan}[kind]
      c = cfg.copy_and_resolve_references()
      *parents, last = key.split(".")
      node = c
      for part in parents:
        node = node[part]
      node[last] = bad
      with pytest.raises(ValueError, match=re.escape(key) + "=.*must be"):
        common.validate(c)
  assert len(seen) > 150


@pytest.mark.parametrize("override", [{"learning_rate": "-1"}, {"checkpoint_every": "-1"}, {"seed": "-1"},
                                      {"hidden": "0"}, {"batch_size": "0"}, {"test_fraction": "1.5"}])
def test_out_of_range_override_is_rejected_when_the_run_starts(override):
  with pytest.raises(ValueError, match=f"{next(iter(override))}=.*must be"):
    runner.load_config("demo:smoke", override)


def test_missing_config_and_variant_name_the_valid_ones():
  with pytest.raises(FileNotFoundError, match="demo"):
    runner.load_config("dmeo:smoke")
  with pytest.raises(ValueError, match="valid variants"):
    runner.load_config("demo:nope")


# --------------------------------------------------------------------------------------- data and batches
def test_batch_fn_rejects_non_positive_batch_size():
  with pytest.raises(ValueError, match="batch_size must be a positive integer"):
    data.batch_fn({"x": np.zeros((8, 2))}, 0, seed=0)


def test_batch_rounded_to_the_device_count_is_announced(capsys):
  mesh = train.make_mesh()
  assert train.global_batch_size(63, mesh) == 64
  assert "rounded up to 64" in capsys.readouterr().err
  assert train.global_batch_size(64, mesh) == 64
  assert capsys.readouterr().err == ""
  with pytest.raises(ValueError, match="positive integer"):
    train.global_batch_size(0, mesh)


def test_k_occurrence_rejects_indices_out_of_range():
  with pytest.raises(ValueError, match="index 5 >= n = 3"):
    knn.k_occurrence(jnp.array([[0, 5]]), 3)
  with pytest.raises(TypeError, match="integer"):
    knn.k_occurrence(jnp.array([[0.0, 1.0]]), 3)
  np.testing.assert_array_equal(knn.k_occurrence(jnp.array([[0, 2], [2, -1]]), 3), [1, 0, 2])


# ------------------------------------------------------------------------------------------------- CoSENT
class CosentBadInputTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_value_matches_brute_force(self):
    s, y = jnp.array([0.3, -0.2, 0.8, 0.1]), jnp.array([1, 0, 2, 1])
    got = self.variant(lambda s, y: cosent.cosent_loss(s, y, scale=2.0))(s, y)
    np.testing.assert_allclose(got, cosent.cosent_brute_force(s, y, scale=2.0), rtol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_nan_label_or_score_never_gives_a_finite_loss(self):
    fn = self.variant(cosent.cosent_loss)
    for s, y in ((jnp.array([0.1, 0.9, 0.4]), jnp.array([0.0, jnp.nan, 1.0])),
                 (jnp.array([0.1, jnp.nan, 0.4]), jnp.array([0.0, 0.5, 1.0]))):
      try:
        value = fn(s, y)
      except ValueError as e:               # eager: a clear error
        assert "NaN/inf" in str(e)
      else:                                 # jit: NaN, so the training loop's guard stops the run
        assert np.isnan(value)

  def test_eager_nan_label_raises(self):
    with pytest.raises(ValueError, match="labels hold NaN/inf at positions \\[1\\]"):
      cosent.cosent_loss(jnp.array([0.1, 0.9, 0.4]), jnp.array([0.0, jnp.nan, 1.0]))

  @chex.variants(with_jit=True, without_jit=True)
  def test_shape_errors_at_trace_time(self):
    with pytest.raises(ValueError, match="1-D scores and labels"):
      self.variant(cosent.cosent_loss)(jnp.ones((3, 1)), jnp.ones(3))


# --------------------------------------------------------------------------------------------------- Amos
class AmosBadInputTest(chex.TestCase):

  def _tx(self):
    return amos.amos(learning_rate=0.1, eta_fn=lambda name, shape: 1.0)

  def test_int_params_raise(self):
    with pytest.raises(TypeError, match="floating-point parameters.*int32"):
      self._tx().init({"w": jnp.ones(3, jnp.int32)})

  @chex.variants(with_jit=True, without_jit=True)
  def test_int_gradients_raise(self):
    tx = self._tx()
    p = {"w": jnp.ones(3)}
    with pytest.raises(TypeError, match="floating-point gradients"):
      self.variant(tx.update)({"w": jnp.ones(3, jnp.int32)}, tx.init(p), p)

  @chex.variants(with_jit=True, without_jit=True)
  def test_float_update_is_nonzero_and_finite(self):
    tx = self._tx()
    p = {"w": jnp.array([1.0, -2.0, 3.0])}
    u, _ = self.variant(tx.update)(p, tx.init(p), p)
    chex.assert_tree_all_finite(u)
    assert np.all(np.sign(u["w"]) == -np.sign(p["w"]))   # descends along g = theta


# ------------------------------------------------------------------------------------------- Perturb-Max
def test_sampling_without_a_key_says_so():
  from research import distributions
  with pytest.raises(TypeError, match="explicit PRNG key, got None"):
    distributions.sample(None, jnp.array([1.0, 0.0]))
