"""Batch transforms: uint8 images -> normalised float batches, with the official augmentations.

Images reach a transform on the compute device as uint8: a batch tensor (B, 3, H, W), or a list of
(3, H, W) tensors when the images of a folder set differ in size (they are decoded at their own
size). The transform then does to each image what the official torchvision pipelines do to a PIL
image, on the device:

* train: [AutoAugment] -> RandomResizedCrop(size, scale, ratio 3/4..4/3) -> [horizontal flip];
* eval: Resize (both sides to `eval_resize`, or the shorter side) -> CenterCrop(size);

then scales to [0, 1] and normalises. Crops and resizes work on uint8 and round back to uint8, as
PIL does, with torchvision's antialiasing. All randomness comes from the `generator` argument.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import torch

__all__ = ["AUGMENTATIONS", "AUTOAUGMENT_POLICIES", "BatchTransform", "Images", "nsp2_transform", "sample_resized_crop"]

AUGMENTATIONS = ("none", "flip", "rrc", "rrc_flip", "autoaugment")
AUTOAUGMENT_POLICIES = ("cifar10", "imagenet")
INTERPOLATIONS = ("bilinear", "bicubic")
Augment = Literal["none", "flip", "rrc", "rrc_flip", "autoaugment"]
Interpolation = Literal["bilinear", "bicubic"]
RRC_RATIO = (3 / 4, 4 / 3)  # torchvision RandomResizedCrop's default, which every official pipeline keeps
Images = torch.Tensor | Sequence[torch.Tensor]


@dataclass(frozen=True)
class BatchTransform:
    """uint8 images -> normalised float (B, 3, size, size), with optional train augmentation.

    augment: 'none'; 'flip' (horizontal); 'rrc' (random resized crop with `rrc_scale`); 'rrc_flip';
    'autoaugment' (torchvision AutoAugment with `autoaugment_policy` and bilinear interpolation, then
    rrc: NSP²'s recipe). interpolation: of the train crop and, unless `eval_interpolation` is set, of
    the eval resize. eval_resize: the side the eval resize targets before the centre crop (None: size);
    eval_keep_aspect: resize the shorter side (CLIP's preprocess) instead of both sides.
    """

    size: int
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    augment: Augment = "none"
    rrc_scale: tuple[float, float] = (0.08, 1.0)
    interpolation: Interpolation = "bicubic"
    autoaugment_policy: Literal["cifar10", "imagenet"] = "cifar10"
    eval_resize: int | None = None
    eval_keep_aspect: bool = False
    eval_interpolation: Interpolation | None = None

    def __post_init__(self) -> None:
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"augment={self.augment!r}; choose one of {AUGMENTATIONS}")
        if self.size < 1:
            raise ValueError(f"size must be positive, got {self.size}")
        if self.autoaugment_policy not in AUTOAUGMENT_POLICIES:
            raise ValueError(f"autoaugment_policy={self.autoaugment_policy!r}; choose one of {AUTOAUGMENT_POLICIES}")
        for field, value in (("interpolation", self.interpolation), ("eval_interpolation", self.eval_interpolation)):
            if value is not None and value not in INTERPOLATIONS:
                raise ValueError(f"{field}={value!r}; choose one of {INTERPOLATIONS}")
        low, high = self.rrc_scale
        if not 0 < low <= high:
            raise ValueError(f"rrc_scale must satisfy 0 < low <= high (area fractions), got {self.rrc_scale}")
        if self.eval_resize is not None and self.eval_resize < self.size:
            raise ValueError(
                f"eval_resize={self.eval_resize} is smaller than the crop size {self.size}; "
                f"use eval_resize >= size, or None to resize to size"
            )

    def __call__(self, images: Images, train: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_uint8(images)
        augment = self.augment if train else "none"
        if augment == "autoaugment":
            images = _autoaugment(images, self.autoaugment_policy, generator)
        if augment in ("rrc", "rrc_flip", "autoaugment"):
            batch = random_resized_crops(images, self.size, self.rrc_scale, self.interpolation, generator)
        else:
            batch = self.eval_geometry(images)
        x = batch.float().div_(255.0)
        if augment in ("flip", "rrc_flip"):
            flip = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype)[:, None, None]
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype)[:, None, None]
        return (x - mean) / std

    def eval_geometry(self, images: Images) -> torch.Tensor:
        """uint8 (B, 3, size, size): the deterministic resize and centre crop."""
        resize = self.eval_resize or self.size
        interpolation = self.eval_interpolation or self.interpolation
        if isinstance(images, torch.Tensor) or len({tuple(img.shape) for img in images}) == 1:
            batch = images if isinstance(images, torch.Tensor) else torch.stack(list(images))
            return resize_center_crop(batch, self.size, resize, self.eval_keep_aspect, interpolation)
        return torch.stack(
            [resize_center_crop(img, self.size, resize, self.eval_keep_aspect, interpolation) for img in images]
        )


def _check_uint8(images: Images) -> None:
    items = [images] if isinstance(images, torch.Tensor) else list(images)
    if not items:
        raise ValueError("BatchTransform got an empty list of images")
    for img in items:
        if not isinstance(img, torch.Tensor) or img.dtype != torch.uint8:
            raise TypeError(
                f"BatchTransform expects uint8 images (a (B, 3, H, W) tensor or a list of (3, H, W) "
                f"tensors), got {getattr(img, 'dtype', type(img).__name__)}"
            )


def _mode(interpolation: Interpolation):
    from torchvision.transforms import InterpolationMode

    return InterpolationMode.BICUBIC if interpolation == "bicubic" else InterpolationMode.BILINEAR


def resize_center_crop(
    images: torch.Tensor, size: int, resize: int, keep_aspect: bool, interpolation: Interpolation
) -> torch.Tensor:
    """torchvision's Resize(resize or (resize, resize)) then CenterCrop(size), on uint8 (..., H, W)."""
    from torchvision.transforms.v2 import functional as TF

    height, width = images.shape[-2:]
    done = min(height, width) == resize if keep_aspect else (height, width) == (resize, resize)
    if not done:  # torchvision returns an image of the target size unchanged, too
        target = [resize] if keep_aspect else [resize, resize]
        images = TF.resize(images, target, interpolation=_mode(interpolation), antialias=True)
    return TF.center_crop(images, [size, size])


def sample_resized_crop(
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float] = RRC_RATIO,
    generator: torch.Generator | None = None,
) -> tuple[int, int, int, int]:
    """(top, left, crop height, crop width) drawn as torchvision's RandomResizedCrop.get_params does.

    Up to 10 tries for a crop with area fraction in `scale` and log-uniform aspect ratio in `ratio`
    that fits the image, else the largest central crop with the ratio clamped to `ratio`. The draws
    and their order are torchvision's (torchvision/transforms/transforms.py), from `generator`, so a
    generator seeded with s gives what torchvision gives after torch.manual_seed(s).
    """
    area = height * width
    log_ratio = torch.log(torch.tensor(ratio)).tolist()  # float32, as torchvision
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1], generator=generator).item()
        aspect = math.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1], generator=generator).item())
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, size=(1,), generator=generator).item())
            left = int(torch.randint(0, width - w + 1, size=(1,), generator=generator).item())
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def random_resized_crops(
    images: Images,
    size: int,
    scale: tuple[float, float],
    interpolation: Interpolation,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """uint8 (B, 3, size, size): a torchvision RandomResizedCrop of every image, each with its own draw."""
    from torchvision.transforms.v2 import functional as TF

    crops = []
    for img in images:
        top, left, h, w = sample_resized_crop(int(img.shape[-2]), int(img.shape[-1]), scale, RRC_RATIO, generator)
        crops.append(
            TF.resized_crop(img, top, left, h, w, [size, size], interpolation=_mode(interpolation), antialias=True)
        )
    return torch.stack(crops)


def _autoaugment(images: Images, policy: str, generator: torch.Generator | None) -> list[torch.Tensor]:
    """torchvision AutoAugment per image, bilinear as in the official NSP² pipelines."""
    from torchvision.transforms import v2

    policies = {"cifar10": v2.AutoAugmentPolicy.CIFAR10, "imagenet": v2.AutoAugmentPolicy.IMAGENET}
    augment = v2.AutoAugment(policies[policy], interpolation=v2.InterpolationMode.BILINEAR)
    # AutoAugment draws from the global RNG: seed a forked one from the generator to stay deterministic.
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return [augment(img) for img in images]


def nsp2_transform(
    dataset: str,
    backbone: Literal["vit", "clip"],
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    size: int = 224,
) -> BatchTransform:
    """The official NSP² train and eval transforms of a data set.

    zugexiaodui/VPTinNSforCL@0d9c547 utils/dataset_builder.py define_dataset ('autoaug' for the ViT,
    'clip' for CLIP) and clip/clip.py _transform:
    * train: AutoAugment (CIFAR10 policy on CIFAR-100, IMAGENET policy on ImageNet-R and DomainNet,
      bilinear), then RandomResizedCrop(224), bicubic on CIFAR-100 and bilinear on the folder sets;
      CLIP's preprocess after it leaves a 224 px crop as it is;
    * eval, ViT: Resize((224, 224)) bicubic on CIFAR-100, Resize((256, 256)) + CenterCrop(224)
      bilinear on the folder sets;
    * eval, CLIP: CLIP's preprocess, Resize(224) of the shorter side + CenterCrop(224), bicubic.

    TinyImageNet (NSP² on DMNSP's protocols) has no branch in the official code. It is a folder set
    of ImageNet photos read from files as ImageNet-R and DomainNet are, so it takes their pipeline:
    ImageNet policy, bilinear, 64 px images upsampled by the crop (and by the eval resize to 256).
    Your own data (nscl.data.own) likewise: an image folder ('folder') takes the folder-set pipeline,
    CIFAR-10 CIFAR-100's.
    """
    folder_sets = ("imagenet_r", "domainnet", "tinyimagenet", "folder")
    cifar_sets = ("cifar100", "cifar10")
    if dataset not in cifar_sets + folder_sets:
        raise ValueError(
            f"dataset={dataset!r}: NSP²'s transforms cover {cifar_sets} and the folder sets "
            f"{folder_sets} (TinyImageNet and your own folders: the folder-set pipeline)"
        )
    if backbone not in ("vit", "clip"):
        raise ValueError(f"backbone={backbone!r}: choose 'vit' or 'clip'")
    folder = dataset in folder_sets
    if backbone == "vit":
        eval_geometry = dict(eval_resize=round(size * 256 / 224) if folder else size, eval_keep_aspect=False)
    else:
        eval_geometry = dict(eval_resize=size, eval_keep_aspect=True, eval_interpolation="bicubic")
    return BatchTransform(
        size=size,
        mean=tuple(mean),
        std=tuple(std),
        augment="autoaugment",
        rrc_scale=(0.08, 1.0),
        interpolation="bilinear" if folder else "bicubic",
        autoaugment_policy="imagenet" if folder else "cifar10",
        **eval_geometry,
    )
