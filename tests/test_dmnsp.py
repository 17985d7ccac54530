"""DMNSP: adapter placement, coefficient, multi-layer projection, asymmetric branches, resume."""

import json
import math

import numpy as np
import open_clip
import pytest
import torch
from open_clip.model import CLIPTextCfg, CLIPVisionCfg
from open_clip.tokenizer import SimpleTokenizer

from nscl.data import BatchTransform, ContinualData, Scenario, load_dataset
from nscl.methods.base import TaskInfo
from nscl.methods.dmnsp import DMNSP, DMNSPConfig, cosine_lr
from nscl.methods.dmnsp_bases import layer_null_space_rule, split_top
from nscl.models.adapters import add_adapters, adapter_parameters
from nscl.models.backbones import build_clip
from nscl.multilayer import coefficients, coefficients_loop, intersection_projector, projector_chain
from nscl.run import RunConfig, run_continual


def small_clip(seed=0):
    torch.manual_seed(seed)
    vision = CLIPVisionCfg(layers=3, width=64, head_width=32, patch_size=8, image_size=16)
    text = CLIPTextCfg(context_length=16, vocab_size=49408, width=32, heads=2, layers=2)
    return open_clip.CLIP(embed_dim=32, vision_cfg=vision, text_cfg=text)


def test_adapters_sit_where_the_official_code_puts_them_with_its_parameter_count():
    clip, _ = build_clip(pretrained=None)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        before = clip.encode_image(x)
    add_adapters(clip)
    params = adapter_parameters(clip)
    visual = sum(p.numel() for n, p in params.items() if n.startswith("visual."))
    text = sum(p.numel() for n, p in params.items() if n.startswith("transformer."))
    print(f"adapters: visual {visual:,}, text {text:,}, total {visual + text:,}")
    assert (visual, text) == (12 * 99_136, 12 * 66_112) and visual + text == 1_982_976
    assert "visual.transformer.resblocks.3.adaptmlp.down_proj.weight" in params
    assert "transformer.resblocks.11.adaptmlp.up_proj.bias" in params
    down = params["visual.transformer.resblocks.0.adaptmlp.down_proj.weight"]
    assert down.shape == (64, 768) and down.abs().max() <= 1 / math.sqrt(768)   # kaiming_uniform(a=sqrt 5)
    assert all(p.abs().sum() == 0 for n, p in params.items() if "up_proj" in n or "bias" in n)
    with torch.no_grad():
        torch.testing.assert_close(clip.eval().encode_image(x), before)   # zero-init: still zero-shot CLIP


def test_coefficient_on_a_hand_worked_case():
    e = torch.eye(3, dtype=torch.float64)
    u = e[:1]                                               # current top direction e1, one layer
    ten = lambda cols: torch.stack(cols, dim=1)             # 10 columns -> the top 10% is the single best
    with_e1 = ten([e[0]] + [e[1]] * 9)                      # best cosine 1   -> 30 e^-1
    orthogonal = ten([e[1], e[2]] * 5)                      # best cosine 0   -> 30
    opposite = ten([-e[0]] + [e[2]] * 9)                    # signed: -1 loses to 0 -> 30
    lam = coefficients(u, [with_e1, orthogonal, opposite], top_k_ratio=0.1, scale=30.0)
    torch.testing.assert_close(lam, torch.tensor([[30 / math.e, 30.0, 30.0]], dtype=torch.float64))


def test_vectorised_coefficients_and_chain_match_the_official_loops():
    g = torch.Generator().manual_seed(0)
    bases = [torch.linalg.qr(torch.randn(16, 16, generator=g, dtype=torch.float64))[0][:, 1:] for _ in range(3)]
    bases = [torch.cat([b, b[:, :5] + 0.1], dim=1) for b in bases]   # concatenated, not orthonormal
    tops = torch.randn(3, 16, generator=g, dtype=torch.float64)
    torch.testing.assert_close(coefficients(tops, bases), coefficients_loop(tops, bases))
    grad = torch.randn(4, 16, generator=g, dtype=torch.float64)
    sequential = grad.clone()
    for b in bases:                                        # the official per-layer loop
        sequential = (sequential @ b) @ b.T
    torch.testing.assert_close(sequential, grad @ projector_chain(bases))


def test_intersection_projector_removes_every_layers_directions():
    g = torch.Generator().manual_seed(1)
    removed = torch.randn(32, 5, generator=g, dtype=torch.float64)
    p = intersection_projector(torch.cat([removed, removed[:, :2] * 3], dim=1), 32)
    torch.testing.assert_close(p @ p, p)
    assert torch.linalg.matrix_rank(p) == 27 and (p @ removed).abs().max() < 1e-12


def test_cosine_schedule_matches_the_recipe():
    assert cosine_lr(0, 160, 1e-3, 30) == pytest.approx(1e-3 / 30)
    assert cosine_lr(29, 160, 1e-3, 30) == pytest.approx(1e-3)
    assert cosine_lr(30, 160, 1e-3, 30) == pytest.approx(1e-3)
    assert cosine_lr(160, 160, 1e-3, 30) == pytest.approx(0.0, abs=1e-12)


@pytest.fixture(scope="module")
def shapes_tasks():
    train = load_dataset("shapes100", "train", n_per_class=16, image_size=16)
    test = load_dataset("shapes100", "test", n_per_class=8, image_size=16)
    return ContinualData(train, test, Scenario.equal_split(list(range(0, 60, 10)), 3))


def make(projection=True, **overrides):
    cfg = DMNSPConfig(projection=projection, warmup_steps=2, basis_batch_size=16, **overrides)
    return DMNSP(small_clip(), SimpleTokenizer(context_length=16), BatchTransform(16, augment="rrc",
                                                                                  rrc_scale=(0.9, 1.0)), cfg)


def one_step_gradients(method, data, task_index=1):
    """Train tasks before `task_index`, then take one step of it; return (raw, projected) adapter grads."""
    run_continual(method, data, RunConfig(epochs=1, batch_size=16, progress=False, max_tasks=task_index))
    info = TaskInfo(task_index, data.scenario.task_positions(task_index), data.scenario.n_seen(task_index),
                    data.class_names, 32, 2, 1)
    method.begin_task(info)
    captured = {}
    project = method._project_gradients

    def spy():
        captured["raw"] = {n: p.grad.clone() for n, p in method.params.items()}
        project()
        captured["projected"] = {n: p.grad.clone() for n, p in method.params.items()}

    method._project_gradients = spy
    subset = data.task(task_index)
    method.training_step(method.transform(subset.images[:16], train=True), subset.targets[:16])
    return captured["raw"], captured["projected"]


def test_energy_rule_on_a_hand_worked_spectrum():
    cov = torch.diag(torch.tensor([90.0, 8.0, 1.5, 0.5], dtype=torch.float64))
    # 98.5% of the energy needs the top three (90 + 8 = 98% is not enough); the tail e4 holds 0.5%
    top, null = split_top(cov, layer_null_space_rule(1, 0.985))
    assert top.shape == (4, 3) and null.shape == (4, 1) and null[:, 0].abs().argmax() == 3
    top, null = split_top(cov, layer_null_space_rule(1, None))                       # the official TOP_SELECT = 1
    assert top.shape == (4, 1) and top[:, 0].abs().argmax() == 0 and null.shape == (4, 3)


@pytest.mark.parametrize("energy_threshold", [None, 0.9])
def test_paper_variant_gradients_avoid_every_layers_retained_directions(shapes_tasks, energy_threshold):
    method = make(variant="paper", energy_threshold=energy_threshold)
    raw, projected = one_step_gradients(method, shapes_tasks)
    ops = method.operators["visual"]
    removed = torch.eye(64, dtype=torch.float32) - ops["down"][0]           # span of the dropped top directions
    rule = layer_null_space_rule(1, energy_threshold)
    per_layer = torch.cat([split_top(acc.matrix, rule)[0] for acc in method.state["visual"]["x"]], dim=1)
    if energy_threshold is None:
        assert per_layer.shape[1] == 3                                      # one per visual layer
    else:
        assert per_layer.shape[1] > 3                                       # the energy rule drops more
    assert torch.linalg.matrix_rank(removed) == torch.linalg.matrix_rank(per_layer)   # their span, intersected
    for j in range(3):
        down = projected[f"visual.transformer.resblocks.{j}.adaptmlp.down_proj.weight"]
        up = projected[f"visual.transformer.resblocks.{j}.adaptmlp.up_proj.weight"]
        assert down.abs().max() > 0 and (down @ removed).abs().max() < 1e-5 * down.abs().max()
        up_removed = torch.eye(64) - ops["up"][j]
        assert (up @ up_removed).abs().max() < 1e-5 * up.abs().max()
    for name in raw:                                                        # the text branch is left alone
        if name.startswith("transformer."):
            assert torch.equal(raw[name], projected[name])
        if "bias" in name:
            assert torch.equal(raw[name], projected[name])                  # as the code: biases unprojected


def test_code_variant_is_the_official_chain_scaled_by_the_row_product(shapes_tasks):
    method = make(variant="code")
    raw, projected = one_step_gradients(method, shapes_tasks)
    bases = method.state["visual"]["bases"]
    assert [b.shape for b in bases] == [(64, 63)] * 3                      # one task: D - TOP_SELECT columns
    for j in range(3):
        name = f"visual.transformer.resblocks.{j}.adaptmlp.down_proj.weight"
        expected = raw[name].double()
        for k, b in enumerate(bases):                                      # the official loop, verbatim maths
            expected = (expected @ b.double()) @ b.double().T * float(method.lam["visual"][j, k])
        torch.testing.assert_close(projected[name].double(), expected, rtol=1e-4, atol=1e-6)
        up = f"visual.transformer.resblocks.{j}.adaptmlp.up_proj.weight"
        expected_up = raw[up].double()
        for k, b in enumerate(bases):
            expected_up = b.double() @ (b.double().T @ expected_up) * float(method.lam["visual"][j, k])
        torch.testing.assert_close(projected[up].double(), expected_up, rtol=1e-4, atol=1e-6)


def test_text_projection_is_only_an_ablation(shapes_tasks):
    method = make(variant="paper", project_text=True)
    raw, projected = one_step_gradients(method, shapes_tasks)
    name = "transformer.resblocks.0.adaptmlp.down_proj.weight"
    assert not torch.equal(raw[name], projected[name])


@pytest.mark.parametrize("variant", ["paper", "code"])
def test_killed_dmnsp_run_resumes_with_the_same_bases_and_results(shapes_tasks, tmp_path, variant):
    config = RunConfig(epochs=1, batch_size=16, progress=False)
    full_method = make(variant=variant, record_parameters=True)
    full = run_continual(full_method, shapes_tasks, config)
    run_continual(make(variant=variant, record_parameters=True), shapes_tasks, RunConfig(epochs=1, batch_size=16, progress=False,
                                                                 max_tasks=2), run_dir=tmp_path)
    assert json.loads((tmp_path / "metrics.json").read_text())["tasks_done"] == 2
    resumed_method = make(variant=variant, record_parameters=True)
    resumed = run_continual(resumed_method, shapes_tasks, config, run_dir=tmp_path)
    np.testing.assert_allclose(resumed.accuracy, full.accuracy, atol=1e-12)
    # the analysis report (coefficients, null-space sizes, parameter snapshots) survives the restart
    a, b = full.extras["report"], resumed.extras["report"]
    assert a["null_dims"] == b["null_dims"] and len(b["parameters"]) == shapes_tasks.n_tasks
    for x, y in zip(a["lambda"], b["lambda"]):
        torch.testing.assert_close(x["visual"], y["visual"])
    for x, y in zip(a["parameters"], b["parameters"]):
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
    assert (tmp_path / "report.pt").exists()
    for a, b in zip(full_method.operators["visual"]["down"], resumed_method.operators["visual"]["down"]):
        torch.testing.assert_close(a, b)


def test_bad_config_fails_clearly():
    with pytest.raises(ValueError, match="variant"):
        DMNSPConfig(variant="official")
    with pytest.raises(ValueError, match="top_k_ratio"):
        DMNSPConfig(top_k_ratio=0.0)
    with pytest.raises(ValueError, match="energy_threshold"):
        DMNSPConfig(energy_threshold=98.5)
    with pytest.raises(ValueError, match="energy_threshold"):
        DMNSPConfig(variant="code", energy_threshold=0.985)
