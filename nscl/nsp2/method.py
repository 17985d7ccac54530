r"""NSP²: visual prompt tuning in the null space of earlier tasks (Lu et al., NeurIPS 2024).

Per task: train the prompts (and the task's head, or CLIP's logit scale) with cross-entropy over the
task's classes, divided by a temperature, plus the prompt drift penalty from the second task on.
Every Adam update of the prompts is projected, $\Delta P \leftarrow B_2 \Delta P B_1$, with projectors
built after each task from the accumulated consistency-condition matrices (`nscl.nsp2.conditions`).
With `null_space=False` the same code is the Seq baseline (VPT-Seq / CLIP-Seq): no projection and
no penalty, exactly as the official script without --use_null_space.

Two heads, as in the two official recipes:
* ``task_linear`` (VPT): a new linear head per task on the class token; evaluation concatenates the
  heads of all tasks;
* ``text`` (CLIP): cosine similarity of the projected image embedding with frozen text embeddings of
  the class names (template ensemble), times a trainable exp(logit scale).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from nscl.atlas import atlas_rows
from nscl.data.loading import BatchTransform
from nscl.methods.base import Batches, ContinualMethod, TaskInfo
from nscl.models.encoders import PromptedEncoder, TaskHeads, TextClassifier, encode_class_texts
from nscl.nsp2.conditions import ConditionRecorder, ConditionSpec, condition_projectors, drift_penalty
from nscl.nsp2.refine import ClassStatistics, RefineConfig, refine_classifier
from nscl.optim import ProjectedAdam, TwoSidedProjection

__all__ = ["NSP2Config", "NSP2", "seq_config", "control_configs", "multistep_lr"]


@dataclass(frozen=True)
class NSP2Config:
    null_space: bool = True  # False: no projection (Seq, frozen and joint controls)
    freeze_prompts: bool = False  # True: prompts train on the first task only (frozen control)
    loss_over: Literal["task", "seen"] = "task"  # "seen": CE over every seen class, all heads train (joint)
    prompt_length: int = 4
    prompt_layers: tuple[int, ...] | None = None  # None: every block
    head: Literal["task_linear", "text"] = "task_linear"
    lr: float = 0.01
    weight_decay: float = 5e-5  # coupled (L2) as in the official Adam
    milestones: tuple[int, ...] = (5, 8)  # epochs at which lr *= gamma
    gamma: float = 0.1
    temperature: float = 28.0
    conditions: ConditionSpec = ConditionSpec(eta1=0.97, eta2=0.97)
    accumulate: Literal["sum", "mean"] = "sum"  # across tasks
    drift_weight: float = 1.0  # the drift penalty's weight (from the 2nd task on); 0: off
    logit_scale: float = 4.605170249938965  # text head: initial log scale (ln 100)
    train_logit_scale: bool = True
    templates: tuple[str, ...] = ("a photo of a {}.",)
    refine_head: bool = False  # classifier refinement from class statistics (CLIP recipe)
    refine: RefineConfig = RefineConfig()
    seed: int = 0
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.head not in ("task_linear", "text"):
            raise ValueError(f"head={self.head!r}: choose 'task_linear' (VPT) or 'text' (CLIP)")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if list(self.milestones) != sorted(self.milestones):
            raise ValueError(f"milestones must be increasing epochs, got {self.milestones}")
        if not self.lr > 0:
            raise ValueError(
                f"NSP2Config.lr={self.lr}: the learning rate must be positive (the recipes use 1e-2 or 1e-3)"
            )
        if not 0 < self.gamma <= 1:
            raise ValueError(
                f"NSP2Config.gamma={self.gamma}: the lr decay factor must lie in (0, 1] (the recipes: 0.1)"
            )
        if not self.drift_weight >= 0:
            raise ValueError(f"NSP2Config.drift_weight={self.drift_weight}: give a weight >= 0 (0 switches it off)")
        if self.accumulate not in ("sum", "mean"):
            raise ValueError(f"NSP2Config.accumulate={self.accumulate!r}: choose 'sum' (official) or 'mean'")
        if self.loss_over not in ("task", "seen"):
            raise ValueError(f"NSP2Config.loss_over={self.loss_over!r}: choose 'task' (the methods) or 'seen' (joint)")
        if self.prompt_length < 1:
            raise ValueError(f"NSP2Config.prompt_length={self.prompt_length}: give at least 1 prompt token")


def multistep_lr(epoch: int, lr: float, milestones: tuple[int, ...], gamma: float) -> float:
    """Learning rate of 0-based `epoch` under the official schedule.

    The official loop steps timm's MultiStepLRScheduler with the number of finished epochs, and timm
    decays at bisect_right(milestones, t + 1): with milestones (5, 8) the 10 epochs run at
    lr x4, lr*gamma x3, lr*gamma^2 x3 (the decay lands one epoch before the milestone's number).
    """
    return lr * gamma ** bisect.bisect_right(milestones, epoch + 1)


class NSP2(ContinualMethod):
    """NSP² (or its Seq baseline) on a timm ViT (`head='task_linear'`) or a CLIP vision tower (`head='text'`)."""

    def __init__(
        self,
        backbone: nn.Module,
        transform: BatchTransform,
        config: NSP2Config,
        clip_model: nn.Module | None = None,
        tokenizer=None,
    ) -> None:
        super().__init__()
        if config.head == "text" and (clip_model is None or tokenizer is None):
            raise ValueError("head='text' needs the CLIP model (for its text tower) and its tokenizer")
        self.config = config
        kind = "VPT" if config.head == "task_linear" else "CLIP"
        self.name = config.name or (f"{kind}-NSP²" if config.null_space else f"{kind}-Seq")
        self.transform = transform
        gen = torch.Generator().manual_seed(config.seed)
        self.encoder = PromptedEncoder(backbone, config.prompt_layers, config.prompt_length, generator=gen)
        self.clip_model, self.tokenizer = clip_model, tokenizer
        self.heads = TaskHeads(self.encoder.width) if config.head == "task_linear" else None
        self.text: TextClassifier | None = None
        bank = self.encoder.bank
        self.recorder = (
            ConditionRecorder(bank.layers, self.encoder.width, bank.length, config.accumulate)
            if config.null_space
            else None
        )
        self.projection: TwoSidedProjection | None = None
        self.previous_prompts: torch.Tensor | None = None
        self.null_space_info: list[list] = []
        self.atlas: list[dict] = []  # per task, layer and condition: spectrum, task's top basis
        self.prompt_history: list[torch.Tensor] = []  # the prompts after every task (small: L x m x D)
        self.stats = ClassStatistics() if config.refine_head else None
        self.task: TaskInfo | None = None

    # -- plumbing -------------------------------------------------------------------------------
    @property
    def prompts(self) -> nn.Parameter:
        return self.encoder.bank.prompts

    def modules(self) -> list[nn.Module]:
        mods: list[nn.Module] = [self.clip_model if self.clip_model is not None else self.encoder]
        if self.heads is not None:
            mods.append(self.heads)
        if self.text is not None:
            mods.append(self.text)
        return mods

    def setup(self, device="cpu", precision="fp32") -> None:
        super().setup(device, precision)
        self.encoder.to(self.device)
        if self.recorder is not None:
            self.recorder = _moved(self.recorder, self.device)

    def _scores(self, features: torch.Tensor, classes: range) -> torch.Tensor:
        if self.heads is not None:
            # heads of earlier tasks are frozen, so training only moves the current one
            return self.heads(features)[:, classes.start : classes.stop]
        return self.text(self.encoder.project(features), classes)

    def _lr(self, step: int) -> float:
        return multistep_lr(
            step // max(self.task.steps_per_epoch, 1), self.config.lr, self.config.milestones, self.config.gamma
        )

    # -- the interface --------------------------------------------------------------------------
    def begin_task(self, task: TaskInfo) -> None:
        self.task = task
        cfg = self.config
        train_prompts = not (cfg.freeze_prompts and task.index > 0)
        params = [self.prompts] if train_prompts else []
        if self.heads is not None:
            self.heads.add_task(len(task.positions)).to(self.device)
            trained = self.heads.heads if cfg.loss_over == "seen" else self.heads.heads[-1:]
            for head in trained:
                head.requires_grad_(True)
                params += list(head.parameters())
        else:
            if self.text is None:
                texts = encode_class_texts(
                    self.clip_model, self.tokenizer, task.class_names, cfg.templates, self.device
                )
                self.text = TextClassifier(texts, cfg.logit_scale, cfg.train_logit_scale).to(self.device)
            params += [self.text.logit_scale] if cfg.train_logit_scale else []
        self.prompts.requires_grad_(train_prompts)
        self.optimizer = ProjectedAdam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        if self.projection is not None:
            self.optimizer.set_projection(self.prompts, self.projection)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.step_count = 0

    def training_step(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        lr = self._lr(self.step_count)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        task, cfg = self.task, self.config
        classes = range(0, task.n_seen) if cfg.loss_over == "seen" else task.positions
        with self.autocast():
            logits = self._scores(self.encoder.pre_logits(images), classes)
        loss = F.cross_entropy(logits.float() / cfg.temperature, labels - classes.start)
        if self.previous_prompts is not None and cfg.drift_weight and self.prompts.requires_grad:
            loss = loss + cfg.drift_weight * drift_penalty(self.prompts, self.previous_prompts)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step_count += 1
        return loss.detach()

    @torch.no_grad()
    def end_task(self, task: TaskInfo, batches: Batches) -> None:
        self.previous_prompts = self.prompts.detach().clone()
        self.prompt_history.append(self.previous_prompts.cpu())
        if self.config.refine_head:
            self._refine(task, batches)
        if self.recorder is None:
            return
        self.encoder.bank.recorder = self.recorder
        try:
            for images, _ in batches(train_transform=False):
                self.encoder.pre_logits(images)
        finally:
            self.encoder.bank.recorder = None
        layers = list(self.recorder.layers)
        own = {
            kind: [acc[l].current_task_matrix.clone() for l in layers]
            for kind, acc in (("affinity", self.recorder.affinity), ("aggregation", self.recorder.aggregation))
        }
        self.recorder.end_task(task.n_train)
        for kind, acc in (("affinity", self.recorder.affinity), ("aggregation", self.recorder.aggregation)):
            self.atlas += atlas_rows(task.index, kind, own[kind], [acc[l].matrix for l in layers], layers)
        left, right, infos = condition_projectors(
            self.recorder,
            self.config.conditions,
            self.encoder.ln_gains(),
            self.prompts.detach(),
            dtype=self.prompts.dtype,
        )
        self.projection = TwoSidedProjection(left.to(self.device), right.to(self.device))
        self.null_space_info.append(infos)

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            return self._scores(self.encoder.pre_logits(images), range(0, self.task.n_seen)).float()

    # -- optional head refinement ----------------------------------------------------------------
    def _refine(self, task: TaskInfo, batches: Batches) -> None:
        feats, labels = [], []
        for images, y in batches(train_transform=False):
            feats.append(self.encoder.pre_logits(images).float())
            labels.append(y)
        self.stats.add(torch.cat(feats), torch.cat(labels), self.config.refine.ridge)
        seen = range(0, task.n_seen)
        if self.heads is not None:
            params = [p for h in self.heads.heads for p in h.parameters()]
        else:
            params = [self.encoder.projection, self.encoder.projection_bias]
        for p in params:
            p.requires_grad_(True)
        gen = torch.Generator().manual_seed(self.config.seed * 7_919 + task.index)
        with torch.enable_grad():
            refine_classifier(lambda f: self._scores(f, seen), params, self.stats, self.config.refine, self.device, gen)
        for p in params:
            p.requires_grad_(False)
        if self.heads is not None:
            self.heads.heads[-1].requires_grad_(True)

    # -- checkpoints ----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "prompts": self.prompts.detach().cpu(),
            "heads": None if self.heads is None else [h.state_dict() for h in self.heads.heads],
            "text": None if self.text is None else self.text.state_dict(),
            "projection": None
            if self.projection is None
            else (self.projection.left.cpu(), self.projection.right.cpu()),
            "previous_prompts": None if self.previous_prompts is None else self.previous_prompts.cpu(),
            "recorder": None if self.recorder is None else self.recorder.state_dict(),
            "null_space_info": self.null_space_info,
            "atlas": self.atlas,
            "prompt_history": self.prompt_history,
            "stats": None if self.stats is None else self.stats.state_dict(),
            "clip_proj": None
            if self.encoder.projection_bias is None
            else (self.encoder.projection.detach().cpu(), self.encoder.projection_bias.detach().cpu()),
            "task": self.task,
        }

    def load_state_dict(self, state: dict) -> None:
        self.prompts.data.copy_(state["prompts"].to(self.device))
        if state["heads"] is not None:
            for head_state in state["heads"]:
                n_out = head_state["weight"].shape[0]
                self.heads.add_task(n_out).to(self.device).load_state_dict(head_state)
            self.heads.heads[-1].requires_grad_(False)
        if state["text"] is not None:
            texts = state["text"]["text_features"]
            self.text = TextClassifier(texts, trainable_scale=self.config.train_logit_scale).to(self.device)
            self.text.load_state_dict(state["text"])
        if state["projection"] is not None:
            left, right = state["projection"]
            self.projection = TwoSidedProjection(left.to(self.device), right.to(self.device))
        if state["previous_prompts"] is not None:
            self.previous_prompts = state["previous_prompts"].to(self.device)
        if state["recorder"] is not None:
            self.recorder.load_state_dict(state["recorder"])
        self.null_space_info = list(state["null_space_info"])
        self.atlas = list(state.get("atlas", []))
        self.prompt_history = list(state.get("prompt_history", []))
        if state["stats"] is not None:
            self.stats.load_state_dict(state["stats"])
        if state["clip_proj"] is not None:
            proj, bias = state["clip_proj"]
            self.encoder.projection.data.copy_(proj.to(self.device))
            self.encoder.projection_bias.data.copy_(bias.to(self.device))
        self.task = state["task"]

    def report(self) -> dict:
        """Prompts after every task and, for NSP², the null-space sizes per task, layer and condition."""
        rows = [
            {
                "task": t,
                "layer": layer,
                "condition": cond,
                "dim": info.dim,
                "null_dim": info.null_dim,
                "captured_energy": info.captured_energy,
            }
            for t, per_layer in enumerate(self.null_space_info)
            for layer, pair in zip(self.encoder.bank.layers, per_layer)
            for cond, info in zip(("affinity", "aggregation"), pair)
        ]
        return {"null_space": rows, "prompts": list(self.prompt_history), "atlas": list(self.atlas)}


def _moved(recorder: ConditionRecorder, device: torch.device) -> ConditionRecorder:
    """A recorder whose accumulators live on `device` (keeps any state already gathered)."""
    moved = ConditionRecorder(
        recorder.layers,
        next(iter(recorder.affinity.values())).dim,
        next(iter(recorder.aggregation.values())).dim,
        next(iter(recorder.affinity.values())).across_tasks,
        device,
    )
    moved.load_state_dict(recorder.state_dict())
    return moved


def seq_config(config: NSP2Config) -> NSP2Config:
    """The Seq baseline of a recipe: same prompts and heads, no projection, no drift penalty."""
    return replace(config, null_space=False, drift_weight=0.0, name="")


def control_configs(config: NSP2Config) -> dict[str, NSP2Config]:
    """The controls a null-space method must beat, built from its recipe (names as the tables print them).

    Seq: the same training with neither projection nor penalty. frozen: Seq, but the prompts train on the
    first task only (later tasks train their heads, or CLIP's logit scale): the trivial way not to forget.
    joint: Seq trained at task t on the data of tasks 1..t with the loss over every seen class (run it
    with `RunConfig(joint=True)`): the upper bound.
    """
    seq = seq_config(config)
    return {"Seq": seq, "frozen": replace(seq, freeze_prompts=True), "joint": replace(seq, loss_over="seen")}
