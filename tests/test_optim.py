import pytest
import torch

from nscl.nullspace import NullSpaceRule, null_space_projector, uncentered_covariance
from nscl.optim import ProjectedAdam, TwoSidedProjection


def grad_sequence(shape, steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g) for _ in range(steps)]


@pytest.mark.parametrize("weight_decay", [0.0, 5e-2])
def test_identity_projection_equals_torch_adam_step_for_step(weight_decay):
    init = torch.randn(1, 4, 16, generator=torch.Generator().manual_seed(3))
    ours, ref = init.clone().requires_grad_(), init.clone().requires_grad_()
    identity = TwoSidedProjection(left=torch.eye(4), right=torch.eye(16))
    opt = ProjectedAdam([ours], lr=1e-2, weight_decay=weight_decay, projections={ours: identity})
    ref_opt = torch.optim.Adam([ref], lr=1e-2, weight_decay=weight_decay)
    for grad in grad_sequence(init.shape, 25):
        ours.grad, ref.grad = grad.clone(), grad.clone()
        opt.step()
        ref_opt.step()
        torch.testing.assert_close(ours, ref, rtol=0, atol=1e-7)


def test_unprojected_parameters_equal_torch_adam_exactly():
    init = torch.randn(8, 8, generator=torch.Generator().manual_seed(9))
    ours, ref = init.clone().requires_grad_(), init.clone().requires_grad_()
    opt, ref_opt = ProjectedAdam([ours], lr=3e-3), torch.optim.Adam([ref], lr=3e-3)
    for grad in grad_sequence(init.shape, 10, seed=1):
        ours.grad, ref.grad = grad.clone(), grad.clone()
        opt.step()
        ref_opt.step()
        assert torch.equal(ours, ref)


@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_identity_projection_equals_torch_adamw(weight_decay):
    """Equal up to float32 rounding: the projected path applies the decay inside the update."""
    init = torch.randn(6, 10, generator=torch.Generator().manual_seed(8))
    ours, ref = init.clone().requires_grad_(), init.clone().requires_grad_()
    opt = ProjectedAdam(
        [ours],
        lr=1e-2,
        weight_decay=weight_decay,
        decoupled_weight_decay=True,
        projections={ours: TwoSidedProjection(right=torch.eye(10))},
    )
    ref_opt = torch.optim.AdamW([ref], lr=1e-2, weight_decay=weight_decay)
    for grad in grad_sequence(init.shape, 25, seed=2):
        ours.grad, ref.grad = grad.clone(), grad.clone()
        opt.step()
        ref_opt.step()
        torch.testing.assert_close(ours, ref, rtol=2e-6, atol=2e-6)


def test_projection_acts_on_the_adam_update_not_the_gradient():
    """Moments see the raw gradient; only the final update is multiplied P2 . update . P1."""
    g = torch.Generator().manual_seed(4)
    left = torch.linalg.qr(torch.randn(4, 4, generator=g))[0][:, :2]
    right = torch.linalg.qr(torch.randn(16, 16, generator=g))[0][:, :5]
    p2, p1 = left @ left.T, right @ right.T
    init = torch.randn(1, 4, 16, generator=g)
    ours, ref = init.clone().requires_grad_(), init.clone().requires_grad_()
    opt = ProjectedAdam([ours], lr=1e-2, projections={ours: TwoSidedProjection(p2, p1)})
    ref_opt = torch.optim.Adam([ref], lr=1e-2)
    for grad in grad_sequence(init.shape, 6, seed=5):
        before_ours, before_ref = ours.detach().clone(), ref.detach().clone()
        ours.grad, ref.grad = grad.clone(), grad.clone()
        opt.step()
        ref_opt.step()
        adam_update = ref.detach() - before_ref
        torch.testing.assert_close(ours.detach() - before_ours, p2 @ adam_update @ p1, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(opt.state[ours]["exp_avg"], ref_opt.state[ref]["exp_avg"])
        torch.testing.assert_close(opt.state[ours]["exp_avg_sq"], ref_opt.state[ref]["exp_avg_sq"])
    # projecting the gradient instead would give a different step: the placement is observable
    proj_grad = p2 @ grad @ p1
    assert not torch.allclose(p2 @ adam_update @ p1, -1e-2 * proj_grad.sign(), atol=1e-6)


def test_batched_two_sided_projection_matches_per_layer_products():
    g = torch.Generator().manual_seed(6)
    update = torch.randn(3, 4, 8, generator=g)
    left, right = torch.randn(3, 4, 4, generator=g), torch.randn(3, 8, 8, generator=g)
    out = TwoSidedProjection(left, right)(update)
    for layer in range(3):
        torch.testing.assert_close(out[layer], left[layer] @ update[layer] @ right[layer])


def test_training_in_the_null_space_keeps_old_outputs():
    g = torch.Generator().manual_seed(7)
    x_old = torch.randn(100, 6, generator=g, dtype=torch.float64) @ torch.randn(6, 20, generator=g, dtype=torch.float64)
    x_new = torch.randn(100, 20, generator=g, dtype=torch.float64)
    layer = torch.nn.Linear(20, 5, bias=False, dtype=torch.float64)
    old_out = layer(x_old).detach()
    projector, _ = null_space_projector(uncentered_covariance(x_old), NullSpaceRule("energy", 0.0), dtype=torch.float64)
    # a new task that a null-space update can solve: targets from a teacher W + D P
    teacher = layer.weight.detach() + torch.randn(5, 20, generator=g, dtype=torch.float64) @ projector
    y_new = x_new @ teacher.T
    opt = ProjectedAdam(layer.parameters(), lr=1e-2, projections={layer.weight: TwoSidedProjection(right=projector)})
    start_loss = torch.nn.functional.mse_loss(layer(x_new), y_new).item()
    for _ in range(300):
        loss = torch.nn.functional.mse_loss(layer(x_new), y_new)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05 * start_loss  # it learnt the new task ...
    change = torch.linalg.norm(layer(x_old) - old_out) / torch.linalg.norm(old_out)
    assert change < 1e-10  # ... without moving old outputs


def test_bad_hyperparameters_fail_clearly():
    p = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="lr"):
        ProjectedAdam([p], lr=-1.0)
    with pytest.raises(ValueError, match="betas"):
        ProjectedAdam([p], betas=(1.0, 0.9))
