"""Where things live: the repo's data/ folder, the data root and the cache.

Environment variables (read at call time, never cached, so tests can point them elsewhere):
  NSCL_DATA   root of downloaded / prepared data sets (default ~/.cache/nscl/data)
  NSCL_CACHE  cache for generated data and pretrained tiny backbones (default ~/.cache/nscl)
  NSCL_OUTPUT where chapters write their CSV/JSON results and figures (default <repo>/build/outputs)
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["repo_root", "repo_data_dir", "data_root", "cache_dir", "output_dir", "book_runs"]


def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


def repo_data_dir() -> Path:
    """The repository's `data/` folder (class orders, splits, reference results)."""
    return repo_root() / "data"


def cache_dir() -> Path:
    path = Path(os.environ.get("NSCL_CACHE", Path.home() / ".cache" / "nscl")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: `root` if given, else $NSCL_DATA, else <cache>/data."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("NSCL_DATA")
    return Path(env).expanduser() if env else cache_dir() / "data"


def output_dir(name: str) -> Path:
    """Folder for one chapter's or benchmark's results: $NSCL_OUTPUT/<name> (created)."""
    base = os.environ.get("NSCL_OUTPUT")
    path = (Path(base).expanduser() if base else repo_root() / "build" / "outputs") / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def book_runs(name: str) -> Path:
    """The book's shared run folder $NSCL_OUTPUT/runs/<name>: chapters that train the same runs (same
    settings, checked by each run's fingerprint) read them back instead of training them again."""
    return output_dir("runs") / name
