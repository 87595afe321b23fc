"""CHE task generators (kexue 9444 / Delétang et al.): shapes, masks and answers checked by brute force."""
import functools
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


# The official input vocabularies (``input_size`` of google-deepmind/randomized_positional_encodings, tasks/)
# and output lengths at input length n.
OFFICIAL_INPUT_SIZE = {
    "even_pairs": 2, "modular_arithmetic": 9, "parity_check": 2, "cycle_navigation": 3,
    "stack_manipulation": 5, "reverse_string": 2, "modular_arithmetic_brackets": 11, "solve_equation": 11,
    "duplicate_string": 2, "missing_duplicate": 4, "odds_first": 2, "binary_addition": 3,
    "binary_multiplication": 3, "compute_sqrt": 2, "bucket_sort": 5}
OFFICIAL_OUTPUT_LENGTH = {
    "stack_manipulation": lambda n: n + 1, "reverse_string": lambda n: n, "duplicate_string": lambda n: 2 * n,
    "odds_first": lambda n: n, "binary_addition": lambda n: n + 1, "binary_multiplication": lambda n: n,
    "compute_sqrt": lambda n: math.ceil(n / 2), "bucket_sort": lambda n: n}
LENGTHS = range(1, 42)   # every training length 1..40 and the first test length 41


def _le(bits):
  return int("".join(map(str, bits[::-1])) or "0", 2)


def _top_level_binary_ops(tokens):
  """Number of binary operators at bracket depth 1 (an operator after a digit or a ')')."""
  depth, count = 0, 0
  for i, t in enumerate(tokens):
    depth += int(t == 8) - int(t == 9)
    if depth == 1 and t in (5, 6, 7) and i > 0 and (tokens[i - 1] < 5 or tokens[i - 1] == 9):
      count += 1
  return count


def _oracle(name, x):
  """Expected targets (the counted output tokens, termination included) for one example, by brute force.

  Also asserts the official input format: no empty/zero binary operand, x >= 1 for Compute Sqrt, the odd-length
  padding of Missing Duplicate, no redundant outer brackets."""
  x = [int(t) for t in x]
  n = len(x)
  if name == "even_pairs":
    return [sum(a != b for a, b in zip(x, x[1:])) % 2]
  if name == "parity_check":
    return [sum(x) % 2]
  if name == "cycle_navigation":
    st = 0
    for a in x:
      st = (st + {0: -1, 1: 0, 2: 1}[a]) % 5
    return [st]
  if name == "modular_arithmetic":
    return [_value_simple(x)]
  if name == "reverse_string":
    return x[::-1]
  if name == "duplicate_string":
    return x + x
  if name == "odds_first":
    return x[1::2] + x[0::2]          # the official code: odd 0-based positions first
  if name == "bucket_sort":
    return sorted(x)
  if name == "missing_duplicate":
    if n == 1:
      assert x == [1]
      return [1]
    h = n // 2
    if n % 2:
      assert x[-1] == 3 and 3 not in x[:-1]
    i = x.index(2)
    assert i < 2 * h and x.count(2) == 1
    return [x[i + h if i < h else i - h]]
  if name == "modular_arithmetic_brackets":
    if n >= 5:
      assert x[0] == 8 and x[-1] == 9 and _top_level_binary_ops(x) == 1, x   # "(E op E)", never "((..))"
    return [_value_brackets(x)]
  if name == "solve_equation":
    if n < 3:
      assert x == [0] * n
      return [0]
    lhs, rhs = x[:-2], x[-1]
    assert x[-2] == 10 and lhs.count(9) == 1
    sols = [v for v in range(5)
            if _value_brackets([v if t == 9 else t for t in lhs], equation=True) == rhs]
    assert len(sols) == 1, sols
    return sols
  if name == "compute_sqrt":
    v = int("".join(map(str, x)), 2)
    assert v >= 1
    return [int(c) for c in format(math.isqrt(v), f"0{math.ceil(n / 2)}b")]
  if name in ("binary_addition", "binary_multiplication"):
    add = name == "binary_addition"
    if n <= 2:   # official: one n-bit value v <= 2^n - 2, no operator
      v = _le(x)
      assert 2 not in x and v <= 2 ** n - 2
      return ([int(c) for c in format(v, "b")[::-1]] if add else [0] * (n - 1)) + [2]
    k = x.index(2)
    a, b = _le(x[:k]), _le(x[k + 1:])
    assert x.count(2) == 1 and 1 <= k <= n - 2 and a >= 1 and b >= 1, x
    return [int(c) for c in format(a + b if add else a * b, "b")[::-1]] + [2]
  if name == "stack_manipulation":
    k = next((j for j, t in enumerate(x) if t >= 2), n)   # the initial stack: the prefix of 0/1 symbols
    assert k >= 1 and (k <= n - 1 or n == 1), x           # at least one action (n = 1: none possible)
    return _stack(x, k) + [2]
  raise KeyError(name)


def _check_batch(name, n, x, y, mask):
  task = che.get_task(name)
  m = task.output_length(n)
  assert x.shape[1] == n and y.shape[1] == m and mask.shape[1] == m
  assert x.min() >= 0 and x.max() < task.input_vocab
  assert y.min() >= 0 and y.max() < task.output_vocab
  for i in range(x.shape[0]):
    want = _oracle(name, x[i])
    cnt = int(mask[i].sum())
    assert cnt == len(want), (name, n, x[i], y[i], mask[i])
    assert list(y[i][:cnt]) == want, (name, n, x[i], y[i], want)
    assert np.all(mask[i][:cnt] == 1) and np.all(mask[i][cnt:] == 0)


def test_official_vocabularies_and_output_lengths():
  assert {k: t.input_vocab for k, t in che.TASKS.items()} == OFFICIAL_INPUT_SIZE
  for name, task in che.TASKS.items():
    for n in LENGTHS:
      assert task.output_length(n) == OFFICIAL_OUTPUT_LENGTH.get(name, lambda n: 1)(n), (name, n)
      assert task.valid_length(n) == (name != "modular_arithmetic" or n % 2 == 1), (name, n)


@pytest.mark.parametrize("name", sorted(che.TASKS))
def test_fixed_length_generators_match_the_oracle(name):
  """The fixed-length generator (used for evaluation) against the brute-force oracle: host generators at every
  length 1..41; jittable ones at the special lengths 1 and 2 and at the first test length 41, in one compile
  (one program per length is the cost; every length 1..41 of their logic is checked through the
  length-polymorphic generators below, which four of them share code and draws with)."""
  task = che.get_task(name)
  key = jax.random.key(0)
  if task.jittable:
    lengths = [n for n in (1, 2, 41) if task.valid_length(n)]
    batches = jax.jit(lambda k: [task._sample(jax.random.fold_in(k, n), B, n) for n in lengths])(key)
  else:
    lengths = [n for n in LENGTHS if task.valid_length(n)]
    batches = [che.sample(name, jax.random.fold_in(key, n), B, n) for n in lengths]
  for n, b in zip(lengths, batches):
    assert b.inputs.shape == (B, n) and b.inputs.dtype == jnp.int32
    _check_batch(name, n, *map(np.asarray, b))


def test_every_jittable_task_has_a_length_polymorphic_generator():
  assert set(che.DYNAMIC) == {k for k, t in che.TASKS.items() if t.jittable}


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
  assert che.get_task("modular_arithmetic").fix_length(100) == 99     # official: length -= 1 if even
  assert che.get_task("missing_duplicate").fix_length(41) == 41       # odd lengths exist (padded with 3)
  with pytest.raises(ValueError, match="valid names"):
    che.get_task("parity")


DRAWS = 10_000


@functools.partial(jax.jit, static_argnums=(0, 1))
def _draw(name, count, key, n):
  return che.DYNAMIC[name](key, count, 40, n)


def test_sampling_distributions_match_the_official_generators():
  """Properties of the official draws over 10^4 examples (vectorised checks)."""
  key = jax.random.key(7)

  def draws(name, n, count=DRAWS):   # one compile per task for every n: the length-polymorphic generator
    return np.asarray(_draw(name, count, key, n)[0])[:, :n]

  # Stack Manipulation, n = 40: the stack length is uniform in [1, n-1], so no empty action sequence.
  x = draws("stack_manipulation", 40)
  first_action = np.argmax(x >= 2, axis=1)
  assert np.all(np.any(x >= 2, axis=1)) and first_action.min() == 1 and first_action.max() == 39
  # Binary Addition / Multiplication: operands non-empty and nonzero, |a| uniform in [1, n-2].
  for name in ("binary_addition", "binary_multiplication"):
    x = draws(name, 40)
    sep = np.argmax(x == 2, axis=1)
    assert np.all((x == 2).sum(1) == 1) and sep.min() == 1 and sep.max() == 38
    idx = np.arange(40)[None]
    assert np.all(np.any((x == 1) & (idx < sep[:, None]), axis=1))      # a != 0
    assert np.all(np.any((x == 1) & (idx > sep[:, None]), axis=1))      # b != 0
    # n = 4, |a| = 2: a uniform on {1, 2, 3} (official random.randint(1, 2**2 - 1)).
    x4 = draws(name, 4)
    a2 = x4[x4[:, 2] == 2][:, :2] @ np.array([1, 2])
    assert a2.min() >= 1 and np.all(np.abs(np.bincount(a2, minlength=4)[1:] / len(a2) - 1 / 3) < 0.03)
    np.testing.assert_array_equal(draws(name, 3)[:64], [[1, 2, 1]] * 64)
  # Compute Sqrt, n = 3: x uniform on [1, 7], never 0.
  x = np.asarray(che.sample("compute_sqrt", key, DRAWS, 3).inputs) @ np.array([4, 2, 1])
  assert x.min() == 1 and np.all(np.abs(np.bincount(x, minlength=8)[1:] / DRAWS - 1 / 7) < 0.02)
  # Modular Arithmetic brackets, n = 9: always "(E_a op E_b)", a uniform in [1, 5], op uniform over + - *.
  x = np.asarray(che.sample("modular_arithmetic_brackets", key, DRAWS, 9).inputs)
  left, ops = [], []
  for row in x:
    row = list(row)
    assert _top_level_binary_ops(row) == 1, row
    depth, j = 0, 1
    while True:    # the end of the left operand: back at depth 0 (relative to the outer bracket) on a digit/')'
      depth += int(row[j] == 8) - int(row[j] == 9)
      if depth == 0 and (row[j] < 5 or row[j] == 9):
        break
      j += 1
    left.append(j)
    ops.append(row[j + 1])
  assert np.all(np.abs(np.bincount(left, minlength=6)[1:] / DRAWS - 1 / 5) < 0.02)
  assert np.all(np.abs(np.bincount(ops, minlength=8)[5:] / DRAWS - 1 / 3) < 0.02)


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
  """The training generator of the curriculum (one compiled sampler for every length), at every length 1..41:
  tokens/targets/masks laid out as the model sees them."""
  task = che.get_task(name)
  total = che.max_total_tokens(task, 41)
  f = jax.jit(lambda k, n: che.dynamic_model_batch(task, k, 6, 41, n, total))
  for n in (n for n in LENGTHS if task.valid_length(n)):
    mb = jax.tree.map(np.asarray, f(jax.random.key(n), n))
    m = task.output_length(n)
    assert int(mb.total) == n + m
    assert np.all(mb.tokens[:, n:n + m] == task.input_vocab) and np.all(mb.tokens[:, n + m:] == task.input_vocab + 1)
    np.testing.assert_array_equal(mb.padding_mask, np.broadcast_to(np.arange(total) < n + m, (6, total)))
    _check_batch(name, n, mb.tokens[:, :n], mb.targets[:, n:n + m], mb.loss_mask[:, n:n + m])


@pytest.mark.parametrize("name", ["missing_duplicate", "binary_multiplication", "stack_manipulation"])
def test_curriculum_samplers_match_the_oracle(name):
  """The jitted curriculum sampler used by the training step (length-polymorphic or lax.switch over lengths):
  over 60 steps it reaches many lengths, each batch laid out and answered like the static generator."""
  task = che.get_task(name)
  f = jax.jit(che.curriculum_sampler(task, 4, 41))
  seen = set()
  for s in range(60):
    mb = jax.tree.map(np.asarray, f(jax.random.key(s)))
    n, m = int(mb.length), task.output_length(int(mb.length))
    seen.add(n)
    _check_batch(name, n, mb.tokens[:, :n], mb.targets[:, n:n + m], mb.loss_mask[:, n:n + m])
  assert len(seen) >= 20 and 1 <= min(seen) and max(seen) <= 41
