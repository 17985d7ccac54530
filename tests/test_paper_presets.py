"""The paper presets at paper sizes (ViT-B/16, 224 px) on a CPU with random weights: build, then two
optimiser steps on the second task, with the null-space projection built from the first."""

from dataclasses import replace

import pytest
import torch

from nscl.methods.base import TaskInfo
from nscl.nsp2.recipe import build_nsp2, nsp2_recipe

CLASSES = ("apple", "aquarium_fish", "baby", "bear")


def two_tasks(n_train: int = 2) -> tuple[TaskInfo, TaskInfo]:
    first = TaskInfo(0, range(0, 2), 2, CLASSES, n_train, steps_per_epoch=1, epochs=1)
    return first, TaskInfo(1, range(2, 4), 4, CLASSES, n_train, steps_per_epoch=1, epochs=1)


def cifar_like(n: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def learn_first_task(method, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One step on task 1 at 224 px, then its end (null spaces built); returns the batch for task 2."""
    method.setup("cpu", "fp32")
    labels = torch.tensor([0, 1])
    x = method.transform(images, train=True, generator=torch.Generator().manual_seed(0))
    assert x.shape == (2, 3, 224, 224)
    first = two_tasks()[0]
    method.begin_task(first)
    method.training_step(x, labels)

    def batches(train_transform: bool = False, **_):
        yield method.transform(images, train=train_transform), labels

    method.end_task(first, batches)
    return x, labels


@pytest.mark.parametrize("backbone", ["vit", "clip"])
def test_nsp2_paper_preset_takes_projected_steps_at_paper_size(backbone):
    benchmark, config, run = nsp2_recipe("paper", backbone, "cifar100-10s")
    if backbone == "clip":  # the recipe's 80 templates cost 19 s of text encoding at random init; 2 test the path
        assert len(config.templates) == 80
        config = replace(config, templates=config.templates[:2])
    method = build_nsp2("paper", backbone, config, benchmark, pretrained=False)
    x, labels = learn_first_task(method, cifar_like(2, 0))
    layers = 12 if backbone == "vit" else len(config.prompt_layers)
    assert method.projection.right.shape == (layers, 768, 768) and method.projection.left.shape == (layers, 4, 4)
    method.begin_task(two_tasks()[1])
    before = method.prompts.detach().clone()
    losses = [method.training_step(x, labels + 2) for _ in range(2)]
    delta = method.prompts.detach() - before
    assert all(torch.isfinite(loss) for loss in losses)
    assert torch.isfinite(delta).all() and delta.abs().max() > 0


@pytest.mark.parametrize("variant", ["paper", "code"])
def test_dmnsp_paper_preset_takes_projected_steps_at_paper_size(variant):
    from dataclasses import replace

    from nscl.dmnsp.method import DMNSP
    from nscl.dmnsp.recipe import VARIANTS, build_clip_for, dmnsp_recipe

    _, config, _ = dmnsp_recipe("paper", "cifar100-10-10")
    config = replace(config, basis_batch_size=2, **VARIANTS[variant])
    clip, tokenizer, transform = build_clip_for("paper", pretrained=False)
    method = DMNSP(clip, tokenizer, transform, config)
    x, labels = learn_first_task(method, cifar_like(2, 1))
    method.begin_task(two_tasks()[1])
    visual = [p for n, p in clip.named_parameters() if n.startswith("visual") and "adapt" in n and p.ndim == 2]
    before = [p.detach().clone() for p in visual]
    losses = [method.training_step(x, labels + 2) for _ in range(2)]
    assert all(torch.isfinite(loss) for loss in losses)
    assert any((p.detach() - b).abs().max() > 0 for p, b in zip(visual, before))


@pytest.mark.parametrize("backbone, width", [("vit", 768), ("clip", 512)])
def test_the_prototype_classifier_runs_on_the_paper_backbones(backbone, width):
    """SimpleCIL on ViT-B/16 (the class token) and CLIP ViT-B/16 (the image embedding), at 224 px."""
    from nscl.dmnsp.recipe import dmnsp_experiment
    from nscl.nsp2.recipe import build_prototype, nsp2_experiment

    assert "VPT-prototype" in nsp2_experiment("paper", "vit", "cifar100-10s").methods
    assert "prototype" in dmnsp_experiment("paper", "cifar100-10-10").methods
    method = build_prototype("paper", backbone, "cifar100-10s", pretrained=False)
    images = cifar_like(4, 1)
    method.setup("cpu", "fp32")
    first = two_tasks(4)[0]
    method.begin_task(first)
    labels = torch.tensor([0, 1, 0, 1])

    def batches(train_transform: bool = False, **_):
        yield method.transform(images, train=train_transform), labels

    method.end_task(first, batches)
    assert method.prototypes.shape == (2, width)
    assert method.logits(method.transform(images, train=False)).shape == (4, 2)
