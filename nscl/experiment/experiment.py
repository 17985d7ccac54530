"""Experiments: a benchmark, its run settings and the methods to compare, run over seeds.

An `Experiment` bundles a benchmark's data (a function of the seed, since NSP²'s class order
depends on it), the run settings and the methods to compare, each built fresh per seed. Chapters
and the command line fill one from a few strings:

    nsp2_experiment("paper", "vit", "cifar100-10s", device="cuda")
    dmnsp_experiment("tiny")

Every paper preset runs on every paper protocol (each method with the recipe its paper would use
there: the tables in nscl.nsp2.recipe and nscl.dmnsp.recipe); the benchmarks are in nscl.data.benchmarks,
the tiny protocols that mirror the papers' shapes, and which mirrors which, in nscl.data.protocols.
"""

from __future__ import annotations

import json
import numbers
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Literal, Mapping, Sequence

import pandas as pd

from nscl.data.benchmarks import Benchmark, as_benchmark, reference_results
from nscl.data.continual import ContinualData
from nscl.experiment.result import RunResult, metrics_frame, slug
from nscl.experiment.run import RunConfig, run_continual
from nscl.files import atomic_write_text
from nscl.methods.base import ContinualMethod

__all__ = ["Experiment", "compare", "PRESETS", "check_preset", "check_seeds", "check_tiny", "merge_metrics_csv"]

PRESETS = ("tiny", "paper")


def check_seeds(seeds, name: str = "seeds") -> tuple[int, ...]:
    """`seeds` as a tuple of ints, or a ValueError naming `name` (a bare int or a string is not a list)."""
    values = seeds.tolist() if hasattr(seeds, "tolist") else seeds  # numpy arrays
    if not isinstance(values, (list, tuple, range)):
        raise ValueError(f"{name}={seeds!r}: seeds must be a list of ints, e.g. [0] or [0, 1, 2]")
    values = list(values)
    bad = [s for s in values if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 0]
    if bad or not values:
        raise ValueError(
            f"{name}={seeds!r}: seeds must be a non-empty list of ints >= 0, e.g. [0] or [0, 1, 2]"
            + (f" ({bad[:3]} are not)" if bad else "")
        )
    if len(set(values)) != len(values):
        raise ValueError(f"{name}={seeds!r}: a seed is listed twice")
    return tuple(int(s) for s in values)


def merge_metrics_csv(
    path: Path, frame: pd.DataFrame, keys: Sequence[str] = ("method", "seed"), existing: pd.DataFrame | None = None
) -> pd.DataFrame:
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
    text = frame.to_csv(index=False)
    if not (path.is_file() and path.read_text() == text):  # a finished run read back writes nothing (read-only roots)
        atomic_write_text(path, text)
    return frame


@dataclass
class Experiment:
    """A benchmark, its run settings and the methods to compare (factories of the seed)."""

    benchmark: Benchmark
    data: Callable[[int], ContinualData]
    run: RunConfig
    methods: dict[str, Callable[[int], ContinualMethod]]
    run_overrides: dict[str, dict] = field(default_factory=dict)  # per method, e.g. {"joint": {"joint": True}}
    notes: dict[str, str] = field(default_factory=dict)
    default_seeds: tuple[int, ...] = (0,)  # the recipe's own seeds (e.g. DMNSP's official 32)

    def run_one(
        self, name: str, seed: int, run_dir: str | Path | None = None, data: ContinualData | None = None
    ) -> RunResult:
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

    def run_all(
        self, seeds: Sequence[int] | None = None, run_root: str | Path | None = None, only: Sequence[str] | None = None
    ) -> tuple[pd.DataFrame, dict[tuple[str, int], RunResult]]:
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
                if csv is not None:  # after every run: a crash later keeps what is done
                    merge_metrics_csv(csv, metrics_frame(res), existing=before)
        return metrics_frame(results), results

    def with_run(self, **changes) -> Experiment:
        """Override run settings (epochs, max_tasks, progress...); None keeps the recipe's value."""
        self.run = replace(self.run, **{k: v for k, v in changes.items() if v is not None})
        return self

    def reference(self) -> pd.DataFrame:
        return reference_results(self.benchmark.id)

    def reference_text(self) -> str:
        """The papers' numbers for this benchmark as a printable table, or why there are none."""
        frame = self.reference()
        if not len(frame):
            whose = "your own data" if self.benchmark.own is not None else "the tiny benchmark is ours"
            return f"no published numbers for {self.benchmark.id} ({whose})"
        return frame[["method", "metric", "value", "source"]].to_string(index=False)


def check_tiny(benchmark: str | Benchmark) -> None:
    """The tiny preset runs on shapes100 (its backbones' pretraining) and on your own data (a plumbing check)."""
    bench = as_benchmark(benchmark)
    if bench.dataset != "shapes100" and bench.own is None:
        raise ValueError(
            f"the tiny preset runs on shapes100 benchmarks (its backbones were pretrained there) and on your own "
            f"data; got {bench.id!r}: use preset='paper'"
        )


def check_preset(preset: str) -> Literal["tiny", "paper"]:
    if preset not in PRESETS:
        raise ValueError(f"preset={preset!r}; choose 'tiny' (CPU, minutes) or 'paper' (the papers' settings, GPU)")
    return preset  # type: ignore[return-value]


def compare(
    methods: Mapping[str, Callable[[int], ContinualMethod]],
    data: ContinualData | Callable[[int], ContinualData],
    config: RunConfig,
    seeds: Sequence[int] = (0,),
    run_root: str | Path | None = None,
) -> tuple[pd.DataFrame, dict[tuple[str, int], RunResult]]:
    """Run every `methods[name](seed)` for every seed; results under run_root/<name>/seed<k> (resumable).

    data: one continual problem, or a function of the seed (when the class order depends on it).
    """
    results: dict[tuple[str, int], RunResult] = {}
    for name, make in methods.items():
        for seed in seeds:
            run_dir = None if run_root is None else Path(run_root) / slug(name) / f"seed{seed}"
            problem = data(seed) if callable(data) else data
            results[(name, seed)] = run_continual(make(seed), problem, replace(config, seed=seed), run_dir=run_dir)
    frame = metrics_frame(results)
    if run_root is not None:
        Path(run_root).mkdir(parents=True, exist_ok=True)
        frame.to_csv(Path(run_root) / "metrics.csv", index=False)
    return frame, results
