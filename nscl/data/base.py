"""Labelled image sets: the two storage forms every loader returns.

Everything downstream (scenarios, batching, transforms) sees images as uint8 tensors of shape
(3, H, W). Small sets live in memory (`TensorImageSet`); large folder sets keep file paths and
decode on demand (`FileImageSet`) at their own size, so that the transforms crop and resize the
original image as the official pipelines do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch


@dataclass(frozen=True)
class TensorImageSet:
    """Images held in memory: uint8 (N, 3, H, W) with int64 labels in [0, len(classes))."""

    name: str
    images: torch.Tensor
    targets: torch.Tensor
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(
                f"{self.name}: images must be uint8 of shape (N, 3, H, W); got {tuple(self.images.shape)} "
                f"{self.images.dtype}"
            )
        if self.targets.shape != (self.images.shape[0],):
            raise ValueError(
                f"{self.name}: {self.images.shape[0]} images but targets of shape {tuple(self.targets.shape)}"
            )

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    def subset(self, indices: Sequence[int] | np.ndarray) -> TensorImageSet:
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        return TensorImageSet(self.name, self.images[idx], self.targets[idx], self.classes)


@dataclass(frozen=True)
class FileImageSet:
    """Images on disk, decoded when a batch is drawn.

    storage_size: None decodes each image at its original size (what the official transforms see);
    an int resizes the shorter side to it when decoding, aspect kept (faster, coarser crops).
    """

    name: str
    paths: tuple[str, ...]
    targets: torch.Tensor
    classes: tuple[str, ...]
    storage_size: int | None = None
    meta: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.targets.shape != (len(self.paths),):
            raise ValueError(f"{self.name}: {len(self.paths)} paths but targets of shape {tuple(self.targets.shape)}")
        if self.storage_size is not None and self.storage_size < 1:
            raise ValueError(
                f"{self.name}: storage_size must be a positive int or None (original size), got {self.storage_size}"
            )

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, indices: Sequence[int] | np.ndarray) -> FileImageSet:
        idx = np.asarray(indices, dtype=np.int64)
        return FileImageSet(
            self.name,
            tuple(self.paths[i] for i in idx),
            self.targets[torch.as_tensor(idx)],
            self.classes,
            self.storage_size,
            self.meta,
        )


ImageSet = TensorImageSet | FileImageSet
