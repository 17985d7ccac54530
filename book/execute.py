"""Execute the book's chapters with papermill, side by side on the machine's cores.

    python book/execute.py --out build/executed build/book/NN_*.ipynb [--lanes 2]

The tiny models are too small for two threads to help one run much, so two chapters at once with one thread
each finish sooner than one after the other with two (benchmarks/concurrent_runs.py measures the same for
runs). Chapters that share runs keep their order: chapter 5 reuses chapter 4's DMNSP runs, and chapter 6
reads the runs chapters 3 and 5 leave. A chapter that fails stops the others from starting; its notebook is
kept with the failing cell, and the exit code is 1.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

# chapter -> chapters whose runs it reads (they must have finished first)
DEPENDS = {
    "05_dmnsp": ("04_modalities",),
    "06_null_space_atlas": ("03_nsp2", "05_dmnsp"),
}
# the longest chain first, so that it never waits for a free lane (measured: 4 + 5 take about 60% of the book)
FIRST = ("04_modalities", "05_dmnsp")


def order(chapters: list[str]) -> list[str]:
    """Chapters in the order lanes take them: the long chain first, then reading order."""
    return [c for c in FIRST if c in chapters] + [c for c in chapters if c not in FIRST]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", type=Path, nargs="+", help="the unexecuted chapters (NN_*.ipynb)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the executed notebooks")
    parser.add_argument("--lanes", type=int, default=min(2, os.cpu_count() or 1), help="chapters at once")
    args = parser.parse_args(argv)
    paths = {p.stem: p for p in args.notebooks}
    chapters = sorted(paths)
    args.out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if args.lanes > 1:  # share the cores out: one thread per chapter
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    papermill = str(Path(sys.executable).with_name("papermill"))
    waiting, running, done, failed = order(chapters), {}, set(), []
    start = time.time()
    while waiting or running:
        ready = [c for c in waiting if all(d in done or d not in chapters for d in DEPENDS.get(c, ()))]
        while ready and len(running) < args.lanes and not failed:
            chapter = ready.pop(0)
            waiting.remove(chapter)
            print(f"== {chapter} started", flush=True)
            command = [papermill, "--log-level", "WARNING", str(paths[chapter])]
            command.append(str(args.out / f"{chapter}.ipynb"))
            running[chapter] = (subprocess.Popen(command, env=env), time.time())
        if failed and not running:
            break
        time.sleep(0.5)
        for chapter, (process, began) in list(running.items()):
            if process.poll() is None:
                continue
            del running[chapter]
            seconds = time.time() - began
            if process.returncode:
                failed.append(chapter)
                print(f"== {chapter} FAILED after {seconds:.0f} s (see {args.out / chapter}.ipynb)", flush=True)
            else:
                done.add(chapter)
                print(f"== {chapter} executed in {seconds:.0f} s", flush=True)
    print(f"execute: {len(done)} of {len(chapters)} chapters in {time.time() - start:.0f} s on {args.lanes} lane(s)")
    return 1 if failed or len(done) < len(chapters) else 0


if __name__ == "__main__":
    sys.exit(main())
