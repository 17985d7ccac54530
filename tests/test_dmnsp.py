"""DMNSP: adapter placement, coefficient, multi-layer projection, asymmetric branches, resume."""

import json
import math

import numpy as np
import open_clip
import pandas as pd
import pytest
import torch
from open_clip.model import CLIPTextCfg, CLIPVisionCfg
from open_clip.tokenizer import SimpleTokenizer

from nscl.data import BatchTransform, ContinualData, Scenario, load_dataset
from nscl.dmnsp.bases import common_null_projector, layer_null_space_rule, split_top
from nscl.dmnsp.method import DMNSP, DMNSPConfig, cosine_lr
from nscl.dmnsp.multilayer import coefficients, coefficients_loop, gram, intersection_projector, projector_chain
from nscl.experiment.run import RunConfig, run_continual
from nscl.methods.base import TaskInfo
from nscl.models.adapters import adapter_parameters, add_adapters
from nscl.models.backbones import build_clip


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
    assert down.shape == (64, 768) and down.abs().max() <= 1 / math.sqrt(768)  # kaiming_uniform(a=sqrt 5)
    assert all(p.abs().sum() == 0 for n, p in params.items() if "up_proj" in n or "bias" in n)
    with torch.no_grad():
        torch.testing.assert_close(clip.eval().encode_image(x), before)  # zero-init: still zero-shot CLIP


def test_coefficient_on_a_hand_worked_case():
    e = torch.eye(3, dtype=torch.float64)
    u = e[:1]  # current top direction e1, one layer

    def ten(cols):
        return torch.stack(cols, dim=1)  # 10 columns -> the top 10% is the single best

    with_e1 = ten([e[0]] + [e[1]] * 9)  # best cosine 1   -> 30 e^-1
    orthogonal = ten([e[1], e[2]] * 5)  # best cosine 0   -> 30
    opposite = ten([-e[0]] + [e[2]] * 9)  # signed: -1 loses to 0 -> 30
    lam = coefficients(u, [with_e1, orthogonal, opposite], top_k_ratio=0.1, scale=30.0)
    torch.testing.assert_close(lam, torch.tensor([[30 / math.e, 30.0, 30.0]], dtype=torch.float64))


def test_vectorised_coefficients_and_chain_match_the_official_loops():
    g = torch.Generator().manual_seed(0)
    bases = [torch.linalg.qr(torch.randn(16, 16, generator=g, dtype=torch.float64))[0][:, 1:] for _ in range(3)]
    bases = [torch.cat([b, b[:, :5] + 0.1], dim=1) for b in bases]  # concatenated, not orthonormal
    tops = torch.randn(3, 16, generator=g, dtype=torch.float64)
    torch.testing.assert_close(coefficients(tops, bases), coefficients_loop(tops, bases))
    grad = torch.randn(4, 16, generator=g, dtype=torch.float64)
    sequential = grad.clone()
    for b in bases:  # the official per-layer loop
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
    return DMNSP(
        small_clip(), SimpleTokenizer(context_length=16), BatchTransform(16, augment="rrc", rrc_scale=(0.9, 1.0)), cfg
    )


def one_step_gradients(method, data, task_index=1):
    """Train tasks before `task_index`, then take one step of it; return (raw, projected) adapter grads."""
    run_continual(method, data, RunConfig(epochs=1, batch_size=16, progress=False, max_tasks=task_index))
    info = TaskInfo(
        task_index,
        data.scenario.task_positions(task_index),
        data.scenario.n_seen(task_index),
        data.class_names,
        32,
        2,
        1,
    )
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
    top, null = split_top(cov, layer_null_space_rule(1, None))  # the official TOP_SELECT = 1
    assert top.shape == (4, 1) and top[:, 0].abs().argmax() == 0 and null.shape == (4, 3)


@pytest.mark.parametrize("energy_threshold", [None, 0.9])
def test_paper_variant_gradients_avoid_every_layers_retained_directions(shapes_tasks, energy_threshold):
    method = make(variant="paper", energy_threshold=energy_threshold)
    raw, projected = one_step_gradients(method, shapes_tasks)
    ops = method.operators["visual"]
    removed = torch.eye(64, dtype=torch.float32) - ops["down"][0]  # span of the dropped top directions
    rule = layer_null_space_rule(1, energy_threshold)
    per_layer = torch.cat([split_top(acc.matrix, rule)[0] for acc in method.state["visual"]["x"]], dim=1)
    if energy_threshold is None:
        assert per_layer.shape[1] == 3  # one per visual layer
    else:
        assert per_layer.shape[1] > 3  # the energy rule drops more
    assert torch.linalg.matrix_rank(removed) == torch.linalg.matrix_rank(per_layer)  # their span, intersected
    for j in range(3):
        down = projected[f"visual.transformer.resblocks.{j}.adaptmlp.down_proj.weight"]
        up = projected[f"visual.transformer.resblocks.{j}.adaptmlp.up_proj.weight"]
        assert down.abs().max() > 0 and (down @ removed).abs().max() < 1e-5 * down.abs().max()
        up_removed = torch.eye(64) - ops["up"][j]
        assert (up @ up_removed).abs().max() < 1e-5 * up.abs().max()
    for name in raw:  # the text branch is left alone
        if name.startswith("transformer."):
            assert torch.equal(raw[name], projected[name])
        if "bias" in name:
            assert torch.equal(raw[name], projected[name])  # as the code: biases unprojected


def test_code_variant_is_the_official_chain_scaled_by_the_row_product(shapes_tasks):
    method = make(variant="code")
    raw, projected = one_step_gradients(method, shapes_tasks)
    bases = method.state["visual"]["bases"]
    assert [b.shape for b in bases] == [(64, 63)] * 3  # one task: D - TOP_SELECT columns
    for j in range(3):
        name = f"visual.transformer.resblocks.{j}.adaptmlp.down_proj.weight"
        expected = raw[name].double()
        for k, b in enumerate(bases):  # the official loop, verbatim maths
            expected = (expected @ b.double()) @ b.double().T * float(method.lam["visual"][j, k])
        # float32 products against a float64 reference: entries agree to 1e-4 of the tensor's largest
        torch.testing.assert_close(projected[name].double(), expected, rtol=1e-4, atol=1e-4 * expected.abs().max())
        up = f"visual.transformer.resblocks.{j}.adaptmlp.up_proj.weight"
        expected_up = raw[up].double()
        for k, b in enumerate(bases):
            expected_up = b.double() @ (b.double().T @ expected_up) * float(method.lam["visual"][j, k])
        torch.testing.assert_close(projected[up].double(), expected_up, rtol=1e-4, atol=1e-4 * expected_up.abs().max())


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
    run_continual(
        make(variant=variant, record_parameters=True),
        shapes_tasks,
        RunConfig(epochs=1, batch_size=16, progress=False, max_tasks=2),
        run_dir=tmp_path,
    )
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
    with pytest.raises(ValueError, match=r"basis_dtype='float16'.*'float64', 'float32'"):
        DMNSPConfig(variant="code", basis_dtype="float16")
    with pytest.raises(ValueError, match="basis_dtype='float32'.*variant='code'"):
        DMNSPConfig(basis_dtype="float32")
    with pytest.raises(ValueError, match=r"common_space='union'.*'intersect', 'pooled'"):
        DMNSPConfig(common_space="union")
    with pytest.raises(ValueError, match="common_space='pooled'.*variant='code'"):
        DMNSPConfig(variant="code", common_space="pooled")
    with pytest.raises(ValueError, match="freeze_visual_after_first_task.*projection=False"):
        DMNSPConfig(freeze_visual_after_first_task=True)


# -- issue 13: the code variant's precision, and why lambda's exact value matters little -------------
def test_float32_gram_follows_the_official_per_image_order():
    g = torch.Generator().manual_seed(0)
    tokens_images_dim = torch.randn(17, 8, 32, generator=g)  # the official layout (L, N, D)
    official = torch.bmm(tokens_images_dim.permute(1, 2, 0), tokens_images_dim.permute(1, 0, 2)).sum(dim=0)
    ours = gram(tokens_images_dim.transpose(0, 1), torch.float32)  # open_clip's layout (N, L, D)
    assert ours.dtype == torch.float32 and torch.equal(ours, official)
    assert gram(tokens_images_dim.transpose(0, 1)).dtype == torch.float64  # nscl's default


def test_code_variant_float32_bases_span_the_same_space_but_give_another_lambda(shapes_tasks):
    runs = {}
    for dtype in ("float64", "float32"):  # bottleneck 8: the outputs' Gram has rank <= 9 of 64
        runs[dtype] = make(variant="code", basis_dtype=dtype, bottleneck=8)
        run_continual(runs[dtype], shapes_tasks, RunConfig(epochs=1, batch_size=16, progress=False, max_tasks=2))
    for b64, b32 in zip(runs["float64"].state["visual"]["bases"], runs["float32"].state["visual"]["bases"]):
        first64, first32 = b64[:, :63].double(), b32[:, :63].double()  # the first task's block
        torch.testing.assert_close(first32 @ first32.T, first64 @ first64.T, atol=1e-4, rtol=0)  # same span
        assert (first32 - first64).abs().max() > 0.5  # another basis of the null space
    lam64, lam32 = (runs[d].lambda_history[0]["visual"] for d in ("float64", "float32"))
    assert lam32.min() >= 30 / math.e and lam32.max() <= 30
    assert 1e-3 < float((lam32 - lam64).abs().max()) < 3  # the signed top-10% cosines move


def test_adamw_update_ignores_a_constant_positive_gradient_scale_until_it_overflows():
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(64, 32, generator=g) * 1e-3 for _ in range(20)]

    def train(scale: float, optimizer=torch.optim.AdamW):
        w = torch.zeros(64, 32, requires_grad=True)
        opt = optimizer([w], lr=1e-2, weight_decay=0.0)
        for grad in grads:
            w.grad = grad * scale
            opt.step()
        return w.detach(), opt.state[w]

    plain, _ = train(1.0)
    tiny_chain, _ = train(30.0**4)  # ~ the tiny chain's prod(lambda)
    vit_chain, _ = train(2.5e17)  # ViT-B/16's at task index 1
    # eps = 1e-8 only counts where |g| is not >> 1e-8: a 1e-4 relative change at gradients of 1e-3 ...
    assert float((tiny_chain - plain).norm() / plain.norm()) < 1e-3
    torch.testing.assert_close(vit_chain, tiny_chain, rtol=1e-5, atol=1e-7)  # ... and none once scaled up
    sgd, _ = train(1.0, torch.optim.SGD)
    torch.testing.assert_close(train(30.0, torch.optim.SGD)[0], 30 * sgd)  # SGD moves 30 times as far
    # past float32's range, (1 - beta2) g^2 = inf: those entries' updates are exactly 0 from then on
    first = grads[0] * 1e24
    frozen_from_start = ~torch.isfinite(0.001 * first * first)
    w, state = train(1e24)
    assert 0 < frozen_from_start.float().mean() < 1
    assert (w[frozen_from_start] == 0).all() and (w[~frozen_from_start] != 0).all()
    assert torch.isfinite(state["exp_avg"]).all() and not torch.isfinite(state["exp_avg_sq"]).all()


# -- issue 14: the official seed ---------------------------------------------------------------------
def test_paper_preset_runs_the_official_seed_32_by_default(monkeypatch):
    import nscl.experiment.experiment as common
    from nscl.dmnsp.recipe import dmnsp_experiment

    seen = []

    def fake_compare(methods, data, config, seeds, run_root):
        seen.extend(seeds)
        return pd.DataFrame(), {}

    monkeypatch.setattr(common, "compare", fake_compare)
    dmnsp_experiment("paper", variants=("code",), joint=False).run_all(only=["DMNSP (code)"])
    assert seen == [32]
    assert dmnsp_experiment("tiny").default_seeds == (0,)


# -- issue 15: the code chain's overflow shows in every run's report -----------------------------------
def test_adam_moment_report_shows_an_overflowing_chain_and_seq_stays_finite(shapes_tasks):
    config = RunConfig(epochs=1, batch_size=16, progress=False, max_tasks=2)
    # 3 layers at lambda = 1e9: the chain scales gradients by 1e27, as 12 layers at ~28 and t ~ 5 do
    overflow = make(variant="code", dynamic_lambda=False, lambda_scale=1e9)
    seq = make(projection=False)
    for method in (overflow, seq):
        run_continual(method, shapes_tasks, config)
    rows = pd.DataFrame(overflow.report()["adam_moments"])
    assert set(rows.columns) >= {
        "task",
        "tower",
        "weight",
        "share_nonfinite_exp_avg_sq",
        "share_nonfinite_exp_avg",
        "share_unchanged",
        "n_entries",
    }
    visual = rows[rows.tower == "visual"].set_index(["task", "weight"])
    assert (visual.loc[0, "share_nonfinite_exp_avg_sq"] == 0).all()  # task 1: nothing projected
    assert (visual.loc[1, "share_nonfinite_exp_avg_sq"] > 0.01).all()  # task 2: v = inf ...
    assert (visual.loc[1, "share_unchanged"] >= visual.loc[1, "share_nonfinite_exp_avg_sq"]).all()  # ... frozen
    assert (visual.loc[1, "share_nonfinite_exp_avg"] == 0).all()  # the first moment stays finite
    assert (rows[rows.tower == "text"].share_nonfinite_exp_avg_sq == 0).all()
    seq_rows = pd.DataFrame(seq.report()["adam_moments"])
    assert (
        len(seq_rows) == 2 * 2 * 2
        and (seq_rows[["share_nonfinite_exp_avg_sq", "share_nonfinite_exp_avg"]] == 0).all().all()
    )


# -- the frozen control ------------------------------------------------------------------------------
def test_frozen_control_keeps_the_visual_adapters_of_task_one_and_trains_text(shapes_tasks):
    from nscl.dmnsp.recipe import dmnsp_experiment

    method = make(projection=False, freeze_visual_after_first_task=True, record_parameters=True)
    run_continual(method, shapes_tasks, RunConfig(epochs=1, batch_size=16, progress=False, max_tasks=3))
    initial, *after = method.initial, *method.snapshots
    for name in initial:
        if name.startswith("visual.") and "up_proj.weight" in name:
            assert after[0][name].abs().max() > 0  # learnt on task 1 ...
        if name.startswith("visual."):
            assert torch.equal(after[0][name], after[1][name]) and torch.equal(after[1][name], after[2][name])
        elif name.endswith("weight"):
            assert not torch.equal(after[0][name], after[1][name])  # text keeps training
    log = pd.DataFrame(method.report()["log"])
    assert log.visual_update_norm.tolist()[1:] == [0.0, 0.0] and (log.text_update_norm > 0).all()
    assert list(dmnsp_experiment("tiny", frozen=True, joint=False).methods) == [
        "zero-shot CLIP",
        "prototype",
        "adapter-Seq",
        "frozen",
        "DMNSP",
    ]


# -- the tiny recipe's common null space ----------------------------------------------------------------
def test_pooled_common_null_space_keeps_what_the_exact_intersection_loses():
    layers = [
        torch.diag(torch.tensor(v, dtype=torch.float64)) for v in ([60.0, 31, 5, 4], [60.0, 4, 31, 5], [60.0, 6, 3, 31])
    ]
    rule = layer_null_space_rule(1, 0.85)
    # each layer drops its top two (60 + 31 = 91% >= 85%); together they drop e1..e4: nothing is common
    assert float(common_null_projector(layers, rule, "intersect").trace()) == pytest.approx(0, abs=1e-12)
    # pooled (unit traces): e1 1.80, e2 0.41, e4 0.40, e3 0.39 of 3.00; the tail e3 holds 13% <= 15%
    pooled = common_null_projector(layers, rule, "pooled")
    torch.testing.assert_close(pooled, torch.diag(torch.tensor([0.0, 0, 1, 0], dtype=torch.float64)))
    leaks = [float((pooled @ c).trace() / c.trace()) for c in layers]
    assert leaks == pytest.approx([0.05, 0.31, 0.03])  # each <= 3 * 15%, their mean 13% <= 15%
    with pytest.raises(ValueError, match="how='union'"):
        common_null_projector(layers, rule, "union")


def test_tiny_recipe_pools_and_keeps_the_empty_intersection_as_a_named_variant():
    from nscl.dmnsp.recipe import VARIANTS, dmnsp_recipe

    _, cfg, _ = dmnsp_recipe("tiny")
    assert (cfg.common_space, cfg.energy_threshold) == ("pooled", 0.985)
    assert VARIANTS["energy-0.985"] == {"energy_threshold": 0.985, "common_space": "intersect"}
    assert VARIANTS["code-float32"]["basis_dtype"] == "float32"


def test_projecting_adamws_update_keeps_every_step_in_the_null_space_and_the_gradient_leaks(shapes_tasks):
    """Where the projection acts: a projected gradient goes through AdamW's per-coordinate scaling, which moves
    the step out of the null space (the leak); a projected update stays in it (to float32 rounding)."""
    config = RunConfig(epochs=1, batch_size=16, progress=False, max_tasks=2)
    leaks = {}
    for project in ("gradient", "update"):
        method = make(project=project)
        result = run_continual(method, shapes_tasks, config)
        rows = [r for r in method.report()["leak"] if r["tower"] == "visual"]
        assert {(r["task"], r["layer"], r["weight"]) for r in rows} == {
            (1, j, w) for j in range(3) for w in ("down", "up")
        }
        leaks[project] = max(r["leak"] for r in rows)
        assert result.metrics.last_accuracy > 0  # it trains
    assert leaks["update"] < 1e-9 < 1e-3 < leaks["gradient"], leaks


def test_the_update_variant_is_named_and_checked():
    from nscl.dmnsp.recipe import VARIANTS

    assert VARIANTS["update"] == {"project": "update"}
    with pytest.raises(ValueError, match=r"DMNSPConfig.project='weights': choose one of \('gradient', 'update'\)"):
        DMNSPConfig(project="weights")
