"""Plots the chapters share. Every function draws on a given Axes and labels what it draws."""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

__all__ = ["plot_accuracy_matrix", "plot_spectrum", "plot_step_accuracies", "plot_metric_sweep", "savefig"]


def plot_accuracy_matrix(ax: plt.Axes, accuracy: np.ndarray, title: str = "", vmin: float = 0.0,
                         annotate: bool | None = None) -> plt.Axes:
    """Heat map of R[i, j] (rows: after training task i, columns: evaluated on task j)."""
    n = accuracy.shape[0]
    masked = np.ma.masked_invalid(accuracy * 100)
    annotate = n <= 12 if annotate is None else annotate
    # tick labels go through seaborn, which thins them on large matrices (setting all n afterwards fails)
    labels = list(range(1, n + 1))
    sns.heatmap(masked, ax=ax, vmin=vmin * 100, vmax=100, cmap="viridis", annot=annotate, fmt=".0f",
                mask=np.isnan(accuracy), cbar_kws={"label": "accuracy (%)"}, annot_kws={"fontsize": 7},
                square=True, xticklabels=labels if n <= 12 else "auto", yticklabels=labels if n <= 12 else "auto")
    if n > 12:   # seaborn's automatic ticks count from 0
        ax.set_xticklabels([int(t.get_text()) + 1 for t in ax.get_xticklabels()])
        ax.set_yticklabels([int(t.get_text()) + 1 for t in ax.get_yticklabels()], rotation=0)
    ax.set_xlabel("evaluated on task j")
    ax.set_ylabel("after training task i")
    ax.tick_params(axis="y", rotation=0)
    ax.set_title(title)
    return ax


def plot_spectrum(ax: plt.Axes, singular_values: np.ndarray, marks: Mapping[str, int] | None = None,
                  title: str = "") -> plt.Axes:
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


def plot_step_accuracies(ax: plt.Axes, curves: Mapping[str, Sequence[float]], title: str = "",
                         reference: Mapping[str, Sequence[float]] | None = None) -> plt.Axes:
    """Accuracy on all classes seen so far after each task, one line per method (as NSP²'s Figure 2)."""
    for name, values in curves.items():
        ax.plot(np.arange(1, len(values) + 1), np.asarray(values) * 100, marker="o", label=name)
    for name, values in (reference or {}).items():
        ax.plot(np.arange(1, len(values) + 1), np.asarray(values) * 100, ls=":", marker="x", label=f"{name} (paper)")
    ax.set_xlabel("number of tasks learnt")
    ax.set_ylabel("accuracy on seen classes (%)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax


def plot_metric_sweep(ax: plt.Axes, frame: pd.DataFrame, x: str, y: str, hue: str | None = None,
                      baselines: Mapping[str, float] | None = None, xlabel: str = "", ylabel: str = "",
                      title: str = "", logx: bool = False) -> plt.Axes:
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
