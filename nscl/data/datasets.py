"""Data set loaders. Every loader returns a `TensorImageSet` or a `FileImageSet` with original labels.

Real sets are never faked: when files are missing the loader raises `DatasetNotFoundError` saying
where it looked and how to prepare the data. Two offline sets need no download: `shapes100`
(procedural, generated and cached) and `digits` (scikit-learn's bundled handwritten digits).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from nscl.data.base import FileImageSet, ImageSet, TensorImageSet
from nscl.paths import cache_dir, data_root

__all__ = ["DATASETS", "DatasetNotFoundError", "load_dataset"]

DATASETS = ("cifar100", "imagenet_r", "domainnet", "tinyimagenet", "shapes100", "digits")
SPLITS = ("train", "test")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class DatasetNotFoundError(FileNotFoundError):
    """A real data set's files are not where the loader looked; the message says how to fix it."""


def load_dataset(name: str, split: str = "train", root: str | Path | None = None, download: bool = False,
                 **options) -> ImageSet:
    """Load `name` ('cifar100', 'imagenet_r', 'domainnet', 'tinyimagenet', 'shapes100', 'digits').

    root: data root (default $NSCL_DATA or ~/.cache/nscl/data). download: let torchvision fetch
    CIFAR-100 when it is missing. options: loader-specific (e.g. n_per_class, image_size, seed for
    shapes100; storage_size for folder sets).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    loader = {"cifar100": _cifar100, "imagenet_r": _imagenet_r, "domainnet": _domainnet,
              "tinyimagenet": _tinyimagenet, "shapes100": _shapes100, "digits": _digits}[name]
    if name in ("shapes100", "digits"):
        return loader(split, **options)
    return loader(split, data_root(root), download=download, **options) if name == "cifar100" else \
        loader(split, data_root(root), **options)


# --- CIFAR-100 -------------------------------------------------------------------------------

def _read_cifar_pickle(path: Path) -> dict:
    import pickle

    with open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")


def _cifar100(split: str, root: Path, download: bool = False) -> TensorImageSet:
    """CIFAR-100 from the official python pickles (the layout torchvision downloads)."""
    base = root / "cifar-100-python"
    if not (base / "meta").exists() and download:
        import torchvision

        try:
            torchvision.datasets.CIFAR100(str(root), train=True, download=True)
        except (RuntimeError, OSError) as err:  # no network, or a broken archive
            raise DatasetNotFoundError(f"CIFAR-100 could not be downloaded to {root}: {err}. Download "
                                       f"cifar-100-python.tar.gz elsewhere and extract it under {root}.") from err
    if not (base / "meta").exists():
        raise DatasetNotFoundError(
            f"CIFAR-100 not found: expected {base}/{{train,test,meta}}. Either pass download=True (needs internet), "
            f"or extract https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz so that this folder exists, "
            f"or point NSCL_DATA / root at the folder that holds 'cifar-100-python'.")
    blob = _read_cifar_pickle(base / split)
    classes = tuple(_read_cifar_pickle(base / "meta")["fine_label_names"])
    images = torch.from_numpy(np.asarray(blob["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).copy())
    return TensorImageSet("cifar100", images, torch.as_tensor(blob["fine_labels"], dtype=torch.long), classes)


# --- image-folder sets -----------------------------------------------------------------------

def _class_folders(split_dir: Path) -> list[Path]:
    return sorted(p for p in split_dir.iterdir() if p.is_dir())


def _images_in(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def _folder_set(name: str, split_dir: Path, class_names: dict[str, str] | None, storage_size: int) -> FileImageSet:
    paths, targets, classes = [], [], []
    for label, folder in enumerate(_class_folders(split_dir)):
        files = _images_in(folder)
        paths += files
        targets += [label] * len(files)
        classes.append(class_names.get(folder.name, folder.name) if class_names else folder.name)
    if not paths:
        raise DatasetNotFoundError(f"{name}: no images found under {split_dir}")
    return FileImageSet(name, tuple(paths), torch.as_tensor(targets, dtype=torch.long), tuple(classes), storage_size)


def _require(path: Path, name: str, how: str) -> None:
    if not path.is_dir():
        raise DatasetNotFoundError(f"{name} not found: expected the folder {path}. How to prepare it: {how} "
                                   f"Then pass root=... or set NSCL_DATA to the folder that holds it.")


def _seeded_split(files: list[str], split: str, test_fraction: float = 0.2, seed: int = 0) -> list[str]:
    """Deterministic per-class split by a hash of the file name (stable if files are added)."""
    def bucket(path: str) -> float:
        digest = hashlib.sha1(f"{seed}:{Path(path).name}".encode()).hexdigest()
        return int(digest[:8], 16) / 0xFFFFFFFF
    return [f for f in files if (bucket(f) < test_fraction) == (split == "test")]


def _imagenet_r(split: str, root: Path, storage_size: int = 256, seed: int = 0) -> FileImageSet:
    base = root / "imagenet-r"
    _require(base, "ImageNet-R", "download https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar and extract "
             "it so that imagenet-r/<wnid>/*.jpg exists (200 class folders). nscl splits each class 80/20 by a "
             "seeded hash of the file name; to use another split, make imagenet-r/train/<wnid>/ and "
             "imagenet-r/test/<wnid>/ folders instead.")
    if (base / "train").is_dir():
        return _folder_set("imagenet_r", base / split, None, storage_size)
    paths, targets, classes = [], [], []
    for label, folder in enumerate(_class_folders(base)):
        files = _seeded_split(_images_in(folder), split, seed=seed)
        paths += files
        targets += [label] * len(files)
        classes.append(folder.name)
    return FileImageSet("imagenet_r", tuple(paths), torch.as_tensor(targets, dtype=torch.long), tuple(classes),
                        storage_size)


def _domainnet(split: str, root: Path, storage_size: int = 256) -> FileImageSet:
    base = root / "domainnet"
    _require(base / split, "DomainNet (the NSP² 200-class subset)",
             "download DomainNet (http://ai.bu.edu/M3SDA/), then build the subset with the official NSP² "
             "tools (zugexiaodui/VPTinNSforCL tools/split_sdomainnet.py with its sdomain_{train,val}.txt lists) "
             "and place its train/ and val/ folders as domainnet/train and domainnet/test (one folder per label).")
    return _folder_set("domainnet", base / split, None, storage_size)


def _tinyimagenet(split: str, root: Path, storage_size: int = 64) -> FileImageSet:
    base = root / "tiny-imagenet-200"
    _require(base / "train", "TinyImageNet", "download http://cs231n.stanford.edu/tiny-imagenet-200.zip and unzip "
             "it so that tiny-imagenet-200/{train,val,wnids.txt,words.txt} exist.")
    words = {}
    if (base / "words.txt").exists():
        for line in (base / "words.txt").read_text().splitlines():
            wnid, _, names = line.partition("\t")
            words[wnid] = names.split(",")[0].strip()
    wnids = sorted(p.name for p in _class_folders(base / "train"))
    classes = tuple(words.get(w, w) for w in wnids)
    if split == "train":
        return _folder_set("tinyimagenet", base / "train", words, storage_size)
    # The public validation set is the test set; labels come from val_annotations.txt.
    ann = base / "val" / "val_annotations.txt"
    if not ann.exists():
        raise DatasetNotFoundError(f"TinyImageNet validation labels missing: expected {ann}")
    label_of = {w: i for i, w in enumerate(wnids)}
    rows = [line.split("\t")[:2] for line in ann.read_text().splitlines() if line.strip()]
    paths = tuple(str(base / "val" / "images" / f) for f, _ in rows)
    targets = torch.as_tensor([label_of[w] for _, w in rows], dtype=torch.long)
    return FileImageSet("tinyimagenet", paths, targets, classes, storage_size)


# --- offline sets ----------------------------------------------------------------------------

def _shapes100(split: str, n_per_class: int | None = None, image_size: int = 32, seed: int = 0,
               cache: bool = True, background: str = "grey") -> TensorImageSet:
    from nscl.data.shapes import dataset_name, make_shapes100

    n = n_per_class if n_per_class is not None else (500 if split == "train" else 100)
    style = "" if background == "grey" else f"_{background}"
    path = cache_dir() / "shapes100" / f"{split}_n{n}_s{image_size}_seed{seed}{style}.pt"
    if cache and path.exists():
        blob = torch.load(path)
        return TensorImageSet(dataset_name(background), blob["images"], blob["targets"], tuple(blob["classes"]))
    data = make_shapes100(split=split, n_per_class=n, image_size=image_size, seed=seed, background=background)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save({"images": data.images, "targets": data.targets, "classes": list(data.classes)}, tmp)
        tmp.replace(path)
    return data


def _digits(split: str, test_fraction: float = 0.3, seed: int = 0) -> TensorImageSet:
    """scikit-learn's 1,797 8x8 handwritten digits, as 3-channel uint8, stratified train/test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    idx_train, idx_test = train_test_split(np.arange(len(digits.target)), test_size=test_fraction,
                                           random_state=seed, stratify=digits.target)
    idx = idx_train if split == "train" else idx_test
    gray = np.round(digits.images[idx] * (255.0 / 16.0)).astype(np.uint8)  # pixel values are 0..16
    images = torch.from_numpy(gray)[:, None].expand(-1, 3, -1, -1).contiguous()
    return TensorImageSet("digits", images, torch.as_tensor(digits.target[idx], dtype=torch.long),
                          tuple(str(d) for d in range(10)))
