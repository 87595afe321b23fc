"""Helpers shared by every config file."""
from __future__ import annotations

import ml_collections


def base_config(experiment: str, variant: str, variants: dict | None = None) -> ml_collections.ConfigDict:
  """The keys every experiment config has.

  Args:
    experiment: driver module name, ``experiments/<experiment>.py``.
    variant: the variant name selected with ``--config=configs/<file>.py:<variant>``.
    variants: the config's ``VARIANTS`` dict; when given, an unknown variant raises with the valid list.
  """
  if variants is not None and variant not in variants:
    raise ValueError(
        f"Unknown variant {variant!r} for config {experiment!r}; valid variants: {sorted(variants)}")
  cfg = ml_collections.ConfigDict()
  cfg.experiment = experiment
  cfg.variant = variant
  cfg.seed = 0
  cfg.data_dir = ml_collections.FieldReference(None, field_type=str)
  # CPU hosts: split the CPU into this many JAX devices before the run (-1: one per core, 0: JAX's
  # default of one device) so the batch shards over the cores; see research.train.set_cpu_devices.
  cfg.cpu_devices = 0
  return cfg


def mesh_config(fsdp: int = 1) -> ml_collections.ConfigDict:
  """The ``mesh`` sub-config of a config whose driver builds ``research.train.make_mesh(fsdp=config.mesh.fsdp)``:
  ``fsdp = 1`` replicates parameters and optimizer state (data parallelism), ``fsdp = F`` shards them over F
  devices of a 2-D ``("data", "fsdp")`` mesh (``research.train.fsdp``)."""
  return ml_collections.ConfigDict({"fsdp": fsdp})


# ------------------------------------------------------------------------------------------- validation
# The range of every numeric key, by the key's last name (one word per idea across configs). The first
# matching rule wins; tuples are checked element by element. An int key that no rule names is a size or a
# count (>= 1); a float key that no rule names is an error of this table (tests/test_validation.py runs
# every variant of every config through it).
_INF = float("inf")
RANGES: tuple[tuple[str, str, float, float, str], ...] = (
    # (regex on the key's last name, kind, lo, hi, meaning); kind: "int", "float", "prob" ([lo, hi]),
    # "open" (lo < v <= hi), "real" (any finite number)
    (r"seed|.*_seed|seeds\[\]", "int", 0, 2**32 - 1, "a PRNG seed"),
    (r"cpu_devices", "int", -1, _INF, "-1 (one per core), 0 (JAX's default) or a device count"),
    (r"log_every", "int", 1, _INF, "log every this many steps"),
    (r".*_every", "int", 0, _INF, "steps between events (0: never / only at the end)"),
    (r"n_train|n_valid|n_test|.*_limit|digits_n|minilm_n_.*|max_rows_per_task|sts_background|sts_max_pairs|"
     r"summ_max_entities|word_budget|.*warmup", "int", 0, _INF, "a count where 0 means all / none"),
    (r"b_min|b_max|exact_init_b|exact_init_log_sigma", "real", -_INF, _INF, "a real number"),
    (r".*_beta|.*momentum", "prob", 0, 0.999999, "a decay rate in [0, 1)"),
    (r"dropout|mask_prob|.*frac|.*fraction|.*fraction\[\]|redundancy|min_span|shrink_factor|fallback_acceptance|"
     r"test_size|val_size", "prob", 0, 1, "a fraction in [0, 1]"),
    (r"psis\[\]|health_recall", "open", 0, 1, "a truncation factor psi / a recall floor in (0, 1]"),
    (r"amos_lr|.*weight_decay|swiss_noise", "float", 0, _INF, "a non-negative number (0: the default rule)"),
    (r"lr|.*_lr|lr_.*|learning_rate|.*_eps|.*tol|.*sigma.*|.*scale|.*clip|.*clip_.*|.*_gamma|.*variance|margin|"
     r".*spread|su_alpha0|su_q|b_step|beta_kappas\[\]|kappa", "open", 0, _INF, "a positive number"),
)


def _leaves(cfg, prefix: str = ""):
  """(dotted key, leaf name, value) for every numeric leaf, walking ConfigDicts and tuples of them."""
  for k, v in cfg.items():
    key = prefix + k
    if hasattr(v, "items") and not isinstance(v, dict):
      yield from _leaves(v, key + ".")
    elif isinstance(v, (tuple, list)):
      for i, x in enumerate(v):
        if hasattr(x, "items") and not isinstance(x, dict):
          yield from _leaves(x, f"{key}[{i}].")
        elif isinstance(x, (int, float)) and not isinstance(x, bool):
          yield f"{key}[{i}]", k + "[]", x
    elif isinstance(v, (int, float)) and not isinstance(v, bool):
      yield key, k, v


def range_of(name: str, value) -> tuple[str, float, float, str]:
  """The rule ``(kind, lo, hi, meaning)`` for a numeric key's last name (``seeds[]`` for tuple elements)."""
  import re
  for pattern, kind, lo, hi, meaning in RANGES:
    if re.fullmatch(pattern, name) and (kind != "prob" or isinstance(value, float)):
      return kind, lo, hi, meaning
  if isinstance(value, int):
    return "int", 1, _INF, "a size or count"
  raise KeyError(f"No range rule for the float config key {name!r}; add one to configs.common.RANGES")


def validate(cfg) -> None:
  """Raises ``ValueError`` naming every numeric key of ``cfg`` that is out of its range (see ``RANGES``)."""
  import math
  problems = []
  for key, name, v in _leaves(cfg):
    kind, lo, hi, meaning = range_of(name, v)
    if isinstance(v, float) and not math.isfinite(v):
      ok = False
    elif kind == "open":
      ok = lo < v <= hi
    elif kind == "real":
      ok = True
    else:
      ok = lo <= v <= hi
    if kind == "int" and not isinstance(v, int):
      ok = False
    if not ok:
      num = lambda x: str(int(x)) if float(x).is_integer() else f"{x:g}"
      lo_s = "(" if kind == "open" else "["
      rng = f"{lo_s}{num(lo)}, {num(hi)}]" if hi != _INF else f"{'>' if kind == 'open' else '>='} {num(lo)}"
      problems.append(f"{key}={v!r} (must be {rng}: {meaning})")
  if problems:
    raise ValueError(f"Config {cfg.get('experiment')}:{cfg.get('variant')} has out-of-range values: "
                     + "; ".join(problems) + ". Fix them with --config.KEY=VALUE.")
