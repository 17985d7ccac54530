"""The benchmark table: every benchmark's data set, class order and task split, and its loader."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import torch

from nscl.data.base import FileImageSet
from nscl.data.continual import ContinualData
from nscl.data.datasets import load_dataset
from nscl.data.domains import with_task_domains
from nscl.data.folders import MixedImageModesWarning, check_images, read_class_names, scan_image_folder
from nscl.data.official import class_name_table
from nscl.data.own import CIFAR10_CLASSES, OwnData, default_class_names, own_class_order, split_classes
from nscl.data.protocols import (
    NOVEL_CLASSES,
    TINY_FAMILIES,
    TINY_IMAGE_SIZE,
    TINY_POOL,
    TINY_SHAPES,
    tiny_benchmark_id,
)
from nscl.data.scenario import Scenario, load_class_order
from nscl.paths import repo_data_dir

__all__ = [
    "Benchmark",
    "BENCHMARKS",
    "as_benchmark",
    "own_benchmark",
    "own_data_summary",
    "UnknownBenchmarkError",
    "load_benchmark",
    "benchmark_scenario",
    "reference_results",
]


@dataclass(frozen=True)
class Benchmark:
    id: str
    dataset: str
    n_classes: int
    initial_increment: int
    increment: int
    class_order: str  # "seeded": NSP²'s shuffle by numpy PCG64(2024 + seed); "shapes100_novel": the tiny
    #                            pool (nscl.data.protocols.NOVEL_CLASSES); else a data/class_orders file
    options: tuple[tuple[str, object], ...] = ()  # extra load_dataset options, e.g. (("background", "tinted"),)
    own: OwnData | None = None  # your own data (nscl.data.own): dataset 'folder', 'cifar10' or 'cifar100'

    def __post_init__(self) -> None:
        # a first task may be larger than the increments (B100 Inc10); the rest must split evenly
        rest = self.n_classes - self.initial_increment
        if not 0 < self.initial_increment <= self.n_classes or self.increment <= 0 or rest % self.increment:
            raise ValueError(
                f"benchmark {self.id!r}: {self.n_classes} classes do not split into a first task of "
                f"{self.initial_increment} and tasks of {self.increment}"
            )

    @property
    def n_tasks(self) -> int:
        return 1 + (self.n_classes - self.initial_increment) // self.increment

    @property
    def task_sizes(self) -> tuple[int, ...]:
        """Classes per task, first task first: (100, 10, ..., 10) for B100 Inc10."""
        return (self.initial_increment,) + (self.increment,) * (self.n_tasks - 1)


class UnknownBenchmarkError(ValueError, KeyError):
    """A benchmark id that is not in BENCHMARKS (a ValueError; also a KeyError for old `except KeyError`)."""

    def __str__(self) -> str:  # KeyError would print the message's repr
        return str(self.args[0]) if self.args else ""


class _BenchmarkTable(dict):
    """BENCHMARKS: `BENCHMARKS[id]` with an unknown id lists the valid ids (not a bare KeyError)."""

    def __missing__(self, key):
        raise UnknownBenchmarkError(f"unknown benchmark {key!r}; choose one of {sorted(self)}")


BENCHMARKS: dict[str, Benchmark] = _BenchmarkTable(
    {
        b.id: b
        for b in [
            # NSP²'s protocols name CIFAR-100 classes as its code does ("aquarium fish"); DMNSP's keep torchvision's
            Benchmark("cifar100-10s", "cifar100", 100, 10, 10, "seeded", (("class_names", "nsp2"),)),
            Benchmark("cifar100-20s", "cifar100", 100, 5, 5, "seeded", (("class_names", "nsp2"),)),
            Benchmark("imagenet-r-10s", "imagenet_r", 200, 20, 20, "seeded"),
            Benchmark("domainnet-10s", "domainnet", 200, 20, 20, "seeded"),
            # NSP²'s long sequences (Lu et al. 2024, Table 4): the same data and class-order rule, 50 or 100 tasks
            Benchmark("cifar100-50s", "cifar100", 100, 2, 2, "seeded", (("class_names", "nsp2"),)),
            Benchmark("imagenet-r-50s", "imagenet_r", 200, 4, 4, "seeded"),
            Benchmark("imagenet-r-100s", "imagenet_r", 200, 2, 2, "seeded"),
            Benchmark("domainnet-50s", "domainnet", 200, 4, 4, "seeded"),
            Benchmark("domainnet-100s", "domainnet", 200, 2, 2, "seeded"),
            Benchmark("cifar100-10-10", "cifar100", 100, 10, 10, "cifar100_dmnsp"),
            Benchmark("cifar100-5-5", "cifar100", 100, 5, 5, "cifar100_dmnsp"),
            Benchmark("cifar100-2-2", "cifar100", 100, 2, 2, "cifar100_dmnsp"),
            Benchmark("tinyimagenet-100-5", "tinyimagenet", 200, 100, 5, "tinyimagenet_dmnsp"),
            Benchmark("tinyimagenet-100-10", "tinyimagenet", 200, 100, 10, "tinyimagenet_dmnsp"),
            Benchmark("tinyimagenet-100-20", "tinyimagenet", 200, 100, 20, "tinyimagenet_dmnsp"),
            # DMNSP on ImageNet-R as its lineage runs it (RL-VIG/LibContinual config/dmnsp_imgnr.yaml: B10 Inc10, 20
            # tasks); NSP²'s split lists and seeded order (LibContinual draws its own, not published as a file)
            Benchmark("imagenet-r-10-10", "imagenet_r", 200, 10, 10, "seeded"),
            # the tiny preset: the 50 novel shapes100 classes (unseen in pretraining) in each tiny shape
            # (nscl.data.protocols), on grey backgrounds (tiny NSP²; shapes100-10s: 10 tasks of 5) and
            # tinted ones: a domain shift from the tiny CLIP's pretraining images, so that adapters have
            # something to learn (as CLIP on 32 px CIFAR); tiny DMNSP's (shapes100-tinted-10s); and grey ones
            # with a stripe texture per task (nscl.data.domains), whose tasks need different directions
            *[
                Benchmark(
                    tiny_benchmark_id(shape.name, background),
                    "shapes100",
                    TINY_POOL,
                    shape.initial_increment,
                    shape.increment,
                    "shapes100_novel",
                    {"grey": (), "tinted": (("background", "tinted"),), "domains": (("task_domains", "stripes"),)}[
                        background
                    ],
                )
                for background in TINY_FAMILIES
                for shape in TINY_SHAPES.values()
            ],
        ]
    }
)


def as_benchmark(benchmark: str | Benchmark) -> Benchmark:
    """A Benchmark from an id of the table, or the Benchmark itself (your own data's, `own_benchmark`)."""
    if isinstance(benchmark, Benchmark):
        return benchmark
    if not isinstance(benchmark, str) or benchmark not in BENCHMARKS:
        raise UnknownBenchmarkError(f"unknown benchmark {benchmark!r}; choose one of {sorted(BENCHMARKS)}")
    return BENCHMARKS[benchmark]


def _own_folders(own: OwnData) -> tuple[str, ...]:
    """The classes of your own data as named in files: folder names, or a named set's class names."""
    if own.named_set == "cifar10":
        return CIFAR10_CLASSES
    if own.named_set == "cifar100":
        return tuple(name for _, name in class_name_table("cifar100", "dmnsp"))
    return scan_image_folder(own.source, own.test_fraction, own.split_seed).classes


def own_benchmark(own: OwnData) -> Benchmark:
    """The Benchmark of your own data: its classes counted, protocol, class-order and names files checked.

    A folder is listed (not decoded: `load_benchmark` decodes every image once); nscl.data.folders names
    each way it can be wrong."""
    folders = _own_folders(own)
    first, increment = split_classes(len(folders), own)
    if own.class_order not in ("seeded", "sorted"):
        own_class_order(own, folders, 0)  # a bad class-order file fails now, not at load
    if own.class_names is not None:
        read_class_names(own.class_names, folders)
    equal = first == increment
    shape = f"{len(folders) // increment}s" if equal else f"{first}-{increment}"
    return Benchmark(
        f"own-{own.stem}-{shape}",
        own.named_set or "folder",
        len(folders),
        first,
        increment,
        own.class_order if own.class_order in ("seeded", "sorted") else "file",
        own=own,
    )


def own_data_summary(bench: Benchmark, check: bool = True) -> str:
    """What your own data hold, in a few lines; `check` decodes every image of a folder once (named errors)."""
    own = bench.own
    if own is None:
        raise ValueError(f"benchmark {bench.id!r} is not your own data")
    sizes = f"{bench.n_tasks} tasks: {bench.initial_increment} classes first, then {bench.increment} per task"
    if own.named_set is not None:
        return f"{bench.id}: torchvision's {own.named_set}, {bench.n_classes} classes, {sizes}"
    scan = scan_image_folder(own.source, own.test_fraction, own.split_seed)
    layout = (
        "train/ and test/" if scan.layout == "train-test" else f"one folder, {own.test_fraction:.0%} held out per class"
    )
    lines = [
        f"{bench.id}: {scan.root} ({layout}), {bench.n_classes} classes, {sizes}",
        f"images: {len(scan.train)} train, {len(scan.test)} test; per class {min(scan.counts('train'))}-"
        f"{max(scan.counts('train'))} train",
    ]
    if check:
        with warnings.catch_warnings():  # the line below says what was converted
            warnings.simplefilter("ignore", MixedImageModesWarning)
            lines.append("checked: " + check_images([p for _, p in scan.train + scan.test]).summary())
    return "\n".join(lines)


def _load_own(bench: Benchmark, seed: int, root: str | Path | None, download: bool) -> ContinualData:
    own = bench.own
    if own.named_set is not None:
        options = {"class_names": "dmnsp"} if own.named_set == "cifar100" else {}
        train = load_dataset(own.named_set, "train", root=root, download=download, **options)
        test = load_dataset(own.named_set, "test", root=root, **options)
        folders = _own_folders(own)
    else:
        scan = scan_image_folder(own.source, own.test_fraction, own.split_seed)
        folders = scan.classes
        if own.check_images:
            check_images([p for _, p in scan.train + scan.test], progress=len(scan.train) > 5000)
        names = default_class_names(folders)
        train, test = (
            FileImageSet(
                own.stem, tuple(p for _, p in rows), torch.as_tensor([y for y, _ in rows]), names, own.storage_size
            )
            for rows in (scan.train, scan.test)
        )
    if own.class_names is not None:
        names = read_class_names(own.class_names, folders)
        train, test = (replace(data, classes=names) for data in (train, test))
    scenario = Scenario(tuple(own_class_order(own, folders, seed)), bench.initial_increment, bench.increment)
    return ContinualData(train, test, scenario)


def load_benchmark(
    benchmark_id: str | Benchmark,
    seed: int = 0,
    root: str | Path | None = None,
    download: bool = False,
    shapes_train_per_class: int = 100,
    shapes_test_per_class: int = 50,
) -> ContinualData:
    """Train/test data of a benchmark (an id, or your own data's Benchmark) with its scenario."""
    bench = as_benchmark(benchmark_id)
    if bench.own is not None:
        return _load_own(bench, seed, root, download)
    options = dict(bench.options)
    scenario = benchmark_scenario(benchmark_id, seed)
    task_domains = options.pop("task_domains", None)
    if bench.dataset == "shapes100":
        # seed 1 for the images: other samples than the pretraining set (which only has base classes anyway)
        train = load_dataset(
            "shapes100", "train", n_per_class=shapes_train_per_class, image_size=TINY_IMAGE_SIZE, seed=1, **options
        )
        test = load_dataset(
            "shapes100", "test", n_per_class=shapes_test_per_class, image_size=TINY_IMAGE_SIZE, seed=1, **options
        )
        if task_domains == "stripes":  # each task's classes carry its texture, in train and test alike
            train, test = with_task_domains(train, scenario), with_task_domains(test, scenario)
    else:
        if bench.dataset == "cifar100":
            options["download"] = download
        train = load_dataset(bench.dataset, "train", root=root, **options)
        test = load_dataset(bench.dataset, "test", root=root, **options)
    return ContinualData(train, test, scenario)


def benchmark_scenario(benchmark_id: str | Benchmark, seed: int = 0) -> Scenario:
    """A benchmark's class order cut into its tasks, without loading any data."""
    bench = as_benchmark(benchmark_id)
    if bench.own is not None:
        order = own_class_order(bench.own, _own_folders(bench.own), seed)
    elif bench.dataset == "shapes100":
        order = list(NOVEL_CLASSES)
    elif bench.class_order == "seeded":
        order = list(Scenario.seeded(bench.n_classes, 1, 2024 + seed).class_order)
    else:
        order = load_class_order(bench.class_order)
    return Scenario(tuple(order), bench.initial_increment, bench.increment)


def reference_results(benchmark_id: str, paper: str | None = None) -> pd.DataFrame:
    """The papers' reported numbers for a benchmark (data/reference_results.csv, with sources)."""
    frame = pd.read_csv(repo_data_dir() / "reference_results.csv")
    frame = frame[frame.benchmark == benchmark_id]
    return frame if paper is None else frame[frame.paper == paper]
