"""Data-directory resolution, checksum verification and download into a user cache.

Resolution order for the directory that holds the dataset files (layout of ``shared/data/MANIFEST.md``):

1. the ``data_dir`` argument (a config's ``data_dir``),
2. the ``RESEARCH_DATA_DIR`` environment variable,
3. ``../shared/data`` beside the project checkout (or beside the current directory), if it exists,
4. a user cache (``$RESEARCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/research``, else ``~/.cache/research``),
   filled on demand by downloading each file from its public source (or from ``$RESEARCH_DATA_MIRROR``,
   a base URL that mirrors the layout) and verifying its sha256.

A missing or corrupt file raises :class:`DataError` naming the file, the expected checksum and how to get it.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.request

from research.data.registry import FILES, FileEntry

_PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_VERIFIED: dict[tuple[str, int, float], bool] = {}


class DataError(RuntimeError):
  """A dataset file is missing, corrupt or cannot be downloaded."""


def shared_data_dir() -> str | None:
  """``../shared/data`` beside the project (or the working directory), if it exists."""
  for base in (_PROJECT_ROOT, os.getcwd()):
    cand = os.path.normpath(os.path.join(base, "..", "shared", "data"))
    if os.path.isdir(cand):
      return cand
  return None


def cache_dir() -> str:
  if os.environ.get("RESEARCH_CACHE_DIR"):
    return os.environ["RESEARCH_CACHE_DIR"]
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "research")


def resolve_data_dir(data_dir: str | None = None) -> tuple[str, bool]:
  """Returns ``(directory, is_cache)`` following the resolution order of this module's docstring."""
  if data_dir:
    if not os.path.isdir(data_dir):
      raise DataError(f"data_dir {data_dir!r} does not exist. Pass an existing directory laid out as "
                      "shared/data/MANIFEST.md describes, or leave data_dir unset.")
    return data_dir, False
  env = os.environ.get("RESEARCH_DATA_DIR")
  if env:
    if not os.path.isdir(env):
      raise DataError(f"RESEARCH_DATA_DIR={env!r} does not exist. Point it at a directory laid out as "
                      "shared/data/MANIFEST.md describes, or unset it.")
    return env, False
  shared = shared_data_dir()
  if shared:
    return shared, False
  return cache_dir(), True


def _sha256_file(path: str, decompress: bool = False) -> str:
  h = hashlib.sha256()
  opener = gzip.open if decompress else open
  with opener(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def verify(path: str, entry: FileEntry) -> None:
  """Checks a file against its registry checksum; raises :class:`DataError` on mismatch."""
  st = os.stat(path)
  key = (os.path.abspath(path), st.st_size, st.st_mtime)
  if _VERIFIED.get(key):
    return
  if entry.path.endswith(".gz") and entry.content_sha256:
    try:
      got, want, what = _sha256_file(path, decompress=True), entry.content_sha256, "decompressed sha256"
    except (OSError, EOFError, gzip.BadGzipFile) as e:
      raise DataError(f"{path} is not a readable gzip file ({e}). {_how(entry)}") from e
  else:
    got, want, what = _sha256_file(path), entry.sha256, "sha256"
  if want and got != want:
    raise DataError(f"Checksum mismatch for {path}: expected {what} {want}, got {got}. The file is corrupt "
                    f"or a different version; delete it and fetch it again. {_how(entry)}")
  _VERIFIED[key] = True


def _how(entry: FileEntry) -> str:
  if entry.url:
    return (f"Public source: {entry.url} (the loaders download it into the cache {cache_dir()} when no "
            "data directory is configured).")
  return "How to get it: " + entry.how


def _download(url: str, dest: str, entry: FileEntry) -> None:
  os.makedirs(os.path.dirname(dest), exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dest), prefix=".download-")
  os.close(fd)
  try:
    try:
      with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:
        shutil.copyfileobj(r, f)
    except Exception as e:  # network errors of every kind
      raise DataError(f"Could not download {entry.path} from {url}: {e}. Download it by hand into "
                      f"{os.path.dirname(dest)} (expected sha256 {entry.sha256 or entry.content_sha256}), "
                      "or set RESEARCH_DATA_DIR to a directory that has it.") from e
    verify(tmp, entry)
    os.replace(tmp, dest)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def ensure_file(relpath: str, data_dir: str | None = None) -> str:
  """Returns the verified local path of a registered dataset file, downloading it into the cache if needed."""
  if relpath not in FILES:
    raise KeyError(f"{relpath!r} is not a registered dataset file; known: {sorted(FILES)}")
  entry = FILES[relpath]
  root, is_cache = resolve_data_dir(data_dir)
  path = os.path.join(root, relpath)
  if os.path.exists(path):
    verify(path, entry)
    return path
  if not is_cache:
    raise DataError(f"Missing dataset file {path} (expected sha256 {entry.sha256}). {_how(entry)} "
                    "Or unset data_dir/RESEARCH_DATA_DIR to use the download cache.")
  mirror = os.environ.get("RESEARCH_DATA_MIRROR")
  url = (mirror.rstrip("/") + "/" + relpath) if mirror else entry.url
  if not url:
    raise DataError(f"Missing dataset file {path} (expected sha256 {entry.sha256}); it has no public "
                    f"download. {_how(entry)}")
  _download(url, path, entry)
  return path
