"""Tiny pretrained backbones: class split, builders, pretraining loops and the weight cache (fast)."""

from __future__ import annotations

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from nscl.data import protocols
from nscl.data.shapes import class_names, make_shapes100
from nscl.models import tiny
from nscl.models.pretrain import PretrainConfig, lr_at, pretrain_classifier, pretrain_clip

# A few steps on 2 images per base class: enough to exercise the cache, far too little to learn.
SMOKE = PretrainConfig(epochs=1, batch_size=25, n_per_class=2)
FIVE = protocols.BASE_CLASSES[:5]


def _uint8_batch(n: int = 2) -> torch.Tensor:
    return torch.randint(
        0,
        256,
        (n, 3, protocols.TINY_IMAGE_SIZE, protocols.TINY_IMAGE_SIZE),
        dtype=torch.uint8,
        generator=torch.Generator().manual_seed(0),
    )


def test_base_and_novel_classes_form_a_checkerboard():
    base, novel = set(protocols.BASE_CLASSES), set(protocols.NOVEL_CLASSES)
    assert len(base) == len(protocols.BASE_CLASSES) == 50 and len(novel) == len(protocols.NOVEL_CLASSES) == 50
    assert base.isdisjoint(novel) and base | novel == set(range(100))
    for part in (protocols.BASE_CLASSES, protocols.NOVEL_CLASSES):
        assert np.bincount([c // 10 for c in part], minlength=10).tolist() == [5] * 10  # colours
        assert np.bincount([c % 10 for c in part], minlength=10).tolist() == [5] * 10  # shapes
    assert all((c // 10 + c % 10) % 2 == 0 for c in base)
    # A fixed shuffled order, so "10 tasks of 5 novel classes" means the same tasks everywhere.
    assert list(protocols.NOVEL_CLASSES) != sorted(novel)
    assert protocols.NOVEL_CLASSES == tuple(int(c) for c in np.random.default_rng(0).permutation(sorted(novel)))


def test_build_tiny_vit_is_a_small_timm_vit():
    model = tiny.build_tiny_vit(num_classes=50)
    assert isinstance(model, VisionTransformer)
    assert model.embed_dim == 128 and len(model.blocks) == 4 and model.blocks[0].attn.num_heads == 4
    assert model.num_prefix_tokens == 1 and model.global_pool == "token"
    assert tuple(model.patch_embed.grid_size) == (4, 4)  # 16 patch tokens at 32 px
    assert 0.5e6 < sum(p.numel() for p in model.parameters()) < 1.5e6
    x = tiny.tiny_transform()(_uint8_batch())
    assert x.shape == (2, 3, 32, 32)
    assert model(x).shape == (2, 50)
    assert tiny.build_tiny_vit()(x).shape == (2, 128)  # num_classes=0: pooled features


def test_build_tiny_clip_is_a_small_open_clip_model():
    model, tokenizer = tiny.build_tiny_clip(), tiny.tiny_tokenizer()
    assert isinstance(model, open_clip.CLIP)
    assert model.token_embedding.num_embeddings == 49408 and model.context_length == 16
    assert model.visual.transformer.width == 128 and len(model.visual.transformer.resblocks) == 4
    assert model.transformer.width == 64 and len(model.transformer.resblocks) == 2
    text = tokenizer(["a photo of a blue star.", "a photo of a purple L-shape."])
    assert text.shape == (2, 16) and (text == 49407).sum() == 2  # one end-of-text token each
    assert model.encode_text(text).shape == (2, 64)
    assert model.encode_image(tiny.tiny_transform()(_uint8_batch())).shape == (2, 64)


def test_lr_schedule_warms_up_then_decays_to_zero():
    config = PretrainConfig(lr=1e-3, warmup=0.1)
    lrs = [lr_at(s, 100, config) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and max(lrs) == pytest.approx(1e-3) and lrs[-1] < 1e-6
    assert int(np.argmax(lrs)) == 9


def test_classifier_pretraining_lowers_the_loss():
    data = make_shapes100("train", n_per_class=8, image_size=32, classes=FIVE)
    torch.manual_seed(0)
    model = tiny.build_tiny_vit(num_classes=5)
    config = PretrainConfig(epochs=20, batch_size=20, lr=2e-3, warmup=0.1, augment="none")
    stats = pretrain_classifier(model, data, config, progress=False)
    assert stats["steps"] == 40 and stats["classes"] == list(FIVE)
    assert stats["final_loss"] < 0.5 * stats["first_loss"]
    with torch.no_grad():  # eval mode: also checks that the stem's BatchNorm statistics caught up
        logits = model.eval()(tiny.tiny_transform()(data.images))
    assert (logits.argmax(1) == torch.searchsorted(torch.tensor(FIVE), data.targets)).float().mean() > 0.6


def test_pretraining_is_deterministic():
    data = make_shapes100("train", n_per_class=4, image_size=32, classes=FIVE)
    config = PretrainConfig(epochs=3, batch_size=10, augment="flip")

    def trained() -> nn.Module:
        torch.manual_seed(0)
        model = tiny.build_tiny_vit(num_classes=5)
        pretrain_classifier(model, data, config, progress=False)
        return model

    first, second = trained(), trained()
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))


def test_clip_pretraining_lowers_the_loss():
    data = make_shapes100("train", n_per_class=8, image_size=32, classes=FIVE)
    torch.manual_seed(0)
    model, tokenizer = tiny.build_tiny_clip(), tiny.tiny_tokenizer()
    # The text tower starts from scratch: it needs ~50 steps before captions separate the classes.
    config = PretrainConfig(epochs=40, batch_size=20, lr=2e-3, warmup=0.1, augment="none")
    stats = pretrain_clip(model, tokenizer, data, class_names(), config, progress=False)
    assert stats["final_loss"] < 0.5 * stats["first_loss"]
    with torch.no_grad():  # zero-shot on the training classes: the captions now name the images
        text = model.encode_text(tokenizer([f"a photo of a {class_names()[c]}." for c in FIVE]), normalize=True)
        image = model.encode_image(tiny.tiny_transform()(data.images), normalize=True)
    accuracy = ((image @ text.T).argmax(1) == torch.searchsorted(torch.tensor(FIVE), data.targets)).float().mean()
    assert accuracy > 0.8  # chance is 0.2


def _no_retraining(*args, **kwargs):
    raise AssertionError("pretrained again although the weights were cached")


def test_tiny_vit_cache_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("NSCL_CACHE", str(tmp_path))
    first = tiny.pretrained_tiny_vit(progress=False, num_classes=50, config=SMOKE)
    path = tiny.tiny_checkpoint_path("vit", SMOKE)
    assert path.parent == tmp_path / "tiny" and path.exists()
    # no temporary file left behind; the lock file that makes concurrent fills take turns stays (removing it races)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name, path.name + ".lock"]
    assert tiny.tiny_checkpoint_path("vit", PretrainConfig(n_per_class=3)) != path

    monkeypatch.setattr(tiny, "pretrain_classifier", _no_retraining)
    second = tiny.pretrained_tiny_vit(progress=False, num_classes=50, config=SMOKE)
    x = tiny.tiny_transform()(_uint8_batch(4))
    assert not second.training
    assert torch.equal(first(x), second(x))
    features = tiny.pretrained_tiny_vit(progress=False, config=SMOKE)
    assert features(x).shape == (4, 128)
    # The stem's BatchNorms are frozen: train mode neither changes outputs' statistics nor buffers.
    assert not any(isinstance(m, nn.BatchNorm2d) for m in features.modules())
    buffers = [b.clone() for b in features.buffers()]
    features.train()(x)
    assert all(torch.equal(a, b) for a, b in zip(buffers, features.buffers()))


def test_tiny_clip_cache_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("NSCL_CACHE", str(tmp_path))
    first, tokenizer = tiny.pretrained_tiny_clip(progress=False, config=SMOKE)
    assert tiny.tiny_checkpoint_path("clip", SMOKE).exists()
    monkeypatch.setattr(tiny, "pretrain_clip", _no_retraining)
    second, _ = tiny.pretrained_tiny_clip(progress=False, config=SMOKE)
    x, text = tiny.tiny_transform()(_uint8_batch(4)), tokenizer(["a photo of a blue star."])
    assert torch.equal(first.encode_image(x), second.encode_image(x))
    assert torch.equal(first.encode_text(text), second.encode_text(text))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in second.modules())


def test_pretraining_rejects_a_head_of_the_wrong_size():
    data = make_shapes100("train", n_per_class=4, image_size=32, classes=FIVE)
    with pytest.raises(ValueError, match="logits"):
        pretrain_classifier(tiny.build_tiny_vit(num_classes=7), data, PretrainConfig(batch_size=10), progress=False)
    with pytest.raises(ValueError, match="fewer than one batch"):
        pretrain_classifier(tiny.build_tiny_vit(num_classes=5), data, PretrainConfig(batch_size=64), progress=False)


def test_tiny_transform_augments_only_in_training():
    images = _uint8_batch(8)
    assert torch.equal(tiny.tiny_transform(train=True)(images), tiny.tiny_transform()(images))
    flipped = tiny.tiny_transform(train=True)(images, train=True, generator=torch.Generator().manual_seed(0))
    plain = tiny.tiny_transform()(images)
    assert not torch.equal(flipped, plain)
    assert all(torch.equal(f, p) or torch.equal(f, p.flip(-1)) for f, p in zip(flipped, plain))
    assert F.l1_loss(plain * 0.5 + 0.5, images.float() / 255).item() < 1e-6  # mean = std = 0.5
