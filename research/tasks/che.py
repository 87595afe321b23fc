"""The Chomsky-hierarchy (CHE) task suite of Delétang et al. (ICLR 2023), reimplemented from the task
definitions (spec 07 §3.6) with explicit PRNG keys.

Every task is a :class:`Task` with

* ``sample(key, batch_size, length) -> Batch`` with ``Batch.inputs`` int32 ``[B, length]``,
  ``Batch.targets`` int32 ``[B, output_length(length)]`` and ``Batch.mask`` float32 of the same shape
  (1 where the output token counts for the accuracy, 0 on padding after a termination token);
* ``input_vocab``, ``output_vocab`` (class counts), ``output_length(n)``, ``level`` ("R", "DCF", "CS");
* ``valid_length(n)`` / ``fix_length(n)``: Modular Arithmetic (simple) only exists at odd lengths;
  ``fix_length`` maps a requested length to the largest valid length <= n, which is what the official
  generator does (``if length % 2 != 1: length -= 1``). Every other task exists at every length >= 1, as in the
  official code (Missing Duplicate pads odd lengths, see below);
* ``jittable``: True when ``sample`` is a pure JAX function (``jax.jit(task.sample, static_argnums=(1, 2))``
  works). Three generators are recursive or need integers of hundreds of bits (Modular Arithmetic with
  brackets, Solve Equation, Compute Sqrt); as the spec allows, they run on the host with a numpy generator
  seeded from the JAX key, so they are still explicitly and reproducibly seeded.

I/O convention of the models (non-autoregressive, spec 07 §3.7): the encoder input is the ``length`` task
tokens followed by ``output_length`` *empty* tokens (id ``input_vocab``, see :func:`model_inputs`);
predictions are read from the last ``output_length`` positions. The metric is the per-output-token accuracy,
masked, averaged per example and then over the batch (:func:`masked_accuracy`); the training loss is the
cross-entropy summed over the output positions and averaged over the batch (:func:`masked_cross_entropy`).

Fidelity to the official generators (google-deepmind/randomized_positional_encodings, ``tasks/``, the code
that produced the published numbers): labels, output lengths, input vocabularies (``input_size``) and the
sampling distributions follow that code; where its docstring and its code disagree (Odds First) the code is
followed. The official generators draw from numpy's/Python's global RNGs; here every draw comes from the JAX
key (host generators: a numpy generator seeded from it), so the *distributions* are the official ones, not the
individual draws. Input vocabularies equal the official ``input_size`` even where a token is never generated
(Modular Arithmetic's blank ``_`` = 8; the brackets task's ``x`` = 10): the size only sets the one-hot width.

Token maps (documented, since the reference code and the article differ in places):

=========================== ===================================================================
Even Pairs                  {0,1}; target = [first != last] (parity of adjacent unequal pairs)
Modular Arithmetic (simple) digits 0..4, + = 5, - = 6, * = 7 (8 = the official blank '_', never drawn;
                            input vocab 9); odd lengths d op d op ... d; target value mod 5 with * binding
                            tighter
Parity Check                {0,1}; target = (#1s) mod 2
Cycle Navigation            actions {0,1,2} move by {-1, 0, +1} on a 5-cycle from 0 (reference-code
                            map); target = final state
Stack Manipulation          0/1 = stack symbols (initial stack written bottom..top), 2 = POP, 3 = PUSH 0,
                            4 = PUSH 1; POP on the empty stack is a no-op; output = final stack
                            top-to-bottom, then the termination token 2, padded (masked) to length+1.
                            Official draw: stack length uniform in [1, n-1], so at least one action (n = 1:
                            a one-symbol stack and no action)
Reverse String              {0,1} -> reversed
Modular Arithmetic brackets digits 0..4, + 5, - 6, * 7, ( 8, ) 9 (10 = the official 'x', never drawn;
                            input vocab 11); the official grammar by length: 1: d, 2: -d, 3: (d), 4: (-d),
                            n >= 5: (E_a op E_b) with a uniform in [1, n-4], b = n-3-a, op uniform in
                            {+, -, *}; no redundant outer (E) at n >= 5; target = value mod 5
Solve Equation              digits 0..4, + 5, - 6, ( 7, ) 8, x 9, = 10; "E(x) = c" with E (n-2 tokens, the
                            grammar above over + and - only) and one digit replaced by x: the official rule
                            draws a token index uniformly and moves right (cyclically) to the next digit;
                            target = x (unique since the coefficient is +-1). n < 3: all-zero input, target 0
                            (official)
Duplicate String            {0,1}: w -> ww (2n outputs)
Missing Duplicate           ww over {0,1} (|w| = n // 2) with one position of ww replaced by the mask token
                            2; odd n: the empty token 3 appended (input vocab 4, official); n = 1: input
                            [1], target 1 (official); target = the masked symbol
Odds First                  t1 t2 t3 t4 ... -> t2 t4 ... t1 t3 ...: the official *code* outputs
                            ``x[1::2]`` then ``x[::2]`` (its docstring says "odd indices first", 1-based;
                            its code takes the odd 0-based indices first, i.e. t2, t4, ...). Followed here
Binary Addition             a + b, bits little-endian, '+' = 2; output = sum little-endian in the
                            minimal number of bits (>= 1), then termination 2, masked padding, length n+1.
                            Official draw (n >= 3): |a| uniform in [1, n-2], |b| = n-1-|a|, a uniform in
                            [1, 2^|a| - 1] written in |a| bits (zeros allowed at the end), same for b: no
                            empty and no zero operand. n <= 2 (official): the input is one n-bit value
                            v in [0, 2^n - 2] with no operator, the output v
Binary Multiplication       a * b, same conventions ('*' = 2), output length n (official: the product has
                            at most |a|+|b| = n-1 bits, plus the termination token). n <= 2 (official):
                            one n-bit value, output n-1 zeros then the termination token
Compute Sqrt                x in binary, big-endian, n bits (leading zeros allowed), x uniform in
                            [1, 2^n - 1] (official: no x = 0) -> floor(sqrt x), big-endian, ceil(n/2) bits
Bucket Sort                 {0..4}^n -> sorted
=========================== ===================================================================
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Batch(NamedTuple):
  inputs: jax.Array   # int32 [B, n]
  targets: jax.Array  # int32 [B, output_length]
  mask: jax.Array     # float32 [B, output_length]


@dataclasses.dataclass(frozen=True)
class Task:
  name: str
  level: str
  input_vocab: int
  output_vocab: int
  output_length: Callable[[int], int]
  _sample: Callable
  jittable: bool = True
  parity: int | None = None  # None: any length; 0: even lengths only; 1: odd lengths only
  min_length: int = 1

  def valid_length(self, n: int) -> bool:
    return n >= self.min_length and (self.parity is None or n % 2 == self.parity)

  def fix_length(self, n: int) -> int:
    """The largest valid length <= n (raises if there is none)."""
    m = int(n)
    while m >= self.min_length and not self.valid_length(m):
      m -= 1
    if m < self.min_length:
      raise ValueError(f"task {self.name!r} has no valid length <= {n} (minimum {self.min_length}).")
    return m

  def sample(self, key, batch_size: int, length: int) -> Batch:
    length = int(length)
    batch_size = int(batch_size)
    if batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    if not self.valid_length(length):
      parity = {0: "even", 1: "odd"}.get(self.parity, "any")
      raise ValueError(
          f"task {self.name!r} is not defined at length {length} (needs length >= {self.min_length}, "
          f"parity: {parity}); use task.fix_length({length}) = {self.fix_length(length) if length >= self.min_length else 'n/a'}.")
    return self._sample(key, batch_size, length)


# ----------------------------------------------------------------------------------------------- helpers

def _full_mask(b, m):
  return jnp.ones((b, m), jnp.float32)


def _bits(key, b, n):
  return jax.random.bernoulli(key, 0.5, (b, n)).astype(jnp.int32)


def _host_rng(key) -> np.random.Generator:
  """A numpy generator seeded from a JAX key (explicit seeding for the host-side generators)."""
  data = np.asarray(jax.random.key_data(key)).astype(np.uint64).ravel()
  return np.random.default_rng([int(x) for x in data])


# ------------------------------------------------------------------------------------------ regular (R)

def _even_pairs(key, b, n):
  x = _bits(key, b, n)
  y = (x[:, :1] != x[:, -1:]).astype(jnp.int32)
  return Batch(x, y, _full_mask(b, 1))


def _parity(key, b, n):
  x = _bits(key, b, n)
  y = (jnp.sum(x, axis=1, keepdims=True) % 2).astype(jnp.int32)
  return Batch(x, y, _full_mask(b, 1))


def _cycle_navigation(key, b, n):
  x = jax.random.randint(key, (b, n), 0, 3, dtype=jnp.int32)
  y = (jnp.sum(x - 1, axis=1, keepdims=True) % 5).astype(jnp.int32)
  return Batch(x, y, _full_mask(b, 1))


def _eval_simple_arith(tokens, n):
  """Evaluates the first n tokens d op d op ... d of ``tokens`` (n odd, may be traced) mod 5 with * binding
  tighter, by a left-to-right scan over (op, digit) pairs; pairs at or after token n are skipped."""
  digits = tokens[0::2]
  ops = tokens[1::2][:digits.shape[0] - 1]
  nops = (n - 1) // 2

  def step(carry, xs):
    total, term = carry
    j, op, d = xs
    is_mul = op == 7
    sign = jnp.where(op == 6, -1, 1)
    new_total = jnp.where(is_mul, total, (total + term) % 5)
    new_term = jnp.where(is_mul, (term * d) % 5, (sign * d) % 5)
    active = j < nops
    return (jnp.where(active, new_total, total), jnp.where(active, new_term, term)), None

  (total, term), _ = jax.lax.scan(step, (jnp.int32(0), digits[0] % 5),
                                  (jnp.arange(ops.shape[0]), ops, digits[1:]))
  return (total + term) % 5


def _dyn_modular_arithmetic(key, b, n_max, n):
  k1, k2 = jax.random.split(key)
  digits = jax.random.randint(k1, (b, (n_max + 1) // 2), 0, 5, dtype=jnp.int32)
  ops = jax.random.randint(k2, (b, n_max // 2), 5, 8, dtype=jnp.int32)
  x = jnp.zeros((b, n_max), jnp.int32).at[:, 0::2].set(digits).at[:, 1::2].set(ops)
  y = jax.vmap(lambda t: _eval_simple_arith(t, n))(x)[:, None].astype(jnp.int32)
  return x, y, jnp.ones((b, 1), jnp.float32)


# --------------------------------------------------------------------------- deterministic context-free

def _stack_one(stack_len, tokens, n):
  """Runs the actions of one example: the first n entries of tokens [n_max] (n may be traced); the first
  stack_len tokens are the initial stack. Returns (out, mask) [n_max + 1]: the final stack top-to-bottom, the
  termination token 2, zeros (mask 1 up to the termination token)."""
  n_max = tokens.shape[0]
  cap = n_max + 1

  def step(carry, xs):
    buf, top = carry  # buf[0..top-1] is the stack, bottom first
    i, tok = xs
    init = i < stack_len
    push_sym = jnp.where(init, tok, tok - 3)  # PUSH 0 = 3, PUSH 1 = 4
    live = i < n
    is_push = live & (init | (tok >= 3))
    is_pop = live & (~init) & (tok == 2)
    buf = jnp.where(is_push, buf.at[top].set(push_sym), buf)
    top = jnp.where(is_push, top + 1, jnp.where(is_pop, jnp.maximum(top - 1, 0), top))
    return (buf, top), None

  (buf, top), _ = jax.lax.scan(step, (jnp.zeros((cap,), jnp.int32), jnp.int32(0)),
                               (jnp.arange(n_max), tokens))
  # output top-to-bottom: out[j] = buf[top-1-j] for j < top, then termination 2 at j == top.
  j = jnp.arange(cap)
  src = jnp.clip(top - 1 - j, 0, cap - 1)
  out = jnp.where(j < top, buf[src], 2)
  mask = (j <= top).astype(jnp.float32)
  out = jnp.where(j <= top, out, 0)
  return out, mask


def _dyn_stack_manipulation(key, b, n_max, n):
  """Official draw: the initial stack has length uniform in [1, n-1] (at least one action); n = 1: one stack
  symbol and no action."""
  k1, k2, k3 = jax.random.split(key, 3)
  stack_len = jax.random.randint(k1, (b,), 1, jnp.maximum(n, 2), dtype=jnp.int32)
  sym = jax.random.randint(k2, (b, n_max), 0, 2, dtype=jnp.int32)
  act = jax.random.randint(k3, (b, n_max), 2, 5, dtype=jnp.int32)
  x = jnp.where(jnp.arange(n_max)[None, :] < stack_len[:, None], sym, act)
  y, mask = jax.vmap(lambda st, t: _stack_one(st, t, n))(stack_len, x)
  return x, y, mask


def _reverse_string(key, b, n):
  x = _bits(key, b, n)
  return Batch(x, x[:, ::-1], _full_mask(b, n))


def _gen_expr(rng, n, ops, leaves):
  """Random fully-bracketed expression of exactly n tokens, the official grammar by length:

    n = 1: d;  n = 2: -d;  n = 3: (d);  n = 4: (-d);
    n >= 5: (E_a op E_b), a uniform in [1, n-4], b = n-3-a, op uniform over the operators,

  digits uniform in 0..4 (``generate_one_expression_and_result`` of the official
  ``tasks/dcf/modular_arithmetic_brackets.py``; there is no redundant outer "(E)" at n >= 5).

  Returns a list of tokens (ints: digits 0..4, or the ids in ``ops``: '+','-','*','(',')') and marks leaf
  positions into ``leaves`` (list of token indices, relative to the returned list)."""
  plus, minus, times, lp, rp = ops
  if n == 1:
    leaves.append(0)
    return [int(rng.integers(5))]
  if n == 2:
    leaves.append(1)
    return [minus, int(rng.integers(5))]
  if n <= 4:
    inner_leaves = []
    inner = _gen_expr(rng, n - 2, ops, inner_leaves)
    leaves.extend(i + 1 for i in inner_leaves)
    return [lp] + inner + [rp]
  a = int(rng.integers(1, n - 3))  # left operand length in [1, n-4]
  op_choices = [plus, minus] if times is None else [plus, minus, times]
  op = op_choices[int(rng.integers(len(op_choices)))]
  la, lb = [], []
  left = _gen_expr(rng, a, ops, la)
  right = _gen_expr(rng, n - 3 - a, ops, lb)
  leaves.extend(i + 1 for i in la)
  leaves.extend(i + 2 + a for i in lb)
  return [lp] + left + [op] + right + [rp]


def _parse_linear(tokens, ops, x_tok):
  """Evaluates a fully-bracketed expression to (a, b) meaning a*x + b (mod 5); x_tok marks the unknown."""
  plus, minus, times, lp, rp = ops
  pos = 0

  def expr():
    nonlocal pos
    t = tokens[pos]
    if t == lp:
      pos += 1
      left = expr()
      if tokens[pos] == rp:
        pos += 1
        return left
      op = tokens[pos]
      pos += 1
      right = expr()
      assert tokens[pos] == rp
      pos += 1
      if op == plus:
        return ((left[0] + right[0]) % 5, (left[1] + right[1]) % 5)
      if op == minus:
        return ((left[0] - right[0]) % 5, (left[1] - right[1]) % 5)
      assert left[0] == 0 or right[0] == 0
      return ((left[0] * right[1] + left[1] * right[0]) % 5, (left[1] * right[1]) % 5)
    if t == minus:
      pos += 1
      a, c = expr()
      return ((-a) % 5, (-c) % 5)
    pos += 1
    if t == x_tok:
      return (1, 0)
    return (0, t % 5)

  out = expr()
  assert pos == len(tokens)
  return out


_BRACKET_OPS = (5, 6, 7, 8, 9)
_EQUATION_OPS = (5, 6, None, 7, 8)
_X_TOKEN, _EQ_TOKEN = 9, 10


def _modular_arithmetic_brackets(key, b, n):
  rng = _host_rng(key)
  x = np.zeros((b, n), np.int32)
  y = np.zeros((b, 1), np.int32)
  for i in range(b):
    toks = _gen_expr(rng, n, _BRACKET_OPS, [])
    x[i] = toks
    y[i, 0] = _parse_linear(toks, _BRACKET_OPS, x_tok=-1)[1]
  return Batch(jnp.asarray(x), jnp.asarray(y), _full_mask(b, 1))


def _solve_equation(key, b, n):
  """Official draw: an expression E of n-2 tokens (the grammar of :func:`_gen_expr` over + and -), a token
  index drawn uniformly and moved right (cyclically) to the next digit, that digit replaced by x; the input is
  ``E(x) = E's value`` and the target the replaced digit. n < 3: all-zero input and target 0 (official)."""
  x = np.zeros((b, n), np.int32)
  y = np.zeros((b, 1), np.int32)
  if n < 3:
    return Batch(jnp.asarray(x), jnp.asarray(y), _full_mask(b, 1))
  rng = _host_rng(key)
  for i in range(b):
    leaves = []
    toks = _gen_expr(rng, n - 2, _EQUATION_OPS, leaves)
    start = int(rng.integers(n - 2))
    leaf = next((j for j in leaves if j >= start), leaves[0])   # leaves are sorted token indices
    sol = toks[leaf]
    rhs = _parse_linear(toks, _EQUATION_OPS, x_tok=-1)[1]
    toks[leaf] = _X_TOKEN
    x[i] = toks + [_EQ_TOKEN, rhs]
    y[i, 0] = sol
  return Batch(jnp.asarray(x), jnp.asarray(y), _full_mask(b, 1))


# ------------------------------------------------------------------------------- context-sensitive (CS)

def _duplicate_string(key, b, n):
  x = _bits(key, b, n)
  return Batch(x, jnp.concatenate([x, x], axis=1), _full_mask(b, 2 * n))


def _missing_duplicate(key, b, n):
  """Official generator: w of n // 2 bits, ww with one uniformly drawn position replaced by 2, and for odd n
  the empty token 3 appended; n = 1: input [1], target 1."""
  if n == 1:
    ones = jnp.ones((b, 1), jnp.int32)
    return Batch(ones, ones, _full_mask(b, 1))
  k1, k2 = jax.random.split(key)
  h = n // 2
  w = _bits(k1, b, h)
  ww = jnp.concatenate([w, w], axis=1)
  pos = jax.random.randint(k2, (b,), 0, 2 * h)
  y = jnp.take_along_axis(ww, pos[:, None], axis=1)
  x = jnp.where(jnp.arange(2 * h)[None, :] == pos[:, None], 2, ww)
  x = jnp.concatenate([x, jnp.full((b, n % 2), 3, x.dtype)], axis=1)
  return Batch(x.astype(jnp.int32), y.astype(jnp.int32), _full_mask(b, 1))


def _odds_first(key, b, n):
  """Official code: ``concatenate([x[:, 1::2], x[:, ::2]])`` (odd 0-based positions first)."""
  x = _bits(key, b, n)
  return Batch(x, jnp.concatenate([x[:, 1::2], x[:, 0::2]], axis=1), _full_mask(b, n))


def _carry_bits(digit_sums, out_len):
  """Little-endian digit sums (>= 0 ints) [m] -> binary digits [out_len] with carries propagated."""
  m = digit_sums.shape[0]
  padded = jnp.zeros((out_len,), jnp.int32).at[:m].set(digit_sums[:out_len])

  def step(carry, s):
    t = s + carry
    return t // 2, t % 2

  _, bits = jax.lax.scan(step, jnp.int32(0), padded)
  return bits


def _nonzero_bits(key, b, n, lengths):
  """[b, n] bits, row i uniform over the *nonzero* strings of its first ``lengths[i]`` bits (zeros after).

  Rejection sampling in a ``lax.while_loop`` (jittable): a row is redrawn until it is nonzero, so each row is
  exactly uniform on {1, ..., 2^len - 1} in binary, the official ``random.randint(1, 2**len - 1)``. Needs
  lengths >= 1 (the expected number of rounds is at most 2 per row)."""
  valid = jnp.arange(n)[None, :] < lengths[:, None]

  def draw(i):
    return jax.random.bernoulli(jax.random.fold_in(key, i), 0.5, (b, n)) & valid

  def body(state):
    i, bits, ok = state
    new = draw(i)
    take = (~ok) & jnp.any(new, axis=1)
    return i + 1, jnp.where(take[:, None], new, bits), ok | take

  bits0 = draw(0)
  _, bits, _ = jax.lax.while_loop(lambda st: ~jnp.all(st[2]), body,
                                  (jnp.int32(1), bits0, jnp.any(bits0, axis=1)))
  return bits.astype(jnp.int32)


def _binary_output(res, nbits, out_len):
  """res [out_len] little-endian bits -> (targets, mask): bits below nbits, termination 2 at nbits, zeros."""
  j = jnp.arange(out_len)
  y = jnp.where(j < nbits, res, jnp.where(j == nbits, 2, 0))
  return y, (j <= nbits).astype(jnp.float32)


def _dyn_binary_op(key, b, n_max, n, mul: bool):
  """Binary Addition (output length n+1) / Multiplication (output length n), the official generators.

  n >= 3: |a| uniform in [1, n-2], |b| = n-1-|a|; a uniform in [1, 2^|a| - 1] and b in [1, 2^|b| - 1], each
  written little-endian in exactly |a| (|b|) bits; input ``a 2 b``; output = a+b (a*b) little-endian in its
  minimal number of bits, the termination token 2, then masked zeros.
  n <= 2: the official code draws one value v uniform in [0, 2^n - 2], writes it in n bits (no operator);
  addition outputs v (minimal bits, at least one), multiplication n-1 zeros; then the termination token.
  Length-polymorphic (n may be traced, n <= n_max): both cases are drawn and one is selected.
  """
  out_len = n_max if mul else n_max + 1
  idx = jnp.arange(n_max)
  j = jnp.arange(out_len)
  k1, k2, k3, k4 = jax.random.split(key, 4)
  # n >= 3 (the lengths are clamped to >= 1 so that the draw is defined at every n; unused for n <= 2)
  len_a = jax.random.randint(k1, (b,), 1, jnp.maximum(n - 1, 2), dtype=jnp.int32)     # [1, n-2]
  a_bits = _nonzero_bits(k2, b, n_max, len_a)                                          # offsets 0..|a|-1
  b_bits = _nonzero_bits(k3, b, n_max, jnp.maximum(n - 1 - len_a, 1))                  # offsets 0..|b|-1

  def one(k, a, bb):
    b_at = jnp.take(bb, jnp.clip(idx - k - 1, 0, n_max - 1))          # b shifted to positions k+1..
    x = jnp.where(idx < k, a, jnp.where(idx == k, 2, b_at))
    sums = jnp.convolve(a, bb) if mul else a + bb                        # digit sums at index i (+ j)
    res = _carry_bits(sums.astype(jnp.int32), out_len)
    nbits = jnp.max(jnp.where(res > 0, j, -1)) + 1                       # a, b >= 1: the result is > 0
    return x, res, nbits

  x, res, nbits = jax.vmap(one)(len_a, a_bits, b_bits)
  # n <= 2
  v = jax.random.randint(k4, (b,), 0, jnp.left_shift(1, jnp.minimum(n, 2)) - 1, dtype=jnp.int32)
  x_small = (v[:, None] >> idx[None, :]) & 1
  if mul:
    res_small, nbits_small = jnp.zeros((b, out_len), jnp.int32), jnp.broadcast_to(n - 1, (b,))
  else:
    res_small, nbits_small = (v[:, None] >> jnp.minimum(j, 30)[None, :]) & 1, jnp.where(v >= 2, 2, 1)
  small = n <= 2
  x = jnp.where(small, x_small, x)
  res = jnp.where(small, res_small, res)
  nbits = jnp.where(small, nbits_small, nbits)
  y, mask = jax.vmap(lambda r, k: _binary_output(r, k, out_len))(res, nbits)
  return x.astype(jnp.int32), y.astype(jnp.int32), mask


def _compute_sqrt(key, b, n):
  """Official draw: x uniform in [1, 2^n - 1] (no x = 0), written big-endian in n bits."""
  rng = _host_rng(key)
  x = rng.integers(0, 2, size=(b, n)).astype(np.int32)
  while True:
    zero = ~x.any(axis=1)
    if not zero.any():
      break
    x[zero] = rng.integers(0, 2, size=(int(zero.sum()), n))
  m = (n + 1) // 2
  y = np.zeros((b, m), np.int32)
  for i in range(b):
    v = int("".join(map(str, x[i])), 2)
    r = math.isqrt(v)
    y[i] = [int(c) for c in format(r, f"0{m}b")]
  return Batch(jnp.asarray(x), jnp.asarray(y), _full_mask(b, m))


def _bucket_sort(key, b, n):
  x = jax.random.randint(key, (b, n), 0, 5, dtype=jnp.int32)
  return Batch(x, jnp.sort(x, axis=1), _full_mask(b, n))


def _static(dyn, output_length):
  """The fixed-length generator of a length-polymorphic one: ``dyn`` at n_max = n (the same code and the
  same draws as the training curriculum's length-polymorphic sampler)."""
  def sample(key, b, n):
    x, y, mask = dyn(key, b, n, n)
    m = output_length(n)
    return Batch(x[:, :n], y[:, :m], mask[:, :m])
  return sample


# ------------------------------------------------------------------------------------------- registry

TASKS: dict[str, Task] = {
    "even_pairs": Task("even_pairs", "R", 2, 2, lambda n: 1, _even_pairs),
    "modular_arithmetic": Task("modular_arithmetic", "R", 9, 5, lambda n: 1,
                               _static(_dyn_modular_arithmetic, lambda n: 1),
                               parity=1),
    "parity_check": Task("parity_check", "R", 2, 2, lambda n: 1, _parity),
    "cycle_navigation": Task("cycle_navigation", "R", 3, 5, lambda n: 1, _cycle_navigation),
    "stack_manipulation": Task("stack_manipulation", "DCF", 5, 3, lambda n: n + 1,
                               _static(_dyn_stack_manipulation, lambda n: n + 1)),
    "reverse_string": Task("reverse_string", "DCF", 2, 2, lambda n: n, _reverse_string),
    "modular_arithmetic_brackets": Task("modular_arithmetic_brackets", "DCF", 11, 5, lambda n: 1,
                                        _modular_arithmetic_brackets, jittable=False),
    "solve_equation": Task("solve_equation", "DCF", 11, 5, lambda n: 1, _solve_equation,
                           jittable=False),
    "duplicate_string": Task("duplicate_string", "CS", 2, 2, lambda n: 2 * n, _duplicate_string),
    "missing_duplicate": Task("missing_duplicate", "CS", 4, 2, lambda n: 1, _missing_duplicate),
    "odds_first": Task("odds_first", "CS", 2, 2, lambda n: n, _odds_first),
    "binary_addition": Task("binary_addition", "CS", 3, 3, lambda n: n + 1,
                            _static(functools.partial(_dyn_binary_op, mul=False), lambda n: n + 1)),
    "binary_multiplication": Task("binary_multiplication", "CS", 3, 3, lambda n: n,
                                  _static(functools.partial(_dyn_binary_op, mul=True), lambda n: n)),
    "compute_sqrt": Task("compute_sqrt", "CS", 2, 2, lambda n: (n + 1) // 2, _compute_sqrt,
                         jittable=False),
    "bucket_sort": Task("bucket_sort", "CS", 5, 5, lambda n: n, _bucket_sort),
}


def get_task(name: str) -> Task:
  if name not in TASKS:
    raise ValueError(f"unknown CHE task {name!r}; valid names: {sorted(TASKS)}")
  return TASKS[name]


@functools.lru_cache(maxsize=None)
def _jitted_sampler(name: str, batch_size: int, length: int):
  task = TASKS[name]
  return jax.jit(lambda key: task.sample(key, batch_size, length))


def sample(name: str, key, batch_size: int, length: int) -> Batch:
  """Samples a batch, jit-compiling (and caching per shape) the jittable generators."""
  task = get_task(name)
  if not task.valid_length(length):
    task.sample(key, batch_size, length)  # raises the explanatory error
  if task.jittable:
    return _jitted_sampler(name, int(batch_size), int(length))(key)
  return task.sample(key, batch_size, length)


# ------------------------------------------------------------------------------------ model I/O + metric

def model_inputs(task: Task, inputs: jax.Array) -> jax.Array:
  """[task tokens, one empty token (id ``input_vocab``) per output position]: int32 [B, n + out_len]."""
  b, n = inputs.shape
  empty = jnp.full((b, task.output_length(n)), task.input_vocab, jnp.int32)
  return jnp.concatenate([inputs.astype(jnp.int32), empty], axis=1)


def masked_accuracy(logits: jax.Array, targets: jax.Array, mask: jax.Array) -> jax.Array:
  """Per-output-token accuracy: mean over masked tokens of each example, then over the batch.

  logits [..., B, m, C], targets/mask [B, m]. Returns shape [...] (scalar for a single model)."""
  correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32) * mask
  per_example = correct.sum(-1) / jnp.maximum(mask.sum(-1), 1.0)
  return per_example.mean(-1)


def masked_cross_entropy(logits: jax.Array, targets: jax.Array, mask: jax.Array) -> jax.Array:
  """Cross-entropy summed over the (masked) output positions, averaged over the batch."""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  nll = -jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
  return (nll * mask).sum(-1).mean(-1)


# ------------------------------------------------------------------- one compiled sampler for all lengths

class ModelBatch(NamedTuple):
  """A batch in the encoder's layout, padded to a fixed number of tokens T.

  tokens [B, T] int32: task tokens, then ``output_length`` empty tokens (id ``input_vocab``), then padding
  (id ``input_vocab + 1``); targets/loss_mask [B, T]: the answers at the output positions (mask 0 elsewhere
  and after a termination token); padding_mask [B, T] bool: True on the real (task + empty) tokens;
  length: the task length n (int32 scalar); total: n + output_length(n).
  """
  tokens: jax.Array
  targets: jax.Array
  loss_mask: jax.Array
  padding_mask: jax.Array
  length: jax.Array
  total: jax.Array


def max_total_tokens(task: Task, max_length: int) -> int:
  return max(n + task.output_length(n) for n in range(1, max_length + 1) if task.valid_length(n))


def to_model_batch(task: Task, batch: Batch, total_tokens: int) -> ModelBatch:
  """Lays out a :class:`Batch` of length n for the non-autoregressive encoder, padded to ``total_tokens``."""
  b, n = batch.inputs.shape
  m = task.output_length(n)
  pad = total_tokens - n - m
  if pad < 0:
    raise ValueError(f"total_tokens={total_tokens} < n + output_length = {n + m}.")
  tokens = jnp.concatenate([batch.inputs, jnp.full((b, m), task.input_vocab, jnp.int32),
                            jnp.full((b, pad), task.input_vocab + 1, jnp.int32)], axis=1)
  z = lambda dt: jnp.zeros((b, n), dt)
  zp = lambda dt: jnp.zeros((b, pad), dt)
  targets = jnp.concatenate([z(jnp.int32), batch.targets.astype(jnp.int32), zp(jnp.int32)], axis=1)
  mask = jnp.concatenate([z(jnp.float32), batch.mask.astype(jnp.float32), zp(jnp.float32)], axis=1)
  padding = jnp.broadcast_to(jnp.arange(total_tokens) < n + m, (b, total_tokens))
  return ModelBatch(tokens, targets, mask, padding, jnp.int32(n), jnp.int32(n + m))


# Length-polymorphic generators: f(key, B, n_max, n) with a TRACED length n <= n_max; they return
# (x [B, n_max], y [B, m_max], mask [B, m_max]) whose first n / output_length(n) entries are a length-n draw
# of the task (the remaining entries are masked). They let one small compiled program sample every training
# length (the lax.switch fallback compiles one branch per length). Every jittable task has one; Modular
# Arithmetic, Stack Manipulation and the binary tasks define their fixed-length generator from it
# (``_static``), the others keep a separate fixed-length generator with the same distribution.

def _dyn_common(key, b, n_max, n, vocab):
  x = jax.random.randint(key, (b, n_max), 0, vocab, dtype=jnp.int32)
  valid = jnp.arange(n_max)[None, :] < n
  return x, valid


def _dyn_even_pairs(key, b, n_max, n):
  x, _ = _dyn_common(key, b, n_max, n, 2)
  last = jnp.take(x, n - 1, axis=1)
  return x, (x[:, 0] != last).astype(jnp.int32)[:, None], jnp.ones((b, 1), jnp.float32)


def _dyn_parity(key, b, n_max, n):
  x, valid = _dyn_common(key, b, n_max, n, 2)
  return x, (jnp.sum(x * valid, 1) % 2)[:, None].astype(jnp.int32), jnp.ones((b, 1), jnp.float32)


def _dyn_cycle(key, b, n_max, n):
  x, valid = _dyn_common(key, b, n_max, n, 3)
  return x, (jnp.sum((x - 1) * valid, 1) % 5)[:, None].astype(jnp.int32), jnp.ones((b, 1), jnp.float32)


def _dyn_gather(x, idx, ok):
  return jnp.where(ok[None, :], jnp.take(x, jnp.clip(idx, 0, x.shape[1] - 1), axis=1), 0)


def _dyn_reverse(key, b, n_max, n):
  x, _ = _dyn_common(key, b, n_max, n, 2)
  j = jnp.arange(n_max)
  return x, _dyn_gather(x, n - 1 - j, j < n), jnp.broadcast_to((j < n).astype(jnp.float32), (b, n_max))


def _dyn_duplicate(key, b, n_max, n):
  x, _ = _dyn_common(key, b, n_max, n, 2)
  j = jnp.arange(2 * n_max)
  ok = j < 2 * n
  return x, _dyn_gather(x, j % jnp.maximum(n, 1), ok), jnp.broadcast_to(ok.astype(jnp.float32), (b, 2 * n_max))


def _dyn_odds_first(key, b, n_max, n):
  x, _ = _dyn_common(key, b, n_max, n, 2)
  j = jnp.arange(n_max)
  h = n // 2                                          # the odd 0-based positions come first (official code)
  idx = jnp.where(j < h, 2 * j + 1, 2 * (j - h))
  return x, _dyn_gather(x, idx, j < n), jnp.broadcast_to((j < n).astype(jnp.float32), (b, n_max))


def _dyn_bucket_sort(key, b, n_max, n):
  x, valid = _dyn_common(key, b, n_max, n, 5)
  j = jnp.arange(n_max)
  y = jnp.sort(jnp.where(valid, x, 5), axis=1)
  return x, jnp.where(j < n, y, 0), jnp.broadcast_to((j < n).astype(jnp.float32), (b, n_max))


def _dyn_missing_duplicate(key, b, n_max, n):
  k1, k2 = jax.random.split(key)
  w, _ = _dyn_common(k1, b, n_max, n, 2)
  j = jnp.arange(n_max)
  h = n // 2
  ww = jnp.take(w, j % jnp.maximum(h, 1), axis=1)
  pos = jax.random.randint(k2, (b,), 0, jnp.maximum(2 * h, 1))
  y = jnp.take_along_axis(ww, pos[:, None], axis=1)
  x = jnp.where(j[None, :] == pos[:, None], 2, jnp.where(j[None, :] >= 2 * h, 3, ww))  # odd n: empty 3 last
  one = n == 1                                                                         # official: [1] -> 1
  x = jnp.where(one, 1, x)
  y = jnp.where(one, 1, y)
  return x.astype(jnp.int32), y.astype(jnp.int32), jnp.ones((b, 1), jnp.float32)


DYNAMIC = {
    "even_pairs": _dyn_even_pairs, "parity_check": _dyn_parity, "cycle_navigation": _dyn_cycle,
    "reverse_string": _dyn_reverse, "duplicate_string": _dyn_duplicate, "odds_first": _dyn_odds_first,
    "bucket_sort": _dyn_bucket_sort, "missing_duplicate": _dyn_missing_duplicate,
    "modular_arithmetic": _dyn_modular_arithmetic, "stack_manipulation": _dyn_stack_manipulation,
    "binary_addition": functools.partial(_dyn_binary_op, mul=False),
    "binary_multiplication": functools.partial(_dyn_binary_op, mul=True),
}


def dynamic_model_batch(task: Task, key, batch_size: int, max_length: int, n, total_tokens: int) -> ModelBatch:
  """:class:`ModelBatch` for a traced length ``n`` from the length-polymorphic generator of ``task``."""
  x, y, ymask = DYNAMIC[task.name](key, batch_size, max_length, n)
  m = task.output_length(n)
  t = jnp.arange(total_tokens)
  xi = jnp.take(x, jnp.clip(t, 0, max_length - 1), axis=1)
  tokens = jnp.where(t < n, xi, jnp.where(t < n + m, task.input_vocab, task.input_vocab + 1))
  out_idx = jnp.clip(t - n, 0, y.shape[1] - 1)
  is_out = (t >= n) & (t < n + m)
  targets = jnp.where(is_out, jnp.take(y, out_idx, axis=1), 0)
  mask = jnp.where(is_out, jnp.take(ymask, out_idx, axis=1), 0.0)
  padding = jnp.broadcast_to(t < n + m, (batch_size, total_tokens))
  return ModelBatch(tokens.astype(jnp.int32), targets.astype(jnp.int32), mask.astype(jnp.float32),
                    padding, jnp.asarray(n, jnp.int32), jnp.asarray(n + m, jnp.int32))


def curriculum_sampler(task: Task, batch_size: int, max_length: int, total_tokens: int | None = None):
  """A jittable ``f(key) -> ModelBatch``: draws one training length uniformly from the valid lengths in
  ``1..max_length`` (one length per step, as in the reference curriculum) and a batch of that length, padded
  to ``total_tokens`` (default :func:`max_total_tokens`). Tasks in ``DYNAMIC`` use their length-polymorphic
  generator (one small program); the other jittable tasks put every length in one ``lax.switch``. Either way
  the whole curriculum compiles once and can run inside the jitted train step. Jittable tasks only."""
  if not task.jittable:
    raise ValueError(f"task {task.name!r} generates on the host; use host_curriculum_batch instead.")
  lengths = [n for n in range(1, max_length + 1) if task.valid_length(n)]
  if not lengths:
    raise ValueError(f"task {task.name!r} has no valid length in 1..{max_length}.")
  total = total_tokens or max_total_tokens(task, max_length)
  if task.name in DYNAMIC:
    valid = jnp.asarray(lengths, jnp.int32)

    def g(key):
      k1, k2 = jax.random.split(key)
      n = valid[jax.random.randint(k1, (), 0, len(lengths))]
      return dynamic_model_batch(task, k2, batch_size, max_length, n, total)

    return g
  branches = [functools.partial(lambda k, n: to_model_batch(task, task._sample(k, batch_size, n), total), n=n)
              for n in lengths]

  def f(key):
    k1, k2 = jax.random.split(key)
    i = jax.random.randint(k1, (), 0, len(lengths))
    return jax.lax.switch(i, branches, k2)

  return f


def host_curriculum_batch(task: Task, key, batch_size: int, max_length: int,
                          total_tokens: int | None = None) -> ModelBatch:
  """Host-side counterpart of :func:`curriculum_sampler` (any task, including the host generators)."""
  lengths = [n for n in range(1, max_length + 1) if task.valid_length(n)]
  k1, k2 = jax.random.split(key)
  n = lengths[int(jax.random.randint(k1, (), 0, len(lengths)))]
  total = total_tokens or max_total_tokens(task, max_length)
  return to_model_batch(task, sample(task.name, k2, batch_size, n), total)
