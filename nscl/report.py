"""A report on every run under a root: mean ± std over seeds per benchmark, the papers' numbers beside
them, the mean accuracy matrices, the per-task curves, and NSP² against DMNSP on each protocol.

    root = resolve_run_root("benchmarks/results/tiny_grid")   # relative paths: from the repository root
    runs = load_runs(root)              # one row per run: benchmark, method, seed, tasks done, metrics
    accuracy = load_accuracy(runs)      # the runs' accuracy matrices, tidy
    summary = seed_summary(runs)        # per benchmark, tasks done, method and metric: mean, std, seeds (%)
    benchmark_table(summary, "cifar100-10s", 10)    # ours beside the papers' numbers (and their sources)
    cross_method_table(runs)            # NSP² vs DMNSP on each protocol, with paired differences

A run is a directory holding metrics.json with run.json or config.json (`nscl.sweep.collect_runs`),
at any depth: a sweep's run_root/<method>/<benchmark>/seed<k>/<label>, or `python -m nscl run`'s
run_root/<label>/seed<k>. Accuracies are fractions on disk and percentages in every table here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from nscl.metrics import step_accuracies
from nscl.paths import repo_root
from nscl.sweep import collect_runs

__all__ = ["METRICS", "METRIC_NAMES", "PAPER_KEYS", "resolve_run_root", "load_runs", "load_accuracy",
           "inventory", "groups", "method_order", "seed_summary", "reference_numbers", "benchmark_table",
           "mean_matrix", "step_curves", "protocol_of", "main_labels", "cross_method_table",
           "cross_method_sentences", "adam_moments", "plot_matrix", "plot_step_bands", "format_mean_std"]

METRICS = ("last_accuracy", "average_incremental_accuracy", "forgetting")
METRIC_NAMES = {"last_accuracy": "last", "average_incremental_accuracy": "avg incremental",
                "forgetting": "forgetting"}
# data/reference_results.csv's `paper` column -> the key of book/references.bib
PAPER_KEYS = {"NSP2": "lu2024nsp2", "DMNSP": "kang2025dmnsp"}
NONE_REPORTED = "none reported"


# -- finding and reading the runs ------------------------------------------------------------------

def _how_to_make(path: Path) -> str:
    ways = [f"python -m nscl sweep --methods nsp2 dmnsp --benchmarks shapes100-10s shapes100-tinted-10s "
            f"--seeds 0 1 2 --run-root {path}  (add --epochs 1 --max-tasks 3 for a quick grid)"]
    if (repo_root() / "benchmarks" / "tiny_grid.py").is_file():
        ways.insert(0, "python benchmarks/tiny_grid.py  (the book's 3-seed tiny grid, "
                       "benchmarks/results/tiny_grid)")
    return "Make one with\n  " + "\n  ".join(ways)


def resolve_run_root(run_root: str | Path) -> Path:
    """run_root as an existing directory that holds at least one run (relative: from the repository root).

    Raises FileNotFoundError saying how to make one when it is missing or holds no metrics.json.
    """
    path = Path(run_root).expanduser()
    if not path.is_absolute():
        path = repo_root() / path
    if not path.is_dir():
        raise FileNotFoundError(f"run root {path} does not exist. {_how_to_make(path)}")
    if next(path.rglob("metrics.json"), None) is None:
        raise FileNotFoundError(f"run root {path} holds no run (no metrics.json below it). {_how_to_make(path)}")
    return path


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def load_runs(run_root: str | Path) -> pd.DataFrame:
    """One row per run with at least one finished task: benchmark, method, seed, tasks_done, the metrics
    (fractions), run_dir, and the run settings from config.json (epochs, batch_size, precision, device).

    Raises ValueError when two runs share benchmark, method, seed and tasks done (their mean would mix
    two settings; report on a narrower root).
    """
    frame = collect_runs(run_root)
    if not len(frame):
        raise FileNotFoundError(f"no run under {run_root} (no metrics.json with run.json or config.json)")
    frame = frame[frame.tasks_done > 0].copy()
    if not len(frame):
        raise FileNotFoundError(f"no run under {run_root} has finished a task yet")
    frame["seed"] = frame.seed.astype(int)
    settings = [_read_json(Path(d) / "config.json").get("run_config", {}) for d in frame.run_dir]
    for key in ("epochs", "batch_size", "precision", "device"):
        frame[key] = [s.get(key) for s in settings]
    keys = ["benchmark", "method", "seed", "tasks_done"]
    twice = frame[frame.duplicated(keys, keep=False)]
    if len(twice):
        listed = "\n  ".join(twice.sort_values(keys).run_dir)
        raise ValueError(f"runs with the same benchmark, method, seed and tasks done under {run_root}; their "
                         f"mean would mix settings; report on a narrower root:\n  {listed}")
    return frame.sort_values(keys).reset_index(drop=True)


def load_accuracy(runs: pd.DataFrame) -> pd.DataFrame:
    """Every run's accuracy.csv, tidy: benchmark, tasks_done, method, seed, train_task, eval_task,
    accuracy and accuracy_task_aware (fractions), n_test; rows past the run's tasks_done are dropped."""
    parts = []
    for run in runs.itertuples():
        frame = pd.read_csv(Path(run.run_dir) / "accuracy.csv")
        frame = frame[(frame.train_task < run.tasks_done) & (frame.eval_task < run.tasks_done)]
        parts.append(frame.assign(benchmark=run.benchmark, tasks_done=run.tasks_done, method=run.method,
                                  seed=run.seed))
    frame = pd.concat(parts, ignore_index=True)
    if "accuracy_task_aware" not in frame:   # runs written before nscl recorded it
        frame["accuracy_task_aware"] = np.nan
    columns = ["benchmark", "tasks_done", "method", "seed", "train_task", "eval_task", "accuracy",
               "accuracy_task_aware", "n_test"]
    return frame[columns]


def groups(runs: pd.DataFrame) -> list[tuple[str, int]]:
    """The (benchmark, tasks done) pairs a report has one table for, in order."""
    return sorted(set(zip(runs.benchmark, runs.tasks_done.astype(int))))


def inventory(runs: pd.DataFrame) -> pd.DataFrame:
    """What the root holds: per benchmark, tasks done and method, the seeds and the run settings."""
    def listing(values) -> str:
        distinct = set(values)
        try:
            ordered = sorted(distinct)
        except TypeError:   # mixed types (a setting missing from some config.json)
            ordered = sorted(distinct, key=str)
        return ", ".join(str(v) for v in ordered)

    table = runs.groupby(["benchmark", "tasks_done", "method"], sort=True).agg(
        seeds=("seed", listing), runs=("seed", "size"), epochs=("epochs", listing),
        batch_size=("batch_size", listing), precision=("precision", listing))
    return table


_ROLES = ("Seq", "NSP²", "DMNSP", "frozen", "joint", "zero-shot")


def _role(label: str) -> int:
    return next((i for i, word in enumerate(_ROLES) if word in label), len(_ROLES))


def method_order(methods: Sequence[str]) -> list[str]:
    """Methods in reading order: NSP²'s family (VPT-/CLIP- labels) first, then DMNSP's; within a family
    the Seq baseline, the method, frozen, joint, zero-shot, then anything else (alphabetically)."""
    def key(label: str) -> tuple[int, int, str]:
        return (0 if label.startswith(("VPT-", "CLIP-")) else 1), _role(label), label

    return sorted(dict.fromkeys(methods), key=key)


# -- mean ± std over seeds ----------------------------------------------------------------------------

def format_mean_std(mean: float, std: float, digits: int = 1) -> str:
    """The text "mean ± std" (the std left out when it is NaN: one seed)."""
    return f"{mean:.{digits}f}" + ("" if math.isnan(std) else f" ± {std:.{digits}f}")


def seed_summary(runs: pd.DataFrame, metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """Per benchmark, tasks done, method and metric: mean and std (ddof 1; NaN for one seed) over seeds,
    in percent, and the number of seeds."""
    long = runs.melt(id_vars=["benchmark", "tasks_done", "method", "seed"], value_vars=list(metrics),
                     var_name="metric", value_name="value")
    long["value"] = long.value * 100
    table = long.groupby(["benchmark", "tasks_done", "method", "metric"], sort=False).value.agg(
        mean="mean", std=lambda v: v.std(ddof=1) if len(v) > 1 else float("nan"), seeds="size")
    return table.reset_index()


def reference_numbers(benchmark: str) -> pd.DataFrame:
    """The papers' numbers for a benchmark (data/reference_results.csv) with a `label` that matches
    nscl's method labels (VPT-NSP2 -> VPT-NSP²) and the bibliography `key` of the paper they belong to."""
    from nscl.presets.common import reference_results

    refs = reference_results(benchmark).copy()
    refs["label"] = refs.method.str.replace("NSP2", "NSP²", regex=False)
    refs["key"] = refs.paper.map(PAPER_KEYS).fillna(refs.paper)
    return refs.reset_index(drop=True)


def _sources(refs: pd.DataFrame) -> str:
    cited = []
    for row in refs.itertuples():
        text = f"{row.key}: {row.source}" + ("" if row.confidence == "printed" else f" ({row.confidence})")
        if text not in cited:
            cited.append(text)
    return "; ".join(cited)


def benchmark_table(summary: pd.DataFrame, benchmark: str, tasks_done: int,
                    references: pd.DataFrame | None = None, metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """One benchmark's table: per method, "mean ± std" over seeds of each metric (ours) beside the
    paper's number (%), the seeds, and each paper number's source (bibliography key and table).

    Methods the papers report but the root does not hold get a row marked "not run"; a benchmark
    with no reported numbers says so in its paper columns.
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
            row[f"{name} (ours)"] = format_mean_std(mine.loc[metric, "mean"], mine.loc[metric, "std"]) \
                if metric in mine.index else "not run"
            paper = refs[refs.metric == metric]
            row[f"{name} (paper)"] = f"{paper.value.iloc[0]:.2f}" if len(paper) else \
                (NONE_REPORTED if not len(references) else "—")
        row["seeds"] = int(mine.seeds.iloc[0]) if len(mine) else 0
        row["paper source"] = _sources(refs) if len(refs) else \
            (f"no reported numbers for {benchmark}" if not len(references) else "—")
        rows[method] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "method"
    return table


# -- accuracy matrices and per-task curves ---------------------------------------------------------------

def _matrix(frame: pd.DataFrame, column: str = "accuracy") -> np.ndarray:
    n = int(max(frame.train_task.max(), frame.eval_task.max())) + 1
    matrix = np.full((n, n), np.nan)
    matrix[frame.train_task.to_numpy(), frame.eval_task.to_numpy()] = frame[column].to_numpy()
    return matrix


def mean_matrix(accuracy: pd.DataFrame, benchmark: str, tasks_done: int, method: str) -> np.ndarray:
    """R[i, j] averaged over seeds (fractions; NaN above the diagonal) for one method and benchmark."""
    rows = accuracy[(accuracy.benchmark == benchmark) & (accuracy.tasks_done == tasks_done)
                    & (accuracy.method == method)]
    if not len(rows):
        raise ValueError(f"no accuracy matrix for {method!r} on {benchmark} ({tasks_done} tasks)")
    mean = rows.groupby(["train_task", "eval_task"], as_index=False).accuracy.mean()
    return _matrix(mean)


def step_curves(accuracy: pd.DataFrame) -> pd.DataFrame:
    """Per run, the accuracy on all classes seen after each task (fraction, pooled over test samples):
    benchmark, tasks_done, method, seed, task (1-based), accuracy."""
    rows = []
    for (benchmark, tasks_done, method, seed), run in accuracy.groupby(
            ["benchmark", "tasks_done", "method", "seed"], sort=False):
        sizes = run.drop_duplicates("eval_task").sort_values("eval_task").n_test.to_numpy()
        for task, value in enumerate(step_accuracies(_matrix(run), sizes), start=1):
            rows.append({"benchmark": benchmark, "tasks_done": tasks_done, "method": method, "seed": seed,
                         "task": task, "accuracy": value})
    return pd.DataFrame(rows)


def plot_matrix(ax: plt.Axes, matrix: np.ndarray, title: str = "", annotate: bool | None = None) -> plt.Axes:
    """Heat map of a mean accuracy matrix R[i, j] in % (rows: after training task i; columns: evaluated on
    task j), with tick labels thinned to at most about 12 per axis so that long sequences stay legible."""
    import seaborn as sns

    n = len(matrix)
    every = max(1, math.ceil(n / 12))
    labels = [str(i + 1) if i % every == 0 else "" for i in range(n)]
    annotate = n <= 5 if annotate is None else annotate
    sns.heatmap(np.asarray(matrix) * 100, ax=ax, vmin=0, vmax=100, cmap="viridis", mask=np.isnan(matrix),
                annot=annotate, fmt=".0f", annot_kws={"fontsize": 7}, xticklabels=labels, yticklabels=labels,
                square=True, cbar_kws={"label": "accuracy (%)"})
    ax.tick_params(axis="y", labelrotation=0)
    ax.set_xlabel("evaluated on task j")
    ax.set_ylabel("after training task i")
    ax.set_title(title)
    return ax


# line style per role (Seq, the method, frozen, joint, zero-shot), so that curves that coincide stay visible
_STYLES = ("--", "-", "-", ":", "-.", (0, (1, 3)), "-")


def _seeds(n: int) -> str:
    return f"{n} seed" + ("" if n == 1 else "s")


def plot_step_bands(ax: plt.Axes, curves: pd.DataFrame, colours: Mapping[str, object] | None = None,
                    title: str = "") -> plt.Axes:
    """Accuracy on seen classes after each task (%), per method: the mean over seeds and a ±1 std band."""
    for method, frame in curves.groupby("method", sort=False):
        stats = frame.groupby("task").accuracy.agg(["mean", "std", "size"]) * [100, 100, 1]
        colour = (colours or {}).get(method)
        line, = ax.plot(stats.index, stats["mean"], marker="o", ms=3, color=colour, ls=_STYLES[_role(method)],
                        label=f"{method} ({_seeds(int(stats['size'].max()))})")
        band = stats["std"].fillna(0.0)
        ax.fill_between(stats.index, stats["mean"] - band, stats["mean"] + band, color=line.get_color(), alpha=0.15)
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.set_xlabel("number of tasks learnt")
    ax.set_ylabel("accuracy on seen classes (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return ax


# -- NSP² against DMNSP ------------------------------------------------------------------------------

def protocol_of(benchmark: str) -> str:
    """The protocol a benchmark runs: its data set and how the classes are split into tasks, whatever
    the class order and the images' variant. NSP²'s cifar100-10s and DMNSP's cifar100-10-10 are one
    protocol, and so are shapes100-10s and shapes100-tinted-10s (the same classes, on other backgrounds)."""
    from nscl.presets.common import BENCHMARKS

    if benchmark not in BENCHMARKS:
        return benchmark
    b = BENCHMARKS[benchmark]
    classes = f"{b.increment} classes each" if b.initial_increment == b.increment else \
        f"{b.initial_increment} classes, then {b.increment} each"
    return f"{b.dataset}: {b.n_tasks} tasks, {classes}"


def main_labels(methods: Sequence[str]) -> dict[str, list[str]]:
    """The labels of each family's main method among `methods`: NSP² (VPT-NSP², CLIP-NSP²) and DMNSP."""
    return {"NSP²": [m for m in methods if m in ("VPT-NSP²", "CLIP-NSP²")],
            "DMNSP": [m for m in methods if m == "DMNSP"]}


def _seq_of(label: str) -> str:
    return label.replace("NSP²", "Seq") if label.endswith("NSP²") else "adapter-Seq"


def _paired(a: pd.DataFrame, b: pd.DataFrame, metric: str) -> dict[str, float] | None:
    """a - b on metric (points), matched by seed; None without a common seed."""
    left, right = a.set_index("seed")[metric], b.set_index("seed")[metric]
    seeds = left.index.intersection(right.index)
    if not len(seeds):
        return None
    diff = (left[seeds] - right[seeds]).to_numpy() * 100
    return {"mean": float(diff.mean()), "std": float(diff.std(ddof=1)) if len(diff) > 1 else float("nan"),
            "min": float(diff.min()), "max": float(diff.max()), "seeds": len(diff)}


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
                for bench_a, bench_b in _benchmark_pairs(group[group.method == nsp2].benchmark,
                                                         group[group.method == dmnsp].benchmark):
                    rows += _cross_rows(group, protocol, int(tasks_done), (nsp2, bench_a), (dmnsp, bench_b), metrics)
    return pd.DataFrame(rows)


def _benchmark_pairs(left: pd.Series, right: pd.Series) -> list[tuple[str, str]]:
    """The benchmarks both ran, each with itself; else every pair (the protocol's variants differ)."""
    a, b = sorted(left.unique()), sorted(right.unique())
    same = [(x, x) for x in a if x in b]
    return same or [(x, y) for x in a for y in b]


def _cross_rows(group: pd.DataFrame, protocol: str, tasks_done: int, nsp2: tuple[str, str],
                dmnsp: tuple[str, str], metrics: Sequence[str]) -> list[dict]:
    def runs_of(label: str, benchmark: str) -> pd.DataFrame:
        return group[(group.method == label) & (group.benchmark == benchmark)]

    a, b = runs_of(*nsp2), runs_of(*dmnsp)
    seq_a, seq_b = runs_of(_seq_of(nsp2[0]), nsp2[1]), runs_of("adapter-Seq", dmnsp[1])
    rows = []
    for metric in metrics:
        va, vb = a[metric] * 100, b[metric] * 100
        paired = _paired(a, b, metric) if nsp2[1] == dmnsp[1] else None
        gain_a, gain_b = _paired(a, seq_a, metric), _paired(b, seq_b, metric)
        rows.append({
            "protocol": protocol, "tasks": tasks_done, "metric": METRIC_NAMES.get(metric, metric),
            "NSP² method": f"{nsp2[0]} on {nsp2[1]}", "DMNSP method": f"{dmnsp[0]} on {dmnsp[1]}",
            "NSP²": format_mean_std(va.mean(), va.std(ddof=1) if len(va) > 1 else float("nan")) + f" (n={len(va)})",
            "DMNSP": format_mean_std(vb.mean(), vb.std(ddof=1) if len(vb) > 1 else float("nan")) + f" (n={len(vb)})",
            "NSP² − DMNSP (means)": f"{va.mean() - vb.mean():+.1f}",
            "NSP² − DMNSP (paired)": _describe(paired) if nsp2[1] == dmnsp[1] else "— (different benchmarks)",
            "NSP² − its Seq (paired)": _describe(gain_a), "DMNSP − adapter-Seq (paired)": _describe(gain_b),
            "nsp2_mean": va.mean(), "dmnsp_mean": vb.mean(), "same_benchmark": nsp2[1] == dmnsp[1],
            **{f"paired_{k}": (paired or {}).get(k, float("nan")) for k in ("mean", "std", "min", "max", "seeds")},
            **{f"nsp2_gain_{k}": (gain_a or {}).get(k, float("nan")) for k in ("mean", "min", "max", "seeds")},
            **{f"dmnsp_gain_{k}": (gain_b or {}).get(k, float("nan")) for k in ("mean", "min", "max", "seeds")},
        })
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
        lead = "NSP² and DMNSP tied" if abs(gap) < 0.05 else \
            f"{'NSP²' if gap > 0 else 'DMNSP'} ahead by {abs(gap):.1f} points"
        paired = _agreement(row["paired_min"], row["paired_max"], row["paired_seeds"]) if row["same_benchmark"] \
            else "different benchmarks, not paired"
        gains = [_gain(name, *(row[f"{key}_gain_{k}"] for k in ("mean", "min", "max", "seeds")))
                 for name, key in (("NSP² − its Seq", "nsp2"), ("DMNSP − adapter-Seq", "dmnsp"))]
        sentences.append(f"{row['protocol']} ({row['NSP² method']} vs {row['DMNSP method']}, after {row['tasks']} "
                         f"tasks), {row['metric']}: {lead} ({paired}); " + "; ".join(gains))
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
        except Exception:   # an unreadable or foreign report: this optional table just leaves the run out
            continue
        rows = report.get("adam_moments") if isinstance(report, dict) else None
        if rows:
            parts.append(pd.DataFrame(rows).assign(benchmark=run.benchmark, tasks_done=run.tasks_done,
                                                   method=run.method, seed=run.seed))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
