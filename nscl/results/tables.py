"""Tables over runs and seeds: mean ± std per method, paired differences by seed, the diagonal of R, the
accuracy after each task, and the order in which methods are shown."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from nscl.metrics import step_accuracies

__all__ = [
    "summary_table",
    "format_mean_std",
    "paired_difference",
    "paired_by_seed",
    "diagonal_frame",
    "method_order",
    "method_role",
    "accuracy_matrix",
    "step_curves",
]


def summary_table(
    frame: pd.DataFrame, metrics: Sequence[str] = ("last_accuracy", "average_incremental_accuracy", "forgetting")
) -> pd.DataFrame:
    """Per method, "mean ± std" over seeds of each metric, in percent (std omitted for one seed)."""
    rows = {}
    for method, group in frame.groupby("method", sort=False):
        cells = {}
        for metric in metrics:
            values = group[metric].to_numpy() * 100
            cells[metric] = format_mean_std(values.mean(), values.std(ddof=1) if len(values) > 1 else math.nan)
        cells["seeds"] = len(group)
        rows[method] = cells
    return pd.DataFrame.from_dict(rows, orient="index")


def paired_difference(frame: pd.DataFrame, method: str, control: str, metric: str) -> dict[str, float]:
    """`method` minus `control` on `metric` (in points), seed by seed: mean, std (ddof 1) and the range.

    Methods are compared on the same seeds (same class order, initial prompts and batches), so the
    per-seed difference is the fair comparison and its spread says whether a gap exceeds the noise.
    """
    diff = paired_by_seed(frame[frame.method == method], frame[frame.method == control], metric)
    if diff is None:
        raise ValueError(f"no common seeds for {method!r} and {control!r} in the frame")
    return diff


def paired_by_seed(a: pd.DataFrame, b: pd.DataFrame, metric: str) -> dict[str, float] | None:
    """Rows a minus rows b on `metric` (in points), matched by seed: mean, std (ddof 1; NaN for one seed),
    min, max and the number of seeds; None without a common seed."""
    left, right = a.set_index("seed")[metric], b.set_index("seed")[metric]
    seeds = left.index.intersection(right.index)
    if not len(seeds):
        return None
    diff = (left[seeds] - right[seeds]).to_numpy() * 100
    return {
        "mean": float(diff.mean()),
        "std": float(diff.std(ddof=1)) if len(diff) > 1 else float("nan"),
        "min": float(diff.min()),
        "max": float(diff.max()),
        "seeds": len(diff),
    }


def diagonal_frame(matrices: pd.DataFrame, task_aware: bool = False) -> pd.DataFrame:
    """Accuracy on each task right after learning it (the plasticity), per method: mean over seeds, in %.

    matrices: tidy accuracy matrices (method, seed, train_task, eval_task, accuracy, accuracy_task_aware).
    """
    column = "accuracy_task_aware" if task_aware else "accuracy"
    diag = matrices[matrices.train_task == matrices.eval_task]
    table = diag.pivot_table(index="method", columns="eval_task", values=column, aggfunc="mean", sort=False) * 100
    table.columns = [f"task {j + 1}" for j in table.columns]
    return table


_ROLES = ("Seq", "NSP²", "DMNSP", "frozen", "prototype", "joint", "zero-shot")


def method_role(label: str) -> int:
    """0 Seq, 1 NSP², 2 DMNSP, 3 frozen, 4 prototype, 5 joint, 6 zero-shot, 7 anything else: the reading order."""
    return next((i for i, word in enumerate(_ROLES) if word in label), len(_ROLES))


def method_order(methods: Sequence[str]) -> list[str]:
    """Methods in reading order: NSP²'s family (VPT-/CLIP- labels) first, then DMNSP's; within a family
    the Seq baseline, the method, frozen, prototype, joint, zero-shot, then anything else (alphabetically)."""

    def key(label: str) -> tuple[int, int, str]:
        return (0 if label.startswith(("VPT-", "CLIP-")) else 1), method_role(label), label

    return sorted(dict.fromkeys(methods), key=key)


def format_mean_std(mean: float, std: float, digits: int = 1) -> str:
    """The text "mean ± std" (the std left out when it is NaN: one seed)."""
    return f"{mean:.{digits}f}" + ("" if math.isnan(std) else f" ± {std:.{digits}f}")


def accuracy_matrix(frame: pd.DataFrame, column: str = "accuracy") -> np.ndarray:
    """R[i, j] of one run's tidy rows (train_task, eval_task, column); NaN where no row."""
    n = int(max(frame.train_task.max(), frame.eval_task.max())) + 1
    matrix = np.full((n, n), np.nan)
    matrix[frame.train_task.to_numpy(), frame.eval_task.to_numpy()] = frame[column].to_numpy()
    return matrix


def step_curves(accuracy: pd.DataFrame) -> pd.DataFrame:
    """Per run, the accuracy on all classes seen after each task (fraction, pooled over test samples): the
    run's labels (benchmark, tasks_done, method, seed: those the tidy matrices have), task (1-based), accuracy."""
    labels = [c for c in ("benchmark", "tasks_done", "method", "seed") if c in accuracy.columns]
    rows = []
    for key, run in accuracy.groupby(labels, sort=False):
        sizes = run.drop_duplicates("eval_task").sort_values("eval_task").n_test.to_numpy()
        for task, value in enumerate(step_accuracies(accuracy_matrix(run), sizes), start=1):
            rows.append({**dict(zip(labels, key)), "task": task, "accuracy": value})
    return pd.DataFrame(rows)
