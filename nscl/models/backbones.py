"""The papers' backbones, built through their own libraries, and their input transforms.

* VPT-NSP²: timm ``vit_base_patch16_224.augreg_in21k`` (ViT-B/16, ImageNet-21k);
* CLIP-NSP² and DMNSP: open_clip ``ViT-B-16`` with ``pretrained="openai"`` and QuickGELU, the
  activation OpenAI's CLIP was trained with (NSP²: timm ``vit_base_patch16_clip_quickgelu_224.openai``,
  zugexiaodui/VPTinNSforCL@0d9c547 train_*_clip.sh; DMNSP: RL-VIG/DMNSP@4c1c2f1 clip/model.py builds
  its blocks with QuickGELU).

Weights come from the libraries' own download paths. Without them (no network, no cache) the
library's error is raised as is; tests build the same architectures with random weights.
"""

from __future__ import annotations

from torch import nn

from nscl.data.transforms import BatchTransform

__all__ = [
    "VIT_NAME",
    "CLIP_NAME",
    "CLIP_PRETRAINED",
    "build_vit",
    "build_clip",
    "vit_transform",
    "clip_transform",
    "count_parameters",
    "freeze",
]

VIT_NAME = "vit_base_patch16_224.augreg_in21k"
CLIP_NAME = "ViT-B-16"
CLIP_PRETRAINED = "openai"
# open_clip's OpenAI normalisation (the values are in open_clip.constants)
try:
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
except ImportError:  # pragma: no cover - very old open_clip
    OPENAI_DATASET_MEAN, OPENAI_DATASET_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


def build_vit(name: str = VIT_NAME, pretrained: bool = True, **kwargs) -> nn.Module:
    """A timm ViT without a classifier (num_classes=0); kwargs override the architecture."""
    import timm

    return timm.create_model(name, pretrained=pretrained, num_classes=0, **kwargs)


def build_clip(name: str = CLIP_NAME, pretrained: str | None = CLIP_PRETRAINED, quick_gelu: bool = True, **kwargs):
    """(open_clip CLIP model, tokenizer). pretrained=None gives random weights of the same architecture.

    quick_gelu: build the MLPs with QuickGELU, as the OpenAI weights need (open_clip's "ViT-B-16"
    config uses nn.GELU and only warns when OpenAI weights are loaded into it); applies with
    pretrained=None too, so that random-weight models have the paper's architecture.
    """
    import open_clip

    model = open_clip.create_model(name, pretrained=pretrained, force_quick_gelu=quick_gelu, **kwargs)
    return model.eval(), open_clip.get_tokenizer(name)


def vit_transform(model: nn.Module, augment: str = "none", size: int | None = None) -> BatchTransform:
    """Batch transform from a timm model's pretrained config (mean, std, input size)."""
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    input_size = size or cfg.get("input_size", (3, 224, 224))[-1]
    return BatchTransform(
        size=input_size,
        mean=tuple(cfg.get("mean", (0.5, 0.5, 0.5))),
        std=tuple(cfg.get("std", (0.5, 0.5, 0.5))),
        augment=augment,
    )


def clip_transform(
    model: nn.Module, augment: str = "none", rrc_scale: tuple[float, float] = (0.9, 1.0)
) -> BatchTransform:
    """Batch transform with CLIP's normalisation at the vision tower's input size.

    Train crops are bicubic (DMNSP: RandomResizedCrop(224, scale=(0.9, 1.0), bicubic), RL-VIG/DMNSP@4c1c2f1
    clip/clip.py _transform); eval is CLIP's preprocess, Resize of the shorter side + CenterCrop,
    bicubic (the same file's eval branch; the official DMNSP main.py evaluates with the train transform).
    """
    size = model.visual.image_size
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    return BatchTransform(
        size=size,
        mean=tuple(OPENAI_DATASET_MEAN),
        std=tuple(OPENAI_DATASET_STD),
        augment=augment,
        rrc_scale=rrc_scale,
        interpolation="bicubic",
        eval_resize=size,
        eval_keep_aspect=True,
    )


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def freeze(module: nn.Module) -> nn.Module:
    module.requires_grad_(False)
    return module.eval()
