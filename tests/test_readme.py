"""The README's python code blocks run as written (one example per article, tiny shapes)."""
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _blocks():
  with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
    return re.findall(r"^```python\n(.*?)^```", f.read(), flags=re.S | re.M)


def test_readme_has_one_example_per_article():
  text = "\n".join(_blocks())
  for post in ("9085", "9098", "9105", "9147", "9368", "9344", "9444", "9341"):
    assert f"# {post}" in text, f"README has no example for article {post}"


@pytest.mark.parametrize("i", range(len(_blocks())))
def test_readme_block_runs(i):
  namespace = {"__name__": f"readme_block_{i}"}
  exec(compile(_blocks()[i], f"README.md python block {i}", "exec"), namespace)
