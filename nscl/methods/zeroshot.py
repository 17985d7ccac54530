"""Zero-shot CLIP: no training at all, classes scored against "a bad photo of a {}." (Continual-CLIP)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from nscl.data.loading import BatchTransform
from nscl.methods.base import ContinualMethod, TaskInfo

__all__ = ["ZeroShotConfig", "ZeroShotCLIP"]


@dataclass(frozen=True)
class ZeroShotConfig:
    template: str = "a bad photo of a {}."
    name: str = field(default="zero-shot CLIP", compare=False)


class ZeroShotCLIP(ContinualMethod):
    trains = False  # the run loop skips its training batches

    def __init__(
        self, clip_model: nn.Module, tokenizer, transform: BatchTransform, config: ZeroShotConfig = ZeroShotConfig()
    ) -> None:
        super().__init__()
        self.config, self.name, self.transform = config, config.name, transform
        self.clip, self.tokenizer = clip_model.eval().requires_grad_(False), tokenizer
        self.text: torch.Tensor | None = None
        self.task: TaskInfo | None = None

    def modules(self) -> list[nn.Module]:
        return [self.clip]

    @torch.no_grad()
    def begin_task(self, task: TaskInfo) -> None:
        self.task = task
        if self.text is None:
            prompts = [self.config.template.format(n) for n in task.class_names]
            self.text = F.normalize(self.clip.encode_text(self.tokenizer(prompts).to(self.device)), dim=-1)

    def training_step(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("zero-shot CLIP does not train")

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            image = F.normalize(self.clip.encode_image(images), dim=-1)
            return (self.clip.logit_scale.exp() * image @ self.text[: self.task.n_seen].to(image.dtype).T).float()

    def state_dict(self) -> dict:
        return {"task": self.task}

    def load_state_dict(self, state: dict) -> None:
        self.task = state["task"]
