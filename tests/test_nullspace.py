import warnings

import numpy as np
import pytest
import torch

from nscl.nullspace import (
    CovarianceAccumulator,
    EmptyNullSpaceWarning,
    NullSpaceRule,
    adaptive_null_space_start,
    null_space_basis,
    null_space_mask,
    null_space_projector,
    uncentered_covariance,
)


def low_rank_inputs(n=200, d=32, rank=12, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n, rank, generator=g, dtype=torch.float64) @ torch.randn(rank, d, generator=g, dtype=torch.float64)
    ).to(dtype)


def relative_output_change(weight, update, inputs):
    old = inputs @ weight.T
    new = inputs @ (weight + update).T
    return (torch.linalg.norm(new - old) / torch.linalg.norm(old)).item()


@pytest.mark.parametrize("dtype,bound", [(torch.float64, 1e-6), (torch.float32, 1e-4)])
def test_projected_update_keeps_old_outputs_of_a_linear_layer(dtype, bound):
    x_old = low_rank_inputs(dtype=dtype)
    g = torch.Generator().manual_seed(1)
    weight = torch.randn(10, 32, generator=g, dtype=torch.float64).to(dtype)
    raw_update = torch.randn(10, 32, generator=g, dtype=torch.float64).to(dtype)  # as large as W itself
    cov = uncentered_covariance(x_old)
    projector, info = null_space_projector(cov, NullSpaceRule("energy", 0.0), dtype=dtype)
    assert info.null_dim == 32 - 12
    projected = raw_update @ projector
    assert relative_output_change(weight, projected, x_old) < bound
    # the unprojected update moves old outputs by orders of magnitude more
    assert relative_output_change(weight, raw_update, x_old) > 1e4 * bound


def test_change_grows_as_eta_drops():
    x_old = low_rank_inputs()
    g = torch.Generator().manual_seed(2)
    weight = torch.randn(10, 32, generator=g, dtype=torch.float64)
    raw_update = torch.randn(10, 32, generator=g, dtype=torch.float64)
    cov = uncentered_covariance(x_old)
    changes = []
    for eta in (1.0, 0.99, 0.9, 0.5, 0.0):
        projector, _ = null_space_projector(cov, NullSpaceRule("energy", 0.0), eta=eta, dtype=torch.float64)
        changes.append(relative_output_change(weight, raw_update @ projector, x_old))
    assert changes[0] < 1e-10
    assert all(a < b for a, b in zip(changes, changes[1:])), changes
    # eta = 0 is the identity: the raw update
    assert changes[-1] == pytest.approx(relative_output_change(weight, raw_update, x_old), rel=1e-12)


def test_projector_is_symmetric_idempotent_and_annihilates_retained_directions():
    x_old = low_rank_inputs(d=24, rank=9)
    cov = uncentered_covariance(x_old)
    projector, info = null_space_projector(cov, NullSpaceRule("energy", 0.0), dtype=torch.float64)
    torch.testing.assert_close(projector, projector.T)
    torch.testing.assert_close(projector @ projector, projector, atol=1e-12, rtol=0)
    assert torch.linalg.matrix_rank(projector).item() == info.null_dim == 15
    assert torch.linalg.norm(x_old @ projector) / torch.linalg.norm(x_old) < 1e-12
    # the normalised projector (NSP² official) is the same projector scaled by 1/sqrt(k)
    normalised, _ = null_space_projector(cov, NullSpaceRule("energy", 0.0), normalize=True, dtype=torch.float64)
    torch.testing.assert_close(normalised, projector / 15**0.5)


def test_accumulator_sums_batches_and_tasks():
    x = low_rank_inputs(n=90)
    acc = CovarianceAccumulator(32)
    for batch in x.split(25):
        acc.update(batch)
    torch.testing.assert_close(acc.end_task(), x.T @ x)
    y = low_rank_inputs(n=30, seed=5)
    acc.update(y)
    torch.testing.assert_close(acc.end_task(), x.T @ x + y.T @ y)
    assert acc.matrix.dtype == torch.float64


def test_accumulator_batch_mean_and_task_mean():
    x = low_rank_inputs(n=60)
    a, b = x[:20], x[20:60]
    acc = CovarianceAccumulator(32, within_task="batch_mean", across_tasks="mean")
    acc.update(a)
    acc.update(b)
    first = a.T @ a / 20 + b.T @ b / 40  # each batch divided by its own rows (NSP² official)
    torch.testing.assert_close(acc.end_task(n_samples=60), first)
    y = low_rank_inputs(n=30, seed=3)
    acc.update(y)
    second = y.T @ y / 30
    torch.testing.assert_close(acc.end_task(n_samples=30), first * 60 / 90 + second * 30 / 90)


def test_accumulator_state_round_trip():
    acc = CovarianceAccumulator(32, within_task="mean")
    acc.update(low_rank_inputs(n=40))
    acc.end_task()
    acc.update(low_rank_inputs(n=10, seed=4))
    clone = CovarianceAccumulator(32)
    clone.load_state_dict(acc.state_dict())
    torch.testing.assert_close(clone.end_task(), acc.end_task())


def test_modes_on_a_hand_worked_spectrum():
    s = torch.tensor([10.0, 5.0, 1.0, 0.5, 0.0], dtype=torch.float64)
    # energy: tails are 16.5, 6.5, 1.5, 0.5, 0 -> those <= 0.1 * 16.5 = 1.65 are the last three
    assert null_space_mask(s, NullSpaceRule("energy", 0.1)).tolist() == [False, False, True, True, True]
    assert null_space_mask(s, NullSpaceRule("energy", 0.0)).tolist() == [False, False, False, False, True]
    assert null_space_mask(s, NullSpaceRule("drop_top", 1)).tolist() == [False, True, True, True, True]
    assert null_space_mask(s, NullSpaceRule("threshold", 0.6)).tolist() == [False, False, False, True, True]
    s2 = torch.tensor([10.0, 5.0, 1.0, 0.5, 0.2], dtype=torch.float64)
    # times: s <= int(3) * s_min = 0.6
    assert null_space_mask(s2, NullSpaceRule("times", 3)).tolist() == [False, False, False, True, True]


def test_adaptive_rule_hand_worked_short_spectrum():
    # second differences s[i] - 2 s[i+1] + s[i+2] = [0, -6, 6.9, 0]; peak at 2, centred -> index 3
    s = np.array([10.0, 9.0, 8.0, 1.0, 0.9, 0.8])
    assert adaptive_null_space_start(s) == 3
    assert adaptive_null_space_start(s, offset=0.5) == 3 + int(0.5 * 3)
    assert adaptive_null_space_start(s, offset=2) == 5


def test_adaptive_rule_finds_the_knee_of_a_long_spectrum():
    s = np.concatenate([np.linspace(100.0, 90.0, 300), np.linspace(1.0, 0.5, 468)])
    start = adaptive_null_space_start(s)
    assert 295 <= start <= 310, start
    cov = torch.diag(torch.as_tensor(s))
    assert abs(null_space_basis(cov, NullSpaceRule("adaptive")).info.null_dim - 468) <= 10


def test_info_reports_dimension_and_captured_energy():
    cov = torch.diag(torch.tensor([4.0, 3.0, 2.0, 1.0], dtype=torch.float64))
    info = null_space_basis(cov, NullSpaceRule("drop_top", 2)).info
    assert (info.dim, info.null_dim) == (4, 2)
    assert info.captured_energy == pytest.approx(3.0 / 10.0)
    assert info.threshold == pytest.approx(2.0)


def test_empty_null_space_warns_and_gives_a_zero_update():
    cov = torch.eye(6, dtype=torch.float64)
    with pytest.warns(EmptyNullSpaceWarning, match="kept no direction"):
        projector, info = null_space_projector(cov, NullSpaceRule("energy", 0.0), normalize=True)
    assert info.null_dim == 0
    assert torch.all(projector == 0)
    assert torch.isfinite(projector).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyNullSpaceWarning)
        mixed, _ = null_space_projector(cov, NullSpaceRule("energy", 0.0), eta=0.9)
    torch.testing.assert_close(mixed, 0.1 * torch.eye(6))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(mode="svd"), "not known"),
        (dict(mode="energy", value=1.5), "fraction"),
        (dict(mode="drop_top", value=1.5), "integer"),
        (dict(mode="threshold", value=-1.0), "non-negative"),
    ],
)
def test_bad_rules_fail_clearly(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NullSpaceRule(**kwargs)


def test_bad_eta_fails_clearly():
    with pytest.raises(ValueError, match="eta"):
        null_space_projector(torch.eye(3, dtype=torch.float64), NullSpaceRule("drop_top", 1), eta=1.2)
