"""Your own images: a folder of class folders, read and checked before anything trains.

Two layouts are read, as torchvision's `ImageFolder` reads one split:

    root/train/<class>/*.jpg  and  root/test/<class>/*.jpg    (a test/ folder may be called val/)
    root/<class>/*.jpg                                         (split per class by a seeded fraction)

Classes are the folder names in sorted order (label = position), so the labels do not depend on the
file system's listing order. Hidden entries (`.DS_Store`, `.ipynb_checkpoints`) and files that are not
images are skipped. Each way a folder can be wrong has its own error, every one an `ImageFolderError`
(a ValueError) whose message names the path and says what to do:

| error                  | when                                                                  |
| ---------------------- | --------------------------------------------------------------------- |
| `FolderNotFoundError`  | the root is missing or not a folder; `train/` without `test/`         |
| `EmptyFolderError`     | no class folders, or a class folder without a single image             |
| `SingleClassError`     | one class: nothing to tell apart                                       |
| `ClassMismatchError`   | `train/` and `test/` hold different class folders                      |
| `TooFewImagesError`    | a class of the one-folder layout too small to give train and test      |
| `ClassNamesError`      | a class-names file that does not name every class once                 |
| `ClassOrderError`      | a class-order file that is not an order of the classes                 |
| `TaskSplitError`       | classes that do not split into the asked tasks (raised by nscl.data.own) |
| `UnreadableImageError` | a file that does not decode: truncated, damaged, not an image          |

Images of other modes than RGB (grey, grey + alpha, RGBA, palette, CMYK, 16-bit grey) are converted to
RGB when they are decoded (`to_rgb`); `check_images` counts them and warns once with examples
(`MixedImageModesWarning`), so a folder of scans or screenshots is visible as such.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal, Sequence

import numpy as np

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageFolderError",
    "FolderNotFoundError",
    "EmptyFolderError",
    "SingleClassError",
    "ClassMismatchError",
    "TooFewImagesError",
    "ClassNamesError",
    "ClassOrderError",
    "TaskSplitError",
    "UnreadableImageError",
    "MixedImageModesWarning",
    "FolderScan",
    "ImageCheck",
    "scan_image_folder",
    "read_class_names",
    "read_class_order",
    "check_images",
    "to_rgb",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")
TEST_FOLDERS = ("test", "val")


class ImageFolderError(ValueError):
    """An image folder that cannot be read as a data set (each case has its own subclass)."""


class FolderNotFoundError(ImageFolderError):
    """The folder is missing, is a file, or has train/ without test/."""


class EmptyFolderError(ImageFolderError):
    """No class folders, or a class folder without images."""


class SingleClassError(ImageFolderError):
    """A single class: class-incremental learning needs at least two."""


class ClassMismatchError(ImageFolderError):
    """train/ and test/ hold different class folders."""


class TooFewImagesError(ImageFolderError):
    """A class of the one-folder layout with too few images for both a train and a test share."""


class ClassNamesError(ImageFolderError):
    """A class-names file that does not name each class exactly once."""


class ClassOrderError(ImageFolderError):
    """A class-order file that is not a permutation of the classes."""


class TaskSplitError(ImageFolderError):
    """The classes do not split into the asked tasks."""


class UnreadableImageError(ImageFolderError):
    """Files that do not decode as images (truncated, damaged, or another format under an image suffix)."""


class MixedImageModesWarning(UserWarning):
    """Images that are not RGB (grey, RGBA, CMYK, ...): converted to RGB when decoded."""


@dataclass(frozen=True)
class FolderScan:
    """What a folder holds: its layout, its classes (sorted folder names) and (label, path) rows per split."""

    root: Path
    layout: Literal["train-test", "single"]
    classes: tuple[str, ...]
    train: tuple[tuple[int, str], ...]
    test: tuple[tuple[int, str], ...]

    def rows(self, split: str) -> tuple[tuple[int, str], ...]:
        return self.train if split == "train" else self.test

    def counts(self, split: str) -> list[int]:
        """Images per class (label order) in one split."""
        counts = Counter(label for label, _ in self.rows(split))
        return [counts[i] for i in range(len(self.classes))]


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _class_folders(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and _visible(p)), key=lambda p: p.name)


def _images(folder: Path) -> list[str]:
    return sorted(
        str(p)
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix.lower() in IMAGE_SUFFIXES
        and all(_visible(q) for q in p.relative_to(folder).parents)
        and _visible(p)
    )


def _read_split(folder: Path, what: str) -> dict[str, list[str]]:
    """{class folder name: sorted image paths} under `folder`, every class folder holding images."""
    classes = _class_folders(folder)
    if not classes:
        loose = [p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES][:3]
        hint = (
            f" (it holds loose images such as {loose}: put each class's images in a folder of its own)" if loose else ""
        )
        raise EmptyFolderError(
            f"{what} {folder} has no class folders{hint}. Expected {folder}/<class>/<image>, one folder per class"
        )
    images = {c.name: _images(c) for c in classes}
    empty = [name for name, paths in images.items() if not paths]
    if empty:
        raise EmptyFolderError(
            f"{what} {folder}: class folder(s) {empty[:5]}{' and more' if len(empty) > 5 else ''} hold no images "
            f"({', '.join(IMAGE_SUFFIXES)}). Add images or remove the folder(s)"
        )
    return images


def _check_classes(classes: Sequence[str], where: Path) -> None:
    if len(classes) < 2:
        raise SingleClassError(
            f"{where} holds one class ({classes[0]!r}); class-incremental learning needs at least two class folders"
        )


def scan_image_folder(root: str | Path, test_fraction: float = 0.2, split_seed: int = 0) -> FolderScan:
    """The classes and (label, path) rows of an image folder in either layout (see the module docstring).

    test_fraction, split_seed: the one-folder layout only. Each class keeps round(n * test_fraction) of
    its images for testing (at least one, and at least one for training), drawn by numpy's PCG64(split_seed).
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise FolderNotFoundError(f"image folder {str(root)!r} does not exist; give the folder that holds your images")
    if not root.is_dir():
        raise FolderNotFoundError(f"image folder {str(root)!r} is a file; give the folder that holds the class folders")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction={test_fraction!r}: accepted: a fraction strictly between 0 and 1")
    test_dir = next((root / t for t in TEST_FOLDERS if (root / t).is_dir()), None)
    if (root / "train").is_dir() or test_dir is not None:
        if not (root / "train").is_dir() or test_dir is None:
            have, lack = ("train/", "test/ (or val/)") if test_dir is None else (f"{test_dir.name}/", "train/")
            raise FolderNotFoundError(
                f"{root} has {have} but no {lack}: the two-folder layout needs both, each with the same class "
                "folders. Add it, or put the class folders directly under the root to split them by test_fraction"
            )
        train, test = _read_split(root / "train", "train folder"), _read_split(test_dir, "test folder")
        if set(train) != set(test):
            only_train, only_test = sorted(set(train) - set(test)), sorted(set(test) - set(train))
            raise ClassMismatchError(
                f"{root}: train/ and {test_dir.name}/ hold different classes (only in train/: {only_train[:5]}, "
                f"only in {test_dir.name}/: {only_test[:5]}); every class needs images in both"
            )
        classes = tuple(sorted(train))
        _check_classes(classes, root)
        rows = lambda split: tuple((i, p) for i, c in enumerate(classes) for p in split[c])  # noqa: E731
        return FolderScan(root, "train-test", classes, rows(train), rows(test))
    split = _read_split(root, "image folder")
    classes = tuple(sorted(split))
    _check_classes(classes, root)
    rng = np.random.Generator(np.random.PCG64(split_seed))
    train_rows, test_rows = [], []
    for label, name in enumerate(classes):
        paths = split[name]
        if len(paths) < 2:
            raise TooFewImagesError(
                f"{root}/{name} holds {len(paths)} image; splitting a class into train and test needs at least 2 "
                "(add images, or give train/ and test/ folders)"
            )
        n_test = min(max(1, round(len(paths) * test_fraction)), len(paths) - 1)
        held = set(rng.permutation(len(paths))[:n_test].tolist())
        for i, path in enumerate(paths):
            (test_rows if i in held else train_rows).append((label, path))
    return FolderScan(root, "single", classes, tuple(train_rows), tuple(test_rows))


def _read_list_or_mapping(path: Path, error: type[ImageFolderError], what: str) -> list | dict:
    if not path.is_file():
        raise error(f"{what} file {str(path)!r} does not exist")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            raise error(f"{what} file {path} is not valid JSON ({err})") from None
        if isinstance(value, dict) and "order" in value and what == "class-order":
            value = value["order"]
        if not isinstance(value, (list, dict)):
            raise error(f"{what} file {path}: expected a JSON list or object, got {type(value).__name__}")
        return value
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def read_class_names(path: str | Path, folders: Sequence[str]) -> tuple[str, ...]:
    """The names the text prompts use, in label order, from a file.

    Text (one name per line, in the folders' sorted order; lines starting with # skipped), or JSON: a list
    in that order, or an object {folder name: class name} covering every folder.
    """
    path = Path(path).expanduser()
    value = _read_list_or_mapping(path, ClassNamesError, "class-names")
    if isinstance(value, dict):
        missing, unknown = [f for f in folders if f not in value], [k for k in value if k not in folders]
        if missing or unknown:
            raise ClassNamesError(
                f"class-names file {path}: folders without a name {missing[:5]}, names for unknown folders "
                f"{unknown[:5]}; it must map each of the {len(folders)} class folders to a name"
            )
        names = [str(value[f]) for f in folders]
    else:
        names = [str(v) for v in value]
        if len(names) != len(folders):
            raise ClassNamesError(
                f"class-names file {path} gives {len(names)} names for {len(folders)} class folders; give one "
                f"name per folder in sorted folder order ({list(folders[:3])}...), or a JSON object folder -> name"
            )
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice or any(not n.strip() for n in names):
        raise ClassNamesError(f"class-names file {path}: names must be non-empty and distinct; repeated: {twice[:5]}")
    return tuple(names)


def read_class_order(path: str | Path, folders: Sequence[str]) -> list[int]:
    """A class order (labels) from a file listing every class once: folder names or labels, as text lines or a
    JSON list (or a JSON object with an "order" list, the format of data/class_orders)."""
    path = Path(path).expanduser()
    value = _read_list_or_mapping(path, ClassOrderError, "class-order")
    if isinstance(value, dict):
        raise ClassOrderError(f"class-order file {path}: expected a list of classes, got a JSON object")
    lookup = {name: i for i, name in enumerate(folders)}
    order = []
    for item in value:
        text = str(item)
        if text in lookup:
            order.append(lookup[text])
        elif text.lstrip("-").isdigit() and 0 <= int(text) < len(folders):
            order.append(int(text))
        else:
            raise ClassOrderError(
                f"class-order file {path}: {item!r} is neither a class folder nor a label 0..{len(folders) - 1}"
            )
    missing = [folders[i] for i in range(len(folders)) if i not in order]
    twice = sorted({folders[i] for i in order if order.count(i) > 1})
    if missing or twice:
        raise ClassOrderError(
            f"class-order file {path} must list each of the {len(folders)} classes once: missing {missing[:5]}, "
            f"repeated {twice[:5]}"
        )
    return order


def to_rgb(image):
    """A PIL image as 8-bit RGB: 16-bit grey scaled to 8 bits (PIL would clip it), everything else by PIL's
    convert (alpha dropped, as torchvision's ImageFolder does; CMYK and palettes mapped to RGB)."""
    from PIL import Image

    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        values = np.asarray(image).astype(np.int64)
        top = 65535 if values.max(initial=0) > 255 else 255
        grey = np.clip(np.round(values * (255 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    return image.convert("RGB")


@dataclass(frozen=True)
class ImageCheck:
    """What `check_images` found: images read, and how many of each non-RGB mode were converted."""

    n_images: int
    modes: dict[str, int]
    examples: dict[str, str]  # a path of each non-RGB mode

    @property
    def converted(self) -> int:
        return sum(n for mode, n in self.modes.items() if mode != "RGB")

    def summary(self) -> str:
        other = {m: n for m, n in self.modes.items() if m != "RGB"}
        if not other:
            return f"{self.n_images} images, all RGB"
        listed = ", ".join(f"{n} {m}" for m, n in sorted(other.items()))
        return f"{self.n_images} images; converted to RGB when read: {listed}"


def check_images(paths: Iterable[str], progress: bool = False, max_listed: int = 5) -> ImageCheck:
    """Decode every image once; UnreadableImageError names the files that fail (truncated, damaged, not images).

    Warns (MixedImageModesWarning) when some images are not RGB; they are converted when read (`to_rgb`).
    """
    from PIL import Image, UnidentifiedImageError

    paths = list(paths)
    if progress:
        from tqdm.auto import tqdm

        paths_iter = tqdm(paths, desc="checking images", unit="img")
    else:
        paths_iter = paths
    modes: Counter[str] = Counter()
    examples: dict[str, str] = {}
    bad: list[tuple[str, str]] = []
    for path in paths_iter:
        try:
            with Image.open(path) as image:
                image.load()  # the whole file: a truncated JPEG or PNG fails here, not at open
                modes[image.mode] += 1
                examples.setdefault(image.mode, path)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
            bad.append((path, f"{type(err).__name__}: {err}"))
    if bad:
        listed = "; ".join(f"{p} ({why})" for p, why in bad[:max_listed])
        more = f"; and {len(bad) - max_listed} more" if len(bad) > max_listed else ""
        raise UnreadableImageError(
            f"{len(bad)} of {len(paths)} image file(s) cannot be read: {listed}{more}. Replace or remove them "
            "(a truncated file is often an interrupted copy or download)"
        )
    check = ImageCheck(len(paths), dict(modes), {m: p for m, p in examples.items() if m != "RGB"})
    if check.converted:
        shown = ", ".join(f"{m} e.g. {p}" for m, p in sorted(check.examples.items()))
        warnings.warn(f"{check.summary()} ({shown})", MixedImageModesWarning, stacklevel=2)
    return check
