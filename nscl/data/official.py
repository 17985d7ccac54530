"""The official class names and split lists that nscl ships under data/ (see the READMEs there).

`class_name_table(dataset, lineage)` gives `(label id, prompt name)` pairs in the official label order;
`split_list(name, split)` gives a split's relative file paths. Both only read files; what they mean for
each data set is documented in the files' `source` fields and in `nscl.data.datasets`.
"""

from __future__ import annotations

import gzip
import json
from functools import cache
from pathlib import Path

from nscl.paths import repo_data_dir

__all__ = ["DEFAULT_LINEAGE", "available_lineages", "class_name_table", "split_list"]

# The lineage whose names a data set gets when the caller names none: the only lineage that uses the
# data set, and for CIFAR-100 its own names (as torchvision, continuum and DMNSP read them).
DEFAULT_LINEAGE = {"cifar100": "dmnsp", "imagenet_r": "nsp2", "domainnet": "nsp2", "tinyimagenet": "dmnsp"}


def _names_dir() -> Path:
    return repo_data_dir() / "class_names"


def available_lineages(dataset: str) -> list[str]:
    """The lineages with a shipped name list for `dataset` (data/class_names/<dataset>_<lineage>.json)."""
    prefix = f"{dataset}_"
    return sorted(p.stem[len(prefix) :] for p in _names_dir().glob(f"{prefix}*.json"))


@cache
def class_name_table(dataset: str, lineage: str | None = None) -> tuple[tuple[str, str], ...]:
    """((label id, name in the text prompts), ...) in the official label order.

    lineage: 'nsp2' or 'dmnsp' (None: `DEFAULT_LINEAGE[dataset]`).
    """
    lineage = lineage or DEFAULT_LINEAGE.get(dataset)
    path = _names_dir() / f"{dataset}_{lineage}.json"
    if not path.exists():
        raise ValueError(
            f"class_names={lineage!r}: no name list for {dataset!r} at {path}; "
            f"choose one of {available_lineages(dataset)}"
        )
    rows = json.loads(path.read_text())["classes"]
    return tuple((str(row[0]), str(row[1])) for row in rows)


def split_list(name: str, split: str, folder: str | Path | None = None) -> tuple[str, ...]:
    """Relative file paths listed in <folder>/<name>_<split>.txt.gz (or .txt), one per line.

    folder: where the lists are (default: the repository's data/splits, the official lists).
    """
    base = repo_data_dir() / "splits" if folder is None else Path(folder)
    for path in (base / f"{name}_{split}.txt.gz", base / f"{name}_{split}.txt"):
        if path.exists():
            raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
            return tuple(line.strip() for line in raw.decode().splitlines() if line.strip())
    hint = (
        "it ships with the nscl repository; restore it with git, see data/splits/README.md"
        if folder is None
        else "pass split_lists= a folder holding that file, or None for the official lists"
    )
    raise FileNotFoundError(f"the {name} {split} list is missing: expected {base / f'{name}_{split}.txt.gz'} ({hint})")
