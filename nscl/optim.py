r"""Adam / AdamW whose final update is projected, where NSP² projects it.

NSP²'s optimizer (official code: utils/mod_adam.py) runs the usual Adam moment estimates and bias
corrections on the raw gradient and projects only the resulting update,

$$\Delta = -\frac{\gamma}{1-\beta_1^t}\,\frac{m_t}{\sqrt{v_t/(1-\beta_2^t)}+\epsilon},\qquad
\Delta \leftarrow P_2\,\Delta\,P_1,\qquad \theta \leftarrow \theta + \Delta .$$

Projecting the update (not the gradient) matters: Adam divides element-wise by $\sqrt{v_t}$, which
would carry a projected gradient back out of the null space. With identity projectors this is
exactly torch's Adam (and AdamW, up to float rounding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

import torch

__all__ = ["TwoSidedProjection", "ProjectedAdam"]

UpdateProjection = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class TwoSidedProjection:
    """$\\Delta \\mapsto L\\,\\Delta\\,R$ on the last two dimensions of an update.

    For a prompt of shape (..., m, D): `left` (m, m) acts on the prompt tokens (NSP²'s P2, the
    aggregation condition) and `right` (D, D) on the features (P1, the affinity condition). Either
    may be None, and both may carry leading batch dimensions, e.g. (L, m, m) for L stacked layers.
    """

    left: torch.Tensor | None = None
    right: torch.Tensor | None = None

    def __call__(self, update: torch.Tensor) -> torch.Tensor:
        out = update
        if self.left is not None:
            out = torch.matmul(self.left.to(out.dtype), out)
        if self.right is not None:
            out = torch.matmul(out, self.right.to(out.dtype))
        return out


class ProjectedAdam(torch.optim.Optimizer):
    """Adam (coupled L2 weight decay) or AdamW (decoupled) with per-parameter update projections.

    projections: maps a parameter tensor to a callable applied to its update before the step.
    Parameters without a projection take the plain Adam/AdamW step. With AdamW the decoupled decay
    term is part of the projected update, since shrinking the parameter would also move old outputs.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled_weight_decay: bool = False,
        projections: Mapping[torch.Tensor, UpdateProjection] | None = None,
    ) -> None:
        if lr < 0:
            raise ValueError(f"lr must be >= 0, got {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"betas must lie in [0, 1), got {betas}")
        if eps < 0 or weight_decay < 0:
            raise ValueError(f"eps and weight_decay must be >= 0, got eps={eps}, weight_decay={weight_decay}")
        defaults = dict(
            lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, decoupled_weight_decay=decoupled_weight_decay
        )
        super().__init__(params, defaults)
        self.projections: dict[torch.Tensor, UpdateProjection] = dict(projections or {})

    def set_projection(self, param: torch.Tensor, projection: UpdateProjection | None) -> None:
        """Attach (or with None, remove) the projection of one parameter's update."""
        if projection is None:
            self.projections.pop(param, None)
        else:
            self.projections[param] = projection

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            decoupled = group["decoupled_weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                step = state["step"]
                if wd != 0 and not decoupled:
                    grad = grad.add(p, alpha=wd)
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                step_size = lr / (1 - beta1**step)
                denom = (exp_avg_sq.sqrt() / math.sqrt(1 - beta2**step)).add_(eps)
                projection = self.projections.get(p)
                if projection is None:
                    if wd != 0 and decoupled:
                        p.mul_(1 - lr * wd)
                    p.addcdiv_(exp_avg, denom, value=-step_size)
                    continue
                update = torch.zeros_like(p).addcdiv_(exp_avg, denom, value=-step_size)
                if wd != 0 and decoupled:
                    update.add_(p, alpha=-lr * wd)
                p.add_(projection(update))
        return loss
