"""The tiny grid: NSP² and DMNSP, each beside its controls, on every tiny protocol, over seeds.

    python benchmarks/tiny_grid.py                        # seeds 0 1 2 (resumable) -> benchmarks/results/tiny_grid.csv
    python benchmarks/tiny_grid.py --seeds 0 --dry-run    # list the points, run nothing
    python benchmarks/tiny_grid.py --epochs 2             # the grid at 2 epochs per task (both methods)
    python benchmarks/tiny_grid.py --seeds 0 --epochs 1 --max-tasks 2 --run-root build/runs/grid_smoke \
        --out build/grid_smoke.csv                        # a smoke test of every point (minutes)

The tiny protocols mirror the papers' shapes (nscl.data.protocols): 5, 10 or 25 equal tasks and
a half-pool first task followed by 5 tasks of 5. Each method runs on its tiny recipe's background
(NSP² grey, DMNSP tinted) with its own epochs unless --epochs is given, beside:

* its Seq baseline (the same model trained without projection): what the projection buys;
* its frozen control (trained on the first task only; for DMNSP the text adapters keep training):
  whether the method beats not learning the visual side after task 1, the question the large-base
  protocol asks most;
* for DMNSP, zero-shot CLIP (evaluation only, seconds): the floor adapters start from.

The joint upper bounds are left out: they retrain on all data seen at every task.

Runs go through nscl.experiment.grid into run_root/<method>/<benchmark>/seed<k>/<label>/ (checkpoints, which
.gitignore keeps out of git, and the small accuracy.csv, tasks.csv, metrics.json, config.json and
run.json each run writes). A grid started again skips finished points and resumes the others. The
CSV has one row per (method, label, benchmark, seed) with every metric of the run's metrics.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Sequence

import pandas as pd

from nscl.data.protocols import LOOKALIKES, TINY_BACKGROUND, TINY_SHAPES, tiny_benchmark_id
from nscl.experiment.grid import SweepRun, expand, format_outcomes, sweep
from nscl.experiment.result import slug

RESULTS = Path(__file__).resolve().parent / "results"
# per method family: the experiment's methods the grid runs (ExperimentConfig.only short names)
GRID_METHODS: dict[str, tuple[str, ...]] = {
    "nsp2": ("Seq", "NSP2", "frozen"),
    "dmnsp": ("zero-shot", "Seq", "DMNSP", "frozen"),
}


def grid_points(
    methods: Sequence[str],
    shapes: Sequence[str],
    seeds: Sequence[int],
    run_root: Path,
    epochs: int | None = None,
    max_tasks: int | None = None,
) -> list[SweepRun]:
    """Every (method, tiny protocol, seed) as a validated sweep point, each method on its background."""
    points: list[SweepRun] = []
    for method in methods:
        benchmarks = [tiny_benchmark_id(shape, TINY_BACKGROUND[method]) for shape in shapes]
        points += expand(
            [method],
            benchmarks,
            seeds,
            run_root,
            preset="tiny",
            only=list(GRID_METHODS[method]),
            epochs=epochs,
            max_tasks=max_tasks,
            progress=False,
        )
    return points


def _shape_of(benchmark: str) -> str:
    return benchmark.removeprefix("shapes100-").removeprefix("tinted-")


def tidy_metrics(points: Sequence[SweepRun]) -> pd.DataFrame:
    """One row per finished run: method family, label, benchmark, shape, the paper protocols it mirrors,
    seed, the backbone weights it started from, tasks done and every number in the run's metrics.json."""
    rows = []
    for point in points:
        config = point.config
        shape = _shape_of(config.benchmark_id)
        mirrors = ";".join(p for p, a in LOOKALIKES.items() if a.shape == shape)
        for label in config.selected_methods():
            path = point.run_dir / slug(label) / "metrics.json"
            if not path.exists():
                continue
            metrics = json.loads(path.read_text())
            settings = json.loads((path.parent / "config.json").read_text())
            row = {
                "method": config.method,
                "label": label,
                "benchmark": config.benchmark_id,
                "shape": shape,
                "mirrors": mirrors,
                "seed": config.seeds[0],
                "backbone_weights": settings["backbone_weights"],
            }
            row.update({k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
            rows.append(row)
    return pd.DataFrame(rows)


def point_seconds(points: Sequence[SweepRun]) -> pd.DataFrame:
    """Wall time of each point as its status.json recorded it (0 for points skipped as done before)."""
    rows = []
    for point in points:
        try:
            status = json.loads((point.run_dir / "status.json").read_text())
        except (OSError, ValueError):
            status = {}
        rows.append(
            {
                "method": point.config.method,
                "benchmark": point.config.benchmark_id,
                "seed": point.config.seeds[0],
                "seconds": status.get("seconds"),
            }
        )
    return pd.DataFrame(rows)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=list(GRID_METHODS), choices=list(GRID_METHODS))
    parser.add_argument(
        "--shapes",
        nargs="+",
        default=list(TINY_SHAPES),
        choices=list(TINY_SHAPES),
        help="tiny protocol shapes (nscl.data.protocols)",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs per task for every point (default: each tiny recipe's: NSP² 5, DMNSP 10)",
    )
    parser.add_argument("--max-tasks", type=int, default=None, help="stop every run after this many tasks (smoke)")
    parser.add_argument("--run-root", type=Path, default=RESULTS / "tiny_grid")
    parser.add_argument("--out", type=Path, default=RESULTS / "tiny_grid.csv")
    parser.add_argument(
        "--backend",
        choices=("local", "ray", "auto"),
        default="local",
        help="local: one point at a time in this process (default); ray: points in parallel",
    )
    parser.add_argument("--num-cpus", type=int, default=None, help="Ray slots (backend ray/auto)")
    parser.add_argument("--dry-run", action="store_true", help="validate and list the points, run nothing")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    points = grid_points(args.methods, args.shapes, args.seeds, args.run_root, args.epochs, args.max_tasks)
    if args.dry_run:
        print(f"{len(points)} point(s) under {args.run_root}:")
        for point in points:
            print(f"  {point.key}: {', '.join(point.config.selected_methods())}")
        return 0
    start = time.perf_counter()
    outcomes = sweep(points, backend=args.backend, num_cpus=args.num_cpus)
    wall = time.perf_counter() - start
    frame = tidy_metrics(points)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    print(format_outcomes(outcomes))
    seconds = point_seconds(points)
    print(seconds.groupby(["method", "benchmark"], sort=False).seconds.sum().round(1).to_string())
    if len(frame):
        table = frame.groupby(["benchmark", "label"], sort=False)[
            ["last_accuracy", "average_incremental_accuracy", "forgetting"]
        ].mean()
        print((table * 100).round(1).to_string())
    print(f"{len(points)} point(s), {len(frame)} run(s) in the CSV, {wall:.0f} s wall -> {args.out}")
    return 0 if all(o["state"] != "failed" for o in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
