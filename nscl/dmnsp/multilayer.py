r"""DMNSP's multi-layer null-space projection and dynamic coefficient, vectorised.

Official code (RL-VIG/DMNSP continual_clip/models.py), for visual block j and its adapter weights:

* bases: after task s, for every block k, the left singular vectors of one batch's adapter-output
  Gram matrix without the top `top_select` ones, $\bar U_k^{(s)}$; appended (not re-orthogonalised):
  $B_k = [\bar U_k^{(0)}, \dots, \bar U_k^{(t-1)}]$, so $M_k = B_k B_k^\top = \sum_s (I - u_k^{(s)} u_k^{(s)\top})$;
* coefficient, once per task from its first batch: $u_j$ = top singular vector of block j's Gram,
  $m_{jk}$ = mean of the top $\lfloor r \cdot \#\text{cols}\rfloor$ cosines between $u_j$ and the columns of
  $B_k$, $\lambda_{jk} = \Lambda \exp(-m_{jk})$;
* gradients, every step: a loop over k = 0..11 of $G \leftarrow \lambda_{jk}\, G M_k$ (down projection,
  input side) and $G \leftarrow \lambda_{jk} M_k G$ (up projection, output side), i.e. in closed form
  $G_{down} \leftarrow (\prod_k \lambda_{jk})\, G\, M_0 M_1 \cdots M_{11}$ and
  $G_{up} \leftarrow (\prod_k \lambda_{jk})\, M_{11} \cdots M_0\, G$.

Here the chain is one precomputed matrix and the cosines one matmul per layer: no Python loop over
basis columns. `coefficients_loop` keeps the official loop's arithmetic for side-by-side checks.

Precision: the official code works in float32 throughout (Gram, SVD, bases, cosines). A Gram of
adapter outputs has rank at most bottleneck + 1 (65 of 768 at ViT-B/16), so about 703 of its
singular vectors are an arbitrary orthonormal completion chosen by the SVD routine; float64 and
float32 (or LAPACK and cuSOLVER) pick different completions, and the signed top-10% cosines, hence
lambda, move with them (by up to 0.24 end to end, issue 13). `gram` and `projector_chain` therefore
take the dtype: float64 (nscl's default) or float32 (the official arithmetic order).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "top_direction",
    "drop_top_basis",
    "coefficients",
    "coefficients_loop",
    "projector_chain",
    "intersection_projector",
    "gram",
]


def gram(features: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Sum over all tokens and images of $x x^\\top$: features (N, L, D) or (rows, D) -> (D, D).

    float64: one product over all rows. float32: the official order, a Gram per image (sum over its
    tokens, `torch.bmm`) and then the sum over images, so the float32 rounding is the code's too.
    """
    if dtype == torch.float64 or features.ndim < 3:
        x = features.reshape(-1, features.shape[-1]).to(dtype)
        return x.T @ x
    x = features.reshape(-1, *features.shape[-2:]).to(dtype)  # (images, tokens, D)
    return torch.bmm(x.transpose(1, 2), x).sum(dim=0)


def top_direction(gram_matrix: torch.Tensor) -> torch.Tensor:
    """Top left singular vector (D,) of a PSD matrix."""
    return torch.linalg.svd(gram_matrix, full_matrices=False)[0][:, 0]


def drop_top_basis(gram_matrix: torch.Tensor, top_select: int = 1) -> torch.Tensor:
    """Left singular vectors without the top `top_select` ones: (D, D - top_select)."""
    return torch.linalg.svd(gram_matrix, full_matrices=False)[0][:, top_select:]


def coefficients(
    current_top: torch.Tensor, bases: list[torch.Tensor], top_k_ratio: float = 0.1, scale: float = 30.0
) -> torch.Tensor:
    """lambda (J, K): current_top (J, D) holds u_j as rows; bases[k] is B_k (D, c_k)."""
    dtype = bases[0].dtype if bases else current_top.dtype
    u = F.normalize(current_top.to(dtype), dim=1)
    lam = torch.empty(u.shape[0], len(bases), dtype=torch.float64, device=u.device)
    for k, basis in enumerate(bases):
        cos = u @ F.normalize(basis, dim=0)  # (J, c_k) signed cosines
        top = max(int(basis.shape[1] * top_k_ratio), 1)
        lam[:, k] = scale * torch.exp(-cos.topk(top, dim=1).values.mean(dim=1))
    return lam


def coefficients_loop(
    current_top: torch.Tensor, bases: list[torch.Tensor], top_k_ratio: float = 0.1, scale: float = 30.0
) -> torch.Tensor:
    """The official per-column loop (for checking `coefficients` and timing the difference)."""
    lam = torch.empty(current_top.shape[0], len(bases), dtype=torch.float64)
    for j in range(current_top.shape[0]):
        u = current_top[j] / torch.norm(current_top[j])
        for k, basis in enumerate(bases):
            sims = [torch.dot(u, col / torch.norm(col)) for col in basis.t()]
            top = torch.topk(torch.stack(sims), int(len(sims) * top_k_ratio))[0]
            lam[j, k] = torch.exp(-torch.mean(top)) * scale
    return lam


def projector_chain(bases: list[torch.Tensor], dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """$M_0 M_1 \\cdots M_{K-1}$ with $M_k = B_k B_k^\\top$, in `dtype`: the official sequential projection."""
    chain = None
    for basis in bases:
        b = basis.to(dtype)
        m = b @ b.T
        chain = m if chain is None else chain @ m
    return chain


def intersection_projector(removed: torch.Tensor, dim: int) -> torch.Tensor:
    """Orthogonal projector onto the common null space: everything orthogonal to the columns of `removed`.

    removed (D, r): directions excluded by any layer (e.g. each layer's top directions); their span
    is orthonormalised first, so the result is a true projector whatever their overlap.
    """
    eye = torch.eye(dim, dtype=torch.float64, device=removed.device)
    if removed.numel() == 0:
        return eye
    u, s, _ = torch.linalg.svd(removed.to(torch.float64), full_matrices=False)
    q = u[:, s > s.max() * 1e-10]
    return eye - q @ q.T
