r"""Class-incremental metrics from the accuracy matrix.

$R_{ij}$ is the accuracy on the test data of task $j$ after training task $i$ (defined for
$j \le i$; entries above the diagonal are NaN). With $n_j$ the number of test samples of task $j$:

* accuracy after step $i$: $A_i = \sum_{j\le i} n_j R_{ij} / \sum_{j \le i} n_j$ (pooled over
  samples, as both official code bases compute it; equal to the task mean when tasks have equal
  test sizes);
* last accuracy: $A_{T-1}$;
* average incremental accuracy: $\frac1T \sum_i A_i$;
* forgetting (Chaudhry et al. 2018): $\frac{1}{T-1}\sum_{j<T-1} \big(\max_{j\le i<T-1} R_{ij} - R_{T-1,j}\big)$;
* backward transfer (Lopez-Paz & Ranzato 2017): $\frac{1}{T-1}\sum_{j<T-1} (R_{T-1,j} - R_{jj})$.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "validate_accuracy_matrix",
    "step_accuracies",
    "last_accuracy",
    "average_incremental_accuracy",
    "forgetting",
    "backward_transfer",
    "ContinualMetrics",
    "summarize",
]


def validate_accuracy_matrix(acc: np.ndarray) -> np.ndarray:
    """Check R is square, finite on and below the diagonal, and within [0, 1]."""
    r = np.asarray(acc, dtype=np.float64)
    if r.ndim != 2 or r.shape[0] != r.shape[1] or r.shape[0] == 0:
        raise ValueError(f"accuracy matrix must be square (tasks x tasks); got shape {r.shape}")
    lower = r[np.tril_indices(r.shape[0])]
    if not np.all(np.isfinite(lower)):
        raise ValueError("accuracy matrix has missing entries on or below the diagonal (R[i, j], j <= i)")
    if lower.min() < 0 or lower.max() > 1:
        raise ValueError(f"accuracies must be fractions in [0, 1]; got range [{lower.min()}, {lower.max()}]")
    return r


def _weights(n_tasks: int, task_sizes: np.ndarray | None) -> np.ndarray:
    if task_sizes is None:
        return np.ones(n_tasks)
    sizes = np.asarray(task_sizes, dtype=np.float64)
    if sizes.shape != (n_tasks,) or np.any(sizes <= 0):
        raise ValueError(f"task_sizes must hold {n_tasks} positive counts; got {task_sizes}")
    return sizes


def step_accuracies(acc: np.ndarray, task_sizes: np.ndarray | None = None) -> np.ndarray:
    """$A_i$: accuracy on everything seen after each step, pooled over test samples."""
    r = validate_accuracy_matrix(acc)
    w = _weights(r.shape[0], task_sizes)
    return np.array([np.dot(r[i, : i + 1], w[: i + 1]) / w[: i + 1].sum() for i in range(r.shape[0])])


def last_accuracy(acc: np.ndarray, task_sizes: np.ndarray | None = None) -> float:
    return float(step_accuracies(acc, task_sizes)[-1])


def average_incremental_accuracy(acc: np.ndarray, task_sizes: np.ndarray | None = None) -> float:
    return float(step_accuracies(acc, task_sizes).mean())


def forgetting_per_task(acc: np.ndarray) -> np.ndarray:
    """For each old task j: best accuracy before the last step minus the final one (length T - 1)."""
    r = validate_accuracy_matrix(acc)
    t = r.shape[0]
    return np.array([r[j : t - 1, j].max() - r[t - 1, j] for j in range(t - 1)])


def forgetting(acc: np.ndarray) -> float:
    """Mean over old tasks of the best earlier accuracy minus the final one (0 for one task)."""
    per_task = forgetting_per_task(acc)
    return float(per_task.mean()) if per_task.size else 0.0


def backward_transfer(acc: np.ndarray) -> float:
    """Mean change of old tasks' accuracy from just after learning them to the end (negative = forgetting)."""
    r = validate_accuracy_matrix(acc)
    t = r.shape[0]
    if t == 1:
        return 0.0
    return float(np.mean(r[t - 1, : t - 1] - np.diag(r)[: t - 1]))


@dataclass(frozen=True)
class ContinualMetrics:
    last_accuracy: float
    average_incremental_accuracy: float
    forgetting: float
    backward_transfer: float

    def as_dict(self) -> dict[str, float]:
        return dict(
            last_accuracy=self.last_accuracy,
            average_incremental_accuracy=self.average_incremental_accuracy,
            forgetting=self.forgetting,
            backward_transfer=self.backward_transfer,
        )


def summarize(acc: np.ndarray, task_sizes: np.ndarray | None = None) -> ContinualMetrics:
    """All four metrics of a finished (square, lower-triangular) accuracy matrix."""
    return ContinualMetrics(
        last_accuracy(acc, task_sizes),
        average_incremental_accuracy(acc, task_sizes),
        forgetting(acc),
        backward_transfer(acc),
    )
