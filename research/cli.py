"""``research-run``: the experiment runner of a checkout, callable from any directory inside it.

The wheel installs only the library (:mod:`research`); configs and experiment drivers live in the checkout
(as in big_vision and the Flax examples). ``research-run`` finds that checkout (``$RESEARCH_CHECKOUT``, else
the first parent of the current directory holding ``experiments/run.py`` and ``configs/``, else the
directory above an editable install of this package) and runs ``python -m experiments.run`` there with the
same arguments::

    research-run --list
    research-run --config=amos:quick --workdir=workdirs/amos_quick
"""
from __future__ import annotations

import os
import sys


def _is_checkout(path: str) -> bool:
  return os.path.isfile(os.path.join(path, "experiments", "run.py")) and os.path.isdir(os.path.join(path, "configs"))


def find_checkout(start: str | None = None) -> str | None:
  """The checkout that holds ``experiments/`` and ``configs/`` (see the module docstring), or ``None``."""
  env = os.environ.get("RESEARCH_CHECKOUT")
  if env:
    return os.path.abspath(env) if _is_checkout(env) else None
  path = os.path.abspath(start or os.getcwd())
  while True:
    if _is_checkout(path):
      return path
    parent = os.path.dirname(path)
    if parent == path:
      break
    path = parent
  here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # editable install: the checkout
  return here if _is_checkout(here) else None


def main(argv: list[str] | None = None) -> None:
  root = find_checkout()
  if root is None:
    raise SystemExit("error: research-run needs a checkout of the repository (experiments/ and configs/ are "
                     "not installed with the library): run it inside the checkout or set RESEARCH_CHECKOUT.")
  if root not in sys.path:
    sys.path.insert(0, root)
  from experiments import run
  if os.path.dirname(os.path.dirname(os.path.abspath(run.__file__))) != root:
    raise SystemExit(f"error: an `experiments` package outside the checkout {root} shadows its runner "
                     f"({run.__file__}); uninstall it or run from the checkout's root.")
  run.main(["research-run"] + list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
  main()
