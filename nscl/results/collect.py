"""Gathering finished runs from a run root: one row per run, their accuracy matrices, what the root holds,
and mean ± std tables per benchmark."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from nscl.files import read_json
from nscl.paths import repo_root
from nscl.results.tables import summary_table

__all__ = [
    "UnreadableRunError",
    "collect_runs",
    "report_tables",
    "resolve_run_root",
    "load_runs",
    "load_accuracy",
    "groups",
    "inventory",
]


class UnreadableRunError(ValueError):
    """Run directories whose metrics.json cannot be read: a mean without them would silently hold fewer seeds."""


def _read_metrics(path: Path) -> tuple[dict | None, str | None]:
    """(metrics, None), or (None, why it cannot be read)."""
    try:
        metrics = json.loads(path.read_text())
    except OSError as err:
        return None, f"cannot be read ({err.strerror or err})"
    except ValueError as err:
        return None, f"is not valid JSON ({err}); a half-written or damaged file"
    if not isinstance(metrics, dict) or not isinstance(metrics.get("tasks_done"), int):
        return None, "holds no 'tasks_done' count: not a metrics.json that nscl wrote"
    return metrics, None


def collect_runs(run_root: str | Path, skip_unreadable: bool = False) -> pd.DataFrame:
    """One row per run directory under run_root (any depth): benchmark, method, seed, tasks_done, metrics.

    Labels come from the run's run.json (written by Experiment.run_one); older runs without one are
    labelled from config.json (method, seed) and their path. A metrics.json that cannot be read raises
    UnreadableRunError naming every such file and why; `skip_unreadable` leaves them out on purpose, with a
    warning, and lists them in the frame's `attrs["unreadable"]`.
    """
    rows, unreadable = [], []
    for metrics_path in sorted(Path(run_root).rglob("metrics.json")):
        run_dir = metrics_path.parent
        metrics, why = _read_metrics(metrics_path)
        if metrics is None:
            unreadable.append(f"{metrics_path}: {why}")
            continue
        run, cfg = read_json(run_dir / "run.json", {}), read_json(run_dir / "config.json", {})
        if not run and not cfg:
            continue
        row = {
            "benchmark": run.get("benchmark") or cfg.get("dataset", "?"),
            "method": run.get("method") or cfg.get("method", run_dir.parent.name),
            "seed": run.get("seed", cfg.get("run_config", {}).get("seed")),
            "tasks_done": metrics.get("tasks_done", 0),
            "run_dir": str(run_dir),
        }
        row.update({k: v for k, v in metrics.items() if isinstance(v, (int, float)) and k != "tasks_done"})
        rows.append(row)
    if unreadable and not skip_unreadable:
        raise UnreadableRunError(
            f"{len(unreadable)} run(s) under {run_root} cannot be read, and a mean without them would hold fewer "
            "seeds than it says:\n  " + "\n  ".join(unreadable) + "\nRerun or remove them, or leave them out on "
            "purpose (python -m nscl report --skip-unreadable; skip_unreadable=True)"
        )
    if unreadable:
        warnings.warn(f"left out {len(unreadable)} unreadable run(s): " + "; ".join(unreadable), stacklevel=2)
    frame = pd.DataFrame(rows)
    frame.attrs["unreadable"] = unreadable
    return frame


def report_tables(
    run_root: str | Path, skip_unreadable: bool = False, collected: pd.DataFrame | None = None
) -> dict[str, pd.DataFrame]:
    """Per benchmark (and number of tasks done), mean ± std over seeds per method (nscl.results.tables.summary_table).

    The runs are gathered as chapter 7 gathers them (nscl.results.report.load_runs): two runs of one method and
    seed on one benchmark (made with other settings) are refused rather than averaged. `collected`: the root's
    `collect_runs` frame, when the caller has read it already.
    """
    tables = {}
    try:
        frame = load_runs(run_root, skip_unreadable, collected)
    except FileNotFoundError:
        return tables
    metrics = [m for m in ("last_accuracy", "average_incremental_accuracy", "forgetting") if m in frame.columns]
    for (benchmark, tasks), group in frame[frame.tasks_done > 0].groupby(["benchmark", "tasks_done"], sort=True):
        tables[f"{benchmark} ({tasks} task{'s' if tasks > 1 else ''})"] = summary_table(group, metrics)
    return tables


def _how_to_make(path: Path) -> str:
    ways = [
        f"python -m nscl sweep --methods nsp2 dmnsp --benchmarks shapes100-10s shapes100-tinted-10s "
        f"--seeds 0 1 2 --run-root {path}  (add --epochs 1 --max-tasks 3 for a quick grid)"
    ]
    if (repo_root() / "benchmarks" / "tiny_grid.py").is_file():
        ways.insert(0, "python benchmarks/tiny_grid.py  (the book's 3-seed tiny grid, benchmarks/results/tiny_grid)")
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


def load_runs(
    run_root: str | Path, skip_unreadable: bool = False, collected: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per run with at least one finished task: benchmark, method, seed, tasks_done, the metrics
    (fractions), run_dir, and the run settings from config.json (epochs, batch_size, precision, device).
    `collected`: the root's `collect_runs` frame, when the caller has read it already.

    Raises ValueError when two runs share benchmark, method, seed and tasks done (their mean would mix
    two settings; report on a narrower root).
    """
    frame = collect_runs(run_root, skip_unreadable) if collected is None else collected
    if not len(frame):
        raise FileNotFoundError(f"no run under {run_root} (no metrics.json with run.json or config.json)")
    frame = frame[frame.tasks_done > 0].copy()
    if not len(frame):
        raise FileNotFoundError(f"no run under {run_root} has finished a task yet")
    frame["seed"] = frame.seed.astype(int)
    settings = [read_json(Path(d) / "config.json", {}).get("run_config", {}) for d in frame.run_dir]
    for key in ("epochs", "batch_size", "precision", "device"):
        frame[key] = [s.get(key) for s in settings]
    keys = ["benchmark", "method", "seed", "tasks_done"]
    twice = frame[frame.duplicated(keys, keep=False)]
    if len(twice):
        listed = "\n  ".join(twice.sort_values(keys).run_dir)
        raise ValueError(
            f"runs with the same benchmark, method, seed and tasks done under {run_root}; their "
            f"mean would mix settings; report on a narrower root:\n  {listed}"
        )
    return frame.sort_values(keys).reset_index(drop=True)


def load_accuracy(runs: pd.DataFrame) -> pd.DataFrame:
    """Every run's accuracy.csv, tidy: benchmark, tasks_done, method, seed, train_task, eval_task,
    accuracy and accuracy_task_aware (fractions), n_test; rows past the run's tasks_done are dropped."""
    parts = []
    for run in runs.itertuples():
        frame = pd.read_csv(Path(run.run_dir) / "accuracy.csv")
        frame = frame[(frame.train_task < run.tasks_done) & (frame.eval_task < run.tasks_done)]
        parts.append(frame.assign(benchmark=run.benchmark, tasks_done=run.tasks_done, method=run.method, seed=run.seed))
    frame = pd.concat(parts, ignore_index=True)
    if "accuracy_task_aware" not in frame:  # runs written before nscl recorded it
        frame["accuracy_task_aware"] = np.nan
    columns = [
        "benchmark",
        "tasks_done",
        "method",
        "seed",
        "train_task",
        "eval_task",
        "accuracy",
        "accuracy_task_aware",
        "n_test",
    ]
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
        except TypeError:  # mixed types (a setting missing from some config.json)
            ordered = sorted(distinct, key=str)
        return ", ".join(str(v) for v in ordered)

    table = runs.groupby(["benchmark", "tasks_done", "method"], sort=True).agg(
        seeds=("seed", listing),
        runs=("seed", "size"),
        epochs=("epochs", listing),
        batch_size=("batch_size", listing),
        precision=("precision", listing),
    )
    return table
