"""The benchmark table: every benchmark's data set, class order and task split, and its loader."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from nscl.data.continual import ContinualData
from nscl.data.datasets import load_dataset
from nscl.data.domains import with_task_domains
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
            Benchmark("cifar100-10-10", "cifar100", 100, 10, 10, "cifar100_dmnsp"),
            Benchmark("cifar100-5-5", "cifar100", 100, 5, 5, "cifar100_dmnsp"),
            Benchmark("cifar100-2-2", "cifar100", 100, 2, 2, "cifar100_dmnsp"),
            Benchmark("tinyimagenet-100-5", "tinyimagenet", 200, 100, 5, "tinyimagenet_dmnsp"),
            Benchmark("tinyimagenet-100-10", "tinyimagenet", 200, 100, 10, "tinyimagenet_dmnsp"),
            Benchmark("tinyimagenet-100-20", "tinyimagenet", 200, 100, 20, "tinyimagenet_dmnsp"),
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


def _benchmark(benchmark_id: str) -> Benchmark:
    if not isinstance(benchmark_id, str) or benchmark_id not in BENCHMARKS:
        raise UnknownBenchmarkError(f"unknown benchmark {benchmark_id!r}; choose one of {sorted(BENCHMARKS)}")
    return BENCHMARKS[benchmark_id]


def load_benchmark(
    benchmark_id: str,
    seed: int = 0,
    root: str | Path | None = None,
    download: bool = False,
    shapes_train_per_class: int = 100,
    shapes_test_per_class: int = 50,
) -> ContinualData:
    """Train/test data of a benchmark with its scenario (class order by the benchmark's rule)."""
    bench = _benchmark(benchmark_id)
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


def benchmark_scenario(benchmark_id: str, seed: int = 0) -> Scenario:
    """A benchmark's class order cut into its tasks, without loading any data."""
    bench = _benchmark(benchmark_id)
    if bench.dataset == "shapes100":
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
