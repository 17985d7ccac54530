r"""A shared linear layer on fixed features, trained plainly (Seq) or in the null space of old inputs.

The smallest complete null-space method, a miniature of NSP²'s set-up:

$$x \xrightarrow{\ \phi\ (\text{fixed})\ } \tilde\phi = [\phi(x); 1] \xrightarrow{\ W\ (\text{shared, trained})\ }
h = \mathrm{ReLU}(W\tilde\phi) \xrightarrow{\ V_t\ (\text{head of task } t)\ } z_t = V_t h .$$

The bias is folded into $W$ as a constant feature, so it is protected too. After each task the
uncentered matrix $C = \sum \tilde\phi\tilde\phi^\top$ of that task's inputs is accumulated; while
later tasks train, every Adam update of $W$ is right-multiplied by the projector $P$ onto the
approximate null space of $C$, so $\Delta W\,\tilde\phi(x_{old}) \approx 0$: old hidden features, and
with them the old (frozen) heads' outputs, stay put. With `null_space=None` it is sequential
fine-tuning (Seq) of the same parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from nscl.data.loading import BatchTransform
from nscl.methods.base import Batches, ContinualMethod, TaskInfo
from nscl.nullspace import CovarianceAccumulator, NullSpaceInfo, NullSpaceRule, null_space_projector
from nscl.optim import ProjectedAdam, TwoSidedProjection

__all__ = ["SharedLayerConfig", "SharedLayerClassifier"]


@dataclass(frozen=True)
class SharedLayerConfig:
    hidden: int = 64
    lr: float = 1e-2
    weight_decay: float = 0.0
    null_space: NullSpaceRule | None = None  # None: sequential fine-tuning (Seq)
    eta: float = 1.0
    dtype: str = "float32"
    seed: int = 0
    name: str = field(default="", compare=False)


class SharedLayerClassifier(ContinualMethod):
    """Fixed features -> shared linear layer (protected or not) -> per-task heads."""

    def __init__(
        self, features: nn.Module, feature_dim: int, transform: BatchTransform, config: SharedLayerConfig
    ) -> None:
        super().__init__()
        self.config = config
        self.name = config.name or ("seq" if config.null_space is None else f"null-space ({config.null_space.mode})")
        self.transform = transform
        self.dtype = getattr(torch, config.dtype)
        self.features = features.to(self.dtype).eval()
        self.generator = torch.Generator().manual_seed(config.seed)
        bound = 1 / math.sqrt(feature_dim + 1)
        self.shared = nn.Linear(feature_dim + 1, config.hidden, bias=False, dtype=self.dtype)
        with torch.no_grad():
            self.shared.weight.uniform_(-bound, bound, generator=self.generator)
        self.heads = nn.ModuleList()
        self.covariance = CovarianceAccumulator(feature_dim + 1)
        self.projector: torch.Tensor | None = None
        self.null_space_info: list[NullSpaceInfo] = []
        self.task: TaskInfo | None = None

    def modules(self) -> list[nn.Module]:
        return [self.features, self.shared, self.heads]

    @torch.no_grad()
    def inputs(self, images: torch.Tensor) -> torch.Tensor:
        """$\\tilde\\phi(x)$: the fixed features with a constant 1 appended (the shared layer's input)."""
        phi = self.features(images.to(self.dtype))
        return torch.cat([phi, torch.ones_like(phi[:, :1])], dim=1)

    def hidden(self, images: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.shared(self.inputs(images)))

    def begin_task(self, task: TaskInfo) -> None:
        self.task = task
        head = nn.Linear(self.config.hidden, len(task.positions), dtype=self.dtype).to(self.device)
        for old in self.heads:
            old.requires_grad_(False)
        self.heads.append(head)
        projections = {}
        if self.projector is not None:
            projections[self.shared.weight] = TwoSidedProjection(right=self.projector.to(self.device, self.dtype))
        self.optimizer = ProjectedAdam(
            [self.shared.weight, *head.parameters()],
            lr=self.config.lr,
            weight_decay=self.config.weight_decay,
            projections=projections,
        )

    def training_step(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # Local cross-entropy over the current task's classes (the new head), as NSP² trains its heads.
        logits = self.heads[-1](self.hidden(images))
        loss = F.cross_entropy(logits, labels - self.task.first_position)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    @torch.no_grad()
    def end_task(self, task: TaskInfo, batches: Batches) -> None:
        if self.config.null_space is None:
            return
        for images, _ in batches(train_transform=False):
            self.covariance.update(self.inputs(images))
        self.covariance.end_task()
        self.projector, info = null_space_projector(
            self.covariance.matrix,
            self.config.null_space,
            eta=self.config.eta,
            dtype=torch.float64,
            name="shared layer",
        )
        self.null_space_info.append(info)

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        h = self.hidden(images)
        return torch.cat([head(h) for head in self.heads], dim=1)

    def state_dict(self) -> dict:
        return {
            "shared": self.shared.state_dict(),
            "heads": [h.state_dict() for h in self.heads],
            "covariance": self.covariance.state_dict(),
            "projector": None if self.projector is None else self.projector.cpu(),
            "null_space_info": list(self.null_space_info),
            "task": self.task,
        }

    def load_state_dict(self, state: dict) -> None:
        self.shared.load_state_dict(state["shared"])
        self.heads = nn.ModuleList()
        for head_state in state["heads"]:
            out_features, hidden = head_state["weight"].shape
            head = nn.Linear(hidden, out_features, dtype=self.dtype).to(self.device)
            head.load_state_dict(head_state)
            head.requires_grad_(False)
            self.heads.append(head)
        self.covariance.load_state_dict(state["covariance"])
        self.projector = state["projector"]
        self.null_space_info = list(state["null_space_info"])
        self.task = state["task"]
