r"""NSP²'s two consistency conditions: collecting their features per layer, and their projectors.

For a prompted layer with image tokens $X$ and prompts $P$ (m x D), a prompt update $\Delta P$ keeps
the image tokens' attention output when (NSP², Eqs. 24-25, stacked over heads, Sec. 4.3)

* affinity:    $\Omega_1 \Delta P^\top = 0$, rows of $\Omega_1$: $q_{h,n} W_{k,h}$ for every head h and
  image token n, with $q = \mathrm{LN}(X) W_q + b_q$ (a D-vector per row);
* aggregation: $\Omega_2 \Delta P = 0$, rows of $\Omega_2$: the attention of image token n in head h
  on the m prompts (post-softmax).

`ConditionRecorder` accumulates $\Omega_1^\top\Omega_1$ (D x D) and $\Omega_2^\top\Omega_2$ (m x m) per layer
as the official code does (each batch divided by its row count, summed over batches, then summed or
sample-weighted over tasks). `condition_projectors` turns them into $B_1$ (right, features) and
$B_2$ (left, prompt tokens), so that $\Delta P \leftarrow B_2\,\Delta P\,B_1$.

LayerNorm. The paper assumes the prompts' per-token mean and std stay fixed (enforced softly by the
drift penalty), so that $\mathrm{LN}(P+\Delta P) = \mathrm{LN}(P) + \mathrm{diag}(1/\sigma)\,\Delta P\,
\mathrm{diag}(\alpha)$, and then drops $\alpha$ (LN gain) and $\sigma$ from the conditions, as does the
code. `ln_exact=True` keeps them: $\Omega_1\mathrm{diag}(\alpha)$ and $\Omega_2\mathrm{diag}(1/\sigma)$, which
makes the conditions exact under the paper's own assumption. `ln_invariant=True` (an nscl extension,
not in the paper) goes one step further and intersects the affinity null space with the directions
that keep each prompt token's mean exactly and its std to first order ($\Delta p_i \perp \mathbf 1$,
$\Delta p_i \perp \hat z_i$), so LayerNorm's drift becomes a second-order effect instead of being
left to the drift penalty.
"""

from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass
from typing import Literal

import torch

from nscl.nullspace import (
    CovarianceAccumulator,
    EmptyNullSpaceWarning,
    NullSpaceInfo,
    NullSpaceRule,
    mix_with_identity,
    null_space_basis,
    null_space_projector,
)

__all__ = ["ConditionRecorder", "ConditionSpec", "condition_projectors", "drift_penalty"]


class ConditionRecorder:
    """Per-layer accumulators of the affinity (D x D) and aggregation (m x m) matrices."""

    def __init__(
        self,
        layers: tuple[int, ...],
        dim: int,
        length: int,
        across_tasks: Literal["sum", "mean"] = "sum",
        device: torch.device | str = "cpu",
        heads: tuple[int, ...] | None = None,
    ) -> None:
        self.layers = layers
        self.heads = heads  # None: every head (NSP²'s multi-head stacking); a subset is for analysis only
        self.affinity = {l: CovarianceAccumulator(dim, "batch_mean", across_tasks, device) for l in layers}
        self.aggregation = {l: CovarianceAccumulator(length, "batch_mean", across_tasks, device) for l in layers}

    @torch.no_grad()
    def __call__(
        self, layer: int, queries: torch.Tensor, prompt_attention: torch.Tensor, key_weight: torch.Tensor
    ) -> None:
        if self.heads is not None:
            queries, prompt_attention = queries[:, list(self.heads)], prompt_attention[:, list(self.heads)]
            key_weight = key_weight[list(self.heads)]
        b, h, n, _ = queries.shape
        rows = b * h * n
        q = queries.to(torch.float64)
        # sum_h W_kh^T (q_h^T q_h) W_kh == (stacked rows q_h W_kh)^T (stacked rows), without forming them.
        gram = torch.einsum("bhnd,bhne->hde", q, q)
        wk = key_weight.to(torch.float64)
        self.affinity[layer].add_matrix(torch.einsum("hdD,hde,heE->DE", wk, gram, wk), rows)
        a = prompt_attention.reshape(rows, -1).to(torch.float64)
        self.aggregation[layer].add_matrix(a.T @ a, rows)

    def end_task(self, n_samples: int) -> None:
        for acc in (*self.affinity.values(), *self.aggregation.values()):
            acc.end_task(n_samples)

    def state_dict(self) -> dict:
        return {
            "affinity": {l: a.state_dict() for l, a in self.affinity.items()},
            "aggregation": {l: a.state_dict() for l, a in self.aggregation.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        for l in self.layers:
            self.affinity[l].load_state_dict(state["affinity"][l])
            self.aggregation[l].load_state_dict(state["aggregation"][l])


@dataclass(frozen=True)
class ConditionSpec:
    """How each condition's projector is built (NSP² defaults: adaptive rule, normalised, eta 1)."""

    rule1: NullSpaceRule = NullSpaceRule("adaptive")
    rule2: NullSpaceRule = NullSpaceRule("adaptive")
    eta1: float = 1.0
    eta2: float = 1.0
    normalize: bool = True
    ln_exact: bool = False
    ln_invariant: bool = False

    def __post_init__(self) -> None:
        # checked here, not when the first task's projectors are built (after that task has trained)
        for name in ("rule1", "rule2"):
            if not isinstance(getattr(self, name), NullSpaceRule):
                raise ValueError(
                    f"ConditionSpec.{name}={getattr(self, name)!r}: give a "
                    f"nscl.nullspace.NullSpaceRule, e.g. NullSpaceRule('adaptive')"
                )
        for name in ("eta1", "eta2"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
                raise ValueError(
                    f"ConditionSpec.{name}={value!r}: eta must be a number in [0, 1] "
                    f"(1 = full projection, 0 = none; the NSP² recipes use 0.94-0.98)"
                )
        for name in ("normalize", "ln_exact", "ln_invariant"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"ConditionSpec.{name}={getattr(self, name)!r}: give True or False")


def _invariant_projector(
    cov: torch.Tensor,
    rule: NullSpaceRule,
    prompts: torch.Tensor,
    eta: float,
    normalize: bool,
    dtype: torch.dtype,
    name: str,
) -> tuple[torch.Tensor, NullSpaceInfo]:
    """Projector onto null(cov) intersected with {1, z_1..z_m}^perp (mean exact, std to first order)."""
    ns = null_space_basis(cov, rule)
    p = prompts.to(torch.float64)
    z = (p - p.mean(-1, keepdim=True)) / p.std(-1, unbiased=False, keepdim=True)
    keep = torch.cat([torch.ones_like(z[:1]), z]).to(ns.basis)  # (m + 1, D) directions to avoid
    coords = ns.basis.T @ keep.T  # (k, m + 1)
    u, s, _ = torch.linalg.svd(coords, full_matrices=True)
    rank = int((s > s.max() * 1e-10).sum()) if s.numel() else 0
    basis = ns.basis @ u[:, rank:]  # orthonormal, inside the null space
    proj = basis @ basis.T
    if basis.shape[1] == 0:
        warnings.warn(f"no direction left for {name}: projected updates are zero", EmptyNullSpaceWarning, stacklevel=3)
    elif normalize:
        proj = proj / torch.linalg.matrix_norm(proj)
    info = NullSpaceInfo(ns.info.dim, basis.shape[1], ns.info.captured_energy, ns.info.threshold)
    return mix_with_identity(proj, eta).to(dtype), info


def condition_projectors(
    recorder: ConditionRecorder,
    spec: ConditionSpec,
    ln_gains: list[torch.Tensor] | None = None,
    prompts: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor, list[tuple[NullSpaceInfo, NullSpaceInfo]]]:
    """Stacked projectors: left (L, m, m) for the aggregation condition, right (L, D, D) for the affinity one.

    ln_gains: each prompted layer's LN weight (D,); prompts: (L, m, D) current prompts. Both are only
    used with `spec.ln_exact` / `spec.ln_invariant`.
    """
    if (spec.ln_exact or spec.ln_invariant) and (ln_gains is None or prompts is None):
        raise ValueError("ln_exact / ln_invariant need the layers' LN gains and the current prompts")
    lefts, rights, infos = [], [], []
    for i, layer in enumerate(recorder.layers):
        c1 = recorder.affinity[layer].matrix
        c2 = recorder.aggregation[layer].matrix
        if spec.ln_exact:
            alpha = ln_gains[i].to(c1)
            c1 = alpha[:, None] * c1 * alpha[None, :]
            inv = 1.0 / prompts[i].std(-1, unbiased=False).to(c2)
            c2 = inv[:, None] * c2 * inv[None, :]
        if spec.ln_invariant:
            right, info1 = _invariant_projector(
                c1, spec.rule1, prompts[i], spec.eta1, spec.normalize, dtype, f"affinity, layer {layer}"
            )
        else:
            right, info1 = null_space_projector(
                c1, spec.rule1, spec.eta1, spec.normalize, dtype, f"affinity, layer {layer}"
            )
        left, info2 = null_space_projector(
            c2, spec.rule2, spec.eta2, spec.normalize, dtype, f"aggregation, layer {layer}"
        )
        lefts.append(left)
        rights.append(right)
        infos.append((info1, info2))
    return torch.stack(lefts), torch.stack(rights), infos


def drift_penalty(prompts: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """NSP²'s LN loss: sum over layers of mean_tokens |mu - mu_prev| + mean_tokens |sigma - sigma_prev|.

    Per-token mean and population std over the feature axis, against the previous task's prompts.
    """
    prev = previous.detach()
    mean_term = (prompts.mean(-1) - prev.mean(-1)).abs().mean(-1)
    std_term = (prompts.std(-1, unbiased=False) - prev.std(-1, unbiased=False)).abs().mean(-1)
    return (mean_term + std_term).sum()
