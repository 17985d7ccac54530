"""How far results move across machines, and a page's own run set beside the committed one.

Two runs with the same shipped backbone, data bytes and seed are bit-identical on one machine. On
another CPU the arithmetic differs in the last bits (other kernels, other thread splits) and a few
thousand optimiser steps carry that into the accuracies. `benchmarks/machine_spread.py` measures it
by emulating other CPUs; `machine_spread` summarises that table against the seed-to-seed spread,
`stated_tolerance` turns it into the tolerance the book states, and `compare_with_committed` puts a
chapter's own run beside the committed run of the same seed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from nscl.models.artifacts import ArtifactError
from nscl.paths import repo_root

__all__ = [
    "MACHINE_SPREAD_CSV",
    "REFERENCE_PROFILE",
    "TRAINED",
    "state_tensors",
    "trained_parameter_gap",
    "machine_gaps",
    "machine_spread",
    "stated_tolerance",
    "compare_with_committed",
    "Comparison",
    "committed_comparison",
]

MACHINE_SPREAD_CSV = repo_root() / "benchmarks" / "results" / "machine_spread.csv"
REFERENCE_PROFILE = "native"  # the profile whose runs are the committed results


# The parts of a method's checkpoint state that training learns: NSP²'s prompts and heads (and CLIP-NSP²'s
# text classifier), DMNSP's adapters. Projectors, feature statistics and eigenbases are left out: an
# eigenvector's sign is arbitrary, so a basis can flip whole without any difference in the method.
TRAINED = ("prompts", "heads", "text", "clip_proj", "adapters")


def state_tensors(value: Any, prefix: str = "", floating_only: bool = False) -> Iterator[tuple[str, torch.Tensor]]:
    """(dotted path, tensor) of every tensor in a nested state (dicts in sorted key order, lists, tuples)."""
    if isinstance(value, dict):
        for key in sorted(value, key=str):
            yield from state_tensors(value[key], f"{prefix}.{key}", floating_only)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from state_tensors(item, f"{prefix}.{i}", floating_only)
    elif torch.is_tensor(value) and (value.is_floating_point() or not floating_only):
        yield prefix, value


def trained_parameter_gap(run_dir: Path, reference_dir: Path) -> float:
    """Largest |θ − θ_ref| / max |θ_ref| over the trained parameters (TRAINED) of two run directories' final
    checkpoints; NaN when either has no checkpoint."""
    paths = [Path(d) / "checkpoint.pt" for d in (run_dir, reference_dir)]
    if not all(p.exists() for p in paths):
        return float("nan")
    states = []
    for path in paths:
        method = torch.load(path, map_location="cpu", weights_only=False)["method"]
        states.append(dict(state_tensors({k: v for k, v in method.items() if k in TRAINED}, floating_only=True)))
    gaps = [
        float((states[0][k] - ref).abs().max() / ref.abs().max().clamp_min(1e-30))
        for k, ref in states[1].items()
        if k in states[0] and ref.numel() and states[0][k].shape == ref.shape
    ]
    return max(gaps) if gaps else float("nan")


def machine_gaps(frame: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """One row per family, method, seed, profile and metric: |value − the reference profile's value|."""
    keys = ["family", "method", "seed"]
    long = frame.melt(id_vars=["profile", *keys], value_vars=list(metrics), var_name="metric")
    reference = long[long.profile == REFERENCE_PROFILE].drop(columns="profile")
    others = long[long.profile != REFERENCE_PROFILE].merge(reference, on=[*keys, "metric"], suffixes=("", "_ref"))
    others["gap"] = (others.value - others.value_ref).abs()
    return others[["family", "method", "seed", "profile", "metric", "gap"]]


def machine_spread(frame: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Per family, method and metric: the std over seeds of the reference profile, and for every other
    profile the largest |value − reference value| over the seeds both ran (fractions, like the metrics).

    frame: one row per profile, family, method and seed (benchmarks/machine_spread.py's CSV).
    """
    index = ["family", "method", "metric"]
    table = machine_gaps(frame, metrics).pivot_table(
        index=index, columns="profile", values="gap", aggfunc="max", sort=False
    )
    table.columns.name = None
    reference = frame[frame.profile == REFERENCE_PROFILE].melt(
        id_vars=["family", "method", "seed"], value_vars=list(metrics), var_name="metric"
    )
    seeds = reference.groupby(index, sort=False).value.agg(["std", "count"])
    table.insert(0, "seed std", seeds["std"].reindex(table.index))
    table.insert(1, "seeds", seeds["count"].reindex(table.index))
    table["largest machine gap"] = table.drop(columns=["seed std", "seeds"]).max(axis=1)
    return table


def stated_tolerance(metric: str, family: str, path: Path = MACHINE_SPREAD_CSV, step: float = 0.005) -> float:
    """The tolerance the book states for `metric` on a family's runs: three times the root mean square of
    the gaps the emulated machines showed (machine_gaps), rounded up to a multiple of `step` (half a point),
    and at least one step. Methods whose numbers never moved on any machine and seed (nothing trained)
    do not count. If the gaps scatter like a normal law around zero, 3 RMS covers 99.7% of them."""
    gaps = machine_gaps(pd.read_csv(path), [metric])
    gaps = gaps[gaps.family == family]
    moved = gaps.groupby("method").gap.transform("max") > 0
    gaps = gaps[moved]
    if gaps.empty:
        return step
    rms = float((gaps.gap**2).mean() ** 0.5)
    return max(step, math.ceil(round(3 * rms / step, 9)) * step)


def compare_with_committed(
    own: pd.DataFrame, committed: pd.DataFrame, metrics: Sequence[str], tolerance: dict[str, float]
) -> pd.DataFrame:
    """This page's runs beside the committed runs of the same method and seed, metric by metric.

    own, committed: one row per method and seed with `backbone_weights` and the metrics (fractions).
    Returns one row per method, seed and metric: this page, committed, difference, tolerance, within.
    Raises ArtifactError when a pair started from other backbone weights (then they are not the same
    experiment, and a difference would say nothing about the machine), naming both.
    """
    pairs = own.merge(committed, on=["method", "seed"], suffixes=("", "_committed"))
    if pairs.empty:
        raise ValueError(f"no run of this page ({sorted(set(zip(own.method, own.seed)))}) is among the committed ones")
    other = pairs[pairs.backbone_weights != pairs.backbone_weights_committed]
    if len(other):
        row = other.iloc[0]
        raise ArtifactError(
            f"{row.method}, seed {row.seed}: this page's run started from {row.backbone_weights!r}, the "
            f"committed one from {row.backbone_weights_committed!r}. The shipped weights changed without "
            f"the committed results being recomputed (or this run used weights pretrained here): "
            f"rerun the commands that made them, or restore nscl/models/weights."
        )
    rows = [
        {
            "method": r["method"],
            "seed": int(r["seed"]),
            "metric": m,
            "this page": r[m],
            "committed": r[f"{m}_committed"],
            "difference": r[m] - r[f"{m}_committed"],
            "tolerance": tolerance[m],
            "within": abs(r[m] - r[f"{m}_committed"]) <= tolerance[m] + 1e-12,
        }
        for r in pairs.to_dict("records")
        for m in metrics
    ]
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Comparison:
    """A page's runs beside the committed ones: the table (in %) and one sentence that says what it shows."""

    table: pd.DataFrame
    verdict: str
    within: bool


def committed_comparison(
    own: pd.DataFrame,
    committed: pd.DataFrame,
    metrics: Sequence[str],
    family: str,
    spread_csv: Path = MACHINE_SPREAD_CSV,
) -> Comparison:
    """compare_with_committed with the book's stated tolerances for `family` ('nsp2' or 'dmnsp'), as a
    table in % and a verdict."""
    tolerance = {m: stated_tolerance(m, family, spread_csv) for m in metrics}
    rows = compare_with_committed(own, committed, metrics, tolerance)
    table = rows.rename(columns={"committed": "reference"})  # the book's reader sees the book's word
    for column in ("this page", "reference", "difference", "tolerance"):
        table[column] = table[column] * 100
    table = table.round({"this page": 2, "reference": 2, "difference": 2, "tolerance": 1})
    runs = rows[["method", "seed"]].drop_duplicates()
    what = f"{len(runs)} run{'s' if len(runs) > 1 else ''} of this page"
    if (rows.difference == 0).all():
        verdict = (
            f"The {what} equal the reference runs to the last digit: this machine does the reference runs' arithmetic."
        )
    elif rows.within.all():
        largest = rows.groupby("metric", sort=False).difference.apply(lambda d: d.abs().max())
        verdict = (
            f"The {what} differ from the reference runs by at most "
            + ", ".join(f"{largest[m] * 100:.2f} points ({m.replace('_', ' ')})" for m in metrics)
            + ": within the tolerance of chapter 7 ("
            + ", ".join(f"±{tolerance[m] * 100:.1f}" for m in metrics)
            + " points)."
        )
    else:
        out = rows[~rows.within]
        verdict = (
            f"{len(out)} of {len(rows)} numbers differ from the reference runs by more than chapter 7's "
            f"tolerance ("
            + "; ".join(
                f"{r.method} seed {r.seed} {r.metric.replace('_', ' ')}: {r.difference * 100:+.2f} points"
                for r in out.itertuples()
            )
            + "). This machine's arithmetic moves these runs further than the emulated CPUs of chapter 7 "
            "did; the tables and comparisons below are read from the reference runs and do not depend on it."
        )
    return Comparison(table, verdict, bool(rows.within.all()))
