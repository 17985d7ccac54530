"""DMNSP's per-task records for analysis, and the (de)serialisation of its state for checkpoints.

The records answer "what did the projection do to training": how far each tower's adapters moved
over a task, whether AdamW's moments stayed finite (the released code's chain can overflow the
float32 second moment, after which that entry's update is exactly zero), and how large each
projection's range is.
"""

from __future__ import annotations

import torch
from torch import nn

from nscl.nullspace import CovarianceAccumulator

__all__ = ["tower_of", "update_norm_row", "moment_health_rows", "null_dim_rows", "leak_share", "to_cpu", "load_state"]

WEIGHTS = ("down_proj", "up_proj")  # the adapter weights DMNSP projects (biases never are)


def tower_of(name: str) -> str:
    """'visual' or 'text' for an adapter parameter name (open_clip: visual.* vs transformer.*)."""
    return "visual" if name.startswith("visual.") else "text"


def update_norm_row(params: dict[str, nn.Parameter], start: dict[str, torch.Tensor]) -> dict[str, float]:
    """Per tower, the norm of the change of all its adapter parameters over the task."""
    row = {}
    for tower in ("visual", "text"):
        names = [n for n in params if tower_of(n) == tower]
        delta = torch.cat([(params[n].detach() - start[n]).flatten() for n in names])
        row[f"{tower}_update_norm"] = float(delta.norm())
    return row


def _share_nonfinite(tensors: list[torch.Tensor]) -> float:
    if not tensors:
        return float("nan")
    return float(sum(int((~torch.isfinite(t)).sum()) for t in tensors) / sum(t.numel() for t in tensors))


def moment_health_rows(
    task: int, params: dict[str, nn.Parameter], start: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer
) -> list[dict]:
    """One row per tower and adapter weight kind, pooled over the layers, at the end of a task.

    share_nonfinite_exp_avg_sq / share_nonfinite_exp_avg: entries of AdamW's second / first moment
    that are inf or NaN (NaN when the weights had no optimizer state, e.g. frozen); an infinite
    second moment makes that entry's update m / (sqrt(v) + eps) exactly 0 for the rest of the task.
    share_unchanged: entries of the weight itself that did not move at all over the task.
    """
    rows = []
    for tower in ("visual", "text"):
        for kind in WEIGHTS:
            names = [n for n in params if tower_of(n) == tower and f"{kind}.weight" in n]
            states = [optimizer.state.get(params[n], {}) for n in names]
            unchanged = sum(int((params[n].detach() == start[n]).sum()) for n in names)
            rows.append(
                {
                    "task": task,
                    "tower": tower,
                    "weight": kind,
                    "share_nonfinite_exp_avg_sq": _share_nonfinite(
                        [s["exp_avg_sq"] for s in states if "exp_avg_sq" in s]
                    ),
                    "share_nonfinite_exp_avg": _share_nonfinite([s["exp_avg"] for s in states if "exp_avg" in s]),
                    "share_unchanged": unchanged / sum(params[n].numel() for n in names),
                    "n_entries": sum(params[n].numel() for n in names),
                }
            )
    return rows


def null_dim_rows(task: int, operators: dict[str, dict], bases: dict[str, list[torch.Tensor]] | None) -> list[dict]:
    """Per tower and layer, the rank of each projection (the trace of a projector). The code variant's
    chain is not a projector; for it the width of the stacked basis (`bases` given) is recorded."""
    rows = []
    for tower, ops in operators.items():
        for j in range(len(ops["down"])):
            row = {"task": task, "tower": tower, "layer": j}
            if bases is not None:
                row["down"] = int(bases[tower][j].shape[1])
            else:
                row["down"] = round(float(ops["down"][j].double().trace()))
                row["up"] = round(float(ops["up"][j].double().trace()))
            row["dim"] = int(ops["down"][j].shape[0])
            rows.append(row)
    return rows


@torch.no_grad()
def leak_share(delta: torch.Tensor, left: torch.Tensor | None, right: torch.Tensor | None) -> float:
    r"""The share of a weight's change outside its projection's range, $\lVert \Delta - L \Delta R \rVert^2 /
    \lVert \Delta \rVert^2$ (float64; 0: every step stayed in the null space, 0 for no change)."""
    delta = delta.double()
    kept = delta if left is None else left.to(delta.device, torch.float64) @ delta
    kept = kept if right is None else kept @ right.to(delta.device, torch.float64)
    total = float(delta.square().sum())
    return float((delta - kept).square().sum()) / total if total > 0 else 0.0


def to_cpu(obj):
    """Tensors (and accumulators) nested in dicts and lists, moved to the CPU for a checkpoint."""
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, CovarianceAccumulator):
        return {"__accumulator__": obj.state_dict()}
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_cpu(v) for v in obj]
    return obj


def load_state(obj, device: torch.device):
    """The inverse of `to_cpu`, onto `device`."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict) and "__accumulator__" in obj:
        acc = CovarianceAccumulator(obj["__accumulator__"]["dim"], device=device)
        acc.load_state_dict(obj["__accumulator__"])
        return acc
    if isinstance(obj, dict):
        return {k: load_state(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [load_state(v, device) for v in obj]
    return obj
