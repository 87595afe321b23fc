"""What an experiment driver returns, and how it is written to disk.

A driver builds a :class:`Results`: a flat dict of named scalar metrics, table rows that put the
published number beside the measured one, plots (PNG paths) and free-form notes. The runner
(:mod:`experiments.run`) adds the provenance (config, command, machine, devices, wall time) and writes
``results.json`` and ``results.md``.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import socket
import sys
import time
from typing import Any

import numpy as np


@dataclasses.dataclass
class Row:
  """One line of a results table: a quantity, its published value and the value measured here."""
  name: str
  published: str = "-"
  measured: str = "-"
  verdict: str = ""
  note: str = ""


@dataclasses.dataclass
class Results:
  """The record an experiment driver returns."""
  metrics: dict[str, float] = dataclasses.field(default_factory=dict)
  rows: list[Row] = dataclasses.field(default_factory=list)
  plots: list[str] = dataclasses.field(default_factory=list)
  notes: list[str] = dataclasses.field(default_factory=list)
  title: str = ""

  def add(self, name: str, value: Any) -> float:
    """Records a scalar metric (converted to a Python float) and returns it."""
    value = float(np.asarray(value))
    self.metrics[name] = value
    return value

  def merge(self, other: "Results", prefix: str = "") -> None:
    """Appends another record, prefixing its metric names."""
    for k, v in other.metrics.items():
      self.metrics[prefix + k] = v
    self.rows.extend(other.rows)
    self.plots.extend(other.plots)
    self.notes.extend(other.notes)


def fmt(x: Any, digits: int = 4) -> str:
  """Short human formatting of a number for tables."""
  if x is None:
    return "-"
  if isinstance(x, str):
    return x
  x = float(x)
  if math.isnan(x):
    return "nan"
  if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
    return f"{x:.{max(digits - 2, 1)}e}"
  return f"{x:.{digits}g}"


def machine_info() -> dict[str, Any]:
  """Describes the machine and the JAX devices a result was measured on."""
  import jax
  devices = jax.devices()
  try:
    import psutil
    mem_gb = round(psutil.virtual_memory().total / 2**30, 1)
  except Exception:  # pragma: no cover - psutil is optional
    mem_gb = None
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          cpu = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  return {
      "hostname": socket.gethostname(),
      "platform": platform.platform(),
      "python": sys.version.split()[0],
      "cpu": cpu,
      "cpu_count": os.cpu_count(),
      "memory_gb": mem_gb,
      "jax": jax.__version__,
      "backend": jax.default_backend(),
      "device_count": len(devices),
      "devices": sorted({d.device_kind for d in devices}),
  }


def machine_summary(info: dict[str, Any]) -> str:
  devs = ", ".join(info.get("devices", []))
  return (f"{info.get('cpu')} ({info.get('cpu_count')} cores, {info.get('memory_gb')} GB), "
          f"JAX {info.get('jax')} on {info.get('backend')} with {info.get('device_count')} device(s) [{devs}]")


def plot_link(path: str, workdir: str | None) -> str:
  """The path of a plot relative to the workdir that holds results.md (works for absolute paths, paths
  relative to the current directory, and paths already relative to the workdir)."""
  if workdir is not None:
    if os.path.exists(path) and (os.path.isabs(path) or not os.path.exists(os.path.join(workdir, path))):
      return os.path.relpath(os.path.abspath(path), os.path.abspath(workdir))
    if os.path.isabs(path):
      return os.path.basename(path)
    return path
  return os.path.basename(path) if os.path.isabs(path) else path


def to_markdown(results: Results, *, title: str, command: str, machine: dict[str, Any],
                wall_time_s: float, workdir: str | None = None) -> str:
  """Renders a results record as Markdown: provenance, the published-vs-measured table, notes, plots."""
  lines = [f"# {results.title or title}", "",
           f"- command: `{command}`",
           f"- machine: {machine_summary(machine)}",
           f"- wall time: {wall_time_s:.1f} s",
           f"- date: {time.strftime('%Y-%m-%d %H:%M:%S')}", ""]
  if results.rows:
    lines += ["| quantity | published | measured | verdict | note |", "|---|---|---|---|---|"]
    for r in results.rows:
      cells = [str(c).replace("|", "\\|").replace("\n", " ")
               for c in (r.name, r.published, r.measured, r.verdict, r.note)]
      lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
  for note in results.notes:
    lines += [note, ""]
  for p in results.plots:
    rel = plot_link(p, workdir)
    lines += [f"![{rel}]({rel})", ""]
  return "\n".join(lines)


def _jsonable(x: Any) -> Any:
  if isinstance(x, dict):
    return {str(k): _jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  if isinstance(x, (np.floating, np.integer)):
    return x.item()
  if isinstance(x, float) and not math.isfinite(x):
    return str(x)
  if isinstance(x, (str, int, float, bool)) or x is None:
    return x
  return str(x)


def write(results: Results, workdir: str, *, config: Any, command: str, wall_time_s: float,
          title: str) -> dict[str, Any]:
  """Writes ``results.json`` and ``results.md`` into ``workdir`` and returns the JSON record."""
  os.makedirs(workdir, exist_ok=True)
  machine = machine_info()
  cfg = config.to_dict() if hasattr(config, "to_dict") else dict(config)
  record = {
      "title": results.title or title,
      "command": command,
      "config": _jsonable(cfg),
      "machine": machine,
      "wall_time_s": wall_time_s,
      "metrics": _jsonable(results.metrics),
      "rows": [dataclasses.asdict(r) for r in results.rows],
      "plots": [plot_link(p, workdir) for p in results.plots],
  }
  jax = sys.modules.get("jax")                 # several processes (jax.distributed): only process 0 writes
  index, count = (jax.process_index(), jax.process_count()) if jax is not None else (0, 1)
  if index == 0:
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump(record, f, indent=2, sort_keys=False)
    md = to_markdown(results, title=title, command=command, machine=machine, wall_time_s=wall_time_s,
                     workdir=workdir)
    with open(os.path.join(workdir, "results.md"), "w") as f:
      f.write(md)
  if count > 1:                                # the others return once the files exist
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices("research.report.write")
  return record


class MetricLogger:
  """Appends JSON lines ``{"step": s, "name": value, ...}`` to ``workdir/metrics.jsonl``, and writes the same
  scalars as TensorBoard summaries under ``workdir/tensorboard/`` (so ``tensorboard --logdir workdirs``
  shows every run's curves).

  The summaries go to ``workdir/tensorboard[/<file stem>][/<prefix>]`` (the stem only for a file other than
  ``metrics.jsonl``), written with ``tensorboardX`` (no TensorFlow needed) and flushed at every ``write``;
  only process 0 writes them. Without ``tensorboardX`` installed, only the JSON lines are written.
  """

  def __init__(self, workdir: str | None, filename: str = "metrics.jsonl", prefix: str = "", *,
               tensorboard: bool = True):
    self.path = None if workdir is None else os.path.join(workdir, filename)
    self.prefix = prefix
    self.tensorboard_dir = None
    self._tb = None
    if self.path:
      os.makedirs(workdir, exist_ok=True)
      if tensorboard:
        stem = os.path.splitext(filename)[0]
        parts = ([stem] if filename != "metrics.jsonl" else []) + ([prefix] if prefix else [])
        self.tensorboard_dir = os.path.join(workdir, "tensorboard", *parts)

  def write(self, step: int, **scalars: Any) -> None:
    if not self.path:
      return
    rec = {"step": int(step)}
    if self.prefix:
      rec["run"] = self.prefix
    rec.update({k: _jsonable(float(np.asarray(v))) for k, v in scalars.items()})
    with open(self.path, "a") as f:
      f.write(json.dumps(rec) + "\n")
    self._write_tensorboard(int(step), rec)

  def _write_tensorboard(self, step: int, rec: dict[str, Any]) -> None:
    if self.tensorboard_dir is None:
      return
    if self._tb is None:
      jax = sys.modules.get("jax")
      try:
        if jax is not None and jax.process_index() != 0:
          raise ImportError
        from tensorboardX import SummaryWriter  # imported on the first write: it is slow to import
      except ImportError:
        self.tensorboard_dir = None
        return
      self._tb = SummaryWriter(self.tensorboard_dir)
    for k, v in rec.items():
      if k not in ("step", "run") and isinstance(v, float) and math.isfinite(v):
        self._tb.add_scalar(k, v, step)
    self._tb.flush()

  def close(self) -> None:
    """Closes the TensorBoard writer (the JSON lines need no closing)."""
    if self._tb is not None:
      self._tb.close()
      self._tb = None


class RunLog:
  """A driver's progress log: ``log(msg)`` prints ``msg`` and appends it to ``workdir/log.txt``."""

  def __init__(self, workdir: str, filename: str = "log.txt"):
    os.makedirs(workdir, exist_ok=True)
    self.path = os.path.join(workdir, filename)

  def __call__(self, msg: str) -> None:
    print(msg, flush=True)
    with open(self.path, "a") as f:
      f.write(msg + "\n")
