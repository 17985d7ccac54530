"""A data set written out as image folders: train/<class>/*.png and test/<class>/*.png.

Other code bases read CIFAR-100 as image folders (NSP²'s official loader does; its users ask how to make
them, zugexiaodui/VPTinNSforCL#2), and the folders are the layout nscl.data.folders reads for your own data.
PNG is lossless: the folders hold the set's exact pixels.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from nscl.data.base import FileImageSet, TensorImageSet
from nscl.data.datasets import load_dataset

__all__ = ["export_image_folder", "write_class_folders"]


def _folder_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "class"


def write_class_folders(data: TensorImageSet, out: str | Path, progress: bool = False) -> int:
    """Write every image of an in-memory set as out/<class name>/<index>.png; returns the number written."""
    from PIL import Image

    if isinstance(data, FileImageSet):
        raise ValueError(f"{data.name} is already a set of files ({len(data)} paths); copy its folders instead")
    out = Path(out)
    names = [_folder_name(c) for c in data.classes]
    if len(set(names)) != len(names):
        raise ValueError(f"{data.name}: class names collide as folder names; rename the classes first")
    images = data.images.permute(0, 2, 3, 1).numpy()
    targets = data.targets.numpy()
    order = range(len(data))
    if progress:
        from tqdm.auto import tqdm

        order = tqdm(order, desc=f"writing {out}", unit="img")
    for label in np.unique(targets):
        (out / names[label]).mkdir(parents=True, exist_ok=True)
    for i in order:
        Image.fromarray(images[i]).save(out / names[targets[i]] / f"{i:05d}.png")
    return len(data)


def export_image_folder(
    name: str, out: str | Path, root: str | Path | None = None, download: bool = False, progress: bool = True
) -> dict[str, int]:
    """Write a data set nscl loads into memory (cifar10, cifar100, shapes100, digits) as out/{train,test}/<class>/."""
    written = {}
    for split in ("train", "test"):  # root and download matter to CIFAR only; the generated sets ignore them
        data = load_dataset(name, split, root=root, download=download)
        written[split] = write_class_folders(data, Path(out) / split, progress=progress)
    return written
