"""Benchmarks and experiments shared by the NSP² and DMNSP presets.

An `Experiment` bundles a benchmark's data (a function of the seed, since NSP²'s class order
depends on it), the run settings and the methods to compare, each built fresh per seed. Chapters
and the command line fill one from a few strings:

    nsp2_experiment("paper", "vit", "cifar100-10s", device="cuda")
    dmnsp_experiment("tiny")
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Literal, Sequence

import pandas as pd

from nscl.data.continual import ContinualData
from nscl.data.datasets import load_dataset
from nscl.data.scenario import Scenario, load_class_order
from nscl.methods.base import ContinualMethod
from nscl.paths import repo_data_dir
from nscl.run import RunConfig, RunResult
from nscl.sweeps import compare

__all__ = ["Benchmark", "BENCHMARKS", "Experiment", "load_benchmark", "reference_results", "PRESETS", "check_preset"]

PRESETS = ("tiny", "paper")


@dataclass(frozen=True)
class Benchmark:
    id: str
    dataset: str
    n_classes: int
    initial_increment: int
    increment: int
    class_order: str           # "seeded": NSP²'s shuffle by numpy PCG64(2024 + seed); else a data/class_orders file
    options: tuple[tuple[str, object], ...] = ()   # extra load_dataset options, e.g. (("background", "tinted"),)

    @property
    def n_tasks(self) -> int:
        return 1 + (self.n_classes - self.initial_increment) // self.increment


BENCHMARKS: dict[str, Benchmark] = {b.id: b for b in [
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
    # the tiny preset: the 50 novel shapes100 classes (unseen in pretraining), 10 tasks of 5
    Benchmark("shapes100-10s", "shapes100", 50, 5, 5, "shapes100_novel"),
    # the same classes on tinted backgrounds: a domain shift from the tiny CLIP's pretraining images,
    # so that adapters have something to learn (as CLIP on 32 px CIFAR); the tiny DMNSP benchmark
    Benchmark("shapes100-tinted-10s", "shapes100", 50, 5, 5, "shapes100_novel", (("background", "tinted"),)),
]}


def _benchmark(benchmark_id: str) -> Benchmark:
    if benchmark_id not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark_id!r}; choose one of {sorted(BENCHMARKS)}")
    return BENCHMARKS[benchmark_id]


def load_benchmark(benchmark_id: str, seed: int = 0, root: str | Path | None = None, download: bool = False,
                   shapes_train_per_class: int = 100, shapes_test_per_class: int = 50) -> ContinualData:
    """Train/test data of a benchmark with its scenario (class order by the benchmark's rule)."""
    bench = _benchmark(benchmark_id)
    options = dict(bench.options)
    if bench.dataset == "shapes100":
        from nscl.models.tiny import NOVEL_CLASSES, TINY_IMAGE_SIZE

        # seed 1 for the images: other samples than the pretraining set (which only has base classes anyway)
        train = load_dataset("shapes100", "train", n_per_class=shapes_train_per_class, image_size=TINY_IMAGE_SIZE,
                             seed=1, **options)
        test = load_dataset("shapes100", "test", n_per_class=shapes_test_per_class, image_size=TINY_IMAGE_SIZE,
                            seed=1, **options)
        order = list(NOVEL_CLASSES)
    else:
        if bench.dataset == "cifar100":
            options["download"] = download
        train = load_dataset(bench.dataset, "train", root=root, **options)
        test = load_dataset(bench.dataset, "test", root=root, **options)
        if bench.class_order == "seeded":
            order = Scenario.seeded(bench.n_classes, 1, 2024 + seed).class_order
        else:
            order = load_class_order(bench.class_order)
    return ContinualData(train, test, Scenario(tuple(order), bench.initial_increment, bench.increment))


def reference_results(benchmark_id: str, paper: str | None = None) -> pd.DataFrame:
    """The papers' reported numbers for a benchmark (data/reference_results.csv, with sources)."""
    frame = pd.read_csv(repo_data_dir() / "reference_results.csv")
    frame = frame[frame.benchmark == benchmark_id]
    return frame if paper is None else frame[frame.paper == paper]


@dataclass
class Experiment:
    """A benchmark, its run settings and the methods to compare (factories of the seed)."""

    benchmark: Benchmark
    data: Callable[[int], ContinualData]
    run: RunConfig
    methods: dict[str, Callable[[int], ContinualMethod]]
    run_overrides: dict[str, dict] = field(default_factory=dict)   # per method, e.g. {"joint": {"joint": True}}
    notes: dict[str, str] = field(default_factory=dict)
    default_seeds: tuple[int, ...] = (0,)   # the recipe's own seeds (e.g. DMNSP's official 32)

    def run_all(self, seeds: Sequence[int] | None = None, run_root: str | Path | None = None,
                only: Sequence[str] | None = None) -> tuple[pd.DataFrame, dict[tuple[str, int], RunResult]]:
        """Run the methods (or `only` those) for every seed; checkpointed under run_root if given."""
        seeds = self.default_seeds if seeds is None else seeds
        names = list(self.methods) if only is None else list(only)
        unknown = [n for n in names if n not in self.methods]
        if unknown:
            raise ValueError(f"unknown methods {unknown}; this experiment has {list(self.methods)}")
        cache: dict[int, ContinualData] = {}

        def data_for(seed: int) -> ContinualData:
            if seed not in cache:
                cache[seed] = self.data(seed)
            return cache[seed]

        frames, results = [], {}
        for name in names:
            config = replace(self.run, **self.run_overrides.get(name, {}))
            frame, res = compare({name: self.methods[name]}, data_for, config, seeds, run_root)
            frames.append(frame)
            results.update(res)
        frame = pd.concat(frames, ignore_index=True)
        if run_root is not None:
            frame.to_csv(Path(run_root) / "metrics.csv", index=False)
        return frame, results

    def with_run(self, **changes) -> "Experiment":
        """Override run settings (epochs, max_tasks, progress...); None keeps the recipe's value."""
        self.run = replace(self.run, **{k: v for k, v in changes.items() if v is not None})
        return self

    def reference(self) -> pd.DataFrame:
        return reference_results(self.benchmark.id)

    def reference_text(self) -> str:
        """The papers' numbers for this benchmark as a printable table, or why there are none."""
        frame = self.reference()
        if not len(frame):
            return f"no published numbers for {self.benchmark.id} (the tiny benchmark is ours)"
        return frame[["method", "metric", "value", "source"]].to_string(index=False)


def check_preset(preset: str) -> Literal["tiny", "paper"]:
    if preset not in PRESETS:
        raise ValueError(f"preset={preset!r}; choose 'tiny' (CPU, minutes) or 'paper' (the papers' settings, GPU)")
    return preset  # type: ignore[return-value]
