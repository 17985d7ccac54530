"""A run directory on disk: its settings, result files and checkpoints, written so that no work is lost.

A run directory holds config.json (the settings' fingerprint), accuracy.csv, tasks.csv, metrics.json
(tagged with the settings' hash) and checkpoint.pt. Every file is written to a temporary name and
renamed; the checkpoint it replaces is kept as checkpoint.prev.pt. A directory whose files belong to
other settings is refused (`RunMismatchError`), never overwritten; a damaged checkpoint is reported
with its path, set aside as *.damaged.pt, and the previous one is used (`CheckpointWarning`).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nscl.experiment.result import RunResult
from nscl.files import atomic_write_text
from nscl.metrics import summarize

__all__ = [
    "CHECKPOINT",
    "PREVIOUS_CHECKPOINT",
    "RESULT_FILES",
    "RunMismatchError",
    "CheckpointWarning",
    "settings_hash",
    "save_checkpoint",
    "write_results",
    "resume_point",
]

CHECKPOINT = "checkpoint.pt"
PREVIOUS_CHECKPOINT = "checkpoint.prev.pt"
RESULT_FILES = ("accuracy.csv", "tasks.csv", "metrics.json")
_CHECKPOINT_KEYS = ("fingerprint", "tasks_done", "accuracy", "accuracy_task_aware", "log", "method")


class RunMismatchError(RuntimeError):
    """run_dir already holds a run made with other settings; it is left untouched."""


class CheckpointWarning(UserWarning):
    """A checkpoint could not be read (the run resumes from the previous one, or starts over)."""


class _DamagedCheckpoint(Exception):
    pass


def settings_hash(fingerprint: dict) -> str:
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]


def save_checkpoint(run_path: Path, payload: dict) -> None:
    """checkpoint.pt <- payload, atomically; the one it replaces becomes checkpoint.prev.pt."""
    path, tmp = run_path / CHECKPOINT, run_path / (CHECKPOINT + ".tmp")
    torch.save(payload, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    if path.exists():
        path.replace(run_path / PREVIOUS_CHECKPOINT)
    tmp.replace(path)  # a kill between the two renames leaves checkpoint.prev.pt, which is read then


def read_checkpoint(path: Path) -> dict:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # truncated, empty, garbage: torch/pickle raise many kinds
        reason = f"{type(err).__name__}: {err}".strip()
        raise _DamagedCheckpoint(f"{path} cannot be read ({reason[:200]}; {path.stat().st_size} bytes)") from err
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in _CHECKPOINT_KEYS):
        raise _DamagedCheckpoint(f"{path} is not an nscl run checkpoint (expected a dict with {_CHECKPOINT_KEYS})")
    return ckpt


def write_results(run_dir: Path, result: RunResult, fingerprint: dict) -> None:
    atomic_write_text(run_dir / "accuracy.csv", result.accuracy_frame().to_csv(index=False))
    atomic_write_text(run_dir / "tasks.csv", result.tasks.to_csv(index=False))
    done = int(np.isfinite(np.diag(result.accuracy)).sum())
    sizes = result.task_sizes[:done]
    metrics: dict[str, Any] = {"tasks_done": done}
    if done:
        metrics.update(summarize(result.accuracy[:done, :done], sizes).as_dict())
        metrics["task_aware"] = summarize(result.accuracy_task_aware[:done, :done], sizes).as_dict()
    metrics["settings"] = settings_hash(fingerprint)  # the config.json these results belong to
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2))


def _differences(old: Any, new: Any, path: str = "") -> list[str]:
    """Only the settings that differ, as 'a.b.c: old -> new' (nested dicts walked down to their leaves)."""
    if isinstance(old, dict) and isinstance(new, dict):
        lines = []
        for key in sorted(set(old) | set(new), key=str):
            lines += _differences(old.get(key), new.get(key), f"{path}.{key}" if path else str(key))
        return lines
    return [] if old == new else [f"{path or 'settings'}: {old!r} -> {new!r}"]


def check_run_dir(run_path: Path, fingerprint: dict) -> None:
    """Refuse a run_dir whose config.json or results belong to other settings (they are never overwritten)."""
    config_path = run_path / "config.json"
    results = [run_path / name for name in RESULT_FILES if (run_path / name).exists()]
    if config_path.exists():
        try:
            saved = json.loads(config_path.read_text())
        except (OSError, ValueError) as err:
            raise RunMismatchError(
                f"{config_path} cannot be read ({err}); it describes the results in {run_path}. "
                f"Move them away or use another run_dir"
            ) from err
        started = results or any((run_path / n).exists() for n in (CHECKPOINT, PREVIOUS_CHECKPOINT))
        if saved != fingerprint and started:
            raise RunMismatchError(
                f"{run_path} holds results of a run with other settings (config.json -> now: "
                + "; ".join(_differences(saved, fingerprint))
                + "); use another run_dir to start a new run"
            )
        # other settings but no finished task (a run that failed in its first task): nothing to lose, start anew
    elif results:
        raise RunMismatchError(
            f"{run_path} holds results ({', '.join(p.name for p in results)}) but no config.json "
            f"saying which settings made them; move them away or use another run_dir"
        )
    metrics_path = run_path / "metrics.json"
    if metrics_path.exists():
        try:
            settings = json.loads(metrics_path.read_text()).get("settings")
        except (OSError, ValueError, AttributeError):
            settings = None  # damaged: rewritten from the checkpoint after the next task
        if settings is not None and settings != settings_hash(fingerprint):
            raise RunMismatchError(
                f"{metrics_path} belongs to a run with other settings than config.json's and "
                f"now's; use another run_dir to start a new run"
            )


def resume_point(run_path: Path, fingerprint: dict, resume: bool) -> dict | None:
    """The newest readable checkpoint of run_path with these settings (None: start from the first task)."""
    current, previous = run_path / CHECKPOINT, run_path / PREVIOUS_CHECKPOINT
    present = [p for p in (current, previous) if p.exists()]
    if not resume and (
        present or (run_path / "config.json").exists() or any((run_path / n).exists() for n in RESULT_FILES)
    ):
        raise RunMismatchError(
            f"{run_path} already holds a run; pass resume=True to continue it or "
            f"choose a new run_dir (finished work is never overwritten)"
        )
    ckpt, damaged, notes = None, [], []
    for path in present:
        try:
            ckpt = read_checkpoint(path)
            break
        except _DamagedCheckpoint as err:
            damaged.append(path)
            notes.append(str(err))
    if ckpt is not None and ckpt["fingerprint"] != fingerprint:
        raise RunMismatchError(
            f"{run_path} holds a run with other settings (checkpoint -> now: "
            + "; ".join(_differences(ckpt["fingerprint"], fingerprint))
            + "); use another run_dir to start a new run"
        )
    check_run_dir(run_path, fingerprint)
    for path in damaged:  # set aside, so that the next save does not rotate it over the good previous one
        path.replace(path.with_name(path.name.removesuffix(".pt") + ".damaged.pt"))
    if damaged:
        if ckpt is not None:
            what = f"resuming from the previous checkpoint (after task {ckpt['tasks_done']})"
        else:
            what = "no readable checkpoint is left: the run starts over from the first task"
        message = "; ".join(notes) + f". Set aside as *.damaged.pt; {what}."
        warnings.warn(message, CheckpointWarning, stacklevel=3)
    return ckpt
