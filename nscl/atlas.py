r"""The null-space atlas: what each layer's accumulated features look like after every task.

Methods call `atlas_rows` at the end of each task, with each layer's matrix of the *current* task
($X_t^\top X_t$) and the *accumulated* one ($\sum_{s \le t} X_s^\top X_s$). A row keeps the accumulated
spectrum (descending eigenvalues) and an orthonormal basis of the task's own top directions, from
which `subspace_overlap` and `principal_angles` compare tasks. Rows are small (D + D k floats).
"""

from __future__ import annotations

import torch

__all__ = ["top_basis", "principal_angles", "subspace_overlap", "atlas_rows"]


def top_basis(matrix: torch.Tensor, k: int) -> torch.Tensor:
    """Orthonormal (D, k) basis of the top-k eigenvectors of a symmetric PSD matrix."""
    _, vectors = torch.linalg.eigh(matrix.double())
    return vectors[:, -k:].flip(-1)


def principal_angles(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Principal angles (degrees, ascending) between the spans of orthonormal bases a (D, k) and b (D, l)."""
    cosines = torch.linalg.svdvals(a.double().T @ b.double()).clamp(-1.0, 1.0)
    return torch.rad2deg(torch.arccos(cosines))


def subspace_overlap(a: torch.Tensor, b: torch.Tensor) -> float:
    r"""$\lVert a^\top b \rVert_F^2 / \min(k, l)$: the mean squared cosine of the principal angles (1 = same span)."""
    return float((a.double().T @ b.double()).square().sum() / min(a.shape[1], b.shape[1]))


def atlas_rows(
    task: int,
    kind: str,
    task_matrices: list[torch.Tensor],
    accumulated: list[torch.Tensor],
    layers: list[int] | tuple[int, ...],
    k: int = 8,
) -> list[dict]:
    """One row per layer: the accumulated spectrum (descending) and the task's own top-k basis."""
    rows = []
    for layer, own, total in zip(layers, task_matrices, accumulated):
        spectrum = torch.linalg.eigvalsh(total.double()).flip(0).clamp_min(0.0)
        rows.append(
            {
                "task": task,
                "layer": layer,
                "kind": kind,
                "spectrum": spectrum.float().cpu(),
                "task_basis": top_basis(own, min(k, own.shape[0])).float().cpu(),
            }
        )
    return rows
