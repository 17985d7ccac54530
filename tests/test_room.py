import math

import pytest
import torch

from nscl.analysis.room import SurvivalRecorder, null_shares, projector_gain, random_shares
from nscl.nullspace import NullSpaceRule, null_space_projector
from nscl.optim import TwoSidedProjection


def _coordinate_bases():
    # affinity null space: the last 3 of D = 5 coordinates; aggregation: the last 1 of m = 2 tokens
    right = [torch.eye(5)[:, 2:]]
    left = [torch.eye(2)[:, 1:]]
    return right, left


def test_null_shares_split_a_known_gradient():
    right, left = _coordinate_bases()
    g = torch.zeros(1, 2, 5)
    g[0, 0, 0] = 1.0  # outside both
    g[0, 1, 0] = 1.0  # aggregation-null only
    g[0, 0, 3] = 2.0  # affinity-null only
    g[0, 1, 4] = 2.0  # in both (energy 4 of 10)
    shares = null_shares(g, right, left)[0]
    assert shares.tolist() == pytest.approx([8 / 10, 5 / 10, 4 / 10])


def test_random_shares_is_the_mean_share_of_random_gradients():
    gen = torch.Generator().manual_seed(0)
    right = [torch.linalg.qr(torch.randn(16, 11, generator=gen)).Q]
    left = [torch.linalg.qr(torch.randn(4, 3, generator=gen)).Q]
    sampled = torch.stack([null_shares(torch.randn(1, 4, 16, generator=gen), right, left)[0] for _ in range(4000)])
    expected = random_shares(right, left)[0]
    assert expected.tolist() == pytest.approx([11 / 16, 3 / 4, 33 / 64])
    assert sampled.mean(0).tolist() == pytest.approx(expected.tolist(), abs=0.01)


def test_zero_gradient_and_shape_errors():
    right, left = _coordinate_bases()
    assert null_shares(torch.zeros(1, 2, 5), right, left).abs().sum() == 0
    with pytest.raises(ValueError):
        null_shares(torch.zeros(2, 5), right, left)


@pytest.mark.parametrize("normalize", [True, False])
def test_projector_gain_matches_the_built_projector(normalize):
    # a covariance whose last k directions carry almost no energy: the energy rule keeps them as null space
    d, k, eta = 12, 7, 0.9
    cov = torch.diag(torch.cat([torch.full((d - k,), 1.0), torch.full((k,), 1e-12)])).double()
    proj, info = null_space_projector(cov, NullSpaceRule("energy", 1e-6), eta, normalize, torch.float64)
    assert info.null_dim == k
    inside, outside = torch.zeros(d, dtype=torch.float64), torch.zeros(d, dtype=torch.float64)
    inside[-1], outside[0] = 1.0, 1.0
    assert float((proj @ inside).norm()) == pytest.approx(projector_gain(k, eta, normalize))
    assert float((proj @ outside).norm()) == pytest.approx(1 - eta)
    assert projector_gain(111, 0.97) == pytest.approx(0.97 / math.sqrt(111) + 0.03)


def test_survival_recorder_measures_the_kept_share():
    left = torch.diag(torch.tensor([1.0, 0.0]))[None]  # keep token 0 only
    recorder = SurvivalRecorder(TwoSidedProjection(left, None))
    update = torch.zeros(1, 2, 3)
    update[0, 0, 0], update[0, 1, 0] = 3.0, 4.0
    out = recorder(update)
    assert torch.equal(out, TwoSidedProjection(left, None)(update))
    assert recorder.mean().tolist() == pytest.approx([3 / 5])
    with pytest.raises(ValueError):
        SurvivalRecorder(lambda u: u).mean()
