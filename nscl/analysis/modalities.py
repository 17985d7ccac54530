r"""How the visual and the text adapters' parameters spread and move over class increments.

DMNSP's premise (Kang et al., ICCV 2025, abstract): "the visual modality experiences a broader
parameter distribution and greater variance during class increments than the textual modality".
The paper's figure and its exact measurement were not available to us; these functions implement
the protocol of ../shared/reference/dmnsp.md section 4 (our reconstruction):

* parameter sets per tower: the up-projection weights (zero at init, so all of it is learnt), the
  down-projection weights minus their init (their kaiming init differs between towers through the
  fan-in), and every adapter parameter pooled;
* per task: spread statistics of each set, and its drift $\lVert\theta_t - \theta_{t-1}\rVert_2/\sqrt P$
  ($\theta_{-1}$ = init);
* per element: the variance across tasks, $\mathrm{Var}_t(\theta_t)$.

Snapshots are `{parameter name: tensor}` dicts, as `DMNSP(record_parameters=True).report()` gives.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

__all__ = [
    "tower_of",
    "PARAMETER_SETS",
    "parameter_set",
    "spread_statistics",
    "across_task_variance",
    "layer_statistics",
]

Snapshot = Mapping[str, torch.Tensor]
PARAMETER_SETS = ("up_proj.weight", "down_proj.weight - init", "all")


def tower_of(name: str) -> str:
    """'visual' for the image tower's adapters (open_clip names them visual.*), else 'text'."""
    return "visual" if name.startswith("visual.") else "text"


def _layer_of(name: str) -> int:
    """Block index from an open_clip name such as visual.transformer.resblocks.3.adaptmlp.up_proj.weight."""
    parts = name.split(".")
    return int(parts[parts.index("resblocks") + 1])


def _selected(name: str, which: str) -> bool:
    if which == "all":
        return True
    return name.endswith(which.split(" ")[0])


def parameter_set(
    snapshot: Snapshot, initial: Snapshot, tower: str, which: str, layer: int | None = None
) -> torch.Tensor:
    """One tower's parameters of one set, flattened (float64), optionally from one block only."""
    if which not in PARAMETER_SETS:
        raise ValueError(f"which={which!r}: choose one of {PARAMETER_SETS}")
    parts = []
    for name in sorted(snapshot):
        if tower_of(name) != tower or not _selected(name, which):
            continue
        if layer is not None and _layer_of(name) != layer:
            continue
        value = snapshot[name].double()
        if which.endswith("- init"):
            value = value - initial[name].double()
        parts.append(value.flatten())
    if not parts:
        raise ValueError(f"no {which} parameters of the {tower} tower in the snapshot")
    return torch.cat(parts)


def _kurtosis(x: torch.Tensor) -> float:
    centred = x - x.mean()
    var = centred.pow(2).mean()
    return float(centred.pow(4).mean() / var.pow(2) - 3.0) if var > 0 else float("nan")


def spread_statistics(
    snapshots: Sequence[Snapshot], initial: Snapshot, towers: Sequence[str] = ("visual", "text")
) -> pd.DataFrame:
    """Per task, tower and parameter set: mean, std, variance, percentiles, kurtosis and drift."""
    rows = []
    for which in PARAMETER_SETS:
        for tower in towers:
            previous = parameter_set(initial, initial, tower, which)
            for task, snapshot in enumerate(snapshots):
                x = parameter_set(snapshot, initial, tower, which)
                q = torch.quantile(x.float(), torch.tensor([0.001, 0.01, 0.99, 0.999])).double()
                rows.append(
                    {
                        "task": task,
                        "tower": tower,
                        "set": which,
                        "n": x.numel(),
                        "mean": float(x.mean()),
                        "std": float(x.std(unbiased=False)),
                        "variance": float(x.var(unbiased=False)),
                        "p0.1": float(q[0]),
                        "p1": float(q[1]),
                        "p99": float(q[2]),
                        "p99.9": float(q[3]),
                        "excess_kurtosis": _kurtosis(x),
                        "drift": float((x - previous).norm() / np.sqrt(x.numel())),
                    }
                )
                previous = x
    return pd.DataFrame(rows)


def across_task_variance(
    snapshots: Sequence[Snapshot], initial: Snapshot, tower: str, which: str = "up_proj.weight"
) -> torch.Tensor:
    """Each element's variance over the task snapshots (population variance, one value per element)."""
    stack = torch.stack([parameter_set(s, initial, tower, which) for s in snapshots])
    return stack.var(dim=0, unbiased=False)


def layer_statistics(
    snapshots: Sequence[Snapshot], initial: Snapshot, tower: str, which: str = "up_proj.weight"
) -> pd.DataFrame:
    """Variance of a parameter set per block and task (rows: blocks, columns: tasks)."""
    layers = sorted({_layer_of(n) for n in initial if tower_of(n) == tower})
    table = {
        task: [float(parameter_set(s, initial, tower, which, layer).var(unbiased=False)) for layer in layers]
        for task, s in enumerate(snapshots)
    }
    return pd.DataFrame(table, index=pd.Index(layers, name="block"))
