"""Classifier refinement from class feature statistics (an extra stage of NSP²'s CLIP recipe).

After each task the per-class mean and covariance of the (frozen-encoder) features are stored; the
classifier is then retrained on features sampled from those Gaussians for every class seen so far
(as in SLCA, which NSP² follows). NSP²'s code: 256 samples per class per epoch, 50 epochs, SGD with
lr 1e-3, momentum 0.9, weight decay 1e-4, covariance + 1e-4 I in float64.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

__all__ = ["RefineConfig", "ClassStatistics", "refine_classifier"]


@dataclass(frozen=True)
class RefineConfig:
    epochs: int = 50
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    samples_per_class: int = 256
    batch_size: int = 256
    ridge: float = 1e-4


class ClassStatistics:
    """Gaussian statistics (mean, Cholesky factor of the covariance) of each class's features."""

    def __init__(self) -> None:
        self.means: dict[int, torch.Tensor] = {}
        self.cholesky: dict[int, torch.Tensor] = {}

    @torch.no_grad()
    def add(self, features: torch.Tensor, labels: torch.Tensor, ridge: float = 1e-4) -> None:
        feats = features.to(torch.float64)
        for label in labels.unique().tolist():
            x = feats[labels == label]
            cov = torch.cov(x.T) if len(x) > 1 else torch.zeros(x.shape[1], x.shape[1], dtype=x.dtype, device=x.device)
            cov = cov + ridge * torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
            self.means[label] = x.mean(0).cpu()
            self.cholesky[label] = torch.linalg.cholesky(cov).cpu()

    @property
    def classes(self) -> list[int]:
        return sorted(self.means)

    def sample(self, n_per_class: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for label in self.classes:
            mean, chol = self.means[label], self.cholesky[label]
            z = torch.randn(n_per_class, mean.numel(), generator=generator, dtype=torch.float64)
            xs.append(mean + z @ chol.T)
            ys.append(torch.full((n_per_class,), label, dtype=torch.long))
        return torch.cat(xs).float(), torch.cat(ys)

    def state_dict(self) -> dict:
        return {"means": self.means, "cholesky": self.cholesky}

    def load_state_dict(self, state: dict) -> None:
        self.means, self.cholesky = dict(state["means"]), dict(state["cholesky"])


def refine_classifier(
    logits_fn: Callable[[torch.Tensor], torch.Tensor],
    params: Sequence[torch.nn.Parameter],
    stats: ClassStatistics,
    config: RefineConfig,
    device: torch.device,
    generator: torch.Generator | None = None,
) -> list[float]:
    """Train `params` so that `logits_fn(sampled features)` classifies every stored class; returns epoch losses."""
    optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    losses = []
    for _ in range(config.epochs):
        x, y = stats.sample(config.samples_per_class, generator)
        order = torch.randperm(len(y), generator=generator)
        total = torch.zeros((), device=device)
        for start in range(0, len(y), config.batch_size):
            idx = order[start : start + config.batch_size]
            loss = F.cross_entropy(logits_fn(x[idx].to(device)), y[idx].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(idx)
        losses.append(total.item() / len(y))
    return losses
