"""N runs side by side on N cores: with torch's default threads (every process takes every core) and with
`--threads cores // N` (the cores shared out), beside one run alone.

    python benchmarks/concurrent_runs.py                  # 2 processes -> benchmarks/results/concurrent_runs.csv
    python benchmarks/concurrent_runs.py --processes 4

Each process is `python -m nscl run` on the tiny NSP² recipe (VPT-Seq, 3 tasks of shapes100-10s, 1 epoch)
in its own run root, so nothing is shared but the cores. Wall times are of the whole command (start-up
included) and compare within one call of this script only.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results"
RUN = ["-m", "nscl", "run", "--benchmark", "shapes100-10s", "--only", "Seq", "--epochs", "1", "--max-tasks", "3"]


def wave(processes: int, threads: int | None, root: Path) -> list[float]:
    """Start `processes` runs at once; the wall time of each, in seconds."""
    extra = [] if threads is None else ["--threads", str(threads)]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, *RUN, "--run-root", str(root / f"p{i}"), *extra],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]
    seconds = []
    for proc in procs:
        _, err = proc.communicate(timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(f"a run failed: {err[-800:]}")
        seconds.append(time.perf_counter() - start)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--out", type=Path, default=RESULTS / "concurrent_runs.csv")
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    shared = max(1, cores // args.processes)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        settings = [("one run alone", 1, None), (f"{args.processes} at once, default threads", args.processes, None)]
        settings.append((f"{args.processes} at once, --threads {shared}", args.processes, shared))
        for i, (name, processes, threads) in enumerate(settings):
            seconds = wave(processes, threads, Path(tmp) / f"w{i}")
            rows.append(
                {
                    "setting": name,
                    "processes": processes,
                    "threads_per_process": threads if threads is not None else "default",
                    "cores": cores,
                    "wall_seconds_last": round(max(seconds), 1),
                    "wall_seconds_mean": round(sum(seconds) / len(seconds), 1),
                }
            )
            print(rows[-1])
    frame = pd.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    print(frame.to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
