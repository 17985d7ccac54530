"""A report on every run under a root: mean ± std over seeds per benchmark, the papers' numbers beside
them, the mean accuracy matrices, the per-task curves, and NSP² against DMNSP on each protocol.

    root = collect.resolve_run_root("benchmarks/results/tiny_grid")   # relative: from the repository root
    runs = collect.load_runs(root)          # one row per run: benchmark, method, seed, tasks done, metrics
    accuracy = collect.load_accuracy(runs)  # the runs' accuracy matrices, tidy
    summary = seed_summary(runs)        # per benchmark, tasks done, method and metric: mean, std, seeds (%)
    benchmark_table(summary, "cifar100-10s", 10)    # ours beside the papers' numbers (and their sources)
    cross_method_table(runs)            # NSP² vs DMNSP on each protocol, with paired differences

A run is a directory holding metrics.json with run.json or config.json (`nscl.results.collect.collect_runs`),
at any depth: a sweep's run_root/<method>/<benchmark>/seed<k>/<label>, or `python -m nscl run`'s
run_root/<label>/seed<k>. Accuracies are fractions on disk and percentages in every table here.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from nscl.data.benchmarks import BENCHMARKS, reference_results
from nscl.results.tables import accuracy_matrix, format_mean_std, method_order, paired_by_seed

__all__ = [
    "METRICS",
    "METRIC_NAMES",
    "PAPER_KEYS",
    "seed_summary",
    "reference_numbers",
    "benchmark_table",
    "mean_matrix",
    "protocol_of",
    "main_labels",
    "cross_method_table",
    "cross_method_sentences",
    "adam_moments",
]

METRICS = ("last_accuracy", "average_incremental_accuracy", "forgetting")
METRIC_NAMES = {"last_accuracy": "last", "average_incremental_accuracy": "avg incremental", "forgetting": "forgetting"}
# data/reference_results.csv's `paper` column -> the key of book/references.bib
PAPER_KEYS = {"NSP2": "lu2024nsp2", "DMNSP": "kang2025dmnsp", "MoE-Adapters": "yu2024moeadapters"}
NONE_REPORTED = "none reported"


# -- finding and reading the runs ------------------------------------------------------------------


# -- mean ± std over seeds ----------------------------------------------------------------------------


def seed_summary(runs: pd.DataFrame, metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """Per benchmark, tasks done, method and metric: mean and std (ddof 1; NaN for one seed) over seeds,
    in percent, and the number of seeds."""
    long = runs.melt(
        id_vars=["benchmark", "tasks_done", "method", "seed"],
        value_vars=list(metrics),
        var_name="metric",
        value_name="value",
    )
    long["value"] = long.value * 100
    table = long.groupby(["benchmark", "tasks_done", "method", "metric"], sort=False).value.agg(
        mean="mean", std=lambda v: v.std(ddof=1) if len(v) > 1 else float("nan"), seeds="size"
    )
    return table.reset_index()


def reference_numbers(benchmark: str) -> pd.DataFrame:
    """The papers' numbers for a benchmark (data/reference_results.csv) with a `label` that matches
    nscl's method labels (VPT-NSP2 -> VPT-NSP²) and the bibliography `key` of the paper they belong to."""
    refs = reference_results(benchmark).copy()
    refs["label"] = refs.method.str.replace("NSP2", "NSP²", regex=False)
    refs["key"] = refs.paper.map(PAPER_KEYS).fillna(refs.paper)
    return refs.reset_index(drop=True)


def _sources(refs: pd.DataFrame) -> str:
    cited = []
    for row in refs.itertuples():
        kind = getattr(row, "source_kind", "paper table")
        text = f"{row.key}: {row.source}" + ("" if kind == "paper table" else f" [{kind}]")
        text += "" if row.confidence == "printed" else f" ({row.confidence})"
        if text not in cited:
            cited.append(text)
    return "; ".join(cited)


def _reported(row: pd.Series) -> str:
    """A reported number as printed, with its ± over seeds where the paper prints one."""
    std = row.get("std")
    return f"{row.value:.2f}" + (f" ± {std:.2f}" if std is not None and pd.notna(std) else "")


def benchmark_table(
    summary: pd.DataFrame,
    benchmark: str,
    tasks_done: int,
    references: pd.DataFrame | None = None,
    metrics: Sequence[str] = METRICS,
    drop_unreported: bool = False,
) -> pd.DataFrame:
    """One benchmark's table: per method, "mean ± std" over seeds of each metric (ours) beside the
    paper's number (%), the seeds, and each paper number's source (bibliography key and table).

    Methods the papers report but the root does not hold get a row marked "not run"; a benchmark
    with no reported numbers says so in its paper columns, or, with `drop_unreported`, has none.
    """
    references = reference_numbers(benchmark) if references is None else references
    ours = summary[(summary.benchmark == benchmark) & (summary.tasks_done == tasks_done)]
    methods = method_order(ours.method)
    methods += [label for label in dict.fromkeys(references.label) if label not in methods]
    rows = {}
    for method in methods:
        mine = ours[ours.method == method].set_index("metric")
        refs = references[references.label == method]
        row: dict[str, object] = {}
        for metric in metrics:
            name = METRIC_NAMES.get(metric, metric)
            row[f"{name} (ours)"] = (
                format_mean_std(mine.loc[metric, "mean"], mine.loc[metric, "std"])
                if metric in mine.index
                else "not run"
            )
            paper = refs[refs.metric == metric]
            row[f"{name} (paper)"] = (
                _reported(paper.iloc[0]) if len(paper) else (NONE_REPORTED if not len(references) else "—")
            )
        row["seeds"] = int(mine.seeds.iloc[0]) if len(mine) else 0
        row["paper source"] = (
            _sources(refs) if len(refs) else (f"no reported numbers for {benchmark}" if not len(references) else "—")
        )
        rows[method] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "method"
    if drop_unreported and not len(references):
        table = table.drop(columns=[c for c in table.columns if c.endswith("(paper)") or c == "paper source"])
    return table


# -- accuracy matrices and per-task curves ---------------------------------------------------------------


def mean_matrix(accuracy: pd.DataFrame, benchmark: str, tasks_done: int, method: str) -> np.ndarray:
    """R[i, j] averaged over seeds (fractions; NaN above the diagonal) for one method and benchmark."""
    rows = accuracy[
        (accuracy.benchmark == benchmark) & (accuracy.tasks_done == tasks_done) & (accuracy.method == method)
    ]
    if not len(rows):
        raise ValueError(f"no accuracy matrix for {method!r} on {benchmark} ({tasks_done} tasks)")
    mean = rows.groupby(["train_task", "eval_task"], as_index=False).accuracy.mean()
    return accuracy_matrix(mean)


# -- NSP² against DMNSP ------------------------------------------------------------------------------


def protocol_of(benchmark: str) -> str:
    """The protocol a benchmark runs: its data set and how the classes are split into tasks, whatever
    the class order and the images' variant. NSP²'s cifar100-10s and DMNSP's cifar100-10-10 are one
    protocol, and so are shapes100-10s and shapes100-tinted-10s (the same classes, on other backgrounds)."""
    if benchmark not in BENCHMARKS:
        return benchmark
    b = BENCHMARKS[benchmark]
    classes = (
        f"{b.increment} classes each"
        if b.initial_increment == b.increment
        else f"{b.initial_increment} classes, then {b.increment} each"
    )
    return f"{b.dataset}: {b.n_tasks} tasks, {classes}"


def main_labels(methods: Sequence[str]) -> dict[str, list[str]]:
    """The labels of each family's main method among `methods`: NSP² (VPT-NSP², CLIP-NSP²) and DMNSP."""
    return {
        "NSP²": [m for m in methods if m in ("VPT-NSP²", "CLIP-NSP²")],
        "DMNSP": [m for m in methods if m == "DMNSP"],
    }


def _seq_of(label: str) -> str:
    return label.replace("NSP²", "Seq") if label.endswith("NSP²") else "adapter-Seq"


def _describe(diff: dict[str, float] | None) -> str:
    if diff is None:
        return "—"
    text = format_mean_std(diff["mean"], diff["std"])
    return text + (f" [{diff['min']:+.1f}, {diff['max']:+.1f}]" if diff["seeds"] > 1 else "") + f" (n={diff['seeds']})"


def cross_method_table(runs: pd.DataFrame, metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """NSP² against DMNSP on each protocol both ran (with the same number of tasks done), per metric.

    Columns: each method's mean ± std over seeds (%), the difference of the means, the paired
    difference over common seeds (only when both ran the same benchmark id, so that a seed means the
    same class order), and each method's paired gain over its own Seq baseline (VPT-/CLIP-Seq,
    adapter-Seq), in points: mean ± std [min, max] (n seeds). Numeric columns end in `_mean`, etc.
    """
    frame = runs.assign(protocol=runs.benchmark.map(protocol_of))
    rows = []
    for (protocol, tasks_done), group in frame.groupby(["protocol", "tasks_done"], sort=True):
        labels = main_labels(list(dict.fromkeys(group.method)))
        for nsp2 in labels["NSP²"]:
            for dmnsp in labels["DMNSP"]:
                for bench_a, bench_b in _benchmark_pairs(
                    group[group.method == nsp2].benchmark, group[group.method == dmnsp].benchmark
                ):
                    rows += _cross_rows(group, protocol, int(tasks_done), (nsp2, bench_a), (dmnsp, bench_b), metrics)
    return pd.DataFrame(rows)


def _benchmark_pairs(left: pd.Series, right: pd.Series) -> list[tuple[str, str]]:
    """The benchmarks both ran, each with itself; else every pair (the protocol's variants differ)."""
    a, b = sorted(left.unique()), sorted(right.unique())
    same = [(x, x) for x in a if x in b]
    return same or [(x, y) for x in a for y in b]


def _cross_rows(
    group: pd.DataFrame,
    protocol: str,
    tasks_done: int,
    nsp2: tuple[str, str],
    dmnsp: tuple[str, str],
    metrics: Sequence[str],
) -> list[dict]:
    def runs_of(label: str, benchmark: str) -> pd.DataFrame:
        return group[(group.method == label) & (group.benchmark == benchmark)]

    a, b = runs_of(*nsp2), runs_of(*dmnsp)
    seq_a, seq_b = runs_of(_seq_of(nsp2[0]), nsp2[1]), runs_of("adapter-Seq", dmnsp[1])
    rows = []
    for metric in metrics:
        va, vb = a[metric] * 100, b[metric] * 100
        paired = paired_by_seed(a, b, metric) if nsp2[1] == dmnsp[1] else None
        gain_a, gain_b = paired_by_seed(a, seq_a, metric), paired_by_seed(b, seq_b, metric)
        rows.append(
            {
                "protocol": protocol,
                "tasks": tasks_done,
                "metric": METRIC_NAMES.get(metric, metric),
                "NSP² method": f"{nsp2[0]} on {nsp2[1]}",
                "DMNSP method": f"{dmnsp[0]} on {dmnsp[1]}",
                "NSP²": format_mean_std(va.mean(), va.std(ddof=1) if len(va) > 1 else float("nan")) + f" (n={len(va)})",
                "DMNSP": format_mean_std(vb.mean(), vb.std(ddof=1) if len(vb) > 1 else float("nan"))
                + f" (n={len(vb)})",
                "NSP² − DMNSP (means)": f"{va.mean() - vb.mean():+.1f}",
                "NSP² − DMNSP (paired)": _describe(paired) if nsp2[1] == dmnsp[1] else "— (different benchmarks)",
                "NSP² − its Seq (paired)": _describe(gain_a),
                "DMNSP − adapter-Seq (paired)": _describe(gain_b),
                "nsp2_mean": va.mean(),
                "dmnsp_mean": vb.mean(),
                "same_benchmark": nsp2[1] == dmnsp[1],
                **{f"paired_{k}": (paired or {}).get(k, float("nan")) for k in ("mean", "std", "min", "max", "seeds")},
                **{f"nsp2_gain_{k}": (gain_a or {}).get(k, float("nan")) for k in ("mean", "min", "max", "seeds")},
                **{f"dmnsp_gain_{k}": (gain_b or {}).get(k, float("nan")) for k in ("mean", "min", "max", "seeds")},
            }
        )
    return rows


def _agreement(low: float, high: float, seeds: float) -> str:
    if math.isnan(low):
        return "no common seed"
    if seeds == 1:
        return "one seed"
    return f"all {int(seeds)} seeds agree" if low > 0 or high < 0 else f"the {int(seeds)} seeds do not all agree"


def _gain(name: str, mean: float, low: float, high: float, seeds: float) -> str:
    if math.isnan(mean):
        return f"{name}: no common seed"
    return f"{name} {mean:+.1f} ({_agreement(low, high, seeds)})"


def cross_method_sentences(cross: pd.DataFrame) -> list[str]:
    """Each row of `cross_method_table` in words: which recipe is ahead (lower is better for forgetting),
    whether every common seed agrees on the sign of the paired difference, and each method's gain
    over its own Seq baseline."""
    sentences = []
    for row in cross.to_dict("records"):
        gap = row["nsp2_mean"] - row["dmnsp_mean"]
        if row["metric"] == "forgetting":
            gap = -gap
        lead = (
            "NSP² and DMNSP tied"
            if abs(gap) < 0.05
            else f"{'NSP²' if gap > 0 else 'DMNSP'} ahead by {abs(gap):.1f} points"
        )
        paired = (
            _agreement(row["paired_min"], row["paired_max"], row["paired_seeds"])
            if row["same_benchmark"]
            else "different benchmarks, not paired"
        )
        gains = [
            _gain(name, *(row[f"{key}_gain_{k}"] for k in ("mean", "min", "max", "seeds")))
            for name, key in (("NSP² − its Seq", "nsp2"), ("DMNSP − adapter-Seq", "dmnsp"))
        ]
        sentences.append(
            f"{row['protocol']} ({row['NSP² method']} vs {row['DMNSP method']}, after {row['tasks']} "
            f"tasks), {row['metric']}: {lead} ({paired}); " + "; ".join(gains)
        )
    return sentences


# -- DMNSP's optimiser health ------------------------------------------------------------------------


def adam_moments(runs: pd.DataFrame) -> pd.DataFrame:
    """DMNSP's `report()["adam_moments"]` of every run that saved one (report.pt): per run, task, tower
    and adapter weight, the share of AdamW's second-moment entries that are not finite and of weight
    entries that did not move over the task. Empty when no run recorded it."""
    import torch

    parts = []
    for run in runs.itertuples():
        path = Path(run.run_dir) / "report.pt"
        if not path.is_file():
            continue
        try:
            report = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # an unreadable or foreign report: this optional table just leaves the run out
            continue
        rows = report.get("adam_moments") if isinstance(report, dict) else None
        if rows:
            parts.append(
                pd.DataFrame(rows).assign(
                    benchmark=run.benchmark, tasks_done=run.tasks_done, method=run.method, seed=run.seed
                )
            )
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
