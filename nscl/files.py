"""Files read and written safely: writes that readers, and other writers, never see half of, and JSON
read with a fallback.

Each write goes to a temporary file named after the process and a random token in the target's
folder, then `os.replace` puts it in place: a reader sees the old file or the whole new one, and
two processes filling a cache at once never share a temporary file.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

__all__ = ["atomic_write", "atomic_write_text", "atomic_torch_save", "read_json", "exclusive_lock"]


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], fsync: bool = False) -> Path:
    """Call write(tmp) on a temporary path beside `path`, then rename it to `path` (folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_torch_save(obj: Any, path: str | os.PathLike, fsync: bool = False) -> Path:
    return atomic_write(path, lambda tmp: torch.save(obj, tmp), fsync=fsync)


def read_json(path: str | os.PathLike, default: Any = None) -> Any:
    """The JSON document at `path`, or `default` when it is missing, unreadable or not valid JSON
    (a run directory that a killed process left half-made)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return default


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on `path` (a small lock file, created if missing) for the block.

    Concurrent processes that would fill the same cache entry take turns: the second one waits, then finds the
    entry made (POSIX flock; on systems without fcntl the block runs unlocked).
    """
    try:
        import fcntl
    except ImportError:  # Windows: no flock; concurrent fills then only cost time, the writes stay atomic
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
