"""Measuring how much old outputs move under updates (the checks of book chapters 1 and 2).

Most functions work on a `PromptedEncoder` and compare its pre-logit features (or a block's
image-token outputs) before and after an update, as a relative Frobenius change. `OutputRecorder`
follows a whole continual run: the method's logits on fixed inputs after every task.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import torch

from nscl.models.encoders import PromptedEncoder
from nscl.nsp2.conditions import ConditionRecorder

__all__ = [
    "collect_conditions",
    "relative_change",
    "offset_change",
    "block_output_change",
    "prompt_step_change",
    "OutputRecorder",
]


@dataclass
class OutputRecorder:
    """`run_continual(..., after_task=recorder)`: the method's logits on fixed `inputs` after every task.

    `columns` picks the logits to keep (e.g. slice(0, 2): the first task's head of two classes);
    `outputs[k]` is a (n_inputs, n_kept) tensor recorded after the k-th task the run trained.
    """

    inputs: torch.Tensor
    columns: slice = field(default_factory=lambda: slice(None))
    outputs: list[torch.Tensor] = field(default_factory=list)

    @torch.no_grad()
    def __call__(self, task: int, method) -> None:
        self.outputs.append(method.logits(method.transform(self.inputs))[:, self.columns].detach().clone())

    def changes(self) -> list[float]:
        """Relative change of the recorded outputs after each later task against the first record."""
        return [relative_change(self.outputs[0], later) for later in self.outputs[1:]]


@torch.no_grad()
def collect_conditions(
    encoder: PromptedEncoder,
    batches: Iterable[torch.Tensor],
    heads: tuple[int, ...] | None = None,
    n_samples: int | None = None,
) -> ConditionRecorder:
    """One task's condition matrices for every prompted layer (all heads, or only `heads`)."""
    bank = encoder.bank
    recorder = ConditionRecorder(bank.layers, encoder.width, bank.length, device=bank.prompts.device, heads=heads)
    bank.recorder, count = recorder, 0
    try:
        for images in batches:
            encoder.pre_logits(images)
            count += images.shape[0]
    finally:
        bank.recorder = None
    recorder.end_task(n_samples or count)
    return recorder


def relative_change(before: torch.Tensor, after: torch.Tensor) -> float:
    return float((after - before).norm() / before.norm())


@torch.no_grad()
def block_output_change(
    encoder: PromptedEncoder, block_input: torch.Tensor, offset: torch.Tensor, block: int = 0
) -> float:
    """Change of one prompted block's image-token outputs when `offset` (L, m, D) is added to the
    layer-normed prompts, with the tokens entering the block (`block_input`, (B, N, D)) held fixed."""
    prompted = encoder.prompted_blocks()[block]
    before = prompted(block_input)
    encoder.bank.normed_offset = offset
    try:
        after = prompted(block_input)
    finally:
        encoder.bank.normed_offset = None
    return relative_change(before, after)


@torch.no_grad()
def offset_change(encoder: PromptedEncoder, images: torch.Tensor, offset: torch.Tensor) -> float:
    """Change of the features when `offset` (L, m, D) is added to the layer-normed prompts."""
    before = encoder.pre_logits(images)
    encoder.bank.normed_offset = offset
    try:
        after = encoder.pre_logits(images)
    finally:
        encoder.bank.normed_offset = None
    return relative_change(before, after)


@torch.no_grad()
def prompt_step_change(
    encoder: PromptedEncoder, images: torch.Tensor, direction: torch.Tensor, steps: Iterable[float]
) -> list[float]:
    """Change of the features when the raw prompts move by eps * direction, for each eps (then restored)."""
    prompts = encoder.bank.prompts
    start = prompts.detach().clone()
    before = encoder.pre_logits(images)
    out = []
    try:
        for eps in steps:
            prompts.copy_(start + eps * direction)
            out.append(relative_change(before, encoder.pre_logits(images)))
    finally:
        prompts.copy_(start)
    return out
