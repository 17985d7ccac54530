"""The tiny grid: NSP² and DMNSP, each beside its controls, on every tiny protocol, over seeds.

    python benchmarks/tiny_grid.py                        # seeds 0 1 2 (resumable) -> benchmarks/results/tiny_grid.csv
    python benchmarks/tiny_grid.py --seeds 0 --dry-run    # list the points, run nothing
    python benchmarks/tiny_grid.py --epochs 2             # the grid at 2 epochs per task (both methods)
    python benchmarks/tiny_grid.py --methods nsp2 nsp2-clip dmnsp --shapes 10s --families grey tinted domains \
        --variants paper update --out benchmarks/results/tiny_ladder.csv   # the ladder: every method, every family
    python benchmarks/tiny_grid.py --seeds 0 --epochs 1 --max-tasks 2 --run-root build/runs/grid_smoke \
        --out build/grid_smoke.csv                        # a smoke test of every point (minutes)

The tiny protocols mirror the papers' shapes (nscl.data.protocols): 5, 10 or 25 equal tasks and
a half-pool first task followed by 5 tasks of 5. Each method runs on its tiny recipe's background
(NSP² grey, DMNSP tinted), or on every family given by --families (grey, tinted, domains: a ladder of
how much the tasks' features overlap), with its own epochs unless --epochs is given, beside:

* its Seq baseline (the same model trained without projection): what the projection buys;
* its frozen control (trained on the first task only; for DMNSP the text adapters keep training):
  whether the method beats not learning the visual side after task 1, the question the large-base
  protocol asks most;
* the prototype classifier on the same frozen backbone (SimpleCIL; evaluation only, seconds): the
  simplest baseline of pre-trained-model continual learning;
* for DMNSP, zero-shot CLIP (evaluation only, seconds): the floor adapters start from.

CLIP-NSP² (`nsp2-clip`) runs NSP²'s prompts on the tiny CLIP that DMNSP adapts: the one comparison of
the two projections on one model.

The joint upper bounds are left out: they retrain on all data seen at every task. `--variants paper update`
adds DMNSP with AdamW's update projected instead of its gradient; every DMNSP run records the leak (the
share of each visual weight's change outside its projection's range), written to <out>_leak.csv.

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

from nscl.data.protocols import LOOKALIKES, TINY_FAMILIES, TINY_SHAPES, tiny_benchmark_id
from nscl.experiment.grid import SweepRun, expand, format_outcomes, method_family, sweep
from nscl.experiment.result import slug

RESULTS = Path(__file__).resolve().parent / "results"
# per method family: (method, backbone) and the experiment's methods the grid runs (ExperimentConfig.only names)
GRID_METHODS: dict[str, tuple[str, ...]] = {
    "nsp2": ("Seq", "NSP2", "frozen", "prototype"),
    "nsp2-clip": ("Seq", "NSP2", "frozen", "prototype"),
    "dmnsp": ("zero-shot", "prototype", "Seq", "DMNSP", "frozen"),
}
FAMILY_MODEL = {"nsp2": ("nsp2", "vit"), "nsp2-clip": ("nsp2", "clip"), "dmnsp": ("dmnsp", "clip")}
RECIPE_FAMILY = {"nsp2": "grey", "nsp2-clip": "tinted", "dmnsp": "tinted"}  # each recipe's own background


def grid_points(
    methods: Sequence[str],
    shapes: Sequence[str],
    seeds: Sequence[int],
    run_root: Path,
    epochs: int | None = None,
    max_tasks: int | None = None,
    families: Sequence[str] | None = None,
    variants: Sequence[str] | None = None,
) -> list[SweepRun]:
    """Every (method, tiny protocol, seed) as a validated sweep point, on its recipe's family or on `families`."""
    points: list[SweepRun] = []
    for family in methods:
        method, backbone = FAMILY_MODEL[family]
        looks = families or [RECIPE_FAMILY[family]]
        benchmarks = [tiny_benchmark_id(shape, look) for look in looks for shape in shapes]
        points += expand(
            [method],
            benchmarks,
            seeds,
            run_root,
            preset="tiny",
            backbone=backbone,
            only=list(GRID_METHODS[family]),
            **({"variants": list(variants)} if variants and method == "dmnsp" else {}),
            epochs=epochs,
            max_tasks=max_tasks,
            progress=False,
        )
    return points


def _shape_of(benchmark: str) -> str:
    return benchmark.removeprefix("shapes100-").removeprefix("tinted-").removeprefix("domains-")


def _family_of(benchmark: str) -> str:
    rest = benchmark.removeprefix("shapes100-")
    return next((f for f in TINY_FAMILIES if rest.startswith(f"{f}-")), "grey")


def tidy_metrics(points: Sequence[SweepRun]) -> pd.DataFrame:
    """One row per finished run: method family, label, benchmark, family, shape, the paper protocols it mirrors,
    seed, the backbone weights it started from, tasks done, every number in the run's metrics.json and the
    plasticity (mean of the accuracy matrix's diagonal)."""
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
                "method": method_family(config),
                "label": label,
                "benchmark": config.benchmark_id,
                "family": _family_of(config.benchmark_id),
                "shape": shape,
                "mirrors": mirrors,
                "seed": config.seeds[0],
                "backbone_weights": settings["backbone_weights"],
            }
            row.update({k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
            # plasticity: accuracy on each task right after learning it, among all classes seen (mean of R's diagonal)
            accuracy = pd.read_csv(path.parent / "accuracy.csv")
            row["plasticity"] = float(accuracy[accuracy.train_task == accuracy.eval_task].accuracy.mean())
            rows.append(row)
    return pd.DataFrame(rows)


# the features whose task subspaces chapter 6 compares: NSP²'s affinity inputs, DMNSP's visual adapter inputs
OVERLAP_KIND = {"nsp2": ("affinity", {}), "dmnsp": ("x", {"tower": "visual"})}


def report_rows(points: Sequence[SweepRun]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """From each projection run's report.pt, read once: (overlaps, leaks).

    overlaps: chapter 6's inter-task overlap (mean over task pairs, last recorded layer), one row per
    (method, label, benchmark, seed). leaks: per DMNSP run, task and visual weight kind, the share of the
    weights' change over the task outside the projection's range (mean over layers). Points read back
    without their report (a grid committed without checkpoints) are left out.
    """
    import torch

    from nscl.atlas import mean_task_overlap

    overlaps, leaks = [], []
    for point in points:
        config = point.config
        for label in config.selected_methods():
            path = point.run_dir / slug(label) / "report.pt"
            if ("NSP²" not in label and not label.startswith("DMNSP")) or not path.exists():
                continue
            report = torch.load(path, map_location="cpu", weights_only=False)
            kind, match = OVERLAP_KIND[config.method]
            overlaps.append(
                {
                    "method": method_family(config),
                    "label": label,
                    "benchmark": config.benchmark_id,
                    "family": _family_of(config.benchmark_id),
                    "shape": _shape_of(config.benchmark_id),
                    "seed": config.seeds[0],
                    "features": kind,
                    "overlap": mean_task_overlap(report["atlas"], kind, **match),
                }
            )
            leak = pd.DataFrame(report.get("leak", []))
            if not leak.empty:
                leak = leak[leak.tower == "visual"].groupby(["task", "weight"], as_index=False).leak.mean()
                leak.insert(0, "seed", config.seeds[0])
                leak.insert(0, "benchmark", config.benchmark_id)
                leak.insert(0, "label", label)
                leaks.append(leak)
    return pd.DataFrame(overlaps), (pd.concat(leaks, ignore_index=True) if leaks else pd.DataFrame())


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
                "method": method_family(point.config),
                "benchmark": point.config.benchmark_id,
                "seed": point.config.seeds[0],
                "seconds": status.get("seconds"),
            }
        )
    return pd.DataFrame(rows)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=["nsp2", "dmnsp"], choices=list(GRID_METHODS))
    parser.add_argument(
        "--shapes",
        nargs="+",
        default=list(TINY_SHAPES),
        choices=list(TINY_SHAPES),
        help="tiny protocol shapes (nscl.data.protocols)",
    )
    parser.add_argument(
        "--families",
        nargs="+",
        default=None,
        choices=list(TINY_FAMILIES),
        help="benchmark families to run every method on (default: each recipe's own: NSP² grey, DMNSP and "
        "CLIP-NSP² tinted)",
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        default=None,
        help="DMNSP variants to run (nscl.dmnsp.recipe.VARIANTS; default: the recipe's, 'paper'), e.g. paper update",
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
    points = grid_points(
        args.methods, args.shapes, args.seeds, args.run_root, args.epochs, args.max_tasks, args.families, args.variants
    )
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
    overlaps, leaks = report_rows(points)
    if len(overlaps):
        overlaps.to_csv(args.out.with_name(f"{args.out.stem}_overlap.csv"), index=False)
    if len(leaks):
        leaks.to_csv(args.out.with_name(f"{args.out.stem}_leak.csv"), index=False)
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
