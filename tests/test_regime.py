import math

import pandas as pd
import pytest

from nscl.results.regime import regime_frame, regime_table, verdict


def runs(rows):
    return pd.DataFrame(
        [
            {
                "method": m,
                "label": lab,
                "benchmark": b,
                "family": "grey",
                "seed": s,
                "last_accuracy": a,
                "forgetting": f,
            }
            for m, lab, b, s, a, f in rows
        ]
    )


# VPT-NSP² beats frozen by 2, 4, 6 points on three seeds, ties prototype (+1, -1, 0), forgets 1 point less than frozen
METRICS = runs(
    [("nsp2", "VPT-NSP²", "b", s, a, f) for s, a, f in [(0, 0.50, 0.10), (1, 0.60, 0.20), (2, 0.70, 0.30)]]
    + [("nsp2", "VPT-frozen", "b", s, a, f) for s, a, f in [(0, 0.48, 0.11), (1, 0.56, 0.21), (2, 0.64, 0.31)]]
    + [("nsp2", "VPT-prototype", "b", s, a, f) for s, a, f in [(0, 0.49, 0.05), (1, 0.61, 0.05), (2, 0.70, 0.05)]]
)
OVERLAPS = pd.DataFrame(
    [
        {"method": "nsp2", "label": "VPT-NSP²", "benchmark": "b", "seed": s, "overlap": o}
        for s, o in [(0, 0.8), (1, 0.9), (2, 1.0)]
    ]
)


def test_gains_are_paired_by_seed_and_signed_so_that_positive_is_good():
    frame = regime_frame(METRICS, OVERLAPS, controls=("frozen", "prototype"))
    row = frame[(frame.control == "frozen") & (frame.metric == "last_accuracy")].iloc[0]
    assert (row["mean"], row["std"], row["min"], row["max"]) == pytest.approx((4.0, 2.0, 2.0, 6.0))
    assert row.seeds == 3 and row.seeds_positive == 3 and row.overlap == pytest.approx(0.9)
    forgetting = frame[(frame.control == "frozen") & (frame.metric == "forgetting")].iloc[0]
    assert forgetting["mean"] == pytest.approx(1.0) and forgetting.seeds_positive == 3  # 1 point less forgetting
    proto = frame[(frame.control == "prototype") & (frame.metric == "forgetting")].iloc[0]
    assert (proto["mean"], proto["min"], proto["max"]) == pytest.approx((-15.0, -25.0, -5.0))
    assert proto.seeds_positive == 0


def test_the_table_says_gains_ties_and_loses_by_every_seed():
    table = regime_table(regime_frame(METRICS, OVERLAPS, controls=("frozen", "prototype")))
    row = table.loc[("VPT-NSP²", "b")]
    assert row["vs frozen"] == "4.0 ± 2.0" and row["vs frozen: verdict"] == "gains"
    assert row["vs prototype: verdict"] == "ties" and row["overlap"] == 0.9
    forgetting = regime_table(regime_frame(METRICS, None, controls=("prototype",)), "forgetting")
    assert forgetting.loc[("VPT-NSP²", "b"), "vs prototype: verdict"] == "loses"
    assert math.isnan(forgetting.loc[("VPT-NSP²", "b"), "overlap"])


def test_verdict_margin():
    assert verdict(1.0, 0.6, 1.4, 3) == "gains" and verdict(1.0, 0.4, 1.4, 3) == "ties"
    assert verdict(-1.0, -1.4, -0.6, 3) == "loses" and verdict(0.0, 0.0, 0.0, 0) == "ties"


def test_bad_frames_are_named():
    with pytest.raises(ValueError, match=r"lacks columns \['seed'\]"):
        regime_frame(METRICS.drop(columns="seed"))
    with pytest.raises(ValueError, match="unknown method family 'nsp3'"):
        regime_frame(METRICS.assign(method="nsp3"))
    with pytest.raises(ValueError, match="no rows for metric 'plasticity'"):
        regime_table(regime_frame(METRICS, OVERLAPS), "plasticity")


def test_the_regime_map_draws_one_labelled_panel_per_control():
    import matplotlib

    matplotlib.use("Agg")
    from nscl.results.plots import plot_regime_map

    frame = regime_frame(METRICS, OVERLAPS, controls=("frozen", "prototype"))
    fig = plot_regime_map(frame)
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["gain over frozen", "gain over prototype"]
    assert "overlap" in axes[0].get_xlabel() and "points" in axes[0].get_ylabel()
    assert [t.get_text() for t in axes[0].texts] == ["grey"]  # each point names its family
    with pytest.raises(ValueError, match="no rows for metric 'plasticity'"):
        plot_regime_map(frame, "plasticity")


def test_every_variant_of_a_method_is_set_against_the_same_controls():
    variant = METRICS[METRICS.label == "VPT-NSP²"].assign(
        label="VPT-NSP² (update)", last_accuracy=lambda f: f.last_accuracy + 0.1
    )
    frame = regime_frame(pd.concat([METRICS, variant]), OVERLAPS, controls=("frozen",))
    last = frame[frame.metric == "last_accuracy"].set_index("label")
    assert last.loc["VPT-NSP²", "mean"] == pytest.approx(4.0) and last.loc[
        "VPT-NSP² (update)", "mean"
    ] == pytest.approx(14.0)
    assert last.overlap.tolist() == pytest.approx([0.9, 0.9])  # the family's overlap, measured by its recipe's runs


def test_sentences_name_the_verdict_and_the_gain():
    from nscl.results.regime import regime_sentences

    frame = regime_frame(METRICS, OVERLAPS, controls=("frozen", "prototype"))
    assert regime_sentences(frame, ["VPT-NSP²"]) == [
        "VPT-NSP² on b (overlap 0.90): beats frozen (4.0 ± 2.0), ties with prototype (0.0 ± 1.0)"
    ]
    with pytest.raises(ValueError, match="labels present: \\['VPT-NSP²'\\]"):
        regime_sentences(frame, ["DMNSP"])
