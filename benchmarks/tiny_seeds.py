"""Run a tiny-preset experiment over several seeds and commit its tables (the chapters read them).

    python benchmarks/tiny_seeds.py nsp2              # VPT-Seq, VPT-NSP², VPT-frozen, VPT-joint; seeds 0 1 2
    python benchmarks/tiny_seeds.py dmnsp --variants paper energy-0.985 code   # + zero-shot, Seq, frozen

Writes benchmarks/results/<method>_tiny_3seeds.csv (one row per method and seed: the metrics of
`nscl.results.tables.metrics_frame`) and <method>_tiny_3seeds_accuracy.csv (the accuracy matrices, tidy:
method, seed, train_task, eval_task, accuracy, accuracy_task_aware, n_test). Runs are checkpointed
under --run-root, so an interrupted sweep resumes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from nscl.dmnsp.recipe import VARIANTS, dmnsp_experiment
from nscl.experiment.result import accuracy_matrices
from nscl.nsp2.recipe import nsp2_experiment

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("method", choices=("nsp2", "dmnsp"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["paper"],
        choices=sorted(VARIANTS),
        help="DMNSP variants to run beside the controls",
    )
    parser.add_argument("--run-root", type=Path, default=Path("build/runs/tiny_seeds"))
    parser.add_argument("--out", type=Path, default=None, help="CSV path (default: benchmarks/results/...)")
    args = parser.parse_args()

    if args.method == "nsp2":
        experiment = nsp2_experiment("tiny", "vit")
    else:
        # the frozen control beside the variants; the joint bound is left to the chapter (it retrains on all data)
        experiment = dmnsp_experiment("tiny", variants=tuple(args.variants), joint=False, frozen=True)
    experiment = experiment.with_run(progress=False)
    start = time.perf_counter()
    frame, results = experiment.run_all(seeds=args.seeds, run_root=args.run_root / args.method)
    out = args.out or RESULTS / f"{args.method}_tiny_{len(args.seeds)}seeds.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False)
    accuracy_matrices(results).to_csv(out.with_name(out.stem + "_accuracy.csv"), index=False)
    summary = frame.groupby("method", sort=False)[["last_accuracy", "average_incremental_accuracy", "forgetting"]]
    print((summary.mean() * 100).round(2).to_string())
    print(f"{len(results)} runs in {time.perf_counter() - start:.0f} s -> {out}")


if __name__ == "__main__":
    main()
