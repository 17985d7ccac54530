"""Run several methods (and seeds) on one continual problem and gather tidy results."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from nscl.data.continual import ContinualData
from nscl.methods.base import ContinualMethod
from nscl.metrics import step_accuracies
from nscl.run import RunConfig, RunResult, run_continual

__all__ = ["compare", "metrics_frame", "slug", "summary_table", "mean_step_accuracies", "paired_difference",
           "diagonal_frame"]


def slug(name: str) -> str:
    """A folder-safe version of a method label."""
    return re.sub(r"[^A-Za-z0-9.=-]+", "_", name).strip("_")


def metrics_frame(results: Mapping[tuple[str, int], RunResult]) -> pd.DataFrame:
    """One row per (method, seed): class-incremental metrics and their task-aware twins."""
    rows = []
    for (name, seed), result in results.items():
        row = {"method": name, "seed": seed, "backbone_weights": result.extras.get("backbone_weights", ""),
               **result.metrics.as_dict()}
        if result.accuracy_task_aware is not None:
            row.update({f"{k}_task_aware": v for k, v in result.metrics_task_aware.as_dict().items()})
        rows.append(row)
    return pd.DataFrame(rows)


def compare(methods: Mapping[str, Callable[[int], ContinualMethod]],
            data: ContinualData | Callable[[int], ContinualData], config: RunConfig,
            seeds: Sequence[int] = (0,), run_root: str | Path | None = None
            ) -> tuple[pd.DataFrame, dict[tuple[str, int], RunResult]]:
    """Run every `methods[name](seed)` for every seed; results under run_root/<name>/seed<k> (resumable).

    data: one continual problem, or a function of the seed (when the class order depends on it).
    """
    results: dict[tuple[str, int], RunResult] = {}
    for name, make in methods.items():
        for seed in seeds:
            run_dir = None if run_root is None else Path(run_root) / slug(name) / f"seed{seed}"
            problem = data(seed) if callable(data) else data
            results[(name, seed)] = run_continual(make(seed), problem, replace(config, seed=seed), run_dir=run_dir)
    frame = metrics_frame(results)
    if run_root is not None:
        Path(run_root).mkdir(parents=True, exist_ok=True)
        frame.to_csv(Path(run_root) / "metrics.csv", index=False)
    return frame, results


def summary_table(frame: pd.DataFrame, metrics: Sequence[str] = ("last_accuracy", "average_incremental_accuracy",
                                                                    "forgetting")) -> pd.DataFrame:
    """Per method, "mean ± std" over seeds of each metric, in percent (std omitted for one seed)."""
    rows = {}
    for method, group in frame.groupby("method", sort=False):
        cells = {}
        for metric in metrics:
            values = group[metric].to_numpy() * 100
            cells[metric] = f"{values.mean():.1f}" + (f" ± {values.std(ddof=1):.1f}" if len(values) > 1 else "")
        cells["seeds"] = len(group)
        rows[method] = cells
    return pd.DataFrame.from_dict(rows, orient="index")


def mean_step_accuracies(results: Mapping[tuple[str, int], RunResult]) -> dict[str, np.ndarray]:
    """Per method, the accuracy on all seen classes after each task, averaged over seeds."""
    curves: dict[str, list[np.ndarray]] = {}
    for (name, _), result in results.items():
        curves.setdefault(name, []).append(step_accuracies(result.accuracy, result.task_sizes))
    return {name: np.mean(values, axis=0) for name, values in curves.items()}



def paired_difference(frame: pd.DataFrame, method: str, control: str, metric: str) -> dict[str, float]:
    """`method` minus `control` on `metric` (in points), seed by seed: mean, std (ddof 1) and the range.

    Methods are compared on the same seeds (same class order, initial prompts and batches), so the
    per-seed difference is the fair comparison and its spread says whether a gap exceeds the noise.
    """
    a = frame[frame.method == method].set_index("seed")[metric]
    b = frame[frame.method == control].set_index("seed")[metric]
    seeds = a.index.intersection(b.index)
    if not len(seeds):
        raise ValueError(f"no common seeds for {method!r} and {control!r} in the frame")
    diff = (a[seeds] - b[seeds]).to_numpy() * 100
    return {"mean": float(diff.mean()), "std": float(diff.std(ddof=1)) if len(diff) > 1 else float("nan"),
            "min": float(diff.min()), "max": float(diff.max()), "seeds": len(diff)}


def diagonal_frame(matrices: pd.DataFrame, task_aware: bool = False) -> pd.DataFrame:
    """Accuracy on each task right after learning it (the plasticity), per method: mean over seeds, in %.

    matrices: tidy accuracy matrices (method, seed, train_task, eval_task, accuracy, accuracy_task_aware).
    """
    column = "accuracy_task_aware" if task_aware else "accuracy"
    diag = matrices[matrices.train_task == matrices.eval_task]
    table = diag.pivot_table(index="method", columns="eval_task", values=column, aggfunc="mean", sort=False) * 100
    table.columns = [f"task {j + 1}" for j in table.columns]
    return table
