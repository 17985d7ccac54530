"""Why NSP²'s prompts barely move on the tiny preset: the new task's gradient and the levers (chapter 3.6).

    python benchmarks/nsp2_room.py                  # both parts; seeds 0 1 2
    python benchmarks/nsp2_room.py --part gradient  # or --part screen

Writes two tables to benchmarks/results:

* nsp2_room_gradient.csv: one row per seed and prompted layer. NSP² (tiny recipe) trains task 1, then
  trains task 2 as usual while every step's prompt gradients are split (`nscl.analysis.room`): the share of the
  cross-entropy gradient's energy in the affinity null space (D side), the aggregation one (m side) and
  both, beside the expectation for a random direction; the ratio of the drift-penalty gradient's norm
  to the cross-entropy gradient's (median over steps; per layer and over all layers); the share of each Adam update that the
  projection keeps (mean over steps) and the projector's gain on a direction inside both null spaces.
* nsp2_room_screen.csv: one row per setting and seed: NSP² with eta 0.8 and 0.5, with the projector
  left unnormalised, with drift weight 0.1, the recipe's NSP², the frozen control and Seq; mean
  class-incremental diagonal (all tasks, and tasks 2-10), forgetting, last accuracy, task-aware
  forgetting, and the prompts' mean movement per task after the first; the `seeds_run` column lists
  the seeds of the screen (every seed asked for: a time budget would make the table depend on the machine).

Runs are checkpointed under --run-root (a finished run is read back, not retrained).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from nscl.analysis.room import SurvivalRecorder, loss_gradients, null_bases, null_shares, projector_gain, random_shares
from nscl.data.benchmarks import load_benchmark
from nscl.experiment.run import run_continual
from nscl.models.artifacts import describe, weights_of
from nscl.nsp2.conditions import ConditionSpec
from nscl.nsp2.recipe import build_nsp2, nsp2_experiment, nsp2_recipe
from nscl.nullspace import NullSpaceRule

RESULTS = Path(__file__).resolve().parent / "results"


def _conditions(eta: float = 0.97, normalize: bool = True) -> ConditionSpec:
    return ConditionSpec(NullSpaceRule("adaptive"), NullSpaceRule("adaptive"), eta1=eta, eta2=eta, normalize=normalize)


# label -> (NSP2Config overrides, methods to run from that experiment); all NSP² rows are valid NSP² settings
SETTINGS: dict[str, tuple[dict, tuple[str, ...]]] = {
    "recipe (eta 0.97)": ({}, ("VPT-NSP²", "VPT-frozen", "VPT-Seq")),
    "eta 0.8": ({"conditions": _conditions(0.8)}, ("VPT-NSP²",)),
    "eta 0.5": ({"conditions": _conditions(0.5)}, ("VPT-NSP²",)),
    "unnormalised projector": ({"conditions": _conditions(normalize=False)}, ("VPT-NSP²",)),
    "drift weight 0.1": ({"drift_weight": 0.1}, ("VPT-NSP²",)),
}


# -- (a) the gradient at task 2 ------------------------------------------------------------------------
def gradient_rows(seed: int, task: int = 1) -> list[dict]:
    """Train NSP² (tiny) on tasks 0..task-1, then train `task` while decomposing every step's gradients."""
    bench, cfg, run = nsp2_recipe("tiny", "vit")
    cfg = replace(cfg, seed=seed)
    method = build_nsp2("tiny", "vit", cfg, bench)
    weights = describe(weights_of(method, *method.modules()))
    data = load_benchmark(bench, seed)
    steps: list[dict] = []
    probe: dict = {}
    begin, train = method.begin_task, method.training_step

    def begin_task(info):
        begin(info)
        if info.index == task:
            probe["right"], probe["left"] = null_bases(method)
            probe["survival"] = SurvivalRecorder(method.projection)
            method.optimizer.set_projection(method.prompts, probe["survival"])

    def training_step(images, labels):
        if method.task.index == task:
            g_ce, g_pen = loss_gradients(method, images, labels)
            steps.append(
                {
                    "ce": null_shares(g_ce, probe["right"], probe["left"]),
                    "pen": null_shares(g_pen, probe["right"], probe["left"]),
                    "ratio": g_pen.flatten(1).norm(dim=1) / g_ce.flatten(1).norm(dim=1),
                    "ratio_all": float(g_pen.norm() / g_ce.norm()),
                }
            )
        return train(images, labels)

    method.begin_task, method.training_step = begin_task, training_step
    run_continual(method, data, replace(run, seed=seed, max_tasks=task + 1, progress=False))
    before, after = method.prompt_history[task - 1], method.prompt_history[task]
    ce = torch.stack([s["ce"] for s in steps]).mean(0)
    moved = [s["pen"] for s in steps if s["pen"].sum() > 0]  # the penalty's gradient is 0 at the first step
    pen = torch.stack(moved).mean(0) if moved else torch.full_like(ce, float("nan"))
    ratio = torch.stack([s["ratio"] for s in steps]).median(0).values
    ratio_all = float(np.median([s["ratio_all"] for s in steps]))
    rand = random_shares(probe["right"], probe["left"])
    survival = probe["survival"].mean()
    spec = cfg.conditions
    rows = []
    for i, layer in enumerate(method.recorder.layers):
        k1, k2 = probe["right"][i].shape[1], probe["left"][i].shape[1]
        eig = torch.linalg.eigvalsh(method.recorder.affinity[layer].matrix.double()).flip(0)
        rows.append(
            {
                "seed": seed,
                "task": task + 1,
                "layer": layer + 1,
                "steps": len(steps),
                "backbone_weights": weights,
                "D": probe["right"][i].shape[0],
                "affinity_null_dim": k1,
                "m": probe["left"][i].shape[0],
                "aggregation_null_dim": k2,
                "affinity_top5_energy": float(eig[:5].sum() / eig.sum()),
                "ce_affinity_null": float(ce[i, 0]),
                "ce_aggregation_null": float(ce[i, 1]),
                "ce_both_null": float(ce[i, 2]),
                "random_affinity_null": float(rand[i, 0]),
                "random_aggregation_null": float(rand[i, 1]),
                "random_both_null": float(rand[i, 2]),
                "penalty_both_null": float(pen[i, 2]),
                "penalty_over_ce_norm": float(ratio[i]),
                "penalty_over_ce_norm_all_layers": ratio_all,
                "adam_update_survival": float(survival[i]),
                "projector_gain_both_null": projector_gain(k1, spec.eta1, spec.normalize)
                * projector_gain(k2, spec.eta2, spec.normalize),
                "prompt_move": float((after[i] - before[i]).norm()),
                "prompt_norm": float(before[i].norm()),
            }
        )
    return rows


# -- (b) the lever screen ------------------------------------------------------------------------------
def screen_rows(seed: int, run_root: Path) -> list[dict]:
    rows = []
    for label, (overrides, methods) in SETTINGS.items():
        experiment = nsp2_experiment("tiny", "vit", **overrides).with_run(progress=False)
        for name in methods:
            start = time.perf_counter()
            _, results = experiment.run_all(seeds=[seed], run_root=run_root / label.replace(" ", "_"), only=[name])
            res = results[(name, seed)]
            prompts = res.extras["report"]["prompts"]
            moves = [float((prompts[t] - prompts[t - 1]).norm()) for t in range(1, len(prompts))]
            diag = np.diag(res.accuracy)
            setting = label if name == "VPT-NSP²" else name.removeprefix("VPT-")
            rows.append(
                {
                    "setting": setting,
                    "method": name,
                    "seed": seed,
                    "backbone_weights": res.extras["backbone_weights"],
                    "diagonal": float(diag.mean()),
                    "diagonal_tasks_2_on": float(diag[1:].mean()),
                    "forgetting": float(res.metrics.forgetting),
                    "last_accuracy": float(res.metrics.last_accuracy),
                    "forgetting_task_aware": float(res.metrics_task_aware.forgetting),
                    "prompt_move_per_task": float(np.mean(moves)),
                    "prompt_norm_after_task_1": float(prompts[0].norm()),
                    "seconds": time.perf_counter() - start,
                }
            )
            print(
                f"seed {seed} {setting:24s} diag {rows[-1]['diagonal']:.4f} forgetting {rows[-1]['forgetting']:.4f} "
                f"move {rows[-1]['prompt_move_per_task']:.3f} ({rows[-1]['seconds']:.0f} s)",
                flush=True,
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("gradient", "screen", "both"), default="both")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--run-root", type=Path, default=Path("build/runs/nsp2_room"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    RESULTS.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if args.part in ("gradient", "both"):
        t0 = time.perf_counter()
        frame = pd.DataFrame([row for seed in args.seeds for row in gradient_rows(seed)])
        frame.to_csv(RESULTS / "nsp2_room_gradient.csv", index=False)
        cols = [
            "ce_affinity_null",
            "ce_aggregation_null",
            "ce_both_null",
            "random_both_null",
            "penalty_over_ce_norm",
            "adam_update_survival",
        ]
        print(frame.groupby("layer")[cols].mean().round(3).to_string())
        print(f"gradient part: {time.perf_counter() - t0:.0f} s")
    if args.part in ("screen", "both"):
        t0 = time.perf_counter()
        rows = [row for seed in args.seeds for row in screen_rows(seed, args.run_root)]
        seeds = list(args.seeds)
        frame = pd.DataFrame(rows).assign(seeds_run=" ".join(map(str, seeds)))
        frame.to_csv(RESULTS / "nsp2_room_screen.csv", index=False)
        print(
            frame.groupby("setting", sort=False)[["diagonal", "forgetting", "last_accuracy", "prompt_move_per_task"]]
            .mean()
            .round(4)
            .to_string()
        )
        print(f"screen: {time.perf_counter() - t0:.0f} s for {len(rows)} runs")
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
