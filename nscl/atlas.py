r"""The null-space atlas: what each layer's accumulated features look like after every task.

Methods call `atlas_rows` at the end of each task, with each layer's matrix of the *current* task
($X_t^\top X_t$) and the *accumulated* one ($\sum_{s \le t} X_s^\top X_s$). A row keeps the accumulated
spectrum (descending eigenvalues) and an orthonormal basis of the task's own top directions, from
which `subspace_overlap` and `principal_angles` compare tasks. Rows are small (D + D k floats).
"""

from __future__ import annotations

import torch

__all__ = ["top_basis", "principal_angles", "subspace_overlap", "atlas_rows", "mean_task_overlap"]


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


def mean_task_overlap(rows: list[dict], kind: str, layer: int | None = None, **match) -> float:
    """Mean `subspace_overlap` between every two different tasks' top bases (chapter 6's measure).

    rows: a method's atlas (its report's "atlas"); kind: which features ("affinity" for NSP², "x" for DMNSP's
    adapter inputs); layer: None for the last layer recorded; match: further keys a row must hold (tower="visual").
    """
    chosen = [r for r in rows if r["kind"] == kind and all(r.get(k) == v for k, v in match.items())]
    if not chosen:
        raise ValueError(
            f"no atlas rows of kind {kind!r} with {match}; kinds present: {sorted({r['kind'] for r in rows})}"
        )
    layer = max(r["layer"] for r in chosen) if layer is None else layer
    bases = [r["task_basis"] for r in sorted(chosen, key=lambda r: r["task"]) if r["layer"] == layer]
    if len(bases) < 2:
        raise ValueError(f"layer {layer}: {len(bases)} task(s) recorded; an overlap needs two")
    pairs = [subspace_overlap(a, b) for i, a in enumerate(bases) for b in bases[i + 1 :]]
    return sum(pairs) / len(pairs)
