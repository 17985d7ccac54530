r"""Approximate null spaces of feature matrices, and projectors built from them.

A linear map $y = W x$ keeps its outputs on old inputs $X_{old}$ under an update $\Delta W$ exactly
when $\Delta W X_{old}^\top = 0$, i.e. when the rows of $\Delta W$ lie in the null space of the
uncentered feature matrix $C = X_{old}^\top X_{old}$. This module

1. accumulates $C$ in float64 over batches and tasks (`CovarianceAccumulator`);
2. picks an (approximate) null-space basis $U_0$ from the spectrum of $C$ with a named rule
   (`NullSpaceRule`: ``adaptive``, ``energy``, ``drop_top``, ``threshold``, ``times``);
3. builds the projector $U_0 U_0^\top$, optionally normalised and mixed with the identity by
   $\eta$: $P = \eta B + (1-\eta) I$ (`null_space_projector`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.ndimage
import torch

__all__ = [
    "CovarianceAccumulator",
    "NullSpaceRule",
    "NullSpaceInfo",
    "NullSpace",
    "EmptyNullSpaceWarning",
    "uncentered_covariance",
    "spectrum",
    "null_space_mask",
    "adaptive_null_space_start",
    "null_space_basis",
    "null_space_projector",
    "mix_with_identity",
    "THRESHOLD_MODES",
]

THRESHOLD_MODES = ("adaptive", "energy", "drop_top", "threshold", "times")
ThresholdMode = Literal["adaptive", "energy", "drop_top", "threshold", "times"]
WithinTask = Literal["sum", "batch_mean", "mean"]
AcrossTasks = Literal["sum", "mean"]


class EmptyNullSpaceWarning(UserWarning):
    """The rule kept no direction: the projector is zero, so the projected update is zero."""


def uncentered_covariance(features: torch.Tensor) -> torch.Tensor:
    """$X^\\top X$ in float64 for features of shape (..., d); leading dimensions are rows."""
    x = features.reshape(-1, features.shape[-1]).to(torch.float64)
    return x.T @ x


class CovarianceAccumulator:
    """Accumulates $X^\\top X$ (float64) over the batches of a task and over tasks.

    within_task: how batches of one task combine.
        ``sum``        plain sum over all rows (DMNSP);
        ``batch_mean`` each batch divided by its own row count, then summed (NSP² official code);
        ``mean``       total sum divided by the task's total row count.
    across_tasks: how tasks combine.
        ``sum``  $C \\leftarrow C + C_t$;
        ``mean`` weighted by sample counts, $C \\leftarrow (N C + n_t C_t)/(N + n_t)$.

    Call `update` with each batch of the current task, `end_task(n_samples)` when the task is done;
    `matrix` is the accumulated matrix over finished tasks.
    """

    def __init__(
        self,
        dim: int,
        within_task: WithinTask = "sum",
        across_tasks: AcrossTasks = "sum",
        device: torch.device | str | None = None,
    ) -> None:
        if within_task not in ("sum", "batch_mean", "mean"):
            raise ValueError(f"within_task={within_task!r}: expected 'sum', 'batch_mean' or 'mean'")
        if across_tasks not in ("sum", "mean"):
            raise ValueError(f"across_tasks={across_tasks!r}: expected 'sum' or 'mean'")
        self.dim = dim
        self.within_task = within_task
        self.across_tasks = across_tasks
        self._task = torch.zeros(dim, dim, dtype=torch.float64, device=device)
        self._task_rows = 0
        self._total = torch.zeros(dim, dim, dtype=torch.float64, device=device)
        self._total_samples = 0
        self.n_tasks = 0

    def update(self, features: torch.Tensor) -> None:
        """Add the rows of `features` (shape (..., dim)) to the current task."""
        if features.shape[-1] != self.dim:
            raise ValueError(f"features have last dimension {features.shape[-1]}, accumulator expects {self.dim}")
        rows = features.numel() // self.dim
        cov = uncentered_covariance(features).to(self._task.device)
        self.add_matrix(cov, rows)

    def add_matrix(self, cov: torch.Tensor, rows: int) -> None:
        """Add a precomputed $X^\\top X$ built from `rows` rows (lets callers form it cheaply)."""
        if rows <= 0:
            return
        cov = cov.to(device=self._task.device, dtype=torch.float64)
        self._task += cov / rows if self.within_task == "batch_mean" else cov
        self._task_rows += rows

    def end_task(self, n_samples: int | None = None) -> torch.Tensor:
        """Fold the current task into the total; `n_samples` weights 'mean' (defaults to rows)."""
        task = self._task / self._task_rows if self.within_task == "mean" and self._task_rows else self._task
        n = self._task_rows if n_samples is None else n_samples
        if self.across_tasks == "sum" or self.n_tasks == 0:
            self._total = self._total + task
        else:
            total = self._total_samples + n
            self._total = self._total * (self._total_samples / total) + task * (n / total)
        self._total_samples += n
        self.n_tasks += 1
        self._task = torch.zeros_like(self._task)
        self._task_rows = 0
        return self._total

    @property
    def matrix(self) -> torch.Tensor:
        return self._total

    @property
    def current_task_matrix(self) -> torch.Tensor:
        return self._task

    def state_dict(self) -> dict:
        return {
            "dim": self.dim,
            "within_task": self.within_task,
            "across_tasks": self.across_tasks,
            "task": self._task.cpu(),
            "task_rows": self._task_rows,
            "total": self._total.cpu(),
            "total_samples": self._total_samples,
            "n_tasks": self.n_tasks,
        }

    def load_state_dict(self, state: dict) -> None:
        if state["dim"] != self.dim:
            raise ValueError(f"checkpoint accumulator has dim {state['dim']}, this one {self.dim}")
        self.within_task, self.across_tasks = state["within_task"], state["across_tasks"]
        device = self._total.device
        self._task, self._task_rows = state["task"].to(device), state["task_rows"]
        self._total, self._total_samples = state["total"].to(device), state["total_samples"]
        self.n_tasks = state["n_tasks"]


@dataclass(frozen=True)
class NullSpaceRule:
    """How to choose the approximate null space from the spectrum of $C$ (descending $s_i$).

    ``adaptive``  NSP²'s rule: the knee of the (smoothed) spectrum, at its largest curvature;
                  `value` is an offset (a fraction in [0, 1) of the remaining directions, or an
                  integer count) that widens the null space.
    ``energy``    the tail directions holding at most a fraction `value` of $\\sum_i s_i$.
    ``drop_top``  everything but the top `value` directions (DMNSP's TOP_SELECT).
    ``threshold`` directions with $s_i \\le$ `value` (absolute).
    ``times``     directions with $s_i \\le$ int(`value`) $\\cdot s_{min}$ (NSP²'s 'times' mode).

    Every rule also keeps the numerically-zero directions ($s_i \\le$ `rtol` $\\cdot s_{max}$), so
    ``energy`` with value 0 is the exact (numerical) null space.
    """

    mode: ThresholdMode = "adaptive"
    value: float = 0.0
    rtol: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in THRESHOLD_MODES:
            raise ValueError(f"null-space mode {self.mode!r} is not known; choose one of {THRESHOLD_MODES}")
        if self.mode == "energy" and not 0.0 <= self.value < 1.0:
            raise ValueError(f"energy mode needs 0 <= value < 1 (fraction of spectrum energy); got {self.value}")
        if self.mode == "drop_top" and (self.value < 0 or int(self.value) != self.value):
            raise ValueError(f"drop_top mode needs a non-negative integer value (directions removed); got {self.value}")
        if self.mode in ("threshold", "times") and self.value < 0:
            raise ValueError(f"{self.mode} mode needs a non-negative value; got {self.value}")


@dataclass(frozen=True)
class NullSpaceInfo:
    """What a null-space choice kept: its dimension and the share of energy it holds."""

    dim: int
    null_dim: int
    captured_energy: float
    threshold: float

    @property
    def null_fraction(self) -> float:
        return self.null_dim / self.dim


@dataclass(frozen=True)
class NullSpace:
    basis: torch.Tensor  # (d, k) orthonormal columns spanning the approximate null space
    singular_values: torch.Tensor  # (d,) descending
    info: NullSpaceInfo


def spectrum(cov: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigen-decomposition of a symmetric PSD matrix, descending: (s, U) with cov = U diag(s) U^T.

    For a symmetric PSD matrix this equals its SVD; eigh is faster and keeps U exactly orthogonal.
    """
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
        raise ValueError(f"expected a square matrix, got shape {tuple(cov.shape)}")
    sym = (cov.to(torch.float64) + cov.to(torch.float64).T) / 2
    s, u = torch.linalg.eigh(sym)
    return s.flip(0).clamp_min(0.0), u.flip(1)


def adaptive_null_space_start(s: np.ndarray, offset: float = 0.0) -> int:
    """Index of the first null-space direction under NSP²'s adaptive rule.

    The spectrum (descending) is smoothed by a Gaussian (sigma 10) when it has at least 128 values;
    the second difference of the smoothed curve, with 1.5% dropped at each end, peaks at the knee;
    the threshold is the singular value there and every direction from the last value above it on
    counts as null space. `offset` widens it (fraction of the rest if in [0, 1), else a count).
    """
    points = np.asarray(s, dtype=np.float64)
    n = len(points)
    if n < 3:
        raise ValueError(f"the adaptive rule needs at least 3 singular values, got {n}")
    if n >= 128:
        smooth = scipy.ndimage.gaussian_filter1d(points, sigma=10)
        d2 = np.diff(smooth, 2)  # = s[i] - 2 s[i+1] + s[i+2] (sign as the knee of a decreasing curve)
        drop = int(n * 0.03 / 2)
        d2 = d2[drop:-drop] if drop > 0 else d2
    else:
        d2 = np.diff(points, 2)
    # Centre the second difference on the spectrum (it is shorter by len(points) - len(d2)).
    threshold = points[int(np.argmax(d2)) + (n - len(d2)) // 2]
    start = int(np.nonzero(points >= threshold)[0].max())
    if 0 <= offset < 1:
        start = min(start + int(offset * (n - start)), n - 1)
    else:
        start = max(min(start + int(offset), n - 1), 0)
    return start


def null_space_mask(s: torch.Tensor, rule: NullSpaceRule) -> torch.Tensor:
    """Boolean mask over descending singular values: True for directions in the null space."""
    s = s.to(torch.float64)
    n = s.numel()
    smax = float(s[0]) if n else 0.0
    rtol = rule.rtol if rule.rtol is not None else n * float(torch.finfo(torch.float64).eps) * 10
    numerically_zero = s <= rtol * smax
    if rule.mode == "adaptive":
        start = adaptive_null_space_start(s.cpu().numpy(), rule.value)
        mask = torch.arange(n, device=s.device) >= start
    elif rule.mode == "energy":
        # tail[i] = energy of directions i..n-1; keep the longest tail within the budget.
        tail = s.flip(0).cumsum(0).flip(0)
        mask = tail <= rule.value * float(s.sum())
    elif rule.mode == "drop_top":
        mask = torch.arange(n, device=s.device) >= int(rule.value)
    elif rule.mode == "threshold":
        mask = s <= rule.value
    else:  # times
        mask = s <= float(s[-1]) * int(rule.value)
    return mask | numerically_zero


def null_space_basis(cov: torch.Tensor, rule: NullSpaceRule) -> NullSpace:
    """Approximate null-space basis of a PSD matrix under `rule`, with what it captured."""
    s, u = spectrum(cov)
    mask = null_space_mask(s, rule)
    total = float(s.sum())
    kept = float(s[mask].sum())
    threshold = float(s[mask].max()) if bool(mask.any()) else float("nan")
    info = NullSpaceInfo(
        dim=s.numel(), null_dim=int(mask.sum()), captured_energy=kept / total if total > 0 else 0.0, threshold=threshold
    )
    return NullSpace(basis=u[:, mask], singular_values=s, info=info)


def mix_with_identity(projector: torch.Tensor, eta: float) -> torch.Tensor:
    """$\\eta P + (1-\\eta) I$: eta = 1 keeps the pure projector, eta = 0 gives plain updates."""
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must lie in [0, 1] (1 = full projection, 0 = none); got {eta}")
    eye = torch.eye(projector.shape[0], dtype=projector.dtype, device=projector.device)
    return eta * projector + (1.0 - eta) * eye


def null_space_projector(
    cov: torch.Tensor,
    rule: NullSpaceRule,
    eta: float = 1.0,
    normalize: bool = False,
    dtype: torch.dtype = torch.float32,
    name: str = "",
) -> tuple[torch.Tensor, NullSpaceInfo]:
    """Projector onto the approximate null space of `cov`, mixed with the identity by `eta`.

    normalize: divide $U_0 U_0^\\top$ by its Frobenius norm before mixing, as NSP²'s official code
    does (this scales the projector by $1/\\sqrt{k}$ for a k-dimensional null space).
    An empty null space warns and gives a zero projector (so eta = 1 updates are zero).
    """
    ns = null_space_basis(cov, rule)
    basis = ns.basis
    proj = basis @ basis.T
    if ns.info.null_dim == 0:
        where = f" for {name}" if name else ""
        warnings.warn(
            f"the null-space rule {rule} kept no direction{where}: projected updates are zero "
            f"(lower the threshold or use eta < 1 to keep some plasticity)",
            EmptyNullSpaceWarning,
            stacklevel=2,
        )
    elif normalize:
        proj = proj / torch.linalg.matrix_norm(proj)
    return mix_with_identity(proj, eta).to(dtype), ns.info
