"""Atlas helpers on hand-worked subspaces."""

import math

import pytest
import torch

from nscl.atlas import atlas_rows, principal_angles, subspace_overlap, top_basis


def test_principal_angles_and_overlap_of_known_planes():
    e = torch.eye(3, dtype=torch.float64)
    xy = e[:, :2]
    tilted = torch.stack([e[:, 0], (e[:, 1] + e[:, 2]) / math.sqrt(2)], dim=1)  # shares x, 45° in the other
    torch.testing.assert_close(
        principal_angles(xy, tilted), torch.tensor([0.0, 45.0], dtype=torch.float64), atol=1e-6, rtol=0
    )
    assert subspace_overlap(xy, tilted) == pytest.approx((1 + 0.5) / 2)
    assert subspace_overlap(xy, e[:, 2:]) == pytest.approx(0.0)
    assert subspace_overlap(xy, xy) == pytest.approx(1.0)


def test_atlas_rows_keep_the_accumulated_spectrum_and_the_tasks_top_directions():
    own = torch.diag(torch.tensor([0.0, 5.0, 1.0, 0.0]))  # this task lives on axes 1 and 2
    total = torch.diag(torch.tensor([3.0, 5.0, 1.0, 0.0]))
    (row,) = atlas_rows(2, "affinity", [own], [total], [7], k=2)
    assert row["task"] == 2 and row["layer"] == 7 and row["kind"] == "affinity"
    torch.testing.assert_close(row["spectrum"], torch.tensor([5.0, 3.0, 1.0, 0.0]))
    assert subspace_overlap(row["task_basis"], torch.eye(4)[:, 1:3]) == pytest.approx(1.0)
    torch.testing.assert_close(top_basis(own, 1).abs().squeeze(), torch.eye(4, dtype=torch.float64)[1])


def test_mean_task_overlap_by_hand():
    from nscl.atlas import mean_task_overlap

    e = torch.eye(4, dtype=torch.float64)
    bases = [e[:, :2], e[:, 1:3], e[:, 2:4]]  # overlaps: 1/2 (share e1), 0 (none), 1/2 (share e2)
    rows = [{"task": t, "layer": 5, "kind": "x", "tower": "visual", "task_basis": b} for t, b in enumerate(bases)]
    rows += [{"task": t, "layer": 2, "kind": "x", "tower": "visual", "task_basis": e[:, :2]} for t in range(3)]
    rows += [{"task": t, "layer": 5, "kind": "x", "tower": "text", "task_basis": e[:, :2]} for t in range(3)]
    assert mean_task_overlap(rows, "x", tower="visual") == pytest.approx(1 / 3)  # last layer (5) by default
    assert mean_task_overlap(rows, "x", layer=2, tower="visual") == pytest.approx(1.0)
    with pytest.raises(ValueError, match="kinds present: \\['x'\\]"):
        mean_task_overlap(rows, "affinity")
    with pytest.raises(ValueError, match="an overlap needs two"):
        mean_task_overlap(rows[:1], "x")
