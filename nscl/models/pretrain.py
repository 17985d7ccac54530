"""Pretraining loops for the tiny backbones: supervised classification and CLIP-style contrastive.

The paper models come pretrained (timm ViT-B/16 on ImageNet-21k, OpenAI CLIP ViT-B/16). The book's
tiny CPU preset imitates that with our own pretraining on the *base* classes of shapes100, so the
continual-learning chapters can start from a backbone that already "knows" colours and shapes.

Both loops are short and explicit (nanoGPT style): AdamW, linear warmup then cosine decay, gradient
clipping, a seeded generator for batch order, augmentation and caption templates, so a run is a
deterministic function of (initial weights, data, config) on a given machine.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm  # text bars: tqdm.auto warns in kernels without ipywidgets

from nscl.data.base import TensorImageSet
from nscl.data.loading import BatchTransform

__all__ = ["PretrainConfig", "lr_at", "pretrain_classifier", "pretrain_clip", "CAPTION_TEMPLATES"]

# Caption templates for the contrastive loss and for zero-shot prompts. Several phrasings keep the
# text tower from keying on one exact token sequence; all put the class name in the same slot.
CAPTION_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a picture of a {}.",
    "a drawing of a {}.",
    "a {}.",
    "an image of a {}.",
    "a rendering of a {}.",
    "a small {}.",
    "a big {}.",
)


@dataclass(frozen=True)
class PretrainConfig:
    """Hyper-parameters of one pretraining run (also part of the cache key of the saved weights).

    epochs may be fractional; n_per_class is how many training images per class to generate;
    warmup is a fraction of all steps; text_to_image weighs the symmetric CLIP term (0 = off).
    """

    epochs: float = 3.0
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: float = 0.05
    grad_clip: float = 1.0
    label_smoothing: float = 0.0
    n_per_class: int = 1000
    seed: int = 0
    augment: str = "flip"
    text_to_image: float = 0.5

    def total_steps(self, n_images: int) -> int:
        return max(1, int(self.epochs * max(1, n_images // self.batch_size)))

    def as_dict(self) -> dict:
        return asdict(self)


def lr_at(step: int, total: int, config: PretrainConfig) -> float:
    """Linear warmup (transformers trained from scratch diverge without it), then cosine to zero."""
    warmup = int(config.warmup * total)
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def _adamw(model: nn.Module, config: PretrainConfig, betas: tuple[float, float]) -> torch.optim.AdamW:
    # Decay only matrices and conv kernels: biases, norms, embeddings, class tokens and the
    # temperature are left alone, as in timm / open_clip training recipes.
    skip = ("pos_embed", "cls_token", "positional_embedding", "class_embedding", "token_embedding", "logit_scale")
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 and not any(s in name for s in skip) else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=betas)


def _batches(
    data: TensorImageSet, config: PretrainConfig, transform: BatchTransform, total: int, generator: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """`total` augmented batches (drop_last), reshuffling at each epoch; labels stay global."""
    n, bs = len(data), config.batch_size
    if n < bs:
        raise ValueError(f"{n} images are fewer than one batch of {bs}; lower batch_size or raise n_per_class")
    step = 0
    while True:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n - bs + 1, bs):
            if step == total:
                return
            idx = order[start : start + bs]
            yield transform(data.images[idx], train=True, generator=generator), data.targets[idx]
            step += 1


def _train(
    model: nn.Module,
    data: TensorImageSet,
    config: PretrainConfig,
    transform: BatchTransform | None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor],
    betas: tuple[float, float],
    after_step: Callable[[], None] | None,
    progress: bool,
    desc: str,
) -> dict:
    """The loop both pretrainings share: schedule, AdamW step, clipping, progress bar, stats."""
    # The transform sets size and normalisation; the augmentation always comes from the config.
    transform = replace(transform or BatchTransform(data.image_size[0]), augment=config.augment)
    total = config.total_steps(len(data))
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = _adamw(model, config, betas)
    losses: list[float] = []
    start = time.perf_counter()
    model.train()
    bar = tqdm(total=total, desc=desc, disable=not progress, leave=False, mininterval=1.0)
    for step, (x, y) in enumerate(_batches(data, config, transform, total, generator)):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, total, config)
        loss = loss_fn(x, y, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        if after_step is not None:
            after_step()
        losses.append(loss.item())
        bar.update()
        if step % 20 == 0:
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    bar.close()
    model.eval()
    seconds = time.perf_counter() - start
    tail = losses[-max(1, min(20, len(losses) // 5)) :]  # mean of the last steps: one batch is noisy
    return {
        "steps": total,
        "images_seen": total * config.batch_size,
        "seconds": seconds,
        "images_per_second": total * config.batch_size / seconds,
        "first_loss": losses[0],
        "final_loss": sum(tail) / len(tail),
        "losses": losses,
    }


def _class_index(data: TensorImageSet) -> tuple[list[int], torch.Tensor]:
    """Sorted classes present in `data` and a map global label -> output index."""
    classes = sorted(int(c) for c in torch.unique(data.targets))
    index = torch.full((int(data.targets.max()) + 1,), -1, dtype=torch.long)
    index[torch.tensor(classes)] = torch.arange(len(classes))
    return classes, index


def pretrain_classifier(
    model: nn.Module,
    data: TensorImageSet,
    config: PretrainConfig = PretrainConfig(),
    progress: bool = True,
    transform: BatchTransform | None = None,
) -> dict:
    """Supervised cross-entropy pretraining of `model` (which must output one logit per class).

    Output i is the i-th smallest label present in `data`, so a 50-way head fits the 50 base
    classes whatever their global label ids. `transform` gives size and normalisation (default:
    the data's size, mean = std = 0.5); the augmentation is `config.augment`. Returns stats:
    steps, images_seen, seconds, images_per_second, first_loss, final_loss, losses, classes.
    """
    classes, index = _class_index(data)

    def loss_fn(x: torch.Tensor, y: torch.Tensor, _: torch.Generator) -> torch.Tensor:
        logits = model(x)
        if logits.shape[-1] != len(classes):
            raise ValueError(f"model outputs {logits.shape[-1]} logits but the data has {len(classes)} classes")
        return F.cross_entropy(logits, index[y], label_smoothing=config.label_smoothing)

    stats = _train(model, data, config, transform, loss_fn, (0.9, 0.999), None, progress, "pretrain classifier")
    return {**stats, "classes": classes}


def pretrain_clip(
    model: nn.Module,
    tokenizer: Callable[[list[str]], torch.Tensor],
    data: TensorImageSet,
    class_names: Sequence[str],
    config: PretrainConfig = PretrainConfig(),
    progress: bool = True,
    transform: BatchTransform | None = None,
    templates: Sequence[str] = CAPTION_TEMPLATES,
) -> dict:
    """Image-text contrastive pretraining of an open_clip `CLIP` on captions of the classes in `data`.

    class_names[label] names each global label. Each step encodes one caption per class (a random
    template each) and scores every image against all of them: a class-level contrastive loss,
    which sidesteps the false negatives that duplicate captions cause in per-pair CLIP batches.
    The symmetric text->image term treats all batch images of a class as positives of its caption.
    """
    classes, index = _class_index(data)
    names = [class_names[c] for c in classes]
    # Tokenise every (template, class) caption once: (T, C, context_length).
    tokens = torch.stack([tokenizer([t.format(n) for n in names]) for t in templates])
    max_scale = math.log(100.0)  # open_clip clamps the learned temperature at 100 too

    def loss_fn(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        pick = torch.randint(0, len(templates), (len(classes),), generator=generator)
        text = model.encode_text(tokens[pick, torch.arange(len(classes))], normalize=True)
        image = model.encode_image(x, normalize=True)
        logits = model.logit_scale.exp() * image @ text.T  # (B, C)
        target = index[y]
        loss = F.cross_entropy(logits, target, label_smoothing=config.label_smoothing)
        if config.text_to_image > 0:
            present = torch.bincount(target, minlength=len(classes)) > 0
            positives = F.one_hot(target, len(classes)).T[present].float()  # (P, B)
            positives /= positives.sum(1, keepdim=True)
            t2i = -(positives * logits.T[present].log_softmax(1)).sum(1).mean()
            loss = (loss + config.text_to_image * t2i) / (1.0 + config.text_to_image)
        return loss

    def clamp_scale() -> None:
        with torch.no_grad():
            model.logit_scale.clamp_(0.0, max_scale)

    stats = _train(model, data, config, transform, loss_fn, (0.9, 0.98), clamp_scale, progress, "pretrain CLIP")
    return {**stats, "classes": classes, "logit_scale": model.logit_scale.detach().exp().item()}
