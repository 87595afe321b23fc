"""Usability (issue 21): the public API of every subpackage, the runner's config names and its messages."""
import importlib
import os
import pydoc
import subprocess
import sys

import pytest

from experiments import run as runner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUBPACKAGES = ("distributions", "losses", "optim", "nn", "geometry", "tasks", "data", "eval", "train")


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_subpackage_help_page_lists_its_api(name):
  mod = importlib.import_module(f"research.{name}")
  assert mod.__doc__ and len(mod.__doc__.strip().splitlines()) >= 3, f"research.{name} has a stub docstring"
  assert len(mod.__all__) >= 5 and len(set(mod.__all__)) == len(mod.__all__)
  for attr in mod.__all__:
    assert hasattr(mod, attr), f"research.{name}.__all__ names {attr!r}, which it does not define"
  page = pydoc.render_doc(mod, renderer=pydoc.plaintext)
  assert mod.__all__[-1] in page


def test_research_imports_subpackages_lazily():
  code = "import sys, research; assert 'research.nn' not in sys.modules; print(research.nn.__name__)"
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
  assert out.returncode == 0 and out.stdout.strip() == "research.nn", out.stderr


def test_module_names_are_not_shadowed_by_functions():
  from research import optim
  from research.geometry import knn
  assert optim.amos.__name__ == "research.optim.amos" and optim.su_rules.__name__ == "research.optim.su_rules"
  assert knn.__name__ == "research.geometry.knn"


def test_list_prints_exactly_what_config_accepts():
  listed = [line.split()[0] for line in runner.list_configs().splitlines() if line.startswith("  ")]
  assert "demo:smoke" in listed and "amos:quick" in listed
  for spec in listed:
    name, variant = spec.split(":")
    assert name in runner.config_names()
    cfg = runner.load_config(spec)
    assert cfg.variant == variant
    assert runner.load_config(f"configs/{name}.py:{variant}").to_dict() == cfg.to_dict()


def test_config_resolves_from_any_directory(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert runner.load_config("configs/demo.py:smoke").experiment == "demo"
  assert runner.load_config("demo:smoke").experiment == "demo"
  from research import cli
  assert cli.find_checkout(os.path.join(ROOT, "tests")) == ROOT


def test_research_run_console_entry_from_a_subdirectory(capsys, monkeypatch):
  from research import cli
  monkeypatch.chdir(os.path.join(ROOT, "tests"))
  cli.main(["--list"])
  assert "  demo:smoke " in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--config=nope:smoke"], "Config 'nope' not found"),
    (["--config=demo:smok"], "Unknown variant 'smok'"),
    (["--config=demo:smoke", "--config.hidden=0"], "hidden=0"),
    (["--config=demo:smoke", "--config.seed=-1"], "seed=-1"),
    (["--config=demo:smoke", "--config.learning_rate=-1"], "learning_rate=-1.0"),
    (["--config=demo:smoke", "--config.checkpoint_every=-1"], "checkpoint_every=-1"),
])
def test_cli_errors_are_one_line_without_traceback(args, message):
  out = subprocess.run([sys.executable, "-m", "experiments.run"] + args, cwd=ROOT, capture_output=True, text=True,
                       env=dict(os.environ, XLA_FLAGS=""))
  assert out.returncode != 0
  assert message in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_metric_logger_writes_tensorboard_summaries(tmp_path):
  from tensorboardX.proto import event_pb2  # the event records TensorBoard reads
  from research.report import MetricLogger
  log = MetricLogger(str(tmp_path), prefix="seed0")
  log.write(1, loss=2.0, acc=0.5)
  log.write(2, loss=1.0, acc=0.75)
  log.close()
  assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2
  (events,) = list((tmp_path / "tensorboard" / "seed0").iterdir())
  raw, i, seen = events.read_bytes(), 0, []
  while i < len(raw):                     # TFRecord framing: length (8), crc (4), payload, crc (4)
    n = int.from_bytes(raw[i:i + 8], "little")
    ev = event_pb2.Event.FromString(raw[i + 12:i + 12 + n])
    seen += [(ev.step, v.tag, v.simple_value) for v in ev.summary.value]
    i += 16 + n
  assert sorted(seen) == [(1, "acc", 0.5), (1, "loss", 2.0), (2, "acc", 0.75), (2, "loss", 1.0)]
