"""Benchmarks and experiments shared by the NSP² and DMNSP presets.

An `Experiment` bundles a benchmark's data (a function of the seed, since NSP²'s class order
depends on it), the run settings and the methods to compare, each built fresh per seed. Chapters
and the command line fill one from a few strings:

    nsp2_experiment("paper", "vit", "cifar100-10s", device="cuda")
    dmnsp_experiment("tiny")

Every paper preset runs on all ten paper protocols (each method with the recipe its paper would use
there: the tables in nscl.presets.nsp2 and nscl.presets.dmnsp); the tiny protocols that mirror their
shapes, and which mirrors which, are in nscl.presets.protocols.
"""

from __future__ import annotations

import json
import numbers
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Literal, Sequence

import pandas as pd

from nscl.data.continual import ContinualData
from nscl.data.datasets import load_dataset
from nscl.data.scenario import Scenario, load_class_order
from nscl.methods.base import ContinualMethod
from nscl.paths import repo_data_dir
from nscl.presets.protocols import TINY_POOL, TINY_SHAPES, tiny_benchmark_id
from nscl.run import RunConfig, RunResult, run_continual
from nscl.sweeps import compare, metrics_frame, slug

__all__ = ["Benchmark", "BENCHMARKS", "Experiment", "load_benchmark", "benchmark_scenario", "reference_results",
           "PRESETS", "check_preset", "UnknownBenchmarkError", "check_seeds", "merge_metrics_csv"]

PRESETS = ("tiny", "paper")


@dataclass(frozen=True)
class Benchmark:
    id: str
    dataset: str
    n_classes: int
    initial_increment: int
    increment: int
    class_order: str           # "seeded": NSP²'s shuffle by numpy PCG64(2024 + seed); "shapes100_novel": the tiny
    #                            pool (nscl.models.tiny.NOVEL_CLASSES); else a data/class_orders file
    options: tuple[tuple[str, object], ...] = ()   # extra load_dataset options, e.g. (("background", "tinted"),)

    def __post_init__(self) -> None:
        # a first task may be larger than the increments (B100 Inc10); the rest must split evenly
        rest = self.n_classes - self.initial_increment
        if not 0 < self.initial_increment <= self.n_classes or self.increment <= 0 or rest % self.increment:
            raise ValueError(f"benchmark {self.id!r}: {self.n_classes} classes do not split into a first task of "
                             f"{self.initial_increment} and tasks of {self.increment}")

    @property
    def n_tasks(self) -> int:
        return 1 + (self.n_classes - self.initial_increment) // self.increment

    @property
    def task_sizes(self) -> tuple[int, ...]:
        """Classes per task, first task first: (100, 10, ..., 10) for B100 Inc10."""
        return (self.initial_increment,) + (self.increment,) * (self.n_tasks - 1)


class UnknownBenchmarkError(ValueError, KeyError):
    """A benchmark id that is not in BENCHMARKS (a ValueError; also a KeyError for old `except KeyError`)."""

    def __str__(self) -> str:   # KeyError would print the message's repr
        return str(self.args[0]) if self.args else ""


class _BenchmarkTable(dict):
    """BENCHMARKS: `BENCHMARKS[id]` with an unknown id lists the valid ids (not a bare KeyError)."""

    def __missing__(self, key):
        raise UnknownBenchmarkError(f"unknown benchmark {key!r}; choose one of {sorted(self)}")


BENCHMARKS: dict[str, Benchmark] = _BenchmarkTable({b.id: b for b in [
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
    # (nscl.presets.protocols), on grey backgrounds (tiny NSP²; shapes100-10s: 10 tasks of 5) and
    # tinted ones: a domain shift from the tiny CLIP's pretraining images, so that adapters have
    # something to learn (as CLIP on 32 px CIFAR); tiny DMNSP's (shapes100-tinted-10s)
    *[Benchmark(tiny_benchmark_id(shape.name, background), "shapes100", TINY_POOL, shape.initial_increment,
                shape.increment, "shapes100_novel", () if background == "grey" else (("background", "tinted"),))
      for background in ("grey", "tinted") for shape in TINY_SHAPES.values()],
]})


def _benchmark(benchmark_id: str) -> Benchmark:
    if not isinstance(benchmark_id, str) or benchmark_id not in BENCHMARKS:
        raise UnknownBenchmarkError(f"unknown benchmark {benchmark_id!r}; choose one of {sorted(BENCHMARKS)}")
    return BENCHMARKS[benchmark_id]


def check_seeds(seeds, name: str = "seeds") -> tuple[int, ...]:
    """`seeds` as a tuple of ints, or a ValueError naming `name` (a bare int or a string is not a list)."""
    values = seeds.tolist() if hasattr(seeds, "tolist") else seeds   # numpy arrays
    if not isinstance(values, (list, tuple, range)):
        raise ValueError(f"{name}={seeds!r}: seeds must be a list of ints, e.g. [0] or [0, 1, 2]")
    values = list(values)
    bad = [s for s in values if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 0]
    if bad or not values:
        raise ValueError(f"{name}={seeds!r}: seeds must be a non-empty list of ints >= 0, e.g. [0] or [0, 1, 2]"
                         + (f" ({bad[:3]} are not)" if bad else ""))
    if len(set(values)) != len(values):
        raise ValueError(f"{name}={seeds!r}: a seed is listed twice")
    return tuple(int(s) for s in values)


def merge_metrics_csv(path: Path, frame: pd.DataFrame, keys: Sequence[str] = ("method", "seed"),
                      existing: pd.DataFrame | None = None) -> pd.DataFrame:
    """Write `frame` into the CSV at `path`, keeping the rows of other (method, seed) already there
    (or in `existing`, when given: the file's earlier contents)."""
    path = Path(path)
    if existing is None and path.exists() and path.stat().st_size:
        existing = pd.read_csv(path)
    if existing is not None:
        old = existing
        if all(k in old.columns for k in keys) and len(frame):
            fresh = set(map(tuple, frame[list(keys)].astype(str).to_numpy()))
            old = old[[tuple(row) not in fresh for row in old[list(keys)].astype(str).to_numpy()]]
        frame = pd.concat([old, frame], ignore_index=True) if len(old) else frame
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    frame.to_csv(tmp, index=False)
    tmp.replace(path)
    return frame


def load_benchmark(benchmark_id: str, seed: int = 0, root: str | Path | None = None, download: bool = False,
                   shapes_train_per_class: int = 100, shapes_test_per_class: int = 50) -> ContinualData:
    """Train/test data of a benchmark with its scenario (class order by the benchmark's rule)."""
    bench = _benchmark(benchmark_id)
    options = dict(bench.options)
    if bench.dataset == "shapes100":
        from nscl.models.tiny import TINY_IMAGE_SIZE

        # seed 1 for the images: other samples than the pretraining set (which only has base classes anyway)
        train = load_dataset("shapes100", "train", n_per_class=shapes_train_per_class, image_size=TINY_IMAGE_SIZE,
                             seed=1, **options)
        test = load_dataset("shapes100", "test", n_per_class=shapes_test_per_class, image_size=TINY_IMAGE_SIZE,
                            seed=1, **options)
    else:
        if bench.dataset == "cifar100":
            options["download"] = download
        train = load_dataset(bench.dataset, "train", root=root, **options)
        test = load_dataset(bench.dataset, "test", root=root, **options)
    return ContinualData(train, test, benchmark_scenario(benchmark_id, seed))


def benchmark_scenario(benchmark_id: str, seed: int = 0) -> Scenario:
    """A benchmark's class order cut into its tasks, without loading any data."""
    bench = _benchmark(benchmark_id)
    if bench.dataset == "shapes100":
        from nscl.models.tiny import NOVEL_CLASSES

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

    def run_one(self, name: str, seed: int, run_dir: str | Path | None = None,
                data: ContinualData | None = None) -> RunResult:
        """One method and seed (resumable in run_dir, which also gets run.json: benchmark, method, seed)."""
        if name not in self.methods:
            raise ValueError(f"unknown method {name!r}; this experiment has {list(self.methods)}")
        config = replace(self.run, **self.run_overrides.get(name, {}), seed=seed)
        data = self.data(seed) if data is None else data
        if run_dir is not None:
            self._write_labels(Path(run_dir), name, seed)
        return run_continual(self.methods[name](seed), data, config, run_dir=run_dir)

    def _write_labels(self, run_dir: Path, name: str, seed: int) -> None:
        """run.json: what a run directory holds (benchmark, method label, seed, recipe), for reports."""
        run_dir.mkdir(parents=True, exist_ok=True)
        if not (run_dir / "run.json").exists():
            labels = {"benchmark": self.benchmark.id, "method": name, "seed": int(seed), **self.notes}
            (run_dir / "run.json").write_text(json.dumps(labels, indent=2))

    def run_all(self, seeds: Sequence[int] | None = None, run_root: str | Path | None = None,
                only: Sequence[str] | None = None) -> tuple[pd.DataFrame, dict[tuple[str, int], RunResult]]:
        """Run the methods (or `only` those) for every seed; checkpointed under run_root/<method>/seed<k>.

        run_root/metrics.csv gathers one row per (method, seed) across calls: a call replaces the rows of
        the runs it made and keeps the others (a Seq-only call keeps the NSP² rows).
        """
        seeds = self.default_seeds if seeds is None else check_seeds(seeds)
        if isinstance(only, str):
            only = [only]
        names = list(self.methods) if only is None else list(only)
        unknown = [n for n in names if n not in self.methods]
        if unknown:
            raise ValueError(f"unknown methods {unknown}; this experiment has {list(self.methods)}")
        cache: dict[int, ContinualData] = {}

        def data_for(seed: int) -> ContinualData:
            if seed not in cache:
                cache[seed] = self.data(seed)
            return cache[seed]

        results: dict[tuple[str, int], RunResult] = {}
        csv = None if run_root is None else Path(run_root) / "metrics.csv"
        for name in names:
            config = replace(self.run, **self.run_overrides.get(name, {}))
            for seed in seeds:
                if run_root is not None:
                    self._write_labels(Path(run_root) / slug(name) / f"seed{seed}", name, seed)
                # compare writes run_root/metrics.csv with this run only: what was there is read first and merged
                before = pd.read_csv(csv) if csv is not None and csv.exists() and csv.stat().st_size else None
                _, res = compare({name: self.methods[name]}, data_for, config, [seed], run_root)
                results.update(res)
                if csv is not None:   # after every run: a crash later keeps what is done
                    merge_metrics_csv(csv, metrics_frame(res), existing=before)
        return metrics_frame(results), results

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
