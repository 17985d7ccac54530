"""A frozen ViT with deep prompts (timm ViT or open_clip CLIP vision tower), and the class scorers on top."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nscl.models.prompted import PromptedBlock, prompt_backbone, transformer_blocks

__all__ = ["PromptedEncoder", "TaskHeads", "TextClassifier", "encode_class_texts"]


class PromptedEncoder(nn.Module):
    """Frozen backbone + `PromptBank`. `pre_logits` gives the pooled image feature (width D).

    timm: class token after the final norm (`forward_head(pre_logits=True)`).
    open_clip: pooled token after `ln_post`; `project` applies the CLIP projection `proj`.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[int] | None,
        length: int,
        init: str = "uniform",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.kind = "timm" if hasattr(model, "blocks") else "open_clip"
        model.requires_grad_(False)
        self.model = model.eval()
        layers = tuple(range(len(transformer_blocks(model)))) if layers is None else tuple(layers)
        self.bank = prompt_backbone(model, layers, length, init, generator)
        proj = getattr(model, "proj", None) if self.kind == "open_clip" else None
        # The official CLIP-NSP² maps features to the text space with a linear head holding CLIP's `proj` and a
        # zero-initialised bias (its head is an nn.Linear; the OpenAI weights have no bias); refinement trains both.
        self.projection_bias = None if proj is None else nn.Parameter(torch.zeros(proj.shape[1]), requires_grad=False)

    def train(self, mode: bool = True) -> PromptedEncoder:
        # The backbone stays in eval mode (frozen statistics, no dropout); only prompts learn.
        super().train(mode)
        self.model.eval()
        return self

    @property
    def width(self) -> int:
        return self.bank.prompts.shape[-1]

    def prompted_blocks(self) -> list[PromptedBlock]:
        return [b for b in transformer_blocks(self.model) if isinstance(b, PromptedBlock)]

    def ln_gains(self) -> list[torch.Tensor]:
        """Each prompted block's LayerNorm gain (what `ConditionSpec.ln_exact` folds into the conditions)."""
        return [b.weights().norm.weight.detach() for b in self.prompted_blocks()]

    def pre_logits(self, images: torch.Tensor) -> torch.Tensor:
        m = self.model
        if self.kind == "timm":
            return m.forward_head(m.forward_features(images), pre_logits=True)
        pooled, _ = m._pool(m.transformer(m._embeds(images)))
        return pooled

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """CLIP image embedding from pre-logit features (open_clip's `proj`)."""
        if self.kind != "open_clip":
            raise TypeError("project() is only defined for CLIP vision towers")
        proj = self.model.proj
        return features if proj is None else features @ proj + self.projection_bias.to(features.dtype)

    @property
    def projection(self) -> nn.Parameter | None:
        return getattr(self.model, "proj", None)


class TaskHeads(nn.Module):
    """One linear head per task on pre-logit features; evaluation concatenates them (NSP²'s VPT heads)."""

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.in_features = in_features
        self.heads = nn.ModuleList()

    def add_task(self, n_classes: int) -> nn.Linear:
        for head in self.heads:
            head.requires_grad_(False)
        ref = next(self.parameters(), None)
        head = nn.Linear(self.in_features, n_classes)
        if not self.heads:
            # The official first head is the timm model's own (trunc_normal std .02, zero bias); later heads are
            # fresh nn.Linear modules with PyTorch's default init, as in the official modify_head.
            nn.init.trunc_normal_(head.weight, std=0.02)
            nn.init.zeros_(head.bias)
        if ref is not None:
            head = head.to(ref.device)
        self.heads.append(head)
        return head

    def current(self, features: torch.Tensor) -> torch.Tensor:
        return self.heads[-1](features)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.cat([head(features) for head in self.heads], dim=1)

    def n_outputs(self) -> list[int]:
        return [h.out_features for h in self.heads]


@torch.no_grad()
def encode_class_texts(
    clip_model: nn.Module,
    tokenizer,
    class_names: Sequence[str],
    templates: Sequence[str],
    device: torch.device | str = "cpu",
    batch_size: int = 256,
) -> torch.Tensor:
    """Normalised text embedding per class, averaged over templates and renormalised (CLIP's ensemble)."""
    texts = [t.format(name.replace("_", " ")) for name in class_names for t in templates]
    chunks = []
    for i in range(0, len(texts), batch_size):
        tokens = tokenizer(texts[i : i + batch_size]).to(device)
        chunks.append(F.normalize(clip_model.encode_text(tokens).float(), dim=-1))
    emb = torch.cat(chunks).reshape(len(class_names), len(templates), -1).mean(dim=1)
    return F.normalize(emb, dim=-1)


class TextClassifier(nn.Module):
    """CLIP scoring: exp(logit_scale) * cos(image embedding, class text embedding)."""

    def __init__(
        self, text_features: torch.Tensor, logit_scale: float = 4.605170249938965, trainable_scale: bool = True
    ) -> None:
        super().__init__()
        self.register_buffer("text_features", F.normalize(text_features.float(), dim=-1))
        self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale)), requires_grad=trainable_scale)

    def forward(self, image_embeddings: torch.Tensor, classes: slice | range) -> torch.Tensor:
        text = self.text_features[classes.start : classes.stop]
        return F.normalize(image_embeddings, dim=-1) @ text.to(image_embeddings.dtype).T * self.logit_scale.exp()
