"""Per-parameter hyperparameters (Amos eta / slot shapes, Su's sigma) from regex rules over parameter paths.

A *rule set* is an ordered sequence of ``(regex, value)`` pairs (or a dict, whose order is kept). A parameter's
path (``('params', 'Dense_0', 'kernel')``) is joined with ``'/'`` and matched with :func:`re.match`, i.e.
anchored at the start (patterns usually begin with ``.*``); the **first** matching rule wins, and a path that
no rule matches raises ``ValueError`` naming the parameter and its shape (add a catch-all ``(".*", value)``).

Values may be
  * numbers or tuples (slot shapes), returned as they are;
  * strings holding a small arithmetic expression over ``SHAPE`` (the parameter's shape), e.g.
    ``"sqrt(2 / SHAPE[0])"``, ``"(1, SHAPE[1])"``, ``"SHAPE[:-1] + (1,)"``,
    ``"(1,) * (len(SHAPE) - 1) + (SHAPE[-1],)"``, ``"prod(SHAPE[:-1])"``; functions come from
    :mod:`math` (``sqrt``, ``prod``, ...) plus ``len``, ``min``, ``max``;
  * callables ``(path, shape) -> value``.

The ready-made rule sets follow the official jestimator recipes (spec 06, section 3.7):
:func:`bert_eta_rules` / :func:`bert_shape_rules` for Transformers, :func:`mnist_cnn_eta_rules` /
:func:`mnist_cnn_shape_rules` for the README's CNN, and :func:`flax_eta_rules` / :func:`flax_shape_rules`, a
generic set for Flax Dense / Conv / Embed / LayerNorm / bias parameters.
"""
from __future__ import annotations

import ast
import math
import operator
import re
from typing import Any, Callable, Dict, Mapping, Sequence, Tuple, Union

Shape = Tuple[int, ...]
Rules = Union[Mapping[str, Any], Sequence[Tuple[str, Any]]]
ParamsFn = Callable[[Tuple[str, ...], Shape], Any]

__all__ = ["evaluate", "params_fn", "eta_fn", "shape_fn", "sigma_fn", "describe", "bert_eta_rules",
           "bert_shape_rules", "mnist_cnn_eta_rules", "mnist_cnn_shape_rules", "flax_eta_rules",
           "flax_shape_rules", "su_sigma_rules"]

_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_FUNCS = {"len": len, "min": min, "max": max, "abs": abs, "float": float, "int": int}


def evaluate(expr: str, shape: Shape) -> Any:
  """Safely evaluates an arithmetic expression in which ``SHAPE`` is the parameter's shape (a tuple)."""
  shape = tuple(int(d) for d in shape)

  def ev(node):
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
      return node.value
    if isinstance(node, ast.Name):
      if node.id == "SHAPE":
        return shape
      if hasattr(math, node.id) and isinstance(getattr(math, node.id), float):
        return getattr(math, node.id)  # pi, e
      raise ValueError(f"unknown name {node.id!r} (only SHAPE, math constants and functions allowed)")
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
      return _BINOPS[type(node.op)](ev(node.left), ev(node.right))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
      x = ev(node.operand)
      return -x if isinstance(node.op, ast.USub) else x
    if isinstance(node, ast.Tuple):
      return tuple(ev(e) for e in node.elts)
    if isinstance(node, ast.Subscript):
      return ev(node.value)[ev(node.slice)]
    if isinstance(node, ast.Slice):
      return slice(ev(node.lower) if node.lower else None, ev(node.upper) if node.upper else None,
                   ev(node.step) if node.step else None)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
      fn = _FUNCS.get(node.func.id) or getattr(math, node.func.id, None)
      if fn is None or not callable(fn):
        raise ValueError(f"unknown function {node.func.id!r}")
      return fn(*[ev(a) for a in node.args])
    raise ValueError(f"unsupported syntax {type(node).__name__}")

  try:
    return ev(ast.parse(expr, mode="eval").body)
  except (SyntaxError, ValueError, IndexError, TypeError, ZeroDivisionError) as e:
    raise ValueError(f"Cannot evaluate rule expression {expr!r} for SHAPE={shape}: {e}") from e


def _as_list(rules: Rules) -> list:
  items = list(rules.items()) if isinstance(rules, Mapping) else list(rules)
  out = []
  for item in items:
    if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
      raise ValueError(f"Each rule must be a (regex, value) pair, got {item!r}")
    try:
      out.append((re.compile(item[0]), item[0], item[1]))
    except re.error as e:
      raise ValueError(f"Invalid regex {item[0]!r} in rules: {e}") from e
  return out


def params_fn(rules: Rules, *, what: str = "value", name_sep: str = "/") -> ParamsFn:
  """Builds ``(path, shape) -> value`` from ordered ``(regex, value)`` rules (see the module docstring)."""
  compiled = _as_list(rules)

  def fn(name, shape):
    if isinstance(name, str):
      name = tuple(name.split(name_sep))
    name_str = name_sep.join(str(n) for n in name)
    shape = tuple(int(d) for d in shape)
    for regex, pat, value in compiled:
      if regex.match(name_str):
        if callable(value):
          return value(tuple(name), shape)
        if isinstance(value, str):
          return evaluate(value, shape)
        return value
    raise ValueError(
        f"No {what} rule matches parameter {name_str!r} of shape {shape}; rules tried (first match wins, "
        f"anchored at the start): {[p for _, p, _ in compiled]}. Add a rule for it or a catch-all "
        f"(\".*\", <value>) at the end.")

  fn.rules = [(p, v) for _, p, v in compiled]  # type: ignore[attr-defined]
  return fn


def eta_fn(rules: Rules) -> ParamsFn:
  """``params_fn`` for Amos' eta (expected scale of each trained variable's entries)."""
  return params_fn(rules, what="eta")


def sigma_fn(rules: Rules) -> ParamsFn:
  """``params_fn`` for Su's sigma (expected scale of change of each tensor)."""
  return params_fn(rules, what="sigma")


def shape_fn(rules: Rules) -> ParamsFn:
  """``params_fn`` for Amos' slot shapes; values are tuples (or expressions returning tuples)."""
  base = params_fn(rules, what="slot-shape")

  def fn(name, shape):
    s = base(name, shape)
    return tuple(int(d) for d in s)

  fn.rules = base.rules  # type: ignore[attr-defined]
  return fn


def describe(params, fns: Dict[str, ParamsFn]) -> list:
  """Table rows ``(path, shape, {name: value})`` for every leaf of ``params`` (for logging / reports)."""
  import jax
  from research.optim.amos import path_names
  rows = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    name = path_names(path)
    rows.append(("/".join(name), tuple(leaf.shape), {k: f(name, tuple(leaf.shape)) for k, f in fns.items()}))
  return rows


# ----------------------------------------------------------------------------------------------- rule sets
def bert_eta_rules(d_hidden: int, d_mlp: int) -> list:
  """jestimator's BERT/RoPE/RPE eta: LayerNorm scale 1, biases 0.5, embeddings sqrt(2/d_hidden),
  MLP output kernel sqrt(2/d_mlp), every other kernel sqrt(1/d_hidden)."""
  return [
      (r".*(norm|Norm|ln|LN)[^/]*/scale$", 1.0),
      (r".*/scale$", 1.0),
      (r".*bias$", 0.5),
      (r".*(embedding|Embed|embed)[^/]*(/embedding)?$", math.sqrt(2.0 / d_hidden)),
      (r".*(mlp|Mlp|MLP|ffn|FFN|feed_forward)[^/]*/(wo|out|output|Dense_1|fc2|dense_out)[^/]*/kernel$",
       math.sqrt(2.0 / d_mlp)),
      (r".*kernel$", math.sqrt(1.0 / d_hidden)),
      (r".*", math.sqrt(1.0 / d_hidden)),
  ]


def bert_shape_rules() -> list:
  """jestimator's BERT slot shapes: kernels (1, ..., 1, d_out), embeddings (V, 1), everything else ()."""
  return [
      (r".*kernel$", _kernel_slot),
      (r".*(embedding|Embed|embed)[^/]*(/embedding)?$", _embedding_slot),
      (r".*", ()),
  ]


def _kernel_slot(name, shape):
  """(1, ..., 1, d_out): one slot per output unit."""
  return (1,) * (len(shape) - 1) + (shape[-1],) if shape else ()


def _embedding_slot(name, shape):
  """(V, 1, ..., 1): one slot per row (token)."""
  return (shape[0],) + (1,) * (len(shape) - 1) if shape else ()


def mnist_cnn_eta_rules() -> list:
  """jestimator README's MNIST CNN eta (Conv_0 sqrt(8/fan_in), Conv_1 sqrt(2/fan_in), Dense_0
  sqrt(2/fan_in), Dense_1 sqrt(1/fan_in), biases 0.5)."""
  return [
      (r".*bias$", 0.5),
      (r".*Conv_0/kernel$", "sqrt(8 / prod(SHAPE[:-1]))"),
      (r".*Conv_1/kernel$", "sqrt(2 / prod(SHAPE[:-1]))"),
      (r".*Dense_0/kernel$", "sqrt(2 / SHAPE[0])"),
      (r".*Dense_1/kernel$", "sqrt(1 / SHAPE[0])"),
  ]


def mnist_cnn_shape_rules() -> list:
  """jestimator README's MNIST CNN slot shapes: convs (1,1,1,C_out), Dense_0 (1, d_out), else ()."""
  return [
      (r".*Conv_\d+/kernel$", "(1, 1, 1, SHAPE[-1])"),
      (r".*Dense_0/kernel$", "(1, SHAPE[1])"),
      (r".*", ()),
  ]


def flax_eta_rules(gain_eta: float = 1.0, bias_eta: float = 0.5) -> list:
  """A generic default for Flax models: norm scales ``gain_eta`` (jestimator 1.0; Su suggests 0.5), biases
  ``bias_eta``, embeddings sqrt(2/width), kernels sqrt(1/fan_in) (fan_in = prod(shape[:-1]))."""
  return [
      (r".*/scale$", gain_eta),
      (r".*bias$", bias_eta),
      (r".*embedding$", "sqrt(2 / SHAPE[-1])"),
      (r".*kernel$", "sqrt(1 / prod(SHAPE[:-1]))"),
      (r".*", 0.5),
  ]


def flax_shape_rules() -> list:
  """Generic slot shapes: kernels (1, ..., d_out), embeddings (V, 1), everything else ()."""
  return [
      (r".*kernel$", _kernel_slot),
      (r".*embedding$", _embedding_slot),
      (r".*", ()),
  ]


def su_sigma_rules(gain_sigma: float = 0.5, bias_sigma: float = 0.5) -> list:
  """Su's sigma for his rules: sqrt(1/fan_in) for kernels (init-scale), sqrt(1/width) for embeddings,
  0.5 for gains and biases (article 9344)."""
  return [
      (r".*/scale$", gain_sigma),
      (r".*bias$", bias_sigma),
      (r".*embedding$", "sqrt(1 / SHAPE[-1])"),
      (r".*kernel$", "sqrt(1 / prod(SHAPE[:-1]))"),
      (r".*", 0.5),
  ]
