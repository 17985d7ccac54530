"""How far do the tiny runs move when only the machine changes? Emulated CPUs against the seed spread.

    python benchmarks/machine_spread.py                          # every profile, seeds 0 1 2 (the slow SSE profile: seed 0)
    python benchmarks/machine_spread.py --profiles native AVX2 --seeds 0
    python benchmarks/machine_spread.py --families nsp2          # chapter 3's runs only

Chapters 3 and 5 run seed 0 on the reader's machine and print it beside the committed seed 0. Both
start from the same shipped backbone and the same shapes100 bytes (checked by checksums), so what
can still differ is the arithmetic: which kernels torch, oneDNN, MKL and numpy pick for the CPU, and
how many threads split each sum. Each profile below runs the chapters' own experiments (the same as
`benchmarks/tiny_seeds.py`: chapter 3's VPT-Seq, VPT-NSP², VPT-frozen, VPT-joint; chapter 5's
zero-shot CLIP, adapter-Seq, frozen and three DMNSP variants) in a fresh process with its environment:

* native: this machine as it is;
* 1 thread: OMP_NUM_THREADS=1 (other reduction splits);
* AVX2 (and AVX2, 1 thread): torch's own kernels at AVX2 (ATEN_CPU_CAPABILITY), oneDNN capped at
  AVX2 (ONEDNN_MAX_CPU_ISA), MKL at AVX2 (MKL_ENABLE_INSTRUCTIONS), numpy without AVX-512
  (NPY_DISABLE_CPU_FEATURES): a machine without AVX-512;
* SSE, 1 thread: the same at the x86-64 baseline (ATEN_CPU_CAPABILITY=default, SSE4.1/4.2), on one
  thread (so that it can run beside another profile); several times slower than native;
* perturbed weights: native arithmetic, every backbone weight multiplied by 1 + u·2⁻²³
  (NSCL_PERTURB_WEIGHTS): a change of the size the kernels make, injected once at the start.

Writes benchmarks/results/machine_spread.csv (one row per profile, family, method and seed, with the
kernel level and threads each process really used, the weights' identity and the
parameter gap: the largest relative difference of the trained parameters from the native run's) and prints
the spread across profiles beside the spread across seeds. Runs are checkpointed under --run-root:
started again, finished runs are read back.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results"
OUT = RESULTS / "machine_spread.csv"
_NO_AVX512 = "X86_V4 AVX512_ICL"
PROFILES: dict[str, dict[str, str]] = {
    "native": {},
    "1 thread": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    "AVX2": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "NPY_DISABLE_CPU_FEATURES": _NO_AVX512,
    },
    "AVX2, 1 thread": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "NPY_DISABLE_CPU_FEATURES": _NO_AVX512,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    },
    "SSE, 1 thread": {
        "ATEN_CPU_CAPABILITY": "default",
        "ONEDNN_MAX_CPU_ISA": "SSE41",
        "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
        "NPY_DISABLE_CPU_FEATURES": "X86_V3 " + _NO_AVX512,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    },
    "perturbed weights": {"NSCL_PERTURB_WEIGHTS": "1"},
}
SLOW = ("SSE, 1 thread",)  # run on the first seed only unless --all-seeds-everywhere
FAMILIES = ("nsp2", "dmnsp")
METRICS = (
    "last_accuracy",
    "average_incremental_accuracy",
    "forgetting",
    "last_accuracy_task_aware",
    "forgetting_task_aware",
)


def experiment(family: str):
    """The chapters' experiments, as benchmarks/tiny_seeds.py commits them."""
    from nscl.presets import dmnsp_experiment, nsp2_experiment

    if family == "nsp2":
        return nsp2_experiment("tiny", "vit")
    return dmnsp_experiment("tiny", variants=("paper", "energy-0.985", "code"), joint=False, frozen=True)


def worker(family: str, seed: int, run_root: Path) -> None:
    """Run one family and seed in this process; print one JSON line per method."""
    import torch

    from nscl.models.artifacts import machine_description

    frame, _ = experiment(family).with_run(progress=False).run_all(seeds=[seed], run_root=run_root)
    for row in frame.to_dict("records"):
        print(
            "RESULT "
            + json.dumps(
                {
                    **row,
                    "family": family,
                    "capability": torch.backends.cpu.get_cpu_capability(),
                    "threads": torch.get_num_threads(),
                    "machine": machine_description(),
                }
            )
        )


def _profile_dir(run_root: Path, profile: str, family: str) -> Path:
    return run_root / profile.replace(", ", "-").replace(" ", "-") / family


def run_profile(profile: str, family: str, seed: int, run_root: Path) -> list[dict]:
    env = {**os.environ, **PROFILES[profile], "PYTHONHASHSEED": "0"}
    if "OMP_NUM_THREADS" not in PROFILES[profile]:
        env.pop("OMP_NUM_THREADS", None)
        env.pop("MKL_NUM_THREADS", None)
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        family,
        "--seed",
        str(seed),
        "--run-root",
        str(_profile_dir(run_root, profile, family)),
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{profile} / {family} / seed {seed} failed:\n{done.stderr[-4000:]}")
    rows = [json.loads(line[len("RESULT ") :]) for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    from nscl.experiment.result import slug
    from nscl.results.reproducibility import trained_parameter_gap

    # how far the trained parameters themselves moved from the reference machine's (its run dir, if present)
    for row in rows:
        where = Path(slug(row["method"])) / f"seed{seed}"
        row["parameter_gap"] = trained_parameter_gap(
            _profile_dir(run_root, profile, family) / where, _profile_dir(run_root, "native", family) / where
        )
    return [{"profile": profile, **row} for row in rows]


def spread_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per family, method and metric: seed std (native) and the largest |profile - native| over seeds, in points."""
    from nscl.results.reproducibility import machine_spread

    return machine_spread(frame, METRICS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", nargs="+", default=list(PROFILES), choices=list(PROFILES))
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--all-seeds-everywhere", action="store_true", help=f"also run {SLOW} on every seed")
    parser.add_argument("--run-root", type=Path, default=Path("build/runs/machine_spread"))
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--worker", choices=FAMILIES, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.seed, args.run_root)
        return

    existing = pd.read_csv(args.out) if args.out.exists() else pd.DataFrame()
    for profile in args.profiles:
        seeds = args.seeds[:1] if profile in SLOW and not args.all_seeds_everywhere else args.seeds
        for family in args.families:
            for seed in seeds:
                start = time.perf_counter()
                rows = pd.DataFrame(run_profile(profile, family, seed, args.run_root))
                print(
                    f"{profile:>18} {family:>5} seed {seed}: {len(rows)} runs in {time.perf_counter() - start:.0f} s "
                    f"({rows.capability.iloc[0]}, {rows.threads.iloc[0]} threads)",
                    flush=True,
                )
                if len(existing):
                    same = (existing.profile == profile) & (existing.family == family) & (existing.seed == seed)
                    existing = existing[~same]
                existing = pd.concat([existing, rows], ignore_index=True)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                existing.to_csv(args.out, index=False)  # after every family and seed: nothing finished is lost
    print((spread_table(existing) * 100).round(2).to_string())


if __name__ == "__main__":
    main()
