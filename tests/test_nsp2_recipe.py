"""NSP² recipe details that must match the official code, and the controls every table shows beside NSP²."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from test_nsp2 import shapes_tasks, tiny_nsp2  # noqa: F401  (fixture and builder shared with test_nsp2)
from timm.scheduler import create_scheduler_v2

from nscl.experiment.run import RunConfig, repeated, run_continual
from nscl.methods.base import TaskInfo
from nscl.models.encoders import TaskHeads
from nscl.nsp2.method import NSP2Config, control_configs, multistep_lr
from nscl.nsp2.recipe import nsp2_experiment


def official_epoch_lrs(lr: float, milestones: list[int], epochs: int) -> list[float]:
    """The learning rate of each epoch as the official loop drives timm's scheduler: step(epoch) after each."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    scheduler, _ = create_scheduler_v2(
        optimizer,
        sched="multistep",
        num_epochs=epochs,
        decay_milestones=milestones,
        decay_rate=0.1,
        min_lr=1e-5,
        warmup_epochs=0,
        warmup_lr=1e-5,
    )
    rates = []
    for epoch in range(epochs + 1):
        if epoch > 0:
            rates.append(optimizer.param_groups[0]["lr"])
        scheduler.step(epoch)
    return rates


@pytest.mark.parametrize("lr, milestones, epochs", [(1e-2, (5, 8), 10), (1e-3, (5, 8), 10), (1e-2, (3, 4), 5)])
def test_lr_schedule_equals_the_official_timm_schedule(lr, milestones, epochs):
    ours = [multistep_lr(e, lr, milestones, 0.1) for e in range(epochs)]
    np.testing.assert_allclose(ours, official_epoch_lrs(lr, list(milestones), epochs), rtol=1e-12)
    if milestones == (5, 8):  # 4 epochs at lr, 3 at lr/10, 3 at lr/100
        np.testing.assert_allclose(ours, [lr] * 4 + [lr / 10] * 3 + [lr / 100] * 3, rtol=1e-12)


def test_the_method_uses_the_schedule_per_step():
    method = tiny_nsp2()
    method.config = replace(method.config, milestones=(5, 8))
    method.task = TaskInfo(0, range(0, 2), 2, ("a", "b"), 10, steps_per_epoch=3, epochs=10)
    per_step = [method._lr(step) for step in range(30)]
    assert per_step[11] == pytest.approx(1e-2 * 0.1**0) and per_step[12] == pytest.approx(1e-2 * 0.1)


def test_repeats_are_shuffled_and_batched_once(shapes_tasks):  # noqa: F811
    task = shapes_tasks.task(0, "train")  # 48 images
    assert len(repeated(task, 10)) == 480
    assert torch.equal(repeated(task, 3).targets.reshape(3, -1), task.targets.expand(3, -1))
    result = run_continual(
        tiny_nsp2(null_space=False),
        shapes_tasks,
        RunConfig(epochs=1, batch_size=20, data_repeats=3, progress=False, max_tasks=1),
    )
    assert result.tasks.steps.tolist() == [8]  # ceil(3 * 48 / 20), where 3 * ceil(48 / 20) would be 9


def test_first_task_head_is_initialised_as_timms_head():
    torch.manual_seed(0)
    heads = TaskHeads(768)  # ViT-B/16's width, as in the recipe
    first = heads.add_task(10)
    second = heads.add_task(10)
    assert torch.count_nonzero(first.bias) == 0  # timm: zero bias ...
    bound = 1 / np.sqrt(first.in_features)  # ... normal weights, std .02
    assert first.weight.std().item() == pytest.approx(0.02, rel=0.15) and first.weight.abs().max() > bound
    assert torch.count_nonzero(second.bias) == 10 and second.weight.abs().max() <= bound  # nn.Linear's default


def test_clip_projection_has_a_zero_initialised_bias_that_refinement_trains(shapes_tasks):  # noqa: F811
    method = tiny_nsp2(head="text", refine_head=True)
    bias = method.encoder.projection_bias
    assert bias is not None and torch.count_nonzero(bias) == 0 and bias.shape == (32,)
    features = torch.randn(3, 64)
    torch.testing.assert_close(method.encoder.project(features), features @ method.encoder.model.proj)
    run_continual(method, shapes_tasks, RunConfig(epochs=1, batch_size=16, progress=False, max_tasks=1))
    assert torch.count_nonzero(method.encoder.projection_bias) > 0
    assert not method.encoder.projection_bias.requires_grad  # frozen again after refinement


def test_controls_are_the_recipe_without_projection(shapes_tasks):  # noqa: F811
    configs = control_configs(NSP2Config())
    assert all(not c.null_space and c.drift_weight == 0 for c in configs.values())
    assert configs["frozen"].freeze_prompts and configs["joint"].loss_over == "seen"
    experiment = nsp2_experiment("tiny", "vit")
    assert list(experiment.methods) == ["VPT-Seq", "VPT-NSP²", "VPT-frozen", "VPT-prototype", "VPT-joint"]
    assert experiment.run_overrides == {"VPT-joint": {"joint": True}}


def test_frozen_control_keeps_the_first_tasks_prompts(shapes_tasks):  # noqa: F811
    method = tiny_nsp2(
        **{
            k: v
            for k, v in vars(control_configs(NSP2Config())["frozen"]).items()
            if k in ("null_space", "freeze_prompts", "drift_weight")
        }
    )
    run_continual(method, shapes_tasks, RunConfig(epochs=1, batch_size=16, progress=False))
    after = method.prompt_history
    assert not torch.equal(after[0], method.encoder.bank.prompts.new_zeros(after[0].shape))
    assert torch.equal(after[0], after[1]) and torch.equal(after[1], after[2])


def test_joint_control_trains_every_head_on_every_seen_class(shapes_tasks):  # noqa: F811
    method = tiny_nsp2(null_space=False, drift_weight=0.0, loss_over="seen")
    run_continual(method, shapes_tasks, RunConfig(epochs=1, batch_size=16, progress=False, max_tasks=1))
    first = method.heads.heads[0].weight.detach().clone()
    run_continual(
        method, shapes_tasks, RunConfig(epochs=1, batch_size=16, progress=False, joint=True, max_tasks=2), run_dir=None
    )
    assert not torch.equal(method.heads.heads[0].weight, first)


def test_drift_penalty_can_be_used_without_the_projection(shapes_tasks):  # noqa: F811
    with_penalty = tiny_nsp2(null_space=False, drift_weight=1.0)
    without = tiny_nsp2(null_space=False, drift_weight=0.0)
    config = RunConfig(epochs=1, batch_size=16, progress=False, max_tasks=2)
    a, b = run_continual(with_penalty, shapes_tasks, config), run_continual(without, shapes_tasks, config)
    assert with_penalty.projection is None
    assert a.tasks.mean_loss[0] == pytest.approx(b.tasks.mean_loss[0])  # no penalty on the first task
    assert a.tasks.mean_loss[1] > b.tasks.mean_loss[1]  # the penalty adds to the loss after it


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(lr=0), "lr"),
        (dict(gamma=-0.1), "gamma"),
        (dict(drift_weight=-1), "drift_weight"),
        (dict(accumulate="max"), "accumulate"),
        (dict(loss_over="all"), "loss_over"),
    ],
)
def test_bad_nsp2_settings_are_named(bad, match):
    with pytest.raises(ValueError, match=match):
        NSP2Config(**bad)
