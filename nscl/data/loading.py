"""Batches: uint8 images on the compute device, ready for a `BatchTransform`.

Images travel as uint8 to the compute device and are augmented, resized and normalised there, one
batch at a time (`nscl.data.transforms.BatchTransform`, re-exported here). On a GPU this keeps the
host out of the hot loop: a CIFAR batch goes up as 32x32 bytes and is resized to 224 px on the
device. Folder sets are decoded in DataLoader workers at the images' own size, so the transform sees
what the official pipelines crop from; a batch whose images differ in size is a list of tensors.
"""

from __future__ import annotations

from typing import Iterator

import torch

from nscl.data.base import FileImageSet, ImageSet, TensorImageSet
from nscl.data.folders import to_rgb
from nscl.data.transforms import AUGMENTATIONS, BatchTransform, Images

__all__ = ["BatchTransform", "iterate_batches", "AUGMENTATIONS"]


class _DecodedFiles(torch.utils.data.Dataset):
    """Decodes image files to uint8 (3, H, W) RGB at their own size (or the shorter side at storage_size)."""

    def __init__(self, data: FileImageSet) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        from PIL import Image
        from torchvision.transforms.v2 import functional as TF

        with Image.open(self.data.paths[i]) as img:
            t = TF.pil_to_tensor(to_rgb(img))  # grey, RGBA, CMYK, 16-bit: RGB (nscl.data.folders)
        if self.data.storage_size is not None:
            t = TF.resize(t, [self.data.storage_size], antialias=True)
        return t, self.data.targets[i]


def _collate(items: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[Images, torch.Tensor]:
    """Stack images of one size into a batch tensor; keep a list when sizes differ."""
    images = [x for x, _ in items]
    labels = torch.stack([y for _, y in items])
    if len({tuple(x.shape) for x in images}) == 1:
        return torch.stack(images), labels
    return images, labels


def iterate_batches(
    data: ImageSet,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    device: torch.device | str = "cpu",
    drop_last: bool = False,
    num_workers: int = 0,
) -> Iterator[tuple[Images, torch.Tensor]]:
    """Yield (uint8 images, labels) batches on `device`; the order is fixed by `seed`.

    Images are a (B, 3, H, W) tensor, or for a folder set whose images differ in size a list of
    (3, H, W) tensors; `BatchTransform` takes both.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    if isinstance(data, TensorImageSet):
        n = len(data)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        stop = n - n % batch_size if drop_last else n
        pin = device.type == "cuda"
        for start in range(0, stop, batch_size):
            idx = order[start : start + batch_size]
            x, y = data.images[idx], data.targets[idx]
            if pin:
                x, y = x.pin_memory(), y.pin_memory()
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        return
    loader = torch.utils.data.DataLoader(
        _DecodedFiles(data),
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        drop_last=drop_last,
        num_workers=num_workers,
        collate_fn=_collate,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    for x, y in loader:
        if isinstance(x, torch.Tensor):
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        else:
            yield [img.to(device, non_blocking=True) for img in x], y.to(device, non_blocking=True)
