"""Plots the chapters share. Every function draws on a given Axes and labels what it draws."""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from nscl.results.tables import method_role

__all__ = [
    "plot_accuracy_matrix",
    "plot_spectrum",
    "plot_step_accuracies",
    "plot_metric_sweep",
    "plot_regime_map",
    "savefig",
]


def plot_accuracy_matrix(
    ax: plt.Axes, accuracy: np.ndarray, title: str = "", vmin: float = 0.0, annotate: bool | None = None
) -> plt.Axes:
    """Heat map of R[i, j] in % (rows: after training task i, columns: evaluated on task j), tasks numbered
    from 1; on long sequences only every k-th task is labelled (at most 12 labels per axis), and the cells
    are annotated up to 12 tasks unless `annotate` says otherwise."""
    n = len(accuracy)
    every = max(1, math.ceil(n / 12))
    tasks = range(1, n + 1)
    cells = pd.DataFrame(np.asarray(accuracy, dtype=float) * 100, index=tasks, columns=tasks)
    sns.heatmap(
        cells,
        ax=ax,
        vmin=vmin * 100,
        vmax=100,
        cmap="viridis",
        mask=cells.isna(),
        annot=n <= 12 if annotate is None else annotate,
        fmt=".0f",
        annot_kws={"fontsize": 7},
        xticklabels=every,
        yticklabels=every,
        square=True,
        cbar_kws={"label": "accuracy (%)"},
    )
    ax.tick_params(axis="y", labelrotation=0)
    ax.set_xlabel("evaluated on task j")
    ax.set_ylabel("after training task i")
    ax.set_title(title)
    return ax


def plot_spectrum(
    ax: plt.Axes, singular_values: np.ndarray, marks: Mapping[str, int] | None = None, title: str = ""
) -> plt.Axes:
    """Descending spectrum of an uncentered feature matrix on a log scale, with null-space starts marked."""
    s = np.asarray(singular_values, dtype=np.float64)
    floor = max(s.max() * 1e-18, np.finfo(np.float64).tiny)
    ax.semilogy(np.arange(len(s)), np.maximum(s, floor), lw=1.5, color="k")
    for (label, index), colour in zip((marks or {}).items(), sns.color_palette("tab10")):
        ax.axvline(index, ls="--", color=colour, label=f"{label}: null space from {index}")
    ax.set_xlabel("direction index i (descending)")
    ax.set_ylabel("singular value $s_i$ of $X^T X$")
    ax.set_title(title)
    if marks:
        ax.legend(fontsize=8)
    return ax


def plot_metric_sweep(
    ax: plt.Axes,
    frame: pd.DataFrame,
    x: str,
    y: str,
    hue: str | None = None,
    baselines: Mapping[str, float] | None = None,
    xlabel: str = "",
    ylabel: str = "",
    title: str = "",
    logx: bool = False,
) -> plt.Axes:
    """A metric against a swept parameter (mean and spread over seeds), baselines as horizontal lines."""
    sns.lineplot(data=frame, x=x, y=y, hue=hue, marker="o", ax=ax, errorbar="sd")
    for (name, value), colour in zip((baselines or {}).items(), sns.color_palette("Set2")):
        ax.axhline(value, ls="--", color=colour, label=name)
    if logx:
        # symlog keeps x = 0 (e.g. the exact null space) on a log axis
        positive = frame[x][frame[x] > 0]
        ax.set_xscale("symlog", linthresh=float(positive.min()) if len(positive) else 1.0)
        ax.set_xlim(left=0.0)
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel or y)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax


def savefig(fig: plt.Figure, path) -> None:
    """Save a figure next to a run's CSV/JSON (PNG, tight)."""
    fig.savefig(path, dpi=120, bbox_inches="tight")


# line style per role (Seq, the method, frozen, joint, zero-shot), so that curves that coincide stay visible
_STYLES = ("--", "-", "-", ":", (0, (3, 1, 1, 1)), "-.", (0, (1, 3)), "-")  # by method_role


def _seeds(n: int) -> str:
    return f"{n} seed" + ("" if n == 1 else "s")


def plot_step_accuracies(
    ax: plt.Axes, curves: pd.DataFrame, colours: Mapping[str, object] | None = None, title: str = ""
) -> plt.Axes:
    """Accuracy on all classes seen so far after each task (%, as NSP²'s Figure 2), per method: the mean over
    seeds and a ±1 std band. curves: nscl.results.tables.step_curves (method, seed, task, accuracy).

    Each method has its own marker, and each line is drawn thinner than the one before, so that two methods
    with the same curve (NSP² and its frozen control, often) stay visible one inside the other."""
    for i, (method, frame) in enumerate(curves.groupby("method", sort=False)):
        stats = frame.groupby("task").accuracy.agg(["mean", "std", "size"]) * [100, 100, 1]
        colour = (colours or {}).get(method)
        (line,) = ax.plot(
            stats.index,
            stats["mean"],
            marker="osD^vP*X"[i % 8],
            ms=max(7 - 1.2 * i, 2.5),
            lw=max(3.5 - 0.7 * i, 1.0),
            alpha=0.9,
            color=colour,
            ls=_STYLES[method_role(method)],
            label=f"{method} ({_seeds(int(stats['size'].max()))})",
        )
        band = stats["std"].fillna(0.0)
        ax.fill_between(stats.index, stats["mean"] - band, stats["mean"] + band, color=line.get_color(), alpha=0.15)
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.set_xlabel("number of tasks learnt")
    ax.set_ylabel("accuracy on seen classes (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return ax


def plot_regime_map(
    frame: pd.DataFrame, metric: str = "last_accuracy", controls: Sequence[str] = ("frozen", "prototype")
) -> plt.Figure:
    """The regime map: per control, each method's paired gain on `metric` (points, mean ± std over seeds)
    against the tasks' feature overlap, each point labelled with its benchmark family.

    frame: `nscl.results.regime.regime_frame` rows (method, label, family, overlap, control, metric, mean, std).
    """
    chosen = frame[frame.metric == metric]
    if chosen.empty:
        raise ValueError(f"no rows for metric {metric!r} in the regime frame")
    fig, axes = plt.subplots(1, len(controls), figsize=(5.2 * len(controls), 4.0), sharey=True, squeeze=False)
    labels = sorted(chosen.label.unique())
    markers = dict(zip(labels, "osD^v"))
    # methods measured on the same features share an overlap (DMNSP and its update variant): dodge them sideways
    # so that neither hides the other, and name each family once per place
    span = max(float(chosen.overlap.max() - chosen.overlap.min()), 0.1)
    dodge = {label: (i - (len(labels) - 1) / 2) * 0.012 * span for i, label in enumerate(labels)}
    for ax, control in zip(axes[0], controls):
        rows = chosen[chosen.control == control]
        named: set[tuple[str, float]] = set()
        for label, group in rows.groupby("label", sort=True):
            x = group.overlap + dodge[label]
            ax.errorbar(x, group["mean"], yerr=group["std"], fmt=markers[label], capsize=3, label=label, alpha=0.85)
            for r, xi in zip(group.itertuples(), x):
                place = (r.family, round(float(r.overlap), 2))
                if place not in named:
                    named.add(place)
                    above = labels.index(label) % 2 == 0  # neighbours' names on opposite sides of their points
                    ax.annotate(
                        r.family, (xi, r.mean), textcoords="offset points", xytext=(5, 4 if above else -11), fontsize=8
                    )
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_xlabel("overlap of the tasks' top-8 feature subspaces")
        ax.set_title(f"gain over {control}")
    name = metric.replace("_", " ")
    axes[0][0].set_ylabel(
        f"{name}: method − control (points)" if metric != "forgetting" else "forgetting: control − method"
    )
    axes[0][-1].legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig
