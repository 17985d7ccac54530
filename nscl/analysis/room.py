r"""How much room the null spaces leave a new task: where its prompt gradient lies, what the projector keeps.

For NSP²'s two-sided projection $\Delta P_l \leftarrow B_{2,l}\,\Delta P_l\,B_{1,l}$ of a prompt update
$\Delta P_l \in \mathbb R^{m \times D}$, a component survives the hard projection only if it lies in
the affinity condition's null space (the $D$ side, basis $U_1$) *and* in the aggregation condition's
(the $m$ side, basis $U_2$). `null_shares` splits a gradient's energy accordingly,
`random_shares` gives the same split for a direction drawn at random, `projector_gain` the factor the
normalised, identity-mixed projector applies inside both null spaces, and `SurvivalRecorder` measures
the share of each actual Adam update that the projection lets through.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from nscl.nsp2.conditions import drift_penalty
from nscl.nullspace import null_space_basis

__all__ = ["null_bases", "null_shares", "random_shares", "projector_gain", "SurvivalRecorder", "loss_gradients"]


def null_bases(method) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Hard null-space bases of an NSP² method's accumulated conditions, per prompted layer.

    Returns (right, left): right[l] (D, k1) spans the affinity null space, left[l] (m, k2) the
    aggregation one, chosen with the method's own rules (no eta, no normalisation).
    """
    if method.recorder is None:
        raise ValueError(f"{method.name} records no consistency conditions (a control without projection)")
    spec = method.config.conditions
    right, left = [], []
    for layer in method.recorder.layers:
        right.append(null_space_basis(method.recorder.affinity[layer].matrix, spec.rule1).basis)
        left.append(null_space_basis(method.recorder.aggregation[layer].matrix, spec.rule2).basis)
    return right, left


def null_shares(grad: torch.Tensor, right: Sequence[torch.Tensor], left: Sequence[torch.Tensor]) -> torch.Tensor:
    """Share of each layer's $\\lVert G_l \\rVert_F^2$ in the affinity null space, the aggregation one, and both.

    grad: (L, m, D); right[l]: (D, k1) and left[l]: (m, k2) orthonormal columns. Returns (L, 3):
    $\\lVert G U_1\\rVert^2$, $\\lVert U_2^\\top G\\rVert^2$, $\\lVert U_2^\\top G U_1\\rVert^2$, each over
    $\\lVert G\\rVert^2$ (0 for a zero layer).
    """
    if grad.ndim != 3 or len(right) != grad.shape[0] or len(left) != grad.shape[0]:
        raise ValueError(
            f"grad must be (L, m, D) with one basis pair per layer; got {tuple(grad.shape)}, "
            f"{len(right)} right and {len(left)} left bases"
        )
    rows = []
    for g, u1, u2 in zip(grad.to(torch.float64), right, left):
        u1, u2 = u1.to(g), u2.to(g)
        total = float(g.pow(2).sum())
        if total == 0.0:
            rows.append([0.0, 0.0, 0.0])
            continue
        rows.append(
            [
                float((g @ u1).pow(2).sum()) / total,
                float((u2.T @ g).pow(2).sum()) / total,
                float((u2.T @ g @ u1).pow(2).sum()) / total,
            ]
        )
    return torch.tensor(rows, dtype=torch.float64)


def random_shares(right: Sequence[torch.Tensor], left: Sequence[torch.Tensor]) -> torch.Tensor:
    """The expected `null_shares` of an isotropic random gradient: k1/D, k2/m and their product, per layer."""
    rows = []
    for u1, u2 in zip(right, left):
        a, b = u1.shape[1] / u1.shape[0], u2.shape[1] / u2.shape[0]
        rows.append([a, b, a * b])
    return torch.tensor(rows, dtype=torch.float64)


def projector_gain(k: int, eta: float, normalize: bool = True) -> float:
    """Factor by which $\\eta\\,U_0U_0^\\top/\\lVert U_0U_0^\\top\\rVert_F + (1-\\eta) I$ scales a null-space direction.

    With normalisation $\\lVert U_0U_0^\\top\\rVert_F = \\sqrt k$, so the factor is $\\eta/\\sqrt k + 1 - \\eta$;
    without it, 1. A direction outside the null space is scaled by $1 - \\eta$ either way.
    """
    if k < 1:
        raise ValueError(f"the null space needs at least one direction, got k={k}")
    return (eta / math.sqrt(k) if normalize else eta) + 1.0 - eta


class SurvivalRecorder:
    """Wraps an update projection and records, per step and layer, $\\lVert B_2 \\Delta B_1\\rVert_F / \\lVert \\Delta\\rVert_F$."""

    def __init__(self, projection: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.projection = projection
        self.ratios: list[torch.Tensor] = []  # one (L,) tensor per step

    def __call__(self, update: torch.Tensor) -> torch.Tensor:
        out = self.projection(update)
        raw = update.flatten(1).norm(dim=1)
        self.ratios.append((out.flatten(1).norm(dim=1) / raw.clamp_min(1e-30)).detach().cpu())
        return out

    def mean(self) -> torch.Tensor:
        """Mean surviving share per layer over the recorded steps."""
        if not self.ratios:
            raise ValueError("no update was projected yet")
        return torch.stack(self.ratios).mean(0)


def loss_gradients(method, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients w.r.t. the prompts of an NSP² method's two loss terms on one (transformed) batch.

    Returns (cross-entropy gradient, weighted drift-penalty gradient), both shaped like the prompts;
    the penalty's is zero before the second task or with drift_weight 0. Nothing is stepped.
    """
    cfg, task = method.config, method.task
    prompts = method.prompts
    logits = method._scores(method.encoder.pre_logits(images), task.positions)
    ce = F.cross_entropy(logits.float() / cfg.temperature, labels - task.positions.start)
    (g_ce,) = torch.autograd.grad(ce, prompts)
    g_pen = torch.zeros_like(prompts)
    if method.previous_prompts is not None and cfg.drift_weight:
        pen = cfg.drift_weight * drift_penalty(prompts, method.previous_prompts)
        (g_pen,) = torch.autograd.grad(pen, prompts)
    return g_ce.detach(), g_pen.detach()
