"""The transforms follow the official torchvision pipelines (NSP², DMNSP), and CLIP is built with QuickGELU."""

from dataclasses import replace

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from PIL import Image
from torchvision.transforms import v2

from nscl.data.transforms import BatchTransform, nsp2_transform, sample_resized_crop

PLAIN = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))  # outputs are pixel / 255


def smooth_image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """uint8 (3, H, W) with structure at many scales, so that interpolation modes give different pixels."""
    rng = np.random.default_rng(seed)
    walk = np.cumsum(rng.normal(size=(height, width, 3)), axis=1) * 8 + 128
    return torch.from_numpy(np.clip(walk, 0, 255).astype(np.uint8)).permute(2, 0, 1).contiguous()


def as_uint8(x: torch.Tensor) -> torch.Tensor:
    return (x * 255).round().to(torch.uint8)


@pytest.mark.parametrize(
    "height, width, scale",
    [(32, 32, (0.08, 1.0)), (64, 48, (0.9, 1.0)), (300, 500, (0.08, 1.0)), (10, 100, (0.9, 1.0))],
)
def test_crop_sampling_is_torchvision_get_params_drawn_from_the_generator(height, width, scale):
    image = torch.zeros(3, height, width)
    for seed in range(20):
        torch.manual_seed(seed)
        expected = T.RandomResizedCrop.get_params(image, list(scale), [3 / 4, 4 / 3])
        assert sample_resized_crop(height, width, scale, generator=torch.Generator().manual_seed(seed)) == expected
    # a 10 x 100 strip never fits an aspect in [3/4, 4/3] at 90% of its area: the central fallback crop
    if (height, width) == (10, 100):
        assert expected == (0, 43, 10, 13)


@pytest.mark.parametrize(
    "interpolation, mode", [("bicubic", T.InterpolationMode.BICUBIC), ("bilinear", T.InterpolationMode.BILINEAR)]
)
def test_train_crop_equals_torchvision_random_resized_crop(interpolation, mode):
    images = torch.stack([smooth_image(32, 32, seed) for seed in range(6)])
    tf = BatchTransform(size=48, augment="rrc", rrc_scale=(0.08, 1.0), interpolation=interpolation, **PLAIN)
    out = as_uint8(tf(images, train=True, generator=torch.Generator().manual_seed(3)))
    crop = v2.RandomResizedCrop(48, scale=(0.08, 1.0), interpolation=mode, antialias=True)
    torch.manual_seed(3)
    expected = torch.stack([crop(img) for img in images])  # one RNG stream through the batch, as nscl
    assert torch.equal(out, expected)
    other = as_uint8(
        BatchTransform(
            size=48, augment="rrc", interpolation="bilinear" if interpolation == "bicubic" else "bicubic", **PLAIN
        )(images, train=True, generator=torch.Generator().manual_seed(3))
    )
    assert not torch.equal(out, other)  # the interpolation really is the one asked for


def test_train_crops_of_different_sized_images_follow_torchvision():
    images = [smooth_image(40, 60, 1), smooth_image(90, 30, 2)]
    tf = BatchTransform(size=24, augment="rrc", interpolation="bilinear", **PLAIN)
    out = as_uint8(tf(images, train=True, generator=torch.Generator().manual_seed(5)))
    crop = v2.RandomResizedCrop(24, interpolation=T.InterpolationMode.BILINEAR, antialias=True)
    torch.manual_seed(5)
    assert torch.equal(out, torch.stack([crop(img) for img in images]))


@pytest.mark.parametrize(
    "policy, torch_policy", [("imagenet", v2.AutoAugmentPolicy.IMAGENET), ("cifar10", v2.AutoAugmentPolicy.CIFAR10)]
)
def test_autoaugment_uses_the_policy_and_bilinear_interpolation(policy, torch_policy):
    images = torch.stack([smooth_image(32, 32, seed) for seed in range(32)])
    # rrc_scale (1, 1) on square images crops the whole image at its size, leaving AutoAugment's output visible
    tf = BatchTransform(size=32, augment="autoaugment", rrc_scale=(1.0, 1.0), autoaugment_policy=policy, **PLAIN)
    out = as_uint8(tf(images, train=True, generator=torch.Generator().manual_seed(0)))
    # AutoAugment runs on the global RNG, seeded by the generator's first draw (see _autoaugment)
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=torch.Generator().manual_seed(0)))
    torch.manual_seed(seed)
    official = v2.AutoAugment(torch_policy, interpolation=v2.InterpolationMode.BILINEAR)
    assert torch.equal(out, torch.stack([official(img) for img in images]))
    torch.manual_seed(seed)
    nearest = v2.AutoAugment(torch_policy)  # nscl's former interpolation
    assert not torch.equal(out, torch.stack([nearest(img) for img in images]))


def test_nsp2_transforms_per_data_set():
    mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    cifar, folder = nsp2_transform("cifar100", "vit", mean, std), nsp2_transform("imagenet_r", "vit", mean, std)
    assert (cifar.autoaugment_policy, cifar.interpolation, cifar.rrc_scale) == ("cifar10", "bicubic", (0.08, 1.0))
    assert (folder.autoaugment_policy, folder.interpolation) == ("imagenet", "bilinear")
    assert nsp2_transform("domainnet", "clip", mean, std).autoaugment_policy == "imagenet"
    # TinyImageNet (NSP² on DMNSP's protocols): the folder-set pipeline (tests/test_protocols.py)
    assert nsp2_transform("tinyimagenet", "vit", mean, std) == folder
    with pytest.raises(ValueError, match="dataset='shapes100'"):
        nsp2_transform("shapes100", "vit", mean, std)


def pil_pipeline(image: torch.Tensor, *steps) -> torch.Tensor:
    return T.Compose([*steps, T.PILToTensor()])(Image.fromarray(image.permute(1, 2, 0).numpy()))


def test_eval_geometry_is_the_official_one_per_recipe():
    image = smooth_image(300, 400)
    bilinear, bicubic = T.InterpolationMode.BILINEAR, T.InterpolationMode.BICUBIC
    cases = {  # nscl transform -> the official torchvision steps on a PIL image
        "vpt folder": (
            nsp2_transform("imagenet_r", "vit", **PLAIN),
            (T.Resize((256, 256), bilinear), T.CenterCrop(224)),
        ),
        "vpt cifar": (nsp2_transform("cifar100", "vit", **PLAIN), (T.Resize((224, 224), bicubic),)),
        "clip": (nsp2_transform("domainnet", "clip", **PLAIN), (T.Resize(224, bicubic), T.CenterCrop(224))),
    }
    outputs = {}
    for name, (tf, steps) in cases.items():
        out = as_uint8(tf([image]))[0]
        expected = pil_pipeline(image, *steps)
        assert out.shape == expected.shape == (3, 224, 224), name
        # torchvision's antialiased tensor resize matches PIL's to one grey level
        assert (out.int() - expected.int()).abs().max() <= 1, name
        outputs[name] = out
    assert not torch.equal(outputs["vpt folder"], outputs["clip"])


def test_clip_transform_is_dmnsps_bicubic_crop_and_clips_eval_preprocess():
    from nscl.models.backbones import clip_transform

    class Visual:
        image_size = 224

    class Model:
        visual = Visual()

    tf = clip_transform(Model(), augment="rrc", rrc_scale=(0.9, 1.0))
    assert (tf.interpolation, tf.rrc_scale, tf.eval_keep_aspect, tf.eval_resize) == ("bicubic", (0.9, 1.0), True, 224)
    image = smooth_image(64, 64)
    out = as_uint8(replace(tf, **PLAIN)(image[None], train=True, generator=torch.Generator().manual_seed(1)))
    torch.manual_seed(1)
    official = v2.RandomResizedCrop(224, scale=(0.9, 1.0), interpolation=T.InterpolationMode.BICUBIC, antialias=True)
    assert torch.equal(out[0], official(image))


def test_bad_transform_arguments_name_the_parameter():
    with pytest.raises(ValueError, match="autoaugment_policy"):
        BatchTransform(size=8, autoaugment_policy="svhn")
    with pytest.raises(ValueError, match="eval_resize"):
        BatchTransform(size=8, eval_resize=4)
    with pytest.raises(ValueError, match="rrc_scale"):
        BatchTransform(size=8, rrc_scale=(0.5, 0.1))
    with pytest.raises(ValueError, match="interpolation"):
        BatchTransform(size=8, interpolation="nearest")


def test_build_clip_uses_quickgelu_like_the_openai_weights():
    import open_clip
    from open_clip.transformer import QuickGELU

    from nscl.models.backbones import build_clip

    torch.manual_seed(0)
    clip, _ = build_clip(pretrained=None)
    blocks = list(clip.visual.transformer.resblocks) + list(clip.transformer.resblocks)
    assert len(blocks) == 24 and all(isinstance(b.mlp.gelu, QuickGELU) for b in blocks)
    gelu = open_clip.create_model("ViT-B-16", pretrained=None)
    gelu.load_state_dict(clip.state_dict())  # same weights, only the activation differs
    image = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        quick, plain = clip.eval().encode_image(image), gelu.eval().encode_image(image)
    assert not torch.allclose(quick, plain, atol=1e-4)
