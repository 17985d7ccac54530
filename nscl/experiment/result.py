"""What a run produces (RunResult), and the tidy metrics row of each run."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from nscl.metrics import ContinualMetrics, summarize

__all__ = ["RunResult", "slug", "metrics_frame", "accuracy_matrices"]


@dataclass
class RunResult:
    accuracy: np.ndarray  # R[i, j], NaN above the diagonal (class-incremental)
    task_sizes: np.ndarray  # test samples per task
    tasks: pd.DataFrame  # per-task log: time, loss, step accuracy
    accuracy_task_aware: np.ndarray | None = None  # same, argmax within task j's classes only
    run_dir: Path | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def metrics(self) -> ContinualMetrics:
        return summarize(self.accuracy, self.task_sizes)

    @property
    def metrics_task_aware(self) -> ContinualMetrics:
        return summarize(self.accuracy_task_aware, self.task_sizes)

    def accuracy_frame(self) -> pd.DataFrame:
        til = self.accuracy_task_aware
        rows = [
            dict(
                train_task=i,
                eval_task=j,
                accuracy=self.accuracy[i, j],
                accuracy_task_aware=np.nan if til is None else til[i, j],
                n_test=int(self.task_sizes[j]),
            )
            for i in range(self.accuracy.shape[0])
            for j in range(i + 1)
        ]
        return pd.DataFrame(rows)


def slug(name: str) -> str:
    """A folder-safe version of a method label."""
    return re.sub(r"[^A-Za-z0-9.=-]+", "_", name).strip("_")


def metrics_frame(results: Mapping[tuple[str, int], RunResult]) -> pd.DataFrame:
    """One row per (method, seed): class-incremental metrics and their task-aware twins."""
    rows = []
    for (name, seed), result in results.items():
        row = {
            "method": name,
            "seed": seed,
            "backbone_weights": result.extras.get("backbone_weights", ""),
            **result.metrics.as_dict(),
        }
        if result.accuracy_task_aware is not None:
            row.update({f"{k}_task_aware": v for k, v in result.metrics_task_aware.as_dict().items()})
        rows.append(row)
    return pd.DataFrame(rows)


def accuracy_matrices(results: Mapping[tuple[str, int], RunResult]) -> pd.DataFrame:
    """The runs' accuracy matrices, tidy: method, seed, train_task, eval_task, accuracy, accuracy_task_aware, n_test."""
    return pd.concat(
        [result.accuracy_frame().assign(method=name, seed=seed) for (name, seed), result in results.items()],
        ignore_index=True,
    )
