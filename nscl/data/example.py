"""A small image folder the project makes, laid out as a user's own data would be, for the book and the tests.

shapes100's novel classes (the tiny preset's pool) written as image files, one folder per class, with the
mess a real folder has: images of two sizes, and (`mixed_modes`) one grey PNG, RGBA PNGs and a CMYK TIFF,
which nscl.data.folders converts to RGB. Only lossless formats are written, so the pixels read back are
the same on every machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from nscl.data.protocols import NOVEL_CLASSES
from nscl.data.shapes import class_names, make_shapes100

__all__ = ["write_image_folder", "folder_tree"]


def _save(array: np.ndarray, path: Path, mode: str, size: int) -> None:
    from PIL import Image

    image = Image.fromarray(array.transpose(1, 2, 0), mode="RGB")
    if size != image.width:
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    if mode == "L":
        image = image.convert("L")
    elif mode == "RGBA":
        image = image.convert("RGBA")  # opaque alpha: the RGB read back is the original
    elif mode == "CMYK":
        image = image.convert("CMYK")
    image.save(path)


def write_image_folder(
    root: str | Path,
    n_classes: int = 6,
    train_per_class: int = 40,
    test_per_class: int = 10,
    layout: Literal["train-test", "single"] = "train-test",
    mixed_modes: bool = True,
    seed: int = 0,
) -> Path:
    """Write `n_classes` shapes100 novel classes under root (train/ and test/, or one folder); returns root.

    Every third image is stored at 48 px instead of 32 (a folder of mixed sizes); with `mixed_modes`, the
    first class's first training image is grey, every class's second is RGBA, and the last class's third is a
    CMYK TIFF.
    """
    if not 2 <= n_classes <= len(NOVEL_CLASSES):
        raise ValueError(f"n_classes={n_classes}: accepted: 2..{len(NOVEL_CLASSES)} (the novel shapes100 classes)")
    root = Path(root)
    labels = NOVEL_CLASSES[:n_classes]
    names = [class_names()[label].replace(" ", "_") for label in labels]
    for split, n in (("train", train_per_class), ("test", test_per_class)):
        if n == 0:  # the one-folder layout may take all its images from one split
            continue
        data = make_shapes100(split, n_per_class=n, image_size=32, seed=seed, classes=labels)
        for k, (label, name) in enumerate(zip(labels, names)):
            folder = root / (split if layout == "train-test" else "") / name
            folder.mkdir(parents=True, exist_ok=True)
            images = data.images[data.targets == label].numpy()
            for i, image in enumerate(images):
                mode, suffix = "RGB", ".png"
                if mixed_modes and split == "train":
                    if i == 0 and k == 0:
                        mode = "L"
                    elif i == 1:
                        mode = "RGBA"
                    elif i == 2 and k == n_classes - 1:
                        mode, suffix = "CMYK", ".tiff"
                _save(image, folder / f"{split}_{i:04d}{suffix}", mode, 48 if i % 3 == 2 else 32)
    return root


def folder_tree(root: str | Path, files_per_folder: int = 2) -> str:
    """The folder as an indented tree, a few files per folder (what a reader should see first)."""
    root = Path(root)
    lines = [f"{root.name}/"]

    def walk(folder: Path, depth: int) -> None:
        entries = sorted(folder.iterdir())
        folders = [p for p in entries if p.is_dir()]
        files = [p for p in entries if p.is_file()]
        for sub in folders:
            lines.append("    " * depth + f"{sub.name}/")
            walk(sub, depth + 1)
        for f in files[:files_per_folder]:
            lines.append("    " * depth + f.name)
        if len(files) > files_per_folder:
            lines.append("    " * depth + f"... {len(files) - files_per_folder} more")

    walk(root, 1)
    return "\n".join(lines)
