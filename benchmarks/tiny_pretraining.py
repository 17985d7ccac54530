"""Pretrain the tiny ViT and tiny CLIP from scratch and measure how well they transfer to novel classes.

Run as `python benchmarks/tiny_pretraining.py` (about 5 minutes on 2 CPU cores). The weights go to
a temporary cache, so nothing cached is reused or overwritten; pass `--keep` to pretrain into the
real cache instead (then later `pretrained_tiny_*()` calls load them). Prints:

* seconds per pretraining (data generation + training, i.e. what a first `pretrained_tiny_*()` costs);
* ViT: 50-way accuracy on base-class test images (the pretraining task);
* ViT and CLIP image tower: 50-way linear probe on the *novel* classes (logistic regression on frozen
  features, 100 train / 50 test images per class);
* CLIP: zero-shot accuracy on novel compositions ("a photo of a blue star." was never a caption),
  50-way, and the mean 5-way accuracy over the 10 tasks of 5 novel classes (NOVEL_CLASSES in order).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from nscl.data import protocols
from nscl.data.base import TensorImageSet
from nscl.data.shapes import class_names, make_shapes100
from nscl.models import tiny
from nscl.models.pretrain import CAPTION_TEMPLATES

Encoder = Callable[[torch.Tensor], torch.Tensor]


@torch.no_grad()
def encode(fn: Encoder, data: TensorImageSet, batch_size: int = 500) -> torch.Tensor:
    transform = tiny.tiny_transform()
    return torch.cat([fn(transform(data.images[i : i + batch_size])) for i in range(0, len(data), batch_size)])


def linear_probe(fn: Encoder, train: TensorImageSet, test: TensorImageSet) -> float:
    """Accuracy of a logistic regression on standardised frozen features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    probe.fit(encode(fn, train).numpy(), train.targets.numpy())
    return float(probe.score(encode(fn, test).numpy(), test.targets.numpy()))


@torch.no_grad()
def zero_shot(
    model, tokenizer, classes: Sequence[int], test: TensorImageSet, templates: Sequence[str] = CAPTION_TEMPLATES
) -> float:
    """Accuracy of picking the class whose (template-averaged) caption embedding is closest."""
    names = class_names()
    text = torch.stack(
        [model.encode_text(tokenizer([t.format(names[c]) for c in classes]), normalize=True) for t in templates]
    ).mean(0)
    keep = np.flatnonzero(np.isin(test.targets.numpy(), classes))
    image = encode(lambda x: model.encode_image(x, normalize=True), test.subset(keep))
    pred = torch.tensor(list(classes))[(image @ F.normalize(text, dim=-1).T).argmax(1)]  # column j is classes[j]
    return float((pred == test.targets[keep]).float().mean())


def timed(fn: Callable):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="pretrain into the real cache (NSCL_CACHE)")
    parser.add_argument("--only", choices=("vit", "clip"), help="benchmark one backbone")
    args = parser.parse_args()
    torch.set_num_threads(2)  # the CI machine has 2 cores; the budget (~2 min each) is measured there
    if not args.keep:
        os.environ["NSCL_CACHE"] = tempfile.mkdtemp(prefix="nscl-tiny-")
    for name in ("vit", "clip"):
        path = tiny.tiny_checkpoint_path(name, tiny.TINY_PRETRAIN[name])
        if path.exists() and (args.only in (None, name)):
            raise SystemExit(f"{path} exists: remove it to measure a fresh pretraining")

    base_test = make_shapes100(
        "test", n_per_class=50, image_size=protocols.TINY_IMAGE_SIZE, classes=protocols.BASE_CLASSES
    )
    novel_train = make_shapes100(
        "train", n_per_class=100, image_size=protocols.TINY_IMAGE_SIZE, classes=protocols.NOVEL_CLASSES
    )
    novel_test = make_shapes100(
        "test", n_per_class=50, image_size=protocols.TINY_IMAGE_SIZE, classes=protocols.NOVEL_CLASSES
    )
    print(
        f"base classes: {len(protocols.BASE_CLASSES)}, novel classes: {len(protocols.NOVEL_CLASSES)}, "
        f"threads: {torch.get_num_threads()}"
    )

    if args.only in (None, "vit"):
        vit, seconds = timed(lambda: tiny.pretrained_tiny_vit(progress=True, num_classes=len(protocols.BASE_CLASSES)))
        stats = torch.load(tiny.tiny_checkpoint_path("vit", tiny.TINY_VIT_PRETRAIN), weights_only=True)["stats"]
        with torch.no_grad():
            pred = torch.tensor(protocols.BASE_CLASSES)[encode(vit, base_test).argmax(1)]
        base_acc = float((pred == base_test.targets).float().mean())
        vit.reset_classifier(0)
        probe = linear_probe(vit, novel_train, novel_test)
        print(
            f"tiny ViT : pretraining {seconds:6.1f} s ({stats['seconds']:.1f} s training, "
            f"{stats['images_per_second']:.0f} img/s, final loss {stats['final_loss']:.3f}) | "
            f"base 50-way test acc {base_acc:.3f} | novel 50-way linear probe {probe:.3f}"
        )

    if args.only in (None, "clip"):
        (clip, tokenizer), seconds = timed(lambda: tiny.pretrained_tiny_clip(progress=True))
        stats = torch.load(tiny.tiny_checkpoint_path("clip", tiny.TINY_CLIP_PRETRAIN), weights_only=True)["stats"]
        base_zs = zero_shot(clip, tokenizer, protocols.BASE_CLASSES, base_test)
        novel_zs = zero_shot(clip, tokenizer, protocols.NOVEL_CLASSES, novel_test)
        novel_zs_one = zero_shot(clip, tokenizer, protocols.NOVEL_CLASSES, novel_test, templates=CAPTION_TEMPLATES[:1])
        tasks = [protocols.NOVEL_CLASSES[i : i + 5] for i in range(0, len(protocols.NOVEL_CLASSES), 5)]
        five_way = [zero_shot(clip, tokenizer, task, novel_test) for task in tasks]
        probe = linear_probe(clip.encode_image, novel_train, novel_test)
        print(
            f"tiny CLIP: pretraining {seconds:6.1f} s ({stats['seconds']:.1f} s training, "
            f"{stats['images_per_second']:.0f} img/s, final loss {stats['final_loss']:.3f}, "
            f"logit scale {stats['logit_scale']:.1f}) | base 50-way zero-shot {base_zs:.3f}"
        )
        print(
            f"           novel zero-shot 50-way {novel_zs:.3f} (one template: {novel_zs_one:.3f}), "
            f"5-way mean over 10 tasks {np.mean(five_way):.3f} (min {min(five_way):.3f}) | "
            f"novel 50-way linear probe {probe:.3f}"
        )


if __name__ == "__main__":
    main()
