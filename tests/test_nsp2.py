"""NSP²: consistency conditions, projectors, optimizer placement, drift penalty, backbones, resume."""

import json
import os
import subprocess
import sys

import numpy as np
import open_clip
import pytest
import timm
import torch
from open_clip.model import CLIPTextCfg, CLIPVisionCfg
from open_clip.tokenizer import SimpleTokenizer

from nscl.data import BatchTransform, ContinualData, Scenario, load_dataset
from nscl.experiment.run import RunConfig, run_continual
from nscl.models.backbones import build_clip, build_vit, count_parameters
from nscl.models.encoders import PromptedEncoder
from nscl.nsp2.conditions import ConditionRecorder, ConditionSpec, condition_projectors, drift_penalty
from nscl.nsp2.method import NSP2, NSP2Config, seq_config
from nscl.nsp2.refine import RefineConfig
from nscl.nullspace import NullSpaceRule

EXACT = ConditionSpec(NullSpaceRule("energy", 0.0), NullSpaceRule("energy", 0.0), 1.0, 1.0, normalize=False)


def small_vit(dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    model = timm.create_model(
        "vit_base_patch16_224",
        pretrained=False,
        img_size=16,
        patch_size=8,
        embed_dim=64,
        depth=3,
        num_heads=2,
        num_classes=0,
    ).to(dtype)
    for module in model.modules():  # pretrained LayerNorms are far from (1, 0): make ours too
        if isinstance(module, torch.nn.LayerNorm):
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.normal_(0.0, 0.1)
    return model


def small_clip(seed=0):
    torch.manual_seed(seed)
    vision = CLIPVisionCfg(layers=3, width=64, head_width=32, patch_size=8, image_size=16)
    text = CLIPTextCfg(context_length=16, vocab_size=49408, width=32, heads=2, layers=1)
    return open_clip.CLIP(embed_dim=32, vision_cfg=vision, text_cfg=text)


def exact_setting(model, length=16, n_old=1, dtype=torch.float64):
    """Prompts long enough, and few enough old images, for the exact null spaces to be non-empty."""
    enc = PromptedEncoder(model, None, length, generator=torch.Generator().manual_seed(1)).to(dtype)
    x_old = torch.randn(n_old, 3, 16, 16, generator=torch.Generator().manual_seed(2), dtype=dtype)
    rec = ConditionRecorder(enc.bank.layers, enc.width, length)
    enc.bank.recorder = rec
    with torch.no_grad():
        enc.pre_logits(x_old)
    enc.bank.recorder = None
    rec.end_task(n_old)
    return enc, x_old, rec


def relative_change(enc, x, normed_offset=None):
    with torch.no_grad():
        base = enc.pre_logits(x)
        enc.bank.normed_offset = normed_offset
        moved = enc.pre_logits(x)
        enc.bank.normed_offset = None
    return float((moved - base).norm() / base.norm())


@pytest.mark.parametrize("builder", [small_vit, lambda: small_clip().double().visual], ids=["timm", "open_clip"])
def test_both_conditions_keep_old_outputs_through_the_whole_network(builder):
    enc, x_old, rec = exact_setting(builder())
    left, right, infos = condition_projectors(rec, EXACT, dtype=torch.float64)
    assert all(i1.null_dim > 0 and i2.null_dim > 0 for i1, i2 in infos)
    u = torch.randn_like(enc.bank.prompts)
    assert relative_change(enc, x_old, left @ u @ right) < 1e-10
    # each condition alone leaves the outputs moving; no projection moves them most
    affinity_only, aggregation_only = relative_change(enc, x_old, u @ right), relative_change(enc, x_old, left @ u)
    unprojected = relative_change(enc, x_old, u)
    assert affinity_only > 1e-3 and aggregation_only > 1e-4 and unprojected > 1e-2


def test_block_level_invariance_in_float32():
    enc, x_old, rec = exact_setting(small_vit(torch.float32), dtype=torch.float32)
    left, right, _ = condition_projectors(rec, EXACT, dtype=torch.float32)
    u = torch.randn_like(enc.bank.prompts)
    block = enc.prompted_blocks()[0]
    tokens = enc.model.norm_pre(enc.model._pos_embed(enc.model.patch_embed(x_old)))
    with torch.no_grad():
        base = block(tokens)
        enc.bank.normed_offset = left @ u @ right
        moved = block(tokens)
        enc.bank.normed_offset = u
        raw = block(tokens)
        enc.bank.normed_offset = None
    projected_change = float((moved - base).norm() / base.norm())
    raw_change = float((raw - base).norm() / base.norm())  # diluted by the residual stream, still clear
    assert projected_change < 1e-4 and raw_change > 1e-3 and projected_change < raw_change / 100


def test_layernorm_breaks_first_order_unless_handled():
    """Raw prompt updates: the paper's projectors leave a first-order change; folding the LN gain and
    keeping each token's mean and std (ln_exact + ln_invariant) makes it second order."""
    enc, x_old, rec = exact_setting(small_vit())
    gains = enc.ln_gains()
    p0 = enc.bank.prompts.detach().clone()
    u = torch.randn_like(p0)

    def changes(spec):
        left, right, _ = condition_projectors(rec, spec, gains, p0, dtype=torch.float64)
        out = []
        with torch.no_grad():
            base = enc.pre_logits(x_old)
            for eps in (1e-2, 1e-3):
                enc.bank.prompts.copy_(p0 + eps * (left @ u @ right))
                out.append(float((enc.pre_logits(x_old) - base).norm() / base.norm()))
            enc.bank.prompts.copy_(p0)
        return out

    paper = changes(EXACT)
    handled = changes(ConditionSpec(**{**EXACT.__dict__, "ln_exact": True, "ln_invariant": True}))
    assert 5 < paper[0] / paper[1] < 20  # linear in the step
    assert handled[0] / handled[1] > 50  # quadratic in the step
    assert handled[1] < 1e-5 * 10 and handled[1] < paper[1] / 100


def test_recorder_matches_explicitly_stacked_rows():
    enc, x_old, rec = exact_setting(small_vit(), n_old=2)
    layer = enc.bank.layers[1]
    captured = {}

    def capture(l, q, attn, wk):
        if l == layer:
            captured.update(q=q, attn=attn, wk=wk)

    enc.bank.recorder = capture
    with torch.no_grad():
        enc.pre_logits(x_old)
    enc.bank.recorder = None
    q, attn, wk = captured["q"], captured["attn"], captured["wk"]
    b, h, n, d = q.shape
    rows1 = torch.cat([q[:, i].reshape(-1, d) @ wk[i] for i in range(h)])  # (h*b*n, D): q_h W_kh
    rows2 = attn.permute(1, 0, 2, 3).reshape(-1, attn.shape[-1])  # (h*b*n, m)
    torch.testing.assert_close(rec.affinity[layer].matrix, rows1.T @ rows1 / (b * h * n))
    torch.testing.assert_close(rec.aggregation[layer].matrix, rows2.T @ rows2 / (b * h * n))


def test_projector_shapes_idempotence_and_normalisation():
    enc, _, rec = exact_setting(small_vit(), length=12, n_old=1)  # 2 heads x 5 tokens = 10 rows < 12 prompts
    left, right, infos = condition_projectors(rec, EXACT, dtype=torch.float64)
    layers = len(enc.bank.layers)
    assert left.shape == (layers, 12, 12) and right.shape == (layers, 64, 64)
    assert [(i1.null_dim, i2.null_dim) for i1, i2 in infos] == [(54, 2)] * layers
    torch.testing.assert_close(right @ right, right, atol=1e-10, rtol=0)
    torch.testing.assert_close(left @ left, left, atol=1e-10, rtol=0)
    normed_left, normed_right, _ = condition_projectors(
        rec, ConditionSpec(**{**EXACT.__dict__, "normalize": True}), dtype=torch.float64
    )
    torch.testing.assert_close(normed_left, left / 2**0.5)  # divided by its Frobenius norm sqrt(k)
    torch.testing.assert_close(normed_right, right / 54**0.5)


def test_drift_penalty_hand_worked():
    prev = torch.tensor([[[1.0, 3.0], [0.0, 0.0]]])  # token means 2, 0; stds 1, 0
    now = torch.tensor([[[2.0, 6.0], [1.0, -1.0]]])  # token means 4, 0; stds 2, 1
    # mean term: (|4-2| + |0-0|)/2 = 1; std term: (|2-1| + |1-0|)/2 = 1
    assert drift_penalty(now, prev).item() == pytest.approx(2.0)
    two_layers = torch.cat([now, now])
    assert drift_penalty(two_layers, torch.cat([prev, prev])).item() == pytest.approx(4.0)


@pytest.fixture(scope="module")
def shapes_tasks():
    classes = list(range(0, 60, 10))  # 6 red/orange.. classes, 3 tasks of 2
    train = load_dataset("shapes100", "train", n_per_class=24, image_size=16)
    test = load_dataset("shapes100", "test", n_per_class=10, image_size=16)
    return ContinualData(train, test, Scenario.equal_split(classes, 3))


def tiny_nsp2(null_space=True, head="task_linear", **overrides):
    cfg = NSP2Config(
        null_space=null_space,
        prompt_length=4,
        head=head,
        lr=0.01,
        milestones=(1,),
        temperature=1.0 if head == "text" else 4.0,
        refine=RefineConfig(epochs=2),
        **overrides,
    )
    transform = BatchTransform(size=16)
    if head == "text":
        clip = small_clip()
        return NSP2(clip.visual, transform, cfg, clip_model=clip, tokenizer=SimpleTokenizer(context_length=16))
    return NSP2(small_vit(torch.float32), transform, cfg)


def test_the_update_of_the_prompts_is_projected_on_both_sides(shapes_tasks):
    method = tiny_nsp2(conditions=ConditionSpec(eta1=1.0, eta2=1.0, normalize=False))
    run_continual(method, shapes_tasks, RunConfig(epochs=1, batch_size=16, progress=False, max_tasks=1))
    left, right = method.projection.left, method.projection.right
    info = method.null_space_info[-1]
    assert left.shape == (3, 4, 4) and right.shape == (3, 64, 64) and all(i1.null_dim < 64 for i1, _ in info)
    from nscl.methods.base import TaskInfo

    task = TaskInfo(1, shapes_tasks.scenario.task_positions(1), 4, shapes_tasks.class_names, 48, 3, 1)
    method.begin_task(task)
    images, labels = shapes_tasks.task(1).images[:16], shapes_tasks.task(1).targets[:16]
    before = method.prompts.detach().clone()
    method.training_step(method.transform(images, train=True), labels)
    delta = method.prompts.detach() - before
    assert delta.abs().max() > 0
    torch.testing.assert_close(left @ delta @ right, delta, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("head", ["task_linear", "text"])
def test_killed_nsp2_run_resumes_with_the_same_results(shapes_tasks, tmp_path, head):
    config = RunConfig(epochs=1, batch_size=16, progress=False)
    full = run_continual(tiny_nsp2(head=head, refine_head=head == "text"), shapes_tasks, config)
    run_continual(
        tiny_nsp2(head=head, refine_head=head == "text"),
        shapes_tasks,
        RunConfig(epochs=1, batch_size=16, progress=False, max_tasks=2),
        run_dir=tmp_path,
    )
    assert json.loads((tmp_path / "metrics.json").read_text())["tasks_done"] == 2
    resumed = run_continual(tiny_nsp2(head=head, refine_head=head == "text"), shapes_tasks, config, run_dir=tmp_path)
    np.testing.assert_allclose(resumed.accuracy, full.accuracy, atol=1e-12)
    assert resumed.metrics == full.metrics
    a, b = full.extras["report"], resumed.extras["report"]
    layers = len(tiny_nsp2().encoder.bank.layers)
    assert a["null_space"] == b["null_space"] and len(b["null_space"]) == 2 * layers * shapes_tasks.n_tasks
    assert (
        all(torch.equal(x, y) for x, y in zip(a["prompts"], b["prompts"])) and len(b["prompts"]) == shapes_tasks.n_tasks
    )


def test_seq_baseline_has_no_projection_and_no_penalty(shapes_tasks):
    method = tiny_nsp2(null_space=False, drift_weight=0.0)
    assert method.name == "VPT-Seq" and seq_config(method.config) == method.config
    run_continual(method, shapes_tasks, RunConfig(epochs=1, batch_size=16, progress=False, max_tasks=2))
    assert method.projection is None and method.recorder is None


def test_paper_sized_backbones_build_with_prompts():
    vit = build_vit(pretrained=False)
    base = count_parameters(vit)
    enc = PromptedEncoder(vit, None, 4)
    prompts = count_parameters(enc, trainable_only=True)
    print(f"ViT-B/16: {base:,} backbone parameters, {prompts:,} prompt parameters (12 x 4 x 768)")
    assert base == 85_798_656 and prompts == 12 * 4 * 768
    clip, tokenizer = build_clip(pretrained=None)
    base = count_parameters(clip)
    enc = PromptedEncoder(clip.visual, (0, 1, 2), 4)
    prompts = count_parameters(enc, trainable_only=True)
    print(f"CLIP ViT-B/16: {base:,} parameters, {prompts:,} prompt parameters (3 x 4 x 768)")
    assert base == 149_620_737 and prompts == 3 * 4 * 768
    with torch.no_grad():
        feats = enc.pre_logits(torch.randn(1, 3, 224, 224))
    assert feats.shape == (1, 768) and enc.project(feats).shape == (1, 512)


def test_missing_pretrained_weights_raise_the_librarys_error():
    code = "from nscl.models.backbones import build_vit; build_vit()"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode != 0 and "Error" in proc.stderr


def test_bad_config_fails_clearly():
    with pytest.raises(ValueError, match="head"):
        NSP2Config(head="mlp")
    with pytest.raises(ValueError, match="needs the CLIP model"):
        NSP2(small_clip().visual, BatchTransform(size=16), NSP2Config(head="text"))
