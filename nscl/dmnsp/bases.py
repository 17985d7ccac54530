"""DMNSP's per-task update of the null-space bases and of the projection operators (both variants)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nscl.atlas import atlas_rows
from nscl.dmnsp.multilayer import drop_top_basis, gram, intersection_projector, projector_chain
from nscl.methods.base import Batches, TaskInfo
from nscl.nullspace import CovarianceAccumulator, NullSpaceRule, null_space_mask, spectrum

__all__ = ["update_bases", "layer_null_space_rule", "split_top", "common_null_projector", "weight_projection_factors"]


@torch.no_grad()
def _code_grams(method, task: TaskInfo, batches: Batches) -> dict[str, list[torch.Tensor]]:
    """Adapter-output Gram matrices from ONE augmented training batch, adapters in train mode (dropout on)."""
    cfg = method.config
    captured: dict = {}
    method.clip.train()
    method.adapters.recorder = method._capture(captured, "output")
    try:
        if "visual" in method.towers:
            images, _ = next(iter(batches(train_transform=True, batch_size=cfg.basis_batch_size, shuffle=True)))
            method.clip.encode_image(images)
        if "text" in method.towers:
            method.clip.encode_text(method.tokens[task.positions.start : task.positions.stop])
    finally:
        method.adapters.recorder = None
    dtype = method.basis_dtype
    return {
        tower: [gram(captured[(tower, k)], dtype) for k in range(len(method.adapters.tower(tower)))]
        for tower in method.towers
    }


@torch.no_grad()
def _accumulate_inputs(method, task: TaskInfo, batches: Batches) -> None:
    """Add this task's adapter inputs x and bottleneck activations h (eval mode, all data) to the sums."""
    method.clip.eval()
    for tower in method.towers:
        state = method.state[tower]
        if "x" not in state:
            adapters = method.adapters.tower(tower)
            state["x"] = [CovarianceAccumulator(a.down_proj.in_features, device=method.device) for a in adapters]
            state["h"] = [CovarianceAccumulator(a.down_proj.out_features, device=method.device) for a in adapters]

    def record(tower: str, index: int, x: torch.Tensor, a: torch.Tensor) -> None:
        if tower in method.towers:
            adapter = method.adapters.tower(tower)[index]
            method.state[tower]["x"][index].update(x)
            method.state[tower]["h"][index].update(F.relu(adapter.down_proj(x)))

    method.adapters.recorder = record
    try:
        if "visual" in method.towers:
            for images, _ in batches(train_transform=False):
                method.clip.encode_image(images)
        if "text" in method.towers:
            method.clip.encode_text(method.tokens[task.positions.start : task.positions.stop])
    finally:
        method.adapters.recorder = None
    for tower in method.towers:
        own = {kind: [acc.current_task_matrix.clone() for acc in method.state[tower][kind]] for kind in ("x", "h")}
        for acc in (*method.state[tower]["x"], *method.state[tower]["h"]):
            acc.end_task()
        layers = list(range(len(own["x"])))
        for kind in ("x", "h"):
            rows = atlas_rows(task.index, kind, own[kind], [acc.matrix for acc in method.state[tower][kind]], layers)
            method.atlas += [{**row, "tower": tower} for row in rows]


def layer_null_space_rule(top_select: int, energy_threshold: float | None) -> NullSpaceRule:
    """Which directions of a layer's features stay free (its null space): all but the top
    `top_select`, or the tail holding at most 1 - `energy_threshold` of the energy."""
    if energy_threshold is None:
        return NullSpaceRule("drop_top", top_select)
    return NullSpaceRule("energy", 1.0 - energy_threshold)


def split_top(cov: torch.Tensor, rule: NullSpaceRule) -> tuple[torch.Tensor, torch.Tensor]:
    """(removed top eigenvectors, the null-space ones) of a PSD matrix under `rule`."""
    s, u = spectrum(cov)
    null = null_space_mask(s, rule)
    return u[:, ~null], u[:, null]


def common_null_projector(covariances: list[torch.Tensor], rule: NullSpaceRule, how: str) -> torch.Tensor:
    """Projector (D, D) onto one null space shared by all layers' features.

    intersect: each layer's null space under `rule`, then their exact intersection (the complement of
        the span of every layer's dropped directions); empty once those span all D dimensions.
    pooled: `rule` applied to the sum of the layers' covariances, each divided by its trace so that no
        layer dominates. Its kept tail's energy share is the mean of the layers' shares, so an energy
        rule keeping 1 - theta leaks at most L (1 - theta) of any one layer's energy.
    """
    dim = covariances[0].shape[0]
    if how == "pooled":
        pooled = sum(c / c.trace().clamp_min(torch.finfo(c.dtype).tiny) for c in covariances)
        _, null = split_top(pooled, rule)
        return null @ null.T
    if how == "intersect":
        return intersection_projector(torch.cat([split_top(c, rule)[0] for c in covariances], dim=1), dim)
    raise ValueError(f"common null space how={how!r}: choose 'intersect' or 'pooled'")


@torch.no_grad()
def update_bases(method, task: TaskInfo, batches: Batches) -> None:
    cfg = method.config
    if cfg.variant == "code":
        grams = _code_grams(method, task, batches)
        dtype = method.basis_dtype
        for tower, per_layer in grams.items():
            # float32: the SVD runs on the float32 Gram, as the official code's does
            new = [drop_top_basis(g, cfg.top_select).float() for g in per_layer]
            old = method.state[tower].get("bases")
            # appended, not re-orthogonalised: M_k = B_k B_k^T = sum over tasks of (I - u u^T)
            bases = new if old is None else [torch.cat([b, n], dim=1) for b, n in zip(old, new)]
            method.state[tower]["bases"] = bases
            method.state[tower]["lambda_bases"] = bases
            if cfg.multi_layer:
                chain = projector_chain(bases, dtype).float()
                down = [chain] * len(bases)
            else:
                down = [(b.to(dtype) @ b.to(dtype).T).float() for b in bases]
            method.operators[tower] = {"down": down}
        return
    _accumulate_inputs(method, task, batches)
    rule = layer_null_space_rule(cfg.top_select, cfg.energy_threshold)
    for tower in method.towers:
        state = method.state[tower]
        split = [split_top(acc.matrix, rule) for acc in state["x"]]
        state["lambda_bases"] = [rest.float() for _, rest in split]
        dim = state["x"][0].dim
        if cfg.multi_layer:
            common = common_null_projector([acc.matrix for acc in state["x"]], rule, cfg.common_space).float()
            down = [common] * len(split)
        else:
            down = [intersection_projector(top, dim).float() for top, _ in split]
        up = [intersection_projector(split_top(acc.matrix, rule)[0], acc.dim).float() for acc in state["h"]]
        method.operators[tower] = {"down": down, "up": up}


def weight_projection_factors(
    operators: dict, j: int, variant: str
) -> dict[str, tuple[torch.Tensor | None, torch.Tensor | None]]:
    """(left, right) factors that project block j's adapter weights, $W \\mapsto L W R$: W_down on its input side;
    W_up on its input side (paper: the bottleneck's own null space) or its output side (code: the chain, transposed)."""
    right = operators["down"][j]
    if variant == "code":
        return {"down": (None, right), "up": (right.T, None)}
    return {"down": (None, right), "up": (None, operators["up"][j])}
