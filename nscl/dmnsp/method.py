r"""DMNSP: dynamic multi-layer null-space projection for CLIP adapters (Kang et al., ICCV 2025).

CLIP with an adapter in every block of both towers; only adapters train (AdamW, cosine schedule with
warm-up), with cross-entropy over the task's classes scored against "a bad photo of a {}." through
the (adapted) text tower. From the second task on, the gradients of the *visual* adapters' weights
are projected into multi-layer null spaces and scaled by the dynamic coefficient; the text branch
is trained plainly (the asymmetric treatment), unless `project_text` asks for the ablation.

Two variants (the paper's text was not available to us; see book chapter 5):
* ``code``: the released code's algorithm (RL-VIG/DMNSP continual_clip/models.py): features = adapter
  *outputs* of one training batch (train mode, augmented), bases concatenated across tasks, the
  sequential 12-layer projection chain, the down-projection projected on its input side and the
  up-projection on its output side, each scaled by the product of the row's 12 coefficients.
  Same maths, not the same bits: by default nscl's Gram and SVD run in float64, the official ones in
  float32, so the arbitrary basis of the Gram's large numerical null space differs and lambda with
  it (by up to 0.24 at ViT-B/16 sizes, issue 13); `basis_dtype="float32"` replays the official
  float32 Gram (per-image order), SVD, cosines and chain. Under AdamW a constant positive scale of
  a tensor's gradient leaves the update unchanged up to eps, so lambda's exact value matters little.
* ``paper`` (default, the null-space maths the method rests on): features = each weight's *inputs*
  (adapter input x for the down-projection, bottleneck activation h for the up-projection) over all
  of the task's training data (eval mode), accumulated over tasks; one common null space for the
  down-projections of all layers (`common_space`: the exact intersection of the layers' null spaces,
  each dropping its top `top_select` directions or those holding `energy_threshold` of the energy,
  or the null space of the layers' pooled trace-normalised covariances under the same rule); the
  up-projection in its own bottleneck's null space; one coefficient per weight, the mean of its row.

**Which variant made the published numbers: ``code``** (the released code produced them). At
ViT-B/16 sizes its chain multiplies a visual weight's gradient by $\prod_k \lambda_{jk} \cdot t^{12}$
(about 2.5e17 at task index t = 1, 7e28 at t = 9): AdamW's float32 second moment overflows to inf for
the larger entries, whose updates are then exactly 0, and at realistic gradient sizes the visual
adapters stop moving from about the fifth task (visual biases and the text branch keep training).
That follows from the arithmetic ((1 - beta2) g^2 passes float32's 3.4e38 once |g| > ~6e20), and
every run measures it: per task, the share of non-finite entries of AdamW's moments of the adapter
weights and of entries that did not move (`report()["adam_moments"]`).

Controls: `projection=False` is the adapter-Seq baseline; `freeze_visual_after_first_task=True`
(with `projection=False`) trains all adapters on the first task and then only the text adapters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from nscl.data.loading import BatchTransform
from nscl.dmnsp.bases import update_bases, weight_projection_factors
from nscl.dmnsp.multilayer import coefficients, gram
from nscl.dmnsp.records import (
    leak_share,
    load_state,
    moment_health_rows,
    null_dim_rows,
    to_cpu,
    tower_of,
    update_norm_row,
)
from nscl.methods.base import Batches, ContinualMethod, TaskInfo
from nscl.models.adapters import adapter_parameters, add_adapters
from nscl.optim import ProjectedAdam, TwoSidedProjection

__all__ = ["DMNSPConfig", "DMNSP", "cosine_lr"]


BASIS_DTYPES = {"float64": torch.float64, "float32": torch.float32}
COMMON_SPACES = ("intersect", "pooled")


@dataclass(frozen=True)
class DMNSPConfig:
    # fields added after runs were made: left out of a run's fingerprint while at their default (settings_of)
    ADDED_LATER: ClassVar[tuple[str, ...]] = ("project",)

    projection: bool = True  # False: adapter-Seq
    variant: Literal["paper", "code"] = "paper"
    top_select: int = 1
    # None: drop each layer's top `top_select` directions (the official rule). A fraction in (0, 1): drop the
    # fewest top directions holding that share of the energy instead (GPM-style; the released code defines
    # DEFAULT_THRESHOLD = 0.985 but never uses it). Paper variant only.
    energy_threshold: float | None = None
    # Paper variant, multi-layer: how the layers' null spaces for W_down become one. "intersect": each layer
    # applies the rule, then the exact intersection (empty once the layers' kept directions span everything).
    # "pooled": the rule applied once to the sum of the layers' trace-normalised covariances; its energy
    # leak is the layers' mean leak, so each layer leaks at most L * (1 - energy_threshold) of its energy.
    # Unused with multi_layer=False (each layer then keeps its own null space).
    common_space: Literal["intersect", "pooled"] = "intersect"
    # Code variant: "float32" replays the official float32 Gram / SVD / cosines / chain; "float64" is nscl's.
    basis_dtype: Literal["float64", "float32"] = "float64"
    top_k_ratio: float = 0.1
    lambda_scale: float = 30.0
    dynamic_lambda: bool = True  # False: lambda = lambda_scale everywhere (ablation)
    multi_layer: bool = True  # False: each layer uses only its own null space (ablation)
    project_text: bool = False  # True: project the text adapters too (ablation)
    # "gradient": the paper's and the code's, the gradient is projected before AdamW, whose per-coordinate
    # scaling then moves the step out of the null space (the leak, recorded per task). "update": AdamW's
    # update is projected instead, as NSP² does (nscl.optim.ProjectedAdam), so the step stays in the null
    # space; lambda is still measured but not applied (on the update it would scale the learning rate).
    project: Literal["gradient", "update"] = "gradient"
    freeze_visual_after_first_task: bool = False  # the "frozen" control: from task 2 on only text adapters train
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 30
    template: str = "a bad photo of a {}."
    bottleneck: int = 64
    adapter_scale: float = 0.1
    adapter_dropout: float = 0.1
    loss_over: Literal["task", "seen"] = "task"
    basis_batch_size: int = 128  # code variant: the one batch its bases come from
    record_parameters: bool = False  # keep every adapter parameter after each task (chapter 4)
    seed: int = 0
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        _choice("variant", self.variant, ("paper", "code"))
        _choice("loss_over", self.loss_over, ("task", "seen"))
        _choice("basis_dtype", self.basis_dtype, tuple(BASIS_DTYPES))
        _choice("common_space", self.common_space, COMMON_SPACES)
        _choice("project", self.project, ("gradient", "update"))
        if self.energy_threshold is not None:
            if not 0 < self.energy_threshold < 1:
                raise ValueError(
                    f"energy_threshold={self.energy_threshold}: give a fraction in (0, 1), e.g. 0.985, "
                    "or None to drop the top `top_select` directions"
                )
            if self.variant == "code":
                raise ValueError(
                    "energy_threshold applies to variant='paper'; the code variant drops the top "
                    "`top_select` directions as the released code does (set energy_threshold=None)"
                )
        if self.top_select < 0 or not 0 < self.top_k_ratio <= 1:
            raise ValueError(
                f"need top_select >= 0 and 0 < top_k_ratio <= 1; got {self.top_select}, {self.top_k_ratio}"
            )
        if self.basis_dtype == "float32" and self.variant != "code":
            raise ValueError(
                "basis_dtype='float32' replays the released code's float32 bases and applies to "
                "variant='code'; the paper variant accumulates its covariances in float64"
            )
        if self.common_space == "pooled" and self.variant != "paper":
            raise ValueError(
                f"common_space='pooled' pools the input covariances of variant='paper'; the code "
                f"variant chains its layers' bases (got variant={self.variant!r}; set "
                "common_space='intersect')"
            )
        if not self.lr > 0:
            raise ValueError(
                f"DMNSPConfig.lr={self.lr}: the learning rate must be positive (the recipes use 1e-3 "
                "(paper) or 1e-2 (tiny))"
            )
        if not self.weight_decay >= 0:
            raise ValueError(f"DMNSPConfig.weight_decay={self.weight_decay}: give a value >= 0 (the recipes: 0)")
        if self.warmup_steps < 0:
            raise ValueError(f"DMNSPConfig.warmup_steps={self.warmup_steps}: give a number of steps >= 0")
        if isinstance(self.bottleneck, bool) or int(self.bottleneck) != self.bottleneck or self.bottleneck < 1:
            raise ValueError(
                f"DMNSPConfig.bottleneck={self.bottleneck!r}: the adapters' hidden width must be an "
                "integer >= 1 (the recipes: 64)"
            )
        if not 0 <= self.adapter_dropout < 1:
            raise ValueError(
                f"DMNSPConfig.adapter_dropout={self.adapter_dropout}: give a probability in [0, 1) (the recipes: 0.1)"
            )
        if self.basis_batch_size < 1:
            raise ValueError(f"DMNSPConfig.basis_batch_size={self.basis_batch_size}: give at least 1 image")
        if self.freeze_visual_after_first_task and self.projection:
            raise ValueError(
                "freeze_visual_after_first_task=True is the frozen control: set projection=False "
                "(the visual adapters get no gradient to project)"
            )


def _choice(field_name: str, value: object, accepted: tuple) -> None:
    if value not in accepted:
        raise ValueError(f"DMNSPConfig.{field_name}={value!r}: choose one of {accepted}")


def cosine_lr(step: int, total: int, base: float, warmup: int) -> float:
    """The official schedule: linear warm-up over `warmup` steps, then cosine to 0 at `total`."""
    if step < warmup:
        return base * (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(total - warmup, 1))) * base


class DMNSP(ContinualMethod):
    def __init__(self, clip_model: nn.Module, tokenizer, transform: BatchTransform, config: DMNSPConfig) -> None:
        super().__init__()
        self.config = config
        self.name = config.name or ("DMNSP" if config.projection else "adapter-Seq")
        self.transform = transform
        self.clip = clip_model
        self.tokenizer = tokenizer
        self.clip.requires_grad_(False)
        gen = torch.Generator().manual_seed(config.seed)
        self.adapters = add_adapters(clip_model, config.bottleneck, config.adapter_scale, config.adapter_dropout, gen)
        self.params = adapter_parameters(clip_model)
        # the init is a function of the seed, so a resumed run rebuilds the same one
        self.initial = {n: p.detach().cpu().clone() for n, p in self.params.items()} if config.record_parameters else {}
        for p in self.params.values():
            p.requires_grad_(True)
        self.towers = ("visual", "text") if config.project_text else ("visual",)
        self.state: dict[str, dict] = {t: {} for t in self.towers}  # per tower: bases / accumulators
        self.operators: dict[str, dict] = {}  # per tower: projection matrices
        self.lam: torch.Tensor | None = None
        self.log: list[dict] = []
        self.lambda_history: list[dict] = []  # per task from the 2nd on: {tower: (L, L) coefficients}
        self.atlas: list[dict] = []  # paper variant: per task, tower, layer, input kind (x, h)
        self.null_dims: list[dict] = []  # per task, layer and weight: size of the projection's range
        self.adam_moments: list[dict] = []  # per task, tower and weight kind: AdamW moment health
        self.leak: list[dict] = []  # per task from the 2nd on, tower, layer, weight: change outside the projection
        self.snapshots: list[dict] = []  # record_parameters: adapter parameters after every task
        self.tokens: torch.Tensor | None = None
        self.text_cache: torch.Tensor | None = None
        self.task: TaskInfo | None = None

    def modules(self) -> list[nn.Module]:
        return [self.clip, self.adapters]

    # -- scoring --------------------------------------------------------------------------------
    def _text_features(self, classes: range) -> torch.Tensor:
        return F.normalize(self.clip.encode_text(self.tokens[classes.start : classes.stop]), dim=-1)

    def _scores(self, images: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        image = F.normalize(self.clip.encode_image(images), dim=-1)
        return self.clip.logit_scale.exp() * image @ text.T

    def _classes(self, task: TaskInfo) -> range:
        return range(0, task.n_seen) if self.config.loss_over == "seen" else task.positions

    # -- the interface --------------------------------------------------------------------------
    def begin_task(self, task: TaskInfo) -> None:
        self.task = task
        if self.tokens is None:
            prompts = [self.config.template.format(name) for name in task.class_names]
            self.tokens = self.tokenizer(prompts).to(self.device)
        trained = self._trained_parameters(task)
        for name, p in self.params.items():
            p.requires_grad_(name in trained)
        if self.config.project == "update" and self._projecting():
            self.optimizer = ProjectedAdam(
                list(trained.values()),
                lr=self.config.lr,
                weight_decay=self.config.weight_decay,
                decoupled_weight_decay=True,
            )
            for param, projection in self._update_projections().items():
                self.optimizer.set_projection(param, projection)
        else:
            self.optimizer = torch.optim.AdamW(
                trained.values(), lr=self.config.lr, weight_decay=self.config.weight_decay
            )
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.step_count = 0
        self.text_cache = None
        self.start = {n: p.detach().clone() for n, p in self.params.items()}
        self.clip.train()

    def _trained_parameters(self, task: TaskInfo) -> dict[str, nn.Parameter]:
        """All adapters, except the visual ones after the first task in the frozen control (they then get
        no gradient and no optimizer state, so they stay exactly as the first task left them)."""
        if self.config.freeze_visual_after_first_task and task.index > 0:
            return {n: p for n, p in self.params.items() if tower_of(n) != "visual"}
        return dict(self.params)

    def _projecting(self) -> bool:
        return self.config.projection and self.task.index > 0

    def training_step(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cfg, task = self.config, self.task
        for group in self.optimizer.param_groups:
            group["lr"] = cosine_lr(self.step_count, task.total_steps, cfg.lr, cfg.warmup_steps)
        classes = self._classes(task)
        captured = {}
        first = self._projecting() and self.step_count == 0
        if first:  # the coefficient comes from this first batch's features, before any update
            self.adapters.recorder = self._capture(captured, self._feature_kind())
        try:
            with self.autocast():
                logits = self._scores(images, self._text_features(classes))
        finally:
            self.adapters.recorder = None
        loss = F.cross_entropy(logits.float(), labels - classes.start)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self._projecting():
            if first:
                self.lam = self._coefficients(captured)
            if self.config.project == "gradient":
                self.scaler.unscale_(self.optimizer)
                self._project_gradients()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step_count += 1
        self.text_cache = None
        return loss.detach()

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        self.clip.eval()
        with self.autocast():
            if self.text_cache is None or self.text_cache.shape[0] != self.task.n_seen:
                self.text_cache = self._text_features(range(0, self.task.n_seen))
            return self._scores(images, self.text_cache).float()

    @torch.no_grad()
    def end_task(self, task: TaskInfo, batches: Batches) -> None:
        self._log_task(task)
        if self._projecting():  # before the bases change: the projections this task trained under
            self._log_leak(task)
        if self.lam is not None and self._projecting():
            self.lambda_history.append({"task": task.index, **{k: v.clone() for k, v in self.lam.items()}})
        if self.config.projection:
            update_bases(self, task, batches)
            self._log_null_dims(task)
        if self.config.record_parameters:
            self.snapshots.append({n: p.detach().cpu().clone() for n, p in self.params.items()})
        self.clip.eval()

    # -- projection pieces ----------------------------------------------------------------------
    def _feature_kind(self) -> str:
        return "output" if self.config.variant == "code" else "input"

    def _capture(self, store: dict, kind: str):
        def record(tower: str, index: int, x: torch.Tensor, a: torch.Tensor) -> None:
            if tower in self.towers:
                store[(tower, index)] = (a if kind == "output" else x).detach()

        return record

    def _coefficients(self, captured: dict) -> dict[str, torch.Tensor]:
        lam = {}
        for tower in self.towers:
            n = len(self.adapters.tower(tower))
            if not self.config.dynamic_lambda:
                lam[tower] = torch.full((n, n), self.config.lambda_scale, dtype=torch.float64)
                continue
            dtype = self.basis_dtype
            tops = torch.stack(
                [torch.linalg.svd(gram(captured[(tower, j)], dtype), full_matrices=False)[0][:, 0] for j in range(n)]
            )
            lam[tower] = coefficients(
                tops, self.state[tower]["lambda_bases"], self.config.top_k_ratio, self.config.lambda_scale
            ).cpu()
        return lam

    @property
    def basis_dtype(self) -> torch.dtype:
        return BASIS_DTYPES[self.config.basis_dtype]

    def _row_scale(self, tower: str, j: int) -> float:
        lam = self.lam[tower]
        if not self.config.multi_layer:
            return float(lam[j, j])
        return float(torch.prod(lam[j])) if self.config.variant == "code" else float(lam[j].mean())

    def _project_gradients(self) -> None:
        for tower, j, _, weight, (left, right) in self._projected_weights(lambda w: w.grad.dtype):
            weight.grad = self._row_scale(tower, j) * TwoSidedProjection(left, right)(weight.grad)

    def _projected_weights(self, dtype_of):
        """(tower, block, "down" or "up", weight, (left, right)) for every projected adapter weight, the factors
        on its device in `dtype_of(weight)`."""
        for tower in self.towers:
            for j, adapter in enumerate(self.adapters.tower(tower)):
                factors = weight_projection_factors(self.operators[tower], j, self.config.variant)
                for kind, weight in (("down", adapter.down_proj.weight), ("up", adapter.up_proj.weight)):
                    dtype = dtype_of(weight)
                    yield (
                        tower,
                        j,
                        kind,
                        weight,
                        tuple(None if m is None else m.to(weight.device, dtype) for m in factors[kind]),
                    )

    def _update_projections(self) -> dict[torch.Tensor, TwoSidedProjection]:
        return {w: TwoSidedProjection(*lr) for _, _, _, w, lr in self._projected_weights(lambda w: w.dtype)}

    @torch.no_grad()
    def _log_leak(self, task: TaskInfo) -> None:
        names = {id(p): n for n, p in self.params.items()}
        for tower, j, kind, weight, factors in self._projected_weights(lambda w: torch.float64):
            leak = leak_share(weight.detach() - self.start[names[id(weight)]], *factors)
            self.leak.append({"task": task.index, "tower": tower, "layer": j, "weight": kind, "leak": leak})

    def _log_task(self, task: TaskInfo) -> None:
        row = {"task": task.index, **update_norm_row(self.params, self.start)}
        moments = moment_health_rows(task.index, self.params, self.start, self.optimizer)
        for tower in ("visual", "text"):  # over all of the tower's weights (the chapters' summary column)
            stated = [r for r in moments if r["tower"] == tower and not math.isnan(r["share_nonfinite_exp_avg_sq"])]
            entries = sum(r["n_entries"] for r in stated)
            nonfinite = sum(r["share_nonfinite_exp_avg_sq"] * r["n_entries"] for r in stated)
            row[f"{tower}_nonfinite_adam_v"] = nonfinite / entries if entries else 0.0
        if self.lam is not None and self._projecting():
            row["lambda_mean"] = float(self.lam["visual"].mean())
        self.log.append(row)
        self.adam_moments.extend(moments)

    def _log_null_dims(self, task: TaskInfo) -> None:
        bases = {t: self.state[t]["bases"] for t in self.operators} if self.config.variant == "code" else None
        self.null_dims.extend(null_dim_rows(task.index, self.operators, bases))

    def report(self) -> dict:
        """log: per task, update norms and lambda; adam_moments: per task, tower and weight kind, the share
        of non-finite entries in AdamW's exp_avg_sq / exp_avg and of entries that did not move;
        null_dims: per task and layer, each projection's rank; lambda; parameter snapshots; leak: per task,
        layer and weight, the share of the weight's change over the task outside its projection's range."""
        return {
            "log": list(self.log),
            "adam_moments": list(self.adam_moments),
            "lambda": list(self.lambda_history),
            "null_dims": list(self.null_dims),
            "parameters": list(self.snapshots),
            "initial_parameters": self.initial,
            "atlas": list(self.atlas),
            "leak": list(self.leak),
        }

    # -- checkpoints ----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "adapters": {n: p.detach().cpu() for n, p in self.params.items()},
            "state": to_cpu(self.state),
            "operators": to_cpu(self.operators),
            "lambda_history": to_cpu(self.lambda_history),
            "null_dims": self.null_dims,
            "atlas": self.atlas,
            "adam_moments": self.adam_moments,
            "leak": self.leak,
            "snapshots": self.snapshots,
            "lam": None if self.lam is None else to_cpu(self.lam),
            "log": self.log,
            "tokens": None if self.tokens is None else self.tokens.cpu(),
            "task": self.task,
        }

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            for n, p in self.params.items():
                p.copy_(state["adapters"][n].to(p.device))
        self.state = load_state(state["state"], self.device)
        self.operators = load_state(state["operators"], self.device)
        self.lam = state["lam"]
        self.log = list(state["log"])
        self.lambda_history = list(state.get("lambda_history", []))
        self.null_dims = list(state.get("null_dims", []))
        self.atlas = list(state.get("atlas", []))
        self.adam_moments = list(state.get("adam_moments", []))
        self.leak = list(state.get("leak", []))
        self.snapshots = list(state.get("snapshots", []))
        self.tokens = None if state["tokens"] is None else state["tokens"].to(self.device)
        self.task = state["task"]
