"""Modality statistics of adapter snapshots on hand-made parameter sets."""

import numpy as np
import pytest
import torch

from nscl.analysis.modalities import across_task_variance, layer_statistics, parameter_set, spread_statistics, tower_of

V_UP, V_DOWN = (
    "visual.transformer.resblocks.0.adaptmlp.up_proj.weight",
    "visual.transformer.resblocks.0.adaptmlp.down_proj.weight",
)
T_UP, T_DOWN = "transformer.resblocks.0.adaptmlp.up_proj.weight", "transformer.resblocks.0.adaptmlp.down_proj.weight"
V_UP1 = "visual.transformer.resblocks.1.adaptmlp.up_proj.weight"

INIT = {
    V_UP: torch.zeros(2),
    V_DOWN: torch.tensor([1.0, 1.0]),
    T_UP: torch.zeros(2),
    T_DOWN: torch.tensor([5.0, 5.0]),
    V_UP1: torch.zeros(2),
}
TASK0 = {**INIT, V_UP: torch.tensor([1.0, -1.0]), V_DOWN: torch.tensor([2.0, 0.0]), T_UP: torch.tensor([0.5, 0.5])}
TASK1 = {**TASK0, V_UP: torch.tensor([3.0, -3.0]), V_UP1: torch.tensor([4.0, 0.0])}


def test_towers_and_sets():
    assert tower_of(V_UP) == "visual" and tower_of(T_UP) == "text"
    np.testing.assert_allclose(parameter_set(TASK0, INIT, "visual", "up_proj.weight"), [1, -1, 0, 0])
    np.testing.assert_allclose(parameter_set(TASK0, INIT, "visual", "down_proj.weight - init"), [1, -1])
    assert parameter_set(TASK0, INIT, "text", "all").numel() == 4
    np.testing.assert_allclose(parameter_set(TASK1, INIT, "visual", "up_proj.weight", layer=1), [4, 0])
    with pytest.raises(ValueError, match="which="):
        parameter_set(TASK0, INIT, "visual", "bias")


def test_spread_and_drift_hand_worked():
    stats = spread_statistics([TASK0, TASK1], INIT).set_index(["set", "tower", "task"])
    up = stats.loc[("up_proj.weight", "visual")]
    # task 0: values (1, -1, 0, 0): variance 0.5; drift from init = sqrt(2) / sqrt(4)
    assert up.loc[0, "variance"] == pytest.approx(0.5)
    assert up.loc[0, "drift"] == pytest.approx(np.sqrt(2) / 2)
    # task 1: (3, -3, 4, 0): variance (9+9+16)/4 - 1 = 7.5; drift sqrt(4+4+16)/2
    assert up.loc[1, "variance"] == pytest.approx(7.5)
    assert up.loc[1, "drift"] == pytest.approx(np.sqrt(24) / 2)
    text = stats.loc[("up_proj.weight", "text")]
    assert text.loc[1, "drift"] == 0.0 and text.loc[0, "mean"] == pytest.approx(0.5)


def test_across_task_and_layer_variance():
    np.testing.assert_allclose(
        across_task_variance([TASK0, TASK1], INIT, "visual"), [1.0, 1.0, 4.0, 0.0]
    )  # block 0 then block 1
    table = layer_statistics([TASK0, TASK1], INIT, "visual")
    assert table.loc[0, 1] == pytest.approx(9.0) and table.loc[1, 1] == pytest.approx(4.0)
