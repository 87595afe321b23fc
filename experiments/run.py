"""Runs an experiment config and writes its results.

Usage::

    python -m experiments.run --config=configs/NAME.py:VARIANT --workdir=DIR [--config.key=value ...]
    python -m experiments.run --list

The config file's ``get_config(VARIANT)`` builds an ``ml_collections.ConfigDict`` (loaded through
``ml_collections.config_flags``, as in the Flax examples); ``--config.key=value`` overrides any key, and a
key that does not exist is rejected with the list of valid keys. The driver ``experiments/<experiment>.py``
runs with the workdir, and the runner writes ``results.json`` and ``results.md`` there and prints the table.
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


def _import_config_module(path: str):
  full = path if os.path.isabs(path) else os.path.join(ROOT, path) if not os.path.exists(path) else path
  if not os.path.exists(full):
    raise FileNotFoundError(f"Config file {path!r} not found; list the configs with `python -m experiments.run --list`.")
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
  """Builds the locked config for ``"configs/NAME.py:VARIANT"`` with ``{dotted.key: value}`` overrides."""
  path, _, variant = spec.partition(":")
  module = _import_config_module(path)
  cfg = module.get_config(variant) if variant else module.get_config()
  overrides = overrides or {}
  check_override_keys(cfg, overrides)
  for key, text in overrides.items():
    _set(cfg, key, _parse_value(text, _get(cfg, key)))
  cfg.lock()
  return cfg


def run_config(cfg, workdir: str, command: str | None = None, *, print_table: bool = True) -> dict:
  """Runs the driver named by ``cfg.experiment`` and writes ``results.json``/``results.md`` into workdir."""
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
  """One line per config variant with its description."""
  lines = []
  for path in sorted(glob.glob(os.path.join(ROOT, "configs", "*.py"))):
    name = os.path.basename(path)
    if name in ("__init__.py", "common.py"):
      continue
    try:
      module = _import_config_module(path)
    except Exception as e:  # a broken config should not hide the others
      lines.append(f"configs/{name}: cannot be imported ({e})")
      continue
    doc = (module.__doc__ or "").strip().splitlines()
    lines.append(f"configs/{name}: {doc[0] if doc else ''}")
    for variant, desc in getattr(module, "VARIANTS", {}).items():
      lines.append(f"    :{variant:<22} {desc}")
  return "\n".join(lines)


def _split_argv(argv: list[str]) -> tuple[str | None, dict[str, str]]:
  config, overrides = None, {}
  it = iter(range(len(argv)))
  for i in it:
    a = argv[i]
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


def main(argv: list[str] | None = None) -> None:
  argv = list(sys.argv if argv is None else argv)
  if "--list" in argv[1:]:
    print(list_configs())
    return
  spec, overrides = _split_argv(argv[1:])
  if spec is None:
    print(__doc__)
    raise SystemExit("error: --config=configs/NAME.py:VARIANT is required (see --list).")
  # Reject unknown keys before absl sees them, with the list of valid keys.
  path, _, variant = spec.partition(":")
  module = _import_config_module(path)
  try:
    check_override_keys(module.get_config(variant) if variant else module.get_config(), overrides)
  except KeyError as e:
    raise SystemExit(f"error: {e.args[0]}")

  from absl import app, flags
  from ml_collections import config_flags

  config_flags.DEFINE_config_file("config", None, "Experiment config: configs/NAME.py:VARIANT.", lock_config=True)
  flags.DEFINE_string("workdir", None, "Directory for results, metrics, plots and checkpoints.")
  flags.DEFINE_bool("list", False, "List the configs and their variants.")

  def _main(_):
    cfg = flags.FLAGS.config
    workdir = flags.FLAGS.workdir or os.path.join("workdirs", f"{cfg.experiment}_{cfg.get('variant', '')}")
    run_config(cfg, workdir)

  app.run(_main, argv=argv)


if __name__ == "__main__":
  main()
