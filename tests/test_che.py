"""CHE task generators (kexue 9444 / Delétang et al.): shapes, masks and answers checked by brute force."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.tasks import che

B = 16


def _value_simple(tokens):
  """Brute force: Python eval of d op d ... with * binding tighter."""
  s = "".join({5: "+", 6: "-", 7: "*"}.get(t, str(t)) for t in tokens)
  return eval(s) % 5  # noqa: S307 (digits and + - * only)


def _value_brackets(tokens, equation=False):
  sym = {5: "+", 6: "-", 7: "(", 8: ")"} if equation else {5: "+", 6: "-", 7: "*", 8: "(", 9: ")"}
  s = "".join(sym.get(t, str(t)) for t in tokens)
  return eval(s) % 5  # noqa: S307 (digits, + - * and brackets only)


def _stack(tokens, k):
  st = list(tokens[:k])
  for t in tokens[k:]:
    if t == 2:
      if st:
        st.pop()
    else:
      st.append(t - 3)
  return st[::-1]


def _oracle(name, x):
  """Expected (targets, number of counted output tokens) for one example, by brute force."""
  x = [int(t) for t in x]
  n = len(x)
  if name == "even_pairs":
    return [sum(a != b for a, b in zip(x, x[1:])) % 2], 1
  if name == "parity_check":
    return [sum(x) % 2], 1
  if name == "cycle_navigation":
    st = 0
    for a in x:
      st = (st + {0: -1, 1: 0, 2: 1}[a]) % 5
    return [st], 1
  if name == "modular_arithmetic":
    return [_value_simple(x)], 1
  if name == "reverse_string":
    return x[::-1], n
  if name == "duplicate_string":
    return x + x, 2 * n
  if name == "odds_first":
    return x[0::2] + x[1::2], n
  if name == "bucket_sort":
    return sorted(x), n
  if name == "missing_duplicate":
    i = x.index(2)
    h = n // 2
    other = i + h if i < h else i - h
    return [x[other]], 1
  if name == "modular_arithmetic_brackets":
    return [_value_brackets(x)], 1
  if name == "solve_equation":
    lhs, rhs = x[:-2], x[-1]
    assert x[-2] == 10 and lhs.count(9) == 1
    sols = [v for v in range(5)
            if _value_brackets([v if t == 9 else t for t in lhs], equation=True) == rhs]
    assert len(sols) == 1, sols
    return sols, 1
  if name == "compute_sqrt":
    v = int("".join(map(str, x)), 2)
    m = (n + 1) // 2
    return [int(c) for c in format(math.isqrt(v), f"0{m}b")], m
  if name in ("binary_addition", "binary_multiplication"):
    k = x.index(2)
    a = int("".join(map(str, x[:k][::-1])) or "0", 2)
    b = int("".join(map(str, x[k + 1:][::-1])) or "0", 2)
    r = a + b if name == "binary_addition" else a * b
    bits = [int(c) for c in format(r, "b")[::-1]] + [2]
    return bits, len(bits)
  if name == "stack_manipulation":
    raise AssertionError("checked separately")
  raise KeyError(name)


@pytest.mark.parametrize("name", sorted(che.TASKS))
def test_task_shapes_masks_and_answers(name):
  task = che.get_task(name)
  for n in (task.fix_length(9),):
    b = che.sample(name, jax.random.key(n), B, n)
    m = task.output_length(n)
    assert b.inputs.shape == (B, n) and b.inputs.dtype == jnp.int32
    assert b.targets.shape == (B, m) and b.mask.shape == (B, m)
    x, y, mask = map(np.asarray, b)
    assert x.min() >= 0 and x.max() < task.input_vocab
    assert y.min() >= 0 and y.max() < task.output_vocab
    for i in range(B):
      if name == "stack_manipulation":
        # The initial stack is the maximal prefix of 0/1 symbols (actions are 2..4).
        k = next((j for j, t in enumerate(x[i]) if t >= 2), n)
        want = _stack(list(x[i]), k) + [2]
      else:
        want, _ = _oracle(name, x[i])
      cnt = int(mask[i].sum())
      assert cnt == len(want), (name, x[i], y[i], mask[i])
      assert list(y[i][:cnt]) == want, (name, x[i], y[i], want)
      assert np.all(mask[i][:cnt] == 1) and np.all(mask[i][cnt:] == 0)


def test_seeding_is_explicit_and_reproducible():
  for name in ("reverse_string", "solve_equation"):
    a = che.sample(name, jax.random.key(1), 4, 7)
    b = che.sample(name, jax.random.key(1), 4, 7)
    c = che.sample(name, jax.random.key(2), 4, 7)
    np.testing.assert_array_equal(a.inputs, b.inputs)
    assert not np.array_equal(a.inputs, c.inputs)


def test_jittable_generators_jit_and_answers_are_balanced():
  task = che.get_task("parity_check")
  f = jax.jit(task.sample, static_argnums=(1, 2))
  b = f(jax.random.key(0), 2048, 11)
  assert abs(float(b.targets.mean()) - 0.5) < 0.05  # parity of random bits is a fair coin
  assert all(che.TASKS[t].jittable for t in ("even_pairs", "bucket_sort", "binary_multiplication"))


def test_invalid_lengths_and_names():
  with pytest.raises(ValueError, match="odd"):
    che.sample("modular_arithmetic", jax.random.key(0), 2, 8)
  with pytest.raises(ValueError, match="even"):
    che.sample("missing_duplicate", jax.random.key(0), 2, 7)
  assert che.get_task("missing_duplicate").fix_length(41) == 40
  with pytest.raises(ValueError, match="valid names"):
    che.get_task("parity")


def test_model_inputs_and_masked_metrics():
  task = che.get_task("binary_addition")
  b = che.sample("binary_addition", jax.random.key(3), 4, 5)
  inp = che.model_inputs(task, b.inputs)
  assert inp.shape == (4, 5 + 6) and np.all(np.asarray(inp[:, 5:]) == task.input_vocab)
  # Perfect logits -> accuracy 1 and loss ~0; flipping only masked-out tokens changes nothing.
  logits = 50.0 * jax.nn.one_hot(b.targets, 3)
  assert float(che.masked_accuracy(logits, b.targets, b.mask)) == 1.0
  assert float(che.masked_cross_entropy(logits, b.targets, b.mask)) < 1e-6
  wrong_pad = jnp.where(b.mask[..., None] > 0, logits, 50.0 * jax.nn.one_hot((b.targets + 1) % 3, 3))
  assert float(che.masked_accuracy(wrong_pad, b.targets, b.mask)) == 1.0
  # Hand example: 2 examples, per-example mean over masked tokens, then batch mean.
  t = jnp.array([[0, 1, 0], [1, 1, 1]])
  m = jnp.array([[1., 1., 0.], [1., 1., 1.]])
  lg = 10.0 * jax.nn.one_hot(jnp.array([[0, 0, 1], [1, 1, 0]]), 2)
  np.testing.assert_allclose(float(che.masked_accuracy(lg, t, m)), (0.5 + 2 / 3) / 2, rtol=1e-6)
  # Cross-entropy summed over positions: uniform logits give (#masked) * log C per example.
  ce = che.masked_cross_entropy(jnp.zeros((2, 3, 2)), t, m)
  np.testing.assert_allclose(float(ce), (2 + 3) / 2 * np.log(2), rtol=1e-6)


@pytest.mark.parametrize("name", sorted(che.DYNAMIC))
def test_length_polymorphic_generators_match_the_oracle(name):
  """One compiled sampler for every length: tokens/targets/masks laid out as the model sees them."""
  task = che.get_task(name)
  total = che.max_total_tokens(task, 12)
  f = jax.jit(lambda k, n: che.dynamic_model_batch(task, k, 6, 12, n, total))
  for n in (task.fix_length(3), task.fix_length(12)):
    mb = jax.tree.map(np.asarray, f(jax.random.key(n), n))
    m = task.output_length(n)
    assert int(mb.total) == n + m
    for i in range(6):
      x = mb.tokens[i, :n]
      assert np.all(mb.tokens[i, n:n + m] == task.input_vocab)
      assert np.all(mb.tokens[i, n + m:] == task.input_vocab + 1)
      np.testing.assert_array_equal(mb.padding_mask[i], np.arange(total) < n + m)
      want, cnt = _oracle(name, x)
      assert mb.loss_mask[i].sum() == cnt and np.all(mb.loss_mask[i, n:n + cnt] == 1)
      assert list(mb.targets[i, n:n + cnt]) == want
