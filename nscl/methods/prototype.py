r"""The prototype classifier on a frozen backbone (SimpleCIL): the simplest baseline a continual method must beat.

Zhou et al. ("Revisiting Class-Incremental Learning with Pre-Trained Models: Generalizability and Adaptivity
are All You Need", IJCV 2024) showed that on a strong pre-trained backbone, replacing every head by the mean
embedding of each class's training images, a *prototype*, and scoring by cosine similarity,

$$p_c = \frac{1}{n_c}\sum_{i:\,y_i = c} \phi(x_i), \qquad z_c(x) = \cos\big(\phi(x), p_c\big),$$

already rivals prompt-based continual methods. Nothing trains: a task only adds its classes' prototypes,
so old prototypes never change and the only cause of lost accuracy is new classes that compete with old
ones. A null-space method is worth its cost only where it beats this (and the frozen control).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from nscl.data.loading import BatchTransform
from nscl.methods.base import Batches, ContinualMethod, TaskInfo

__all__ = ["PrototypeConfig", "PrototypeClassifier", "class_means"]


@dataclass(frozen=True)
class PrototypeConfig:
    seed: int = 0  # nothing is drawn at random; kept so the experiment can set every method's seed alike
    name: str = field(default="prototype", compare=False)


def class_means(features: torch.Tensor, labels: torch.Tensor, classes: range) -> torch.Tensor:
    """(len(classes), D) mean feature of each class in `classes` (labels are global class positions)."""
    local = labels - classes.start
    if local.min() < 0 or local.max() >= len(classes):
        raise ValueError(f"labels {sorted(set(labels.tolist()))} fall outside the task's classes {classes}")
    sums = torch.zeros(len(classes), features.shape[1], dtype=features.dtype, device=features.device)
    sums.index_add_(0, local, features)
    counts = torch.bincount(local, minlength=len(classes)).to(features.dtype)
    if (counts == 0).any():
        missing = [classes.start + int(i) for i in torch.nonzero(counts == 0).flatten()]
        raise ValueError(f"no training images for classes {missing}: a prototype needs at least one")
    return sums / counts[:, None]


class PrototypeClassifier(ContinualMethod):
    """Frozen embedding -> one prototype per class (its mean, float64) -> cosine scores over the seen classes."""

    trains = False  # the run loop skips training; end_task averages the task's (unaugmented) images

    def __init__(self, embedding: nn.Module, transform: BatchTransform, config: PrototypeConfig = PrototypeConfig()):
        super().__init__()
        self.config, self.name, self.transform = config, config.name, transform
        self.embedding = embedding.eval().requires_grad_(False)
        self.prototypes: torch.Tensor | None = None  # (n_seen, D), float64 so sums do not depend on batching
        self.task: TaskInfo | None = None

    def modules(self) -> list[nn.Module]:
        return [self.embedding]

    def begin_task(self, task: TaskInfo) -> None:
        self.task = task

    def training_step(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("the prototype classifier does not train")

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            return self.embedding(images).double()

    @torch.no_grad()
    def end_task(self, task: TaskInfo, batches: Batches) -> None:
        pairs = [(self.embed(images), labels.to(self.device)) for images, labels in batches(train_transform=False)]
        features = torch.cat([f for f, _ in pairs])
        labels = torch.cat([y for _, y in pairs])
        means = class_means(features, labels, task.positions)
        seen = 0 if self.prototypes is None else len(self.prototypes)
        if seen != task.first_position:
            raise ValueError(f"task {task.index}: prototypes for {seen} classes, expected {task.first_position}")
        self.prototypes = means if self.prototypes is None else torch.cat([self.prototypes, means])

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        scores = F.normalize(self.embed(images), dim=-1) @ F.normalize(self.prototypes, dim=-1).T
        return scores.float()

    def state_dict(self) -> dict:
        return {"prototypes": None if self.prototypes is None else self.prototypes.cpu(), "task": self.task}

    def load_state_dict(self, state: dict) -> None:
        prototypes = state["prototypes"]
        self.prototypes = None if prototypes is None else prototypes.to(self.device)
        self.task = state["task"]

    def report(self) -> dict:
        return {} if self.prototypes is None else {"prototype_norms": self.prototypes.norm(dim=1).cpu()}
