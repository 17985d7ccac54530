"""nscl.results.reproducibility on hand-made tables: machine spread, the stated tolerance, a page beside its committed run."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from nscl.models.artifacts import ArtifactError
from nscl.results.reproducibility import compare_with_committed, machine_spread, stated_tolerance


def _frame() -> pd.DataFrame:
    rows = []
    native = {0: 0.70, 1: 0.74, 2: 0.72}
    for seed, value in native.items():
        rows.append({"profile": "native", "family": "f", "method": "A", "seed": seed, "acc": value})
        rows.append({"profile": "AVX2", "family": "f", "method": "A", "seed": seed, "acc": value + 0.01 * (seed - 1)})
    rows.append({"profile": "SSE", "family": "f", "method": "A", "seed": 0, "acc": 0.73})
    return pd.DataFrame(rows)


def test_machine_spread_against_seed_spread():
    table = machine_spread(_frame(), ["acc"])
    row = table.loc[("f", "A", "acc")]
    assert row["seed std"] == pytest.approx(0.02)  # std of 0.70, 0.74, 0.72
    assert row["seeds"] == 3
    assert row["AVX2"] == pytest.approx(0.01)  # |Δ| of 0.01, 0, 0.01
    assert row["SSE"] == pytest.approx(0.03)  # seed 0 only: 0.73 - 0.70
    assert row["largest machine gap"] == pytest.approx(0.03)


def test_stated_tolerance_is_three_rms_of_the_moving_methods_rounded_up(tmp_path):
    path = tmp_path / "spread.csv"
    frame = _frame()
    still = frame[frame.method == "A"].assign(method="untrained")
    still["acc"] = 0.5  # never moves: left out of the RMS
    pd.concat([frame, still]).to_csv(path, index=False)
    # gaps of A: AVX2 0.01, 0, 0.01 and SSE 0.03 -> RMS sqrt((1e-4 + 0 + 1e-4 + 9e-4) / 4) = 0.01658; 3 RMS = 0.0497
    assert stated_tolerance("acc", "f", path) == pytest.approx(0.05)
    frame.loc[frame.profile != "native", "acc"] = frame.loc[frame.profile != "native", "seed"].map(
        {0: 0.70, 1: 0.74, 2: 0.72}
    )  # every machine equal to native
    frame.to_csv(path, index=False)
    assert stated_tolerance("acc", "f", path) == pytest.approx(0.005)  # nothing moved: half a point


def test_page_beside_committed_and_other_weights_named():
    committed = pd.DataFrame(
        {"method": ["A", "A", "B"], "seed": [0, 1, 0], "backbone_weights": ["w@1"] * 3, "acc": [0.70, 0.74, 0.50]}
    )
    own = pd.DataFrame({"method": ["A", "B"], "seed": [0, 0], "backbone_weights": ["w@1"] * 2, "acc": [0.72, 0.50]})
    table = compare_with_committed(own, committed, ["acc"], {"acc": 0.015})
    assert list(table.method) == ["A", "B"]
    assert table.difference.tolist() == pytest.approx([0.02, 0.0])
    assert table.within.tolist() == [False, True]
    own.loc[1, "backbone_weights"] = "w@2"
    with pytest.raises(
        ArtifactError, match=r"B, seed 0: this page's run started from 'w@2', the committed one from 'w@1'"
    ):
        compare_with_committed(own, committed, ["acc"], {"acc": 0.015})
    with pytest.raises(ValueError, match="no run of this page"):
        compare_with_committed(own.assign(seed=5), committed, ["acc"], {"acc": 0.015})


def test_committed_comparison_says_which_case_it_is(tmp_path):
    from nscl.results.reproducibility import committed_comparison

    spread = tmp_path / "spread.csv"
    _frame().to_csv(spread, index=False)  # tolerance for family "f": 0.05 (test above)
    committed = pd.DataFrame({"method": ["A"], "seed": [0], "backbone_weights": ["w@1"], "acc": [0.70]})
    same = committed_comparison(committed, committed, ["acc"], "f", spread)
    assert same.within and "to the last digit" in same.verdict
    assert same.table["this page"].tolist() == [70.0] and same.table["reference"].tolist() == [70.0]  # in %
    near = committed_comparison(committed.assign(acc=0.73), committed, ["acc"], "f", spread)
    assert near.within and "at most 3.00 points (acc)" in near.verdict and "±5.0" in near.verdict
    far = committed_comparison(committed.assign(acc=0.80), committed, ["acc"], "f", spread)
    assert not far.within and "A seed 0 acc: +10.00 points" in far.verdict


def test_trained_parameter_gap_reads_only_trained_parameters(tmp_path):
    import torch

    from nscl.results.reproducibility import trained_parameter_gap

    def run(name, prompts, basis):
        (tmp_path / name).mkdir()
        torch.save(
            {"method": {"prompts": prompts, "heads": [{"weight": torch.ones(2, 2)}], "atlas": [basis]}},
            tmp_path / name / "checkpoint.pt",
        )
        return tmp_path / name

    reference = run("a", torch.tensor([2.0, -4.0]), torch.eye(2))
    other = run("b", torch.tensor([2.0, -3.0]), -torch.eye(2))  # a flipped basis is not a difference
    assert trained_parameter_gap(other, reference) == pytest.approx(0.25)  # |−3 − (−4)| / 4
    assert trained_parameter_gap(reference, reference) == 0.0
    assert math.isnan(trained_parameter_gap(tmp_path / "missing", reference))
