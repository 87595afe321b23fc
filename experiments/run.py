"""Runs an experiment config and writes its results.

Usage (from the checkout's root; ``research-run`` does the same from any directory of the checkout)::

    python -m experiments.run --config=NAME:VARIANT [--workdir=DIR] [--config.key=value ...]
    python -m experiments.run --config=configs/NAME.py:VARIANT ...      # the same config, by its path
    python -m experiments.run --list                                    # every NAME:VARIANT --config accepts

``NAME`` is a file ``configs/NAME.py`` of this checkout; its ``get_config(VARIANT)`` builds an
``ml_collections.ConfigDict`` (loaded through ``ml_collections.config_flags``, as in the Flax examples);
``--config.key=value`` overrides any key, and a key that does not exist is rejected with the list of valid
keys. Before the run every numeric key is checked against its range (``configs.common.validate``). The
driver ``experiments/<experiment>.py`` runs with the workdir, and the runner writes ``results.json`` and
``results.md`` there and prints the table.
"""
from __future__ import annotations

import ast
import difflib
import glob
import importlib
import importlib.util
import os
import shlex
import sys
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(ROOT, "configs")
_NOT_CONFIGS = ("__init__", "common")


def config_names() -> list[str]:
  """The NAMEs ``--config=NAME:VARIANT`` accepts: the files ``configs/NAME.py`` of this checkout."""
  names = [os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(CONFIG_DIR, "*.py"))]
  return sorted(n for n in names if n not in _NOT_CONFIGS)


def resolve_config_path(path: str) -> str:
  """The absolute path of a config given as ``NAME``, ``configs/NAME.py`` or any path to a config file.

  A short name is looked up in ``<checkout>/configs``; a path is tried relative to the current directory,
  then to the checkout, so ``configs/NAME.py`` works from anywhere. Raises ``FileNotFoundError`` naming the
  configs that exist.
  """
  if path.endswith(".py") or os.sep in path or "/" in path:
    candidates = [path] if os.path.isabs(path) else [path, os.path.join(ROOT, path)]
  else:
    candidates = [os.path.join(CONFIG_DIR, path + ".py")]
  for cand in candidates:
    if os.path.isfile(cand):
      return os.path.abspath(cand)
  name = os.path.splitext(os.path.basename(path))[0]
  close = difflib.get_close_matches(name, config_names(), n=2)
  hint = f" Did you mean {' or '.join(close)}?" if close else ""
  raise FileNotFoundError(f"Config {path!r} not found.{hint} Valid names: {', '.join(config_names())} "
                          "(run `python -m experiments.run --list` for their variants).")


def _import_config_module(path: str):
  full = resolve_config_path(path)
  name = "_config_" + os.path.splitext(os.path.basename(full))[0]
  spec = importlib.util.spec_from_file_location(name, full)
  module = importlib.util.module_from_spec(spec)
  if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
  spec.loader.exec_module(module)
  return module


def _flat_keys(cfg, prefix: str = "") -> list[str]:
  keys = []
  for k, v in cfg.items():
    full = prefix + k
    if hasattr(v, "items") and not isinstance(v, dict):
      keys.extend(_flat_keys(v, full + "."))
    else:
      keys.append(full)
  return keys


def check_override_keys(cfg, keys) -> None:
  """Raises ``KeyError`` naming the valid keys when an override key does not exist in the config."""
  valid = _flat_keys(cfg)
  groups = {k.rsplit(".", 1)[0] for k in valid if "." in k}
  for key in keys:
    if key not in valid and key not in groups:
      close = difflib.get_close_matches(key, valid, n=3)
      hint = f" Did you mean {', '.join(close)}?" if close else ""
      raise KeyError(f"Unknown config key {key!r} for experiment {cfg.get('experiment')!r}.{hint} "
                     f"Valid keys: {', '.join(sorted(valid))}")


def _parse_value(text: str, current: Any) -> Any:
  if not isinstance(text, str):
    return text
  if isinstance(current, str):
    return text
  if isinstance(current, bool):
    if text.lower() in ("true", "1", "yes"):
      return True
    if text.lower() in ("false", "0", "no"):
      return False
    raise ValueError(f"Expected a boolean, got {text!r}")
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text
  if isinstance(current, float) and isinstance(value, int):
    value = float(value)
  return value


def _get(cfg, dotted: str):
  node = cfg
  for part in dotted.split("."):
    node = node[part]
  return node


def _set(cfg, dotted: str, value: Any) -> None:
  *parents, last = dotted.split(".")
  node = cfg
  for part in parents:
    node = node[part]
  node[last] = value


def load_config(spec: str, overrides: dict[str, Any] | None = None):
  """Builds the locked config for ``"NAME:VARIANT"`` (or ``"configs/NAME.py:VARIANT"``) with overrides.

  ``overrides`` maps dotted keys to values (strings are parsed as on the command line). Raises
  ``FileNotFoundError`` for an unknown config, ``ValueError`` for an unknown variant or an out-of-range
  value, ``KeyError`` for an unknown key.
  """
  path, _, variant = spec.partition(":")
  module = _import_config_module(path)
  cfg = module.get_config(variant) if variant else module.get_config()
  overrides = overrides or {}
  check_override_keys(cfg, overrides)
  for key, text in overrides.items():
    _set(cfg, key, _parse_value(text, _get(cfg, key)))
  cfg.lock()
  _validate(cfg)
  return cfg


def _validate(cfg) -> None:
  if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
  from configs import common
  common.validate(cfg)


def run_config(cfg, workdir: str, command: str | None = None, *, print_table: bool = True) -> dict:
  """Validates ``cfg``, runs the driver named by ``cfg.experiment`` and writes ``results.json``/``results.md``."""
  _validate(cfg)
  from absl import logging as absl_logging
  from research import report
  from research.train import maybe_initialize_distributed, set_cpu_devices
  absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every checkpoint operation at INFO
  set_cpu_devices(cfg.get("cpu_devices", 0))       # before JAX's first operation
  maybe_initialize_distributed()
  os.makedirs(workdir, exist_ok=True)
  driver = importlib.import_module(f"experiments.{cfg.experiment}")
  command = command or " ".join(shlex.quote(a) for a in ["python", "-m", "experiments.run"] + sys.argv[1:])
  t0 = time.perf_counter()
  results = driver.run(cfg, workdir)
  wall = time.perf_counter() - t0
  title = f"{cfg.experiment}:{cfg.get('variant', '')}"
  record = report.write(results, workdir, config=cfg, command=command, wall_time_s=wall, title=title)
  if print_table:
    with open(os.path.join(workdir, "results.md")) as f:
      print(f.read())
    print(f"[results written to {os.path.abspath(workdir)}]")
  return record


def list_configs() -> str:
  """What ``--config`` accepts: one ``NAME:VARIANT`` line per variant, under each config's summary line."""
  lines = []
  for name in config_names():
    try:
      module = _import_config_module(name)
    except Exception as e:  # a broken config should not hide the others
      lines.append(f"{name} (configs/{name}.py): cannot be imported ({e})")
      continue
    doc = (module.__doc__ or "").strip().splitlines()
    lines.append(f"{name} (configs/{name}.py): {doc[0] if doc else ''}")
    for variant, desc in getattr(module, "VARIANTS", {}).items():
      lines.append(f"  {name + ':' + variant:<34} {desc}")
  lines.append("Use as --config=NAME:VARIANT (or --config=configs/NAME.py:VARIANT).")
  return "\n".join(lines)


def _split_argv(argv: list[str]) -> tuple[str | None, dict[str, str]]:
  config, overrides = None, {}
  for i, a in enumerate(argv):
    if a.startswith("--config="):
      config = a.split("=", 1)[1]
    elif a == "--config" and i + 1 < len(argv):
      config = argv[i + 1]
    elif a.startswith("--config."):
      key, eq, value = a[len("--config."):].partition("=")
      if not eq and i + 1 < len(argv):
        value = argv[i + 1]
      overrides[key] = value
  return config, overrides


def _absolute_config_argv(argv: list[str], spec: str) -> list[str]:
  """``argv`` with the ``--config`` value replaced by ``/abs/path/configs/NAME.py:VARIANT``."""
  path, colon, variant = spec.partition(":")
  full = resolve_config_path(path) + colon + variant
  out, skip = [], False
  for i, a in enumerate(argv):
    if skip:
      skip = False
      continue
    if a.startswith("--config="):
      out.append("--config=" + full)
    elif a == "--config" and i + 1 < len(argv):
      out.append("--config=" + full)
      skip = True
    else:
      out.append(a)
  return out


def main(argv: list[str] | None = None) -> None:
  argv = list(sys.argv if argv is None else argv)
  if "--list" in argv[1:]:
    try:
      print(list_configs(), flush=True)
    except BrokenPipeError:                        # `--list | head`
      sys.stdout = open(os.devnull, "w")
    return
  spec, overrides = _split_argv(argv[1:])
  if spec is None:
    print(__doc__)
    raise SystemExit("error: --config=NAME:VARIANT is required (see `python -m experiments.run --list`).")
  # Unknown config / variant / key and out-of-range values: one clear line, no traceback.
  try:
    load_config(spec, overrides)
    argv = _absolute_config_argv(argv, spec)
  except (FileNotFoundError, ValueError, KeyError, TypeError) as e:
    raise SystemExit(f"error: {e.args[0] if e.args else e}")

  from absl import app, flags
  from ml_collections import config_flags

  config_flags.DEFINE_config_file("config", None, "Experiment config: NAME:VARIANT or configs/NAME.py:VARIANT.",
                                  lock_config=True)
  flags.DEFINE_string("workdir", None, "Directory for results, metrics, plots and checkpoints.")
  flags.DEFINE_bool("list", False, "List the configs and their variants.")

  def _main(_):
    cfg = flags.FLAGS.config
    try:
      _validate(cfg)
    except (ValueError, TypeError) as e:
      raise SystemExit(f"error: {e}")
    workdir = flags.FLAGS.workdir or os.path.join("workdirs", f"{cfg.experiment}_{cfg.get('variant', '')}")
    run_config(cfg, workdir)

  app.run(_main, argv=argv)


if __name__ == "__main__":
  main()
