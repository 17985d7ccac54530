r"""The regime map: where a null space beats freezing, the prototype classifier and sequential fine-tuning.

Each projection method is compared, seed by seed on the same benchmark, with the three simple answers to
continual learning on a pre-trained backbone:

* **frozen**: train on the first task only, then never touch the backbone's adapted part again
  (first-session adaptation: APER, Zhou et al. IJCV 2024; FSA, Panos et al. ICCV 2023);
* **prototype**: no training at all, each class its mean embedding (SimpleCIL, Zhou et al. IJCV 2024);
* **Seq**: the same parameters trained on every task without protection.

A gain is the method minus the control in points (forgetting: the control minus the method, so that a
positive number is always good for the method), with its spread over seeds. Beside it, how much the tasks'
features overlap (chapter 6's measure), the axis along which the benchmarks form a ladder.
"""

from __future__ import annotations

import math
from typing import Sequence

import pandas as pd

from nscl.results.tables import format_mean_std, paired_by_seed

__all__ = [
    "COMPARISONS",
    "REGIME_METRICS",
    "regime_frame",
    "regime_table",
    "regime_sentences",
    "verdict",
]

# per method family: the projection method and its controls, as the experiment labels them
# per method family: the projection methods (a label, or a prefix ending in " (" for variants) and the controls
COMPARISONS: dict[str, dict[str, str]] = {
    "nsp2": {"method": "VPT-NSP²", "frozen": "VPT-frozen", "prototype": "VPT-prototype", "Seq": "VPT-Seq"},
    "nsp2-clip": {"method": "CLIP-NSP²", "frozen": "CLIP-frozen", "prototype": "CLIP-prototype", "Seq": "CLIP-Seq"},
    "dmnsp": {"method": "DMNSP", "frozen": "frozen", "prototype": "prototype", "Seq": "adapter-Seq"},
}


def _projection_labels(runs: pd.DataFrame, method: str) -> list[str]:
    """The method's label and its variants' ("DMNSP", "DMNSP (update)"), in the frame's order."""
    return [label for label in dict.fromkeys(runs.label) if label == method or label.startswith(f"{method} (")]


# metric -> +1 when higher is better for the method, -1 when lower is (forgetting)
REGIME_METRICS = {"last_accuracy": 1, "average_incremental_accuracy": 1, "forgetting": -1, "plasticity": 1}


def regime_frame(
    metrics: pd.DataFrame,
    overlaps: pd.DataFrame | None = None,
    controls: Sequence[str] = ("frozen", "prototype", "Seq"),
) -> pd.DataFrame:
    """One row per (method family, benchmark, control, metric): the paired gain in points (mean, std, min,
    max, seeds) and how many seeds it is positive on; with `overlaps`, the mean inter-task overlap.

    metrics: tidy runs (method, label, benchmark, family, seed and the metric columns, as the tiny grid's CSV);
    overlaps: rows (method, benchmark, seed, overlap) from the projection runs' atlases.
    """
    missing = {"method", "label", "benchmark", "seed"} - set(metrics.columns)
    if missing:
        raise ValueError(f"metrics frame lacks columns {sorted(missing)}")
    rows = []
    for (family, benchmark), runs in metrics.groupby(["method", "benchmark"], sort=False):
        labels = COMPARISONS.get(family)
        if labels is None:
            raise ValueError(f"unknown method family {family!r}; known: {list(COMPARISONS)}")
        overlap = math.nan
        if overlaps is not None and len(overlaps):  # the family's own runs measure it (its recipe's label)
            chosen = overlaps[
                (overlaps.method == family) & (overlaps.benchmark == benchmark) & (overlaps.label == labels["method"])
            ]
            overlap = float(chosen.overlap.mean()) if len(chosen) else math.nan
        for label in _projection_labels(runs, labels["method"]):
            rows += _gains(runs, family, label, benchmark, overlap, labels, controls)
    return pd.DataFrame(rows)


def _gains(
    runs: pd.DataFrame,
    family: str,
    label: str,
    benchmark: str,
    overlap: float,
    labels: dict[str, str],
    controls: Sequence[str],
) -> list[dict]:
    """One method label against each control on each metric, paired by seed (signed: positive is good)."""
    method = runs[runs.label == label]
    rows = []
    for control in controls:
        other = runs[runs.label == labels[control]]
        for metric, sign in REGIME_METRICS.items():
            gain = paired_by_seed(method, other, metric) if metric in runs.columns else None
            if gain is None:
                continue
            if sign < 0:  # forgetting: less is better, so the gain is control minus method
                gain = {**gain, "mean": -gain["mean"], "min": -gain["max"], "max": -gain["min"]}
            diffs = sign * (method.set_index("seed")[metric] - other.set_index("seed")[metric]).dropna()
            rows.append(
                {
                    "method": family,
                    "label": label,
                    "benchmark": benchmark,
                    "family": runs["family"].iloc[0] if "family" in runs else "",
                    "overlap": overlap,
                    "control": control,
                    "metric": metric,
                    **{k: gain[k] for k in ("mean", "std", "min", "max", "seeds")},
                    "seeds_positive": int((diffs > 0).sum()),
                }
            )
    return rows


def verdict(mean: float, low: float, high: float, seeds: int, margin: float = 0.5) -> str:
    """'gains' when every seed gains more than `margin` points, 'loses' when every seed loses more, else 'ties'."""
    if seeds and low > margin:
        return "gains"
    if seeds and high < -margin:
        return "loses"
    return "ties"


def regime_table(frame: pd.DataFrame, metric: str = "last_accuracy", digits: int = 1) -> pd.DataFrame:
    """Wide view of `regime_frame` for one metric: a row per (method, benchmark) with the overlap and, per
    control, "mean ± std" of the gain and its verdict over seeds."""
    chosen = frame[frame.metric == metric]
    if chosen.empty:
        raise ValueError(f"no rows for metric {metric!r}; metrics present: {sorted(frame.metric.unique())}")
    rows = []
    for (label, benchmark), group in chosen.groupby(["label", "benchmark"], sort=False):
        row = {"method": label, "benchmark": benchmark, "overlap": round(group.overlap.iloc[0], 2)}
        for r in group.itertuples():
            row[f"vs {r.control}"] = format_mean_std(r.mean, r.std, digits)
            row[f"vs {r.control}: verdict"] = verdict(r.mean, r.min, r.max, r.seeds)
        rows.append(row)
    return pd.DataFrame(rows).set_index(["method", "benchmark"])


_PHRASE = {"gains": "beats {control}", "loses": "loses to {control}", "ties": "ties with {control}"}


def regime_sentences(frame: pd.DataFrame, labels: Sequence[str], metric: str = "last_accuracy") -> list[str]:
    """One sentence per (label, benchmark), least overlapping benchmark last: the verdict against each
    control on `metric`, with the paired gain (mean ± std over seeds, in points) and the overlap."""
    chosen = frame[(frame.metric == metric) & frame.label.isin(list(labels))]
    if chosen.empty:
        raise ValueError(f"no {metric!r} rows for {list(labels)}; labels present: {sorted(frame.label.unique())}")
    sentences = []
    order = chosen.groupby("benchmark").overlap.mean().sort_values(ascending=False).index
    for label in labels:
        for benchmark in order:
            rows = chosen[(chosen.label == label) & (chosen.benchmark == benchmark)]
            if rows.empty:
                continue
            parts = [
                _PHRASE[verdict(r.mean, r.min, r.max, r.seeds)].format(control=r.control)
                + f" ({format_mean_std(r.mean, r.std)})"
                for r in rows.itertuples()
            ]
            sentences.append(f"{label} on {benchmark} (overlap {rows.overlap.iloc[0]:.2f}): " + ", ".join(parts))
    return sentences
