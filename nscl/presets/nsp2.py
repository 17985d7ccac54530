"""NSP² recipes: the official scripts' settings (`paper`) and the book's CPU version (`tiny`).

Paper (zugexiaodui/VPTinNSforCL train_*.sh; Lu et al. 2024, App. B):
* VPT: timm ViT-B/16 IN-21k, 4 prompts in all 12 blocks, a head per task, Adam lr 0.01, weight decay
  5e-5, batch 256, 10 epochs x 10 passes ("expand_times"), lr x0.1 at epochs 5 and 8, AutoAugment +
  random resized crop, fp16 AMP (nscl: bf16); temperature 28 / 25 / 30 / 30 and eta 0.97 / 0.95 /
  0.94 / 0.95 for CIFAR-100 10 and 20 tasks, ImageNet-R, DomainNet.
* CLIP: OpenAI CLIP ViT-B/16, 4 prompts in the first 3 blocks (the paper; the script's
  --prompt_end_block 3 is inclusive, i.e. 4 blocks: `clip_prompt_layers="code"`), text-embedding
  classifier with a trainable logit scale, lr 0.001, batch 220, 10 epochs x 2 passes, temperature 1,
  eta 0.98, classifier refinement from class statistics after every task.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from nscl.consistency import ConditionSpec
from nscl.data.loading import BatchTransform
from nscl.methods.nsp2 import NSP2, NSP2Config
from nscl.nullspace import NullSpaceRule
from nscl.presets.common import BENCHMARKS, Experiment, check_preset, load_benchmark
from nscl.run import RunConfig

__all__ = ["nsp2_recipe", "nsp2_experiment", "build_nsp2"]

VPT_TEMPERATURE = {"cifar100-10s": 28.0, "cifar100-20s": 25.0, "imagenet-r-10s": 30.0, "domainnet-10s": 30.0}
VPT_ETA = {"cifar100-10s": 0.97, "cifar100-20s": 0.95, "imagenet-r-10s": 0.94, "domainnet-10s": 0.95}


def _adaptive(eta: float) -> ConditionSpec:
    return ConditionSpec(NullSpaceRule("adaptive"), NullSpaceRule("adaptive"), eta1=eta, eta2=eta, normalize=True)


def _templates() -> tuple[str, ...]:
    """OpenAI's 80 ImageNet prompt templates as open_clip ships them (the official code has its own lists)."""
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    return tuple(t("{}") if callable(t) else t for t in OPENAI_IMAGENET_TEMPLATES)


def nsp2_recipe(preset: str = "tiny", backbone: Literal["vit", "clip"] = "vit", benchmark: str | None = None,
                device: str = "cpu", clip_prompt_layers: Literal["paper", "code"] = "paper"
                ) -> tuple[str, NSP2Config, RunConfig]:
    """(benchmark id, method config, run config) of a preset."""
    check_preset(preset)
    if backbone not in ("vit", "clip"):
        raise ValueError(f"backbone={backbone!r}: choose 'vit' (VPT-NSP²) or 'clip' (CLIP-NSP²)")
    if preset == "tiny":
        benchmark = benchmark or "shapes100-10s"
        if backbone == "vit":
            cfg = NSP2Config(head="task_linear", lr=0.01, milestones=(3, 4), temperature=28.0,
                             conditions=_adaptive(0.97))
        else:
            from nscl.pretrain import CAPTION_TEMPLATES

            cfg = NSP2Config(head="text", prompt_layers=(0, 1, 2), lr=0.01, milestones=(3, 4), temperature=1.0,
                             conditions=_adaptive(0.98), refine_head=True, templates=tuple(CAPTION_TEMPLATES))
        run = RunConfig(epochs=5, batch_size=64, eval_batch_size=256, device=device)
        return benchmark, cfg, run
    benchmark = benchmark or "cifar100-10s"
    if benchmark not in VPT_TEMPERATURE:
        raise ValueError(f"NSP²'s paper protocols are {sorted(VPT_TEMPERATURE)}; got {benchmark!r}")
    precision = "bf16" if device.startswith("cuda") else "fp32"
    if backbone == "vit":
        cfg = NSP2Config(head="task_linear", lr=0.01, weight_decay=5e-5, milestones=(5, 8),
                         temperature=VPT_TEMPERATURE[benchmark], conditions=_adaptive(VPT_ETA[benchmark]))
        run = RunConfig(epochs=10, data_repeats=10, batch_size=256, eval_batch_size=256, device=device,
                        precision=precision, num_workers=8)
    else:
        layers = (0, 1, 2) if clip_prompt_layers == "paper" else (0, 1, 2, 3)
        cfg = NSP2Config(head="text", prompt_layers=layers, lr=0.001, weight_decay=5e-5, milestones=(5, 8),
                         temperature=1.0, conditions=_adaptive(0.98), refine_head=True, templates=_templates())
        run = RunConfig(epochs=10, data_repeats=2, batch_size=220, eval_batch_size=256, device=device,
                        precision=precision, num_workers=8)
    return benchmark, cfg, run


def build_nsp2(preset: str, backbone: str, config: NSP2Config, benchmark: str) -> NSP2:
    """A fresh NSP² (or Seq) method: backbone weights from the library (paper) or the tiny cache."""
    if preset == "tiny":
        from nscl.models.tiny import pretrained_tiny_clip, pretrained_tiny_vit, tiny_transform

        if backbone == "vit":
            return NSP2(pretrained_tiny_vit(), tiny_transform(train=True), config)
        clip, tokenizer = pretrained_tiny_clip()
        return NSP2(clip.visual, tiny_transform(train=True), config, clip_model=clip, tokenizer=tokenizer)
    from nscl.models.backbones import build_clip, build_vit, clip_transform, vit_transform

    dataset = BENCHMARKS[benchmark].dataset
    if backbone == "vit":
        vit = build_vit()
        base = vit_transform(vit, augment="autoaugment")
        transform = BatchTransform(size=base.size, mean=base.mean, std=base.std, augment="autoaugment",
                                   interpolation="bicubic" if dataset == "cifar100" else "bilinear")
        return NSP2(vit, transform, config)
    clip, tokenizer = build_clip()
    return NSP2(clip.visual, clip_transform(clip, augment="autoaugment", rrc_scale=(0.08, 1.0)), config,
                clip_model=clip, tokenizer=tokenizer)


def nsp2_experiment(preset: str = "tiny", backbone: Literal["vit", "clip"] = "vit", benchmark: str | None = None,
                    device: str = "cpu", data_root: str | None = None, download: bool = False,
                    clip_prompt_layers: Literal["paper", "code"] = "paper", **config_overrides) -> Experiment:
    """Seq and NSP² on one benchmark, ready to `run_all(seeds)`; `config_overrides` go to NSP2Config."""
    benchmark, cfg, run = nsp2_recipe(preset, backbone, benchmark, device, clip_prompt_layers)
    cfg = replace(cfg, **config_overrides)
    kind = "VPT" if backbone == "vit" else "CLIP"

    def method(null_space: bool):
        return lambda seed: build_nsp2(preset, backbone, replace(cfg, null_space=null_space, seed=seed), benchmark)

    return Experiment(
        benchmark=BENCHMARKS[benchmark],
        data=lambda seed: load_benchmark(benchmark, seed, root=data_root, download=download),
        run=run,
        methods={f"{kind}-Seq": method(False), f"{kind}-NSP²": method(True)},
        notes={"recipe": f"{preset} {kind}-NSP²", "refine_head": str(cfg.refine_head)},
    )
