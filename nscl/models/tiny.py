"""Tiny pretrained backbones for the book's CPU preset, built with the paper models' own constructors.

* `pretrained_tiny_vit()`: a timm `VisionTransformer` (stands in for `vit_base_patch16_224.augreg_in21k`),
  pretrained with cross-entropy on the 50 *base* classes of shapes100.
* `pretrained_tiny_clip()`: an open_clip `CLIP` (stands in for `ViT-B-16` / `openai`), pretrained
  image-text contrastively on captions of the base classes, e.g. "a photo of a red circle.".

Base and novel classes form a checkerboard over (colour, shape): every colour and every shape is
seen in 5 base classes, while the 50 novel compositions ("blue star") are left for the continual
learning experiments. The weights that the book's results were computed from ship with the package
(`nscl/models/weights`, checksummed: nscl.models.artifacts), so every machine starts from the same
backbone; for any other pretraining config they are pretrained here once, then loaded from
`cache_dir()/tiny/tiny-<name>-<key>.pt` (the key covers architecture, pretraining config and data).

Both models replace the single-matrix patch embedding by a 3-layer strided conv stem (stride 8, so
still a 4x4 grid of tokens at 32 px): in the same ~2 minutes of CPU training this lifts the ViT's
base-class accuracy from ~65% to ~95% (ViTs learn shapes slowly from linear patch embeddings). For timm it is the library's
own `HybridEmbed` (as in the R50+ViT hybrids); for open_clip it replaces `visual.conv1`. The stem's
BatchNorms are turned into `FrozenBatchNorm2d` after pretraining, so `model.train()` in a later
chapter cannot drift their statistics.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import open_clip
import timm
import torch
from open_clip.model import CLIPTextCfg, CLIPVisionCfg
from timm.layers import HybridEmbed, freeze_batch_norm_2d
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from nscl.data.base import TensorImageSet
from nscl.data.checksums import GENERATOR_VERSION
from nscl.data.loading import BatchTransform
from nscl.data.protocols import BASE_CLASSES, TINY_IMAGE_SIZE
from nscl.data.shapes import class_names, make_shapes100
from nscl.files import atomic_torch_save, exclusive_lock
from nscl.models.artifacts import WeightsId, load_shipped, tag_weights, weights_identity, write_shipped
from nscl.models.pretrain import CAPTION_TEMPLATES, PretrainConfig, pretrain_classifier, pretrain_clip
from nscl.paths import cache_dir

__all__ = [
    "TINY_MEAN",
    "TINY_STD",
    "TINY_VIT_ARCH",
    "TINY_CLIP_ARCH",
    "TINY_VIT_PRETRAIN",
    "TINY_CLIP_PRETRAIN",
    "TINY_PRETRAIN",
    "build_tiny_vit",
    "build_tiny_clip",
    "tiny_tokenizer",
    "tiny_transform",
    "base_training_data",
    "pretraining_key",
    "tiny_checkpoint_path",
    "build_shipped_weights",
    "pretrained_tiny_vit",
    "pretrained_tiny_clip",
]

TINY_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)  # as timm's augreg ViTs: inputs in [-1, 1]
TINY_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)


# Architectures. Both image towers: 32 px, conv stem 3 -> 32 -> 64 -> 128 channels (stride 8), so 16
# tokens + a class token, then 4 pre-norm blocks of width 128 with 4 heads (~0.9M parameters).
# CLIP adds a 2-layer text tower of width 64 and projects both towers to 64-d.
TINY_VIT_ARCH: dict = {
    "img_size": TINY_IMAGE_SIZE,
    "stem_channels": (32, 64, 128),
    "embed_dim": 128,
    "depth": 4,
    "num_heads": 4,
    "mlp_ratio": 4.0,
}
TINY_CLIP_ARCH: dict = {
    "image_size": TINY_IMAGE_SIZE,
    "stem_channels": (32, 64, 128),
    "embed_dim": 64,
    "vision_width": 128,
    "vision_layers": 4,
    "vision_head_width": 32,
    "text_width": 64,
    "text_heads": 4,
    "text_layers": 2,
    "context_length": 16,
    "vocab_size": 49408,
}
# Pretraining recipes, each ~2 min on 2 CPU cores (benchmarks/tiny_pretraining.py measures them).
TINY_VIT_PRETRAIN = PretrainConfig(epochs=3.0, batch_size=64, lr=1e-3, n_per_class=1000)
TINY_CLIP_PRETRAIN = PretrainConfig(epochs=1.0, batch_size=128, lr=1e-3, n_per_class=1000)
TINY_PRETRAIN: dict[str, PretrainConfig] = {
    "vit": TINY_VIT_PRETRAIN,
    "clip": TINY_CLIP_PRETRAIN,
}  # the recipes, by name

_FORMAT = 1  # bump when the training code changes in a way that changes the weights


def _conv_stem(channels: tuple[int, ...]) -> nn.Sequential:
    """Strided 3x3 conv + BatchNorm + ReLU layers, each halving the resolution."""
    layers: list[nn.Module] = []
    c_in = 3
    for c in channels:
        layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
        c_in = c
    return nn.Sequential(*layers)


def build_tiny_vit(num_classes: int = 0) -> VisionTransformer:
    """A randomly initialised tiny timm ViT (class-token pooling); num_classes=0 gives features."""
    a = TINY_VIT_ARCH
    stem = _conv_stem(a["stem_channels"])
    # HybridEmbed runs the stem, then a 1x1 projection to embed_dim; patch_size=1 on its 4x4 output.
    embed = functools.partial(HybridEmbed, backbone=stem)
    # The overlay makes timm.data.resolve_data_config(model=...) report our input size and normalisation.
    cfg = {
        "input_size": (3, a["img_size"], a["img_size"]),
        "mean": TINY_MEAN,
        "std": TINY_STD,
        "crop_pct": 1.0,
        "num_classes": len(BASE_CLASSES),
        "tag": "nscl_tiny_shapes100",
        "hf_hub_id": None,
        "first_conv": "patch_embed.backbone.0",
    }
    return timm.create_model(
        "vit_base_patch16_224",
        pretrained=False,
        img_size=a["img_size"],
        patch_size=1,
        embed_dim=a["embed_dim"],
        depth=a["depth"],
        num_heads=a["num_heads"],
        mlp_ratio=a["mlp_ratio"],
        num_classes=num_classes,
        embed_layer=embed,
        pretrained_cfg_overlay=cfg,
    )


def build_tiny_clip() -> open_clip.CLIP:
    """A randomly initialised tiny open_clip CLIP with the standard 49,408-token BPE vocabulary."""
    a = TINY_CLIP_ARCH
    stride = 2 ** len(a["stem_channels"])
    vision = CLIPVisionCfg(
        layers=a["vision_layers"],
        width=a["vision_width"],
        head_width=a["vision_head_width"],
        patch_size=stride,
        image_size=a["image_size"],
    )
    text = CLIPTextCfg(
        context_length=a["context_length"],
        vocab_size=a["vocab_size"],
        width=a["text_width"],
        heads=a["text_heads"],
        layers=a["text_layers"],
    )
    model = open_clip.CLIP(a["embed_dim"], vision, text)
    # Swap the patchify conv (stride = patch size) for the conv stem with the same output grid.
    model.visual.conv1 = nn.Sequential(
        _conv_stem(a["stem_channels"]), nn.Conv2d(a["stem_channels"][-1], a["vision_width"], 1, bias=False)
    )
    return model


def tiny_tokenizer() -> open_clip.SimpleTokenizer:
    """open_clip's CLIP BPE tokenizer with the tiny context length (16 tokens)."""
    return open_clip.get_tokenizer("ViT-B-16", context_length=TINY_CLIP_ARCH["context_length"])


def tiny_transform(train: bool = False, augment: str = "flip") -> BatchTransform:
    """uint8 batches -> normalised 32 px floats; `augment` applies when called with train=True."""
    return BatchTransform(TINY_IMAGE_SIZE, TINY_MEAN, TINY_STD, augment=augment if train else "none")  # type: ignore[arg-type]


def base_training_data(n_per_class: int, seed: int = 0) -> TensorImageSet:
    """Training images of the base classes (the same pixels as `load_dataset('shapes100', 'train')`)."""
    return make_shapes100("train", n_per_class=n_per_class, image_size=TINY_IMAGE_SIZE, seed=seed, classes=BASE_CLASSES)


def pretraining_key(name: str, config: PretrainConfig) -> str:
    """10 hex digits of a hash of architecture, pretraining config, data and code version."""
    arch = {"vit": TINY_VIT_ARCH, "clip": TINY_CLIP_ARCH}[name]
    key = {
        "format": _FORMAT,
        "arch": arch,
        "config": config.as_dict(),
        "base": BASE_CLASSES,
        "data": ["shapes100", "train", TINY_IMAGE_SIZE],
        "generator": GENERATOR_VERSION,
        "mean": TINY_MEAN,
        "std": TINY_STD,
        "templates": CAPTION_TEMPLATES if name == "clip" else None,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]


def tiny_checkpoint_path(name: str, config: PretrainConfig) -> Path:
    """cache_dir()/tiny/tiny-<name>-<pretraining_key>.pt: where weights pretrained on this machine are cached."""
    return cache_dir() / "tiny" / f"tiny-{name}-{pretraining_key(name, config)}.pt"


def _seeded(build, seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):  # seed the init without touching the caller's RNG
        torch.manual_seed(seed)
        return build()


def _initial_model(name: str, config: PretrainConfig) -> nn.Module:
    """The seeded, untrained backbone `name` ('vit' with its 50-way base head, or 'clip')."""
    build = (lambda: build_tiny_vit(len(BASE_CLASSES))) if name == "vit" else build_tiny_clip
    return _seeded(build, config.seed)


def _pretrain(name: str, model: nn.Module, config: PretrainConfig, progress: bool) -> dict:
    """Pretrain `model` in place on the base classes with its recipe; returns the training stats."""
    data = base_training_data(config.n_per_class, seed=0)
    augment = tiny_transform(train=True, augment=config.augment)
    if name == "vit":
        return pretrain_classifier(model, data, config, progress, augment)
    return pretrain_clip(model, tiny_tokenizer(), data, class_names(), config, progress, augment)


def _load_or_pretrain(name: str, config: PretrainConfig, progress: bool) -> nn.Module:
    """Shipped weights made for this key, else the cache, else pretrain here and cache; tagged with their WeightsId."""
    model = _initial_model(name, config)
    shipped = load_shipped(f"tiny-{name}", pretraining_key(name, config))
    if shipped is not None:
        state, weights = shipped
        model.load_state_dict(state)
        return tag_weights(model, weights)
    path = tiny_checkpoint_path(name, config)
    # one process pretrains; others that reach an empty cache at once wait here, then read what it saved
    with exclusive_lock(path.with_name(path.name + ".lock")):
        if path.exists():
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["state_dict"])
            source = "cache"
        else:
            stats = _pretrain(name, model, config, progress)
            atomic_torch_save({"state_dict": model.state_dict(), "config": config.as_dict(), "stats": stats}, path)
            source = "trained"
    return tag_weights(model, WeightsId(f"tiny-{name}", weights_identity(model.state_dict()), source))


def build_shipped_weights(names: tuple[str, ...] = ("vit", "clip"), progress: bool = True) -> dict[str, dict]:
    """Pretrain the tiny backbones here with their recipes and store them as the shipped weights.

    What `python -m nscl artifacts build` runs. Every committed result must be recomputed afterwards:
    its runs record the old weights' identity, and comparing them with the new weights is an error.
    """
    entries = {}
    for name in names:
        config = TINY_PRETRAIN[name]
        model = _initial_model(name, config)
        stats = _pretrain(name, model, config, progress)
        entries[name] = write_shipped(
            f"tiny-{name}", pretraining_key(name, config), model, stats, made_with="python -m nscl artifacts build"
        )
    return entries


def pretrained_tiny_vit(
    progress: bool = False, num_classes: int = 0, config: PretrainConfig = TINY_VIT_PRETRAIN
) -> VisionTransformer:
    """The tiny ViT pretrained on the base classes (shipped, else cached, else trained here), in eval mode.

    num_classes=0: feature extractor (pooled class token, 128-d); num_classes=len(BASE_CLASSES): keeps
    the pretrained head (output i = BASE_CLASSES[i]); any other value: a fresh head (timm's reset_classifier).
    """
    model = _load_or_pretrain("vit", config, progress)
    model.patch_embed.backbone = freeze_batch_norm_2d(model.patch_embed.backbone)
    if num_classes != len(BASE_CLASSES):
        model.reset_classifier(num_classes)
    return model.eval()


def pretrained_tiny_clip(
    progress: bool = False, config: PretrainConfig = TINY_CLIP_PRETRAIN
) -> tuple[open_clip.CLIP, open_clip.SimpleTokenizer]:
    """The tiny CLIP pretrained on captions of the base classes (shipped, else cached, else trained here) in eval
    mode, and its tokenizer."""
    model = _load_or_pretrain("clip", config, progress)
    model.visual.conv1 = freeze_batch_norm_2d(model.visual.conv1)
    return model.eval(), tiny_tokenizer()
