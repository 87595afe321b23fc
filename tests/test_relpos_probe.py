"""Tests for the zeros -> positions probe (research.tasks.probe) and the relpos_probe config end to end."""
import math

import jax.numpy as jnp
import numpy as np
import pytest

from research.tasks import probe
from tests.helpers import run_experiment


def test_probe_data():
  d = probe.make_probe(5)
  np.testing.assert_array_equal(d["tokens"], [[0] * 5])
  np.testing.assert_array_equal(d["targets"], [[0, 1, 2, 3, 4]])
  d = probe.make_probe(3, "cls_sep")
  np.testing.assert_array_equal(d["tokens"], [[probe.CLS, 0, 0, 0, probe.SEP]])
  np.testing.assert_array_equal(d["weights"], [[0, 1, 1, 1, 0]])
  np.testing.assert_array_equal(d["targets"][0, 1:-1], [0, 1, 2])
  d = probe.make_probe(3, "bos")
  np.testing.assert_array_equal(d["weights"], [[0, 1, 1, 1]])
  with pytest.raises(ValueError, match="positive integer"):
    probe.make_probe(0)
  with pytest.raises(ValueError, match="Unknown boundary"):
    probe.make_probe(4, "pad")


def test_theory_bounds_and_tie_aware_accuracy():
  assert probe.theory(8, row_stochastic_fails=True, symmetric_cap=False) == {"ce": math.log(8), "acc": 1 / 8}
  assert probe.theory(8, row_stochastic_fails=False, symmetric_cap=True)["acc"] == 0.5
  t = probe.theory(7, row_stochastic_fails=False, symmetric_cap=True)
  assert t["acc"] == pytest.approx(4 / 7) and t["ce"] == pytest.approx(6 / 7 * math.log(2))
  # brute force of the odd-n mirror bound: pairs {i, n+1-i} share a prediction, the middle is alone
  n = 7
  best = sum(1 for _ in range(n // 2)) + 1
  assert t["acc"] == pytest.approx(best / n)
  # identical rows up to rounding noise -> exactly 1/n; distinct rows -> exact accuracy
  rng = np.random.default_rng(0)
  row = rng.normal(size=8) * 1e-4
  logits = jnp.asarray(np.tile(row, (8, 1)) + rng.normal(size=(8, 8)) * 1e-7)
  acc = probe.tie_aware_accuracy(logits, jnp.arange(8), jnp.ones(8))
  assert float(acc) == pytest.approx(1 / 8)
  assert float(probe.tie_aware_accuracy(jnp.eye(8) * 5, jnp.arange(8), jnp.ones(8))) == 1.0


def test_verdicts_and_rows():
  from experiments.relpos_probe import grid, tables
  from research.verdict import Verdict
  ln8, three = math.log(8), np.ones(3)
  assert tables.probe_assessment("fails", 8, ln8 * three, three / 8).verdict is Verdict.AGREES
  assert tables.probe_assessment("fails", 8, three, 0.5 * three).verdict is Verdict.DIFFERS
  assert tables.probe_assessment("passes", 8, 0 * three, three).verdict is Verdict.AGREES
  assert tables.probe_assessment("passes", 8, three, np.array([1, 7 / 8, 6 / 8])).verdict is Verdict.INCONCLUSIVE
  assert tables.probe_assessment("passes", 8, three, np.full(3, 6 / 8)).verdict is Verdict.DIFFERS
  # a capped row that never left 1/n has not learned: it says nothing about the cap (was "agrees")
  assert tables.probe_assessment("capped", 128, math.log(128) * three, three / 128).verdict is Verdict.NOT_LEARNED
  assert tables.probe_assessment("capped", 8, math.log(2) * three, 0.5 * three).verdict is Verdict.AGREES
  assert tables.probe_assessment("capped", 8, 0 * three, three).verdict is Verdict.DIFFERS
  # one seed can show a theorem's exact test but never that a model learned
  assert tables.probe_assessment("passes", 8, np.zeros(1), np.ones(1)).verdict is Verdict.INCONCLUSIVE
  expected = {r: v.expected for r, v in grid.PROBE_ROWS.items()}
  for pe in ("none", "rope", "t5_bias", "alibi_sym", "alibi_asym", "transformer_xl"):
    assert expected[f"{pe}_softmax_bi"] == "fails"
  assert expected["rope_softmax_causal"] == "fails" and expected["rope_softmax_bi_clssep"] == "passes"


def test_smoke_end_to_end(tmp_path):
  rec = run_experiment("relpos_probe.py", "smoke", tmp_path)
  m = rec["metrics"]
  # softmax + RoPE: the theorem (identical rows), trained: acc exactly 1/n, CE -> ln n
  assert m["probe_rope_softmax_bi_n8_acc"] == pytest.approx(1 / 8)
  assert m["probe_rope_softmax_bi_n8_row_spread"] < 1e-4
  assert abs(m["probe_rope_softmax_bi_n8_ce"] - math.log(8)) < 2e-2
  assert m["probe_rope_l2_bi_n8_acc"] > 0.5                # l2 escapes the defect
  assert "pretrain_std_softmax_val_acc" in m
  assert (tmp_path / "probe_accuracy.png").exists() and (tmp_path / "pretrain_curves.png").exists()
  # a re-run resumes every population from its checkpoint: same records, same numbers
  before = (tmp_path / "metrics.jsonl").read_text()
  again = run_experiment("relpos_probe.py", "smoke", tmp_path)
  assert (tmp_path / "metrics.jsonl").read_text() == before
  assert again["metrics"]["probe_rope_l2_bi_n8_acc"] == m["probe_rope_l2_bi_n8_acc"]


def test_pretrain_rows_steps_to_loss_and_protocol_note():
  import ml_collections

  from configs.relpos_probe import get_config
  from experiments.relpos_probe import tables
  from research.report import Results
  pc = ml_collections.ConfigDict(get_config("pretrain").pretrain)
  steps = np.array([150, 300, 450])
  def curve(losses):   # three seeds, shifted a little
    vl = np.array([[v + 0.01 * s for v in losses] for s in range(3)])
    return {"step": steps, "val_loss": vl, "val_acc": 1 - vl / 4}
  curves = {"gau_softmax": curve([3.0, 2.0, 1.5]), "gau_l2": curve([3.0, 1.4, 1.2])}
  res = Results()
  tables.pretrain_rows(pc, curves, 0.15, res)
  assert res.metrics["pretrain_fixed_loss"] == pytest.approx(1.52)
  assert res.metrics["pretrain_gau_l2_steps_to_loss"] == 300 and res.metrics["pretrain_gau_softmax_steps_to_loss"] == 450
  rows = {r.name.split(":")[0]: r for r in res.rows}
  assert rows["MLM steps to val loss 1.5200"].verdict == "agrees"
  assert rows["MLM val acc"].verdict == "agrees" and "(n=3)" in rows["MLM val acc"].measured
  assert rows["pretrain protocol vs spec 03 6.4"].verdict == "measured"
  # below the majority-class accuracy nothing is compared
  res = Results()
  low = {k: dict(c, val_acc=np.full((3, 3), 0.1)) for k, c in curves.items()}
  tables.pretrain_rows(pc, low, 0.15, res)
  assert {r.name.split(":")[0]: r for r in res.rows}["MLM val acc"].verdict == "not learned"
