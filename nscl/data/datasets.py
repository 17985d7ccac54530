"""Data set loaders. Every loader returns a `TensorImageSet` or a `FileImageSet` with original labels.

Real sets are never faked: when files are missing the loader raises `DatasetNotFoundError` saying
where it looked and how to prepare the data. Two offline sets need no download: `shapes100`
(procedural, generated and cached) and `digits` (scikit-learn's bundled handwritten digits).

Labels and class names follow the official code of the method lineage (`class_names=`): the label
order and the names in the text prompts come from the lists shipped in data/class_names (their
`source` fields cite the official files), the ImageNet-R split from data/splits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from nscl.data.base import FileImageSet, ImageSet, TensorImageSet
from nscl.data.checksums import GENERATOR_VERSION, set_key, verify_classes
from nscl.data.folders import IMAGE_SUFFIXES
from nscl.data.official import DEFAULT_LINEAGE, available_lineages, class_name_table, split_list
from nscl.data.shapes import dataset_name, make_shapes100
from nscl.files import atomic_torch_save
from nscl.paths import cache_dir, data_root

__all__ = ["DATASETS", "DatasetNotFoundError", "load_dataset"]

DATASETS = ("cifar10", "cifar100", "imagenet_r", "domainnet", "tinyimagenet", "shapes100", "digits")
SPLITS = ("train", "test")


class DatasetNotFoundError(FileNotFoundError):
    """A real data set's files are not where the loader looked; the message says how to fix it."""


def load_dataset(
    name: str,
    split: str = "train",
    root: str | Path | None = None,
    download: bool = False,
    class_names: str | None = None,
    **options,
) -> ImageSet:
    """Load `name` ('cifar10', 'cifar100', 'imagenet_r', 'domainnet', 'tinyimagenet', 'shapes100', 'digits').

    root: data root (default $NSCL_DATA or ~/.cache/nscl/data). download: let torchvision fetch
    CIFAR-10 / CIFAR-100 when it is missing. class_names: whose names the real sets return as `classes`, 'nsp2'
    or 'dmnsp' (None: the lineage that uses the set; CIFAR-100 has both: 'dmnsp' keeps its own names,
    e.g. 'aquarium_fish', 'nsp2' reads 'aquarium fish'). options: loader-specific (n_per_class,
    image_size, seed for shapes100; storage_size for folder sets; split_lists for ImageNet-R).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if name == "cifar10":
        if class_names is not None:
            raise ValueError(f"class_names={class_names!r}: cifar10 has a single set of names (torchvision's)")
        return _cifar10(split, data_root(root), download=download, **options)
    if name in ("shapes100", "digits"):
        if class_names is not None:
            raise ValueError(
                f"class_names={class_names!r}: {name} has a single set of names; class_names "
                f"applies to {tuple(DEFAULT_LINEAGE)}"
            )
        return {"shapes100": _shapes100, "digits": _digits}[name](split, **options)
    lineage = class_names or DEFAULT_LINEAGE[name]
    if lineage not in available_lineages(name):
        raise ValueError(f"class_names={class_names!r}: {name} has names for {available_lineages(name)}")
    names = class_name_table(name, lineage)
    if name == "cifar100":
        return _cifar100(split, data_root(root), names, download=download, **options)
    loader = {"imagenet_r": _imagenet_r, "domainnet": _domainnet, "tinyimagenet": _tinyimagenet}[name]
    return loader(split, data_root(root), names, **options)


def _label_lookup(names: tuple[tuple[str, str], ...]) -> dict[str, int]:
    """Official label of each label id (the position in the shipped list)."""
    return {label_id: i for i, (label_id, _) in enumerate(names)}


def _label_of(label_id: str, lookup: dict[str, int], what: str) -> int:
    if label_id not in lookup:
        raise DatasetNotFoundError(
            f"{what}: {label_id!r} is not one of the {len(lookup)} official classes; "
            f"the files are not the official data set (see data/class_names/README.md)"
        )
    return lookup[label_id]


def _file_set(
    name: str, rows: list[tuple[int, str]], names: tuple[tuple[str, str], ...], storage_size: int | None
) -> FileImageSet:
    """A FileImageSet over (label, path) rows, sorted by label then path as the official loaders list them."""
    rows = sorted(rows)
    return FileImageSet(
        name,
        tuple(p for _, p in rows),
        torch.as_tensor([y for y, _ in rows], dtype=torch.long),
        tuple(n for _, n in names),
        storage_size,
    )


# --- CIFAR-100 -------------------------------------------------------------------------------


def _read_cifar_pickle(path: Path) -> dict:
    import pickle

    with open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")


def _cifar_files(title: str, root: Path, folder: str, files: tuple[str, ...], download: bool, fetch) -> Path:
    """The folder of a CIFAR set's pickles (torchvision's layout), downloaded by torchvision when asked."""
    base = root / folder
    archive = {"CIFAR-10": "cifar-10-python.tar.gz", "CIFAR-100": "cifar-100-python.tar.gz"}[title]
    if download and not all((base / f).is_file() for f in files):
        try:
            fetch(str(root), train=True, download=True)
        except (RuntimeError, OSError) as err:  # no network, or a broken archive
            raise DatasetNotFoundError(
                f"{title} could not be downloaded to {root}: {err}. Download {archive} elsewhere and extract it "
                f"under {root}."
            ) from err
    how = (
        f"Either pass download=True (needs internet), or extract https://www.cs.toronto.edu/~kriz/{archive} under "
        f"{root} so that {base}/{{{','.join(files)}}} exist, or point NSCL_DATA / root at the folder that holds "
        f"'{folder}'."
    )
    if not base.is_dir():
        raise DatasetNotFoundError(f"{title} not found: expected the folder {base} with {', '.join(files)}. {how}")
    missing = [f for f in files if not (base / f).is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"{title} at {base} is incomplete: {', '.join(missing)} missing (an interrupted download or "
            f"extraction?). {how}"
        )
    return base


def _cifar10(split: str, root: Path, download: bool = False) -> TensorImageSet:
    """CIFAR-10 from the official python pickles (torchvision's layout: cifar-10-batches-py/)."""
    import torchvision

    batches = tuple(f"data_batch_{i}" for i in range(1, 6))
    files = batches + ("test_batch", "batches.meta")
    base = _cifar_files("CIFAR-10", root, "cifar-10-batches-py", files, download, torchvision.datasets.CIFAR10)
    blobs = [_read_cifar_pickle(base / f) for f in (batches if split == "train" else ("test_batch",))]
    data = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in blobs]).reshape(-1, 3, 32, 32)
    labels = [y for b in blobs for y in b["labels"]]
    classes = tuple(_read_cifar_pickle(base / "batches.meta")["label_names"])
    return TensorImageSet("cifar10", torch.from_numpy(data.copy()), torch.as_tensor(labels, dtype=torch.long), classes)


def _cifar100(split: str, root: Path, names: tuple[tuple[str, str], ...], download: bool = False) -> TensorImageSet:
    """CIFAR-100 from the official python pickles (the layout torchvision downloads)."""
    import torchvision

    files = ("train", "test", "meta")
    base = _cifar_files("CIFAR-100", root, "cifar-100-python", files, download, torchvision.datasets.CIFAR100)
    blob = _read_cifar_pickle(base / split)
    # The pickle's fine labels are the official labels of both lineages; only the names differ.
    lookup = _label_lookup(names)
    classes = tuple(
        names[_label_of(n, lookup, f"{base / 'meta'} fine label name")][1]
        for n in _read_cifar_pickle(base / "meta")["fine_label_names"]
    )
    images = torch.from_numpy(np.asarray(blob["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).copy())
    return TensorImageSet("cifar100", images, torch.as_tensor(blob["fine_labels"], dtype=torch.long), classes)


# --- image-folder sets -----------------------------------------------------------------------


def _class_folders(split_dir: Path) -> list[Path]:
    return sorted(p for p in split_dir.iterdir() if p.is_dir())


def _images_in(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def _labelled_folders(split_dir: Path, lookup: dict[str, int], what: str) -> list[tuple[int, str]]:
    """(official label, path) of every image under split_dir/<label id>/."""
    labelled = [
        (_label_of(folder.name, lookup, f"{what} folder {folder}"), folder) for folder in _class_folders(split_dir)
    ]
    rows = [(label, path) for label, folder in labelled for path in _images_in(folder)]
    if not rows:
        raise DatasetNotFoundError(f"{what}: no images found under {split_dir}")
    return rows


def _require(path: Path, name: str, how: str) -> None:
    if not path.is_dir():
        raise DatasetNotFoundError(
            f"{name} not found: expected the folder {path}. How to prepare it: {how} "
            f"Then pass root=... or set NSCL_DATA to the folder that holds it."
        )


def _imagenet_r(
    split: str,
    root: Path,
    names: tuple[tuple[str, str], ...],
    storage_size: int | None = None,
    split_lists: str | Path | None = None,
) -> FileImageSet:
    """ImageNet-R with the official NSP² split: 24,000 train / 6,000 test files listed in data/splits.

    Labels number the wnids in sorted order (zugexiaodui/VPTinNSforCL@0d9c547 utils/dataset_builder.py
    ImageNetRPath); the lists are that repository's tools/imagenet_r_{train,val}.txt. split_lists: a
    folder with other lists in the same format (imagenet_r_{train,test}.txt[.gz]); None: the official ones.
    """
    base = root / "imagenet-r"
    _require(
        base,
        "ImageNet-R",
        "download https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar and extract "
        "it so that imagenet-r/<wnid>/*.jpg exists (200 class folders); nscl reads the official NSP² split "
        "lists from data/splits.",
    )
    if not any(p.is_dir() for p in base.iterdir()):
        raise DatasetNotFoundError(
            f"ImageNet-R at {base} is empty (no class folders <wnid>/). How to prepare it: "
            "download https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar and extract it "
            f"into {base.parent} so that {base}/<wnid>/*.jpg exists (200 class folders)."
        )
    listed = split_list("imagenet_r", split, split_lists)
    missing = [p for p in listed if not (base / p).is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"ImageNet-R at {base} lacks {len(missing)} of the {len(listed)} files of the "
            f"official {split} list (e.g. {missing[:3]}); extract the complete imagenet-r.tar "
            f"there (the list is data/splits/imagenet_r_{split}.txt.gz)."
        )
    lookup = _label_lookup(names)
    rows = [(_label_of(p.split("/")[0], lookup, f"ImageNet-R list entry {p!r}"), str(base / p)) for p in listed]
    return _file_set("imagenet_r", rows, names, storage_size)


def _domainnet(
    split: str, root: Path, names: tuple[tuple[str, str], ...], storage_size: int | None = None
) -> FileImageSet:
    """The NSP² DomainNet subset as the official tools/split_sdomainnet.py lays it out: <split>/<label:03d>/.

    Labels are the folder numbers (zugexiaodui/VPTinNSforCL@0d9c547 utils/dataset_builder.py
    SDomainNetPath); the official tool names the test split 'val', which is read when 'test' is absent.
    """
    base = root / "domainnet"
    split_dir = base / "val" if split == "test" and not (base / "test").is_dir() else base / split
    _require(
        split_dir,
        "DomainNet (the NSP² 200-class subset)",
        "download DomainNet (http://ai.bu.edu/M3SDA/), then build the subset with the official NSP² "
        "tools (zugexiaodui/VPTinNSforCL tools/split_sdomainnet.py with its sdomain_{train,val}.txt lists) "
        "and place its train/ and val/ folders as domainnet/train and domainnet/test (or val).",
    )
    return _file_set("domainnet", _labelled_folders(split_dir, _label_lookup(names), "DomainNet"), names, storage_size)


def _tinyimagenet(
    split: str, root: Path, names: tuple[tuple[str, str], ...], storage_size: int | None = None
) -> FileImageSet:
    """TinyImageNet; the public validation set is the test set (labels from val_annotations.txt).

    Labels number the wnids in tiny-imagenet-200/wnids.txt order, as continuum's TinyImageNet200 does
    for DMNSP (Continvvm/continuum@43ba009 continuum/datasets/imagenet.py); that order ships with the
    names (data/class_names/tinyimagenet_dmnsp.json), so the local wnids.txt is not needed.
    """
    base = root / "tiny-imagenet-200"
    _require(
        base / "train",
        "TinyImageNet",
        "download http://cs231n.stanford.edu/tiny-imagenet-200.zip and unzip "
        "it so that tiny-imagenet-200/{train,val} exist.",
    )
    lookup = _label_lookup(names)
    if split == "train":
        return _file_set("tinyimagenet", _labelled_folders(base / "train", lookup, "TinyImageNet"), names, storage_size)
    ann = base / "val" / "val_annotations.txt"
    if not ann.exists():
        raise DatasetNotFoundError(f"TinyImageNet validation labels missing: expected {ann}")
    rows = [line.split("\t")[:2] for line in ann.read_text().splitlines() if line.strip()]
    labelled = [
        (_label_of(wnid, lookup, f"TinyImageNet {ann.name}"), str(base / "val" / "images" / file))
        for file, wnid in rows
    ]
    return _file_set("tinyimagenet", labelled, names, storage_size)


# --- offline sets ----------------------------------------------------------------------------


def _shapes100(
    split: str,
    n_per_class: int | None = None,
    image_size: int = 32,
    seed: int = 0,
    cache: bool = True,
    background: str = "grey",
) -> TensorImageSet:
    n = n_per_class if n_per_class is not None else (500 if split == "train" else 100)
    style = "" if background == "grey" else f"_{background}"
    # The generator version in the name: a cache of an older renderer is never read as the current one.
    path = cache_dir() / "shapes100" / f"{split}_n{n}_s{image_size}_seed{seed}{style}_v{GENERATOR_VERSION}.pt"
    if cache and path.exists():
        blob = torch.load(path)
        labels = sorted(int(c) for c in torch.unique(blob["targets"]))
        verify_classes(
            set_key(split, n, image_size, seed, background), blob["images"].numpy(), labels, n, f"read from {path}"
        )
        return TensorImageSet(dataset_name(background), blob["images"], blob["targets"], tuple(blob["classes"]))
    data = make_shapes100(split=split, n_per_class=n, image_size=image_size, seed=seed, background=background)
    if cache:
        atomic_torch_save({"images": data.images, "targets": data.targets, "classes": list(data.classes)}, path)
    return data


def _digits(split: str, test_fraction: float = 0.3, seed: int = 0) -> TensorImageSet:
    """scikit-learn's 1,797 8x8 handwritten digits, as 3-channel uint8, stratified train/test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    idx_train, idx_test = train_test_split(
        np.arange(len(digits.target)), test_size=test_fraction, random_state=seed, stratify=digits.target
    )
    idx = idx_train if split == "train" else idx_test
    gray = np.round(digits.images[idx] * (255.0 / 16.0)).astype(np.uint8)  # pixel values are 0..16
    images = torch.from_numpy(gray)[:, None].expand(-1, 3, -1, -1).contiguous()
    return TensorImageSet(
        "digits", images, torch.as_tensor(digits.target[idx], dtype=torch.long), tuple(str(d) for d in range(10))
    )
