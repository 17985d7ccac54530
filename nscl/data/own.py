"""Your own data as a class-incremental benchmark: an image folder, or CIFAR-10 / CIFAR-100 by name, cut into tasks.

    OwnData("~/pets", tasks=5)                                   # 5 equal tasks, classes shuffled by the seed
    OwnData("~/pets", first_task=10, increment=5, class_order="sorted", class_names="names.txt")
    OwnData("cifar10", tasks=5)                                  # torchvision's CIFAR-10 (download=True fetches it)

The same fields come from a chapter's parameters, a config file (`[own_data]` table) and the command line
(`--own-data source=~/pets tasks=5`); nscl.data.benchmarks turns them into a `Benchmark` whose id is
`own-<name>-<shape>` ("own-pets-5s", "own-pets-10-5"). A folder is read by nscl.data.folders, which names
every way it can be wrong; the protocol and the class-order and class-names files are checked here, when
the config is built, and every image is decoded once when the data are first loaded, before any training.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from nscl.data.folders import TaskSplitError, read_class_order

__all__ = ["OwnData", "NAMED_SETS", "CIFAR10_CLASSES", "split_classes", "own_class_order", "default_class_names"]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
NAMED_SETS = {"cifar10": 10, "cifar100": 100}  # torchvision's sets, by name: their class counts
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
ORDERS = ("seeded", "sorted")


def _positive(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"OwnData.{name}={value!r}: accepted: an integer >= 1, or None")


@dataclass(frozen=True)
class OwnData:
    """Your data set and the protocol to cut it into: give `tasks`, or `increment` (and `first_task`)."""

    source: str  # a folder (class folders, or train/ and test/ of them), or 'cifar10' / 'cifar100'
    tasks: int | None = None  # equal tasks
    first_task: int | None = None  # classes of the first task (None: the increment)
    increment: int | None = None  # classes of every later task
    class_order: str = "seeded"  # 'seeded' (NSP²'s rule: shuffled by numpy PCG64(2024 + seed)), 'sorted', or a file
    class_names: str | None = None  # a file of the names the text prompts use; None: the folder names
    test_fraction: float = 0.2  # the one-folder layout: each class's share kept for testing
    split_seed: int = 0  # the one-folder layout: which images are kept for testing
    name: str | None = None  # the benchmark id's stem; None: the folder's name
    check_images: bool = True  # decode every image once before training (names the unreadable ones)
    storage_size: int | None = None  # decode with the shorter side at this size (large photos); None: as stored

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source.strip():
            raise ValueError(f"OwnData.source={self.source!r}: accepted: a folder path, or one of {list(NAMED_SETS)}")
        for name in ("tasks", "first_task", "increment", "storage_size"):
            _positive(name, getattr(self, name))
        if self.tasks is None and self.increment is None:
            raise ValueError(
                "OwnData: give the protocol, either tasks=N (N equal tasks) or increment=K "
                "(tasks of K classes; first_task=B for a first task of B classes)"
            )
        if self.tasks is not None and (self.increment is not None or self.first_task is not None):
            raise ValueError(
                f"OwnData: tasks={self.tasks} and increment={self.increment} / first_task={self.first_task} both "
                "given; give either tasks (equal tasks) or increment and first_task"
            )
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"OwnData.test_fraction={self.test_fraction!r}: accepted: a fraction between 0 and 1")
        if self.name is not None and not _NAME.match(self.name):
            raise ValueError(
                f"OwnData.name={self.name!r}: accepted: letters, digits, '.', '_' and '-' (it names run folders)"
            )
        if not isinstance(self.class_order, str) or not self.class_order:
            raise ValueError(f"OwnData.class_order={self.class_order!r}: accepted: {list(ORDERS)} or a file path")

    @property
    def named_set(self) -> str | None:
        """'cifar10' / 'cifar100' when the source names a torchvision set, else None (a folder)."""
        key = self.source.strip().lower().replace("-", "")
        return key if key in NAMED_SETS else None

    @property
    def stem(self) -> str:
        """The benchmark id's stem: `name`, the named set, or the folder's name made safe for paths."""
        if self.name is not None:
            return self.name
        if self.named_set is not None:
            return self.named_set
        from pathlib import Path

        base = Path(self.source).expanduser().resolve().name or "data"
        return re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-.") or "data"


def split_classes(n_classes: int, own: OwnData) -> tuple[int, int]:
    """(first task size, increment) of the protocol on `n_classes` classes; TaskSplitError when they do not split."""
    if own.tasks is not None:
        if own.tasks > n_classes or n_classes % own.tasks:
            divisors = [d for d in range(1, n_classes + 1) if n_classes % d == 0]
            raise TaskSplitError(
                f"{n_classes} classes do not split into tasks={own.tasks} equal tasks; give tasks among {divisors}, "
                "or increment=K with first_task=B such that the classes after the first task split by K"
            )
        size = n_classes // own.tasks
        return size, size
    increment = own.increment
    first = own.first_task if own.first_task is not None else increment
    rest = n_classes - first
    if first > n_classes or rest < 0 or rest % increment:
        raise TaskSplitError(
            f"{n_classes} classes do not split into a first task of {first} and tasks of {increment} "
            f"({rest} classes after the first task); choose first_task and increment so that "
            f"{n_classes} - first_task is a multiple of increment"
        )
    return first, increment


def default_class_names(folders: tuple[str, ...]) -> tuple[str, ...]:
    """Folder names as prompt words: '_' and '-' read as spaces ('maple_tree' -> 'maple tree')."""
    return tuple(re.sub(r"[_-]+", " ", f).strip() or f for f in folders)


def own_class_order(own: OwnData, folders: tuple[str, ...], seed: int) -> list[int]:
    """The class order (labels) of a run: seeded by the run's seed, sorted, or read from a file."""
    if own.class_order == "seeded":
        order = np.arange(len(folders), dtype=np.int64)
        np.random.Generator(np.random.PCG64(2024 + seed)).shuffle(order)
        return order.tolist()
    if own.class_order == "sorted":
        return list(range(len(folders)))
    return read_class_order(own.class_order, folders)
