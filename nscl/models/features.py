"""Small fixed feature networks for the linear-algebra chapter."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["RandomReLUFeatures"]


class RandomReLUFeatures(nn.Module):
    """A fixed random one-layer network, $\\phi(x) = \\mathrm{ReLU}(W x + b)$, on flattened images.

    W ~ N(0, 1/d_in) and b ~ N(0, 1), drawn from `seed` and never trained: a cheap "small fixed
    network" whose features are rich enough for a linear classifier, yet low-rank per task.
    `channels` picks which input channels to use (grey-scale sets need only one).
    """

    def __init__(self, in_features: int, out_features: int = 256, seed: int = 0, channels: int = 1) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.channels = channels
        self.register_buffer("weight", torch.randn(out_features, in_features, generator=gen) / in_features**0.5)
        self.register_buffer("bias", torch.randn(out_features, generator=gen))
        self.out_features = out_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images[:, : self.channels].flatten(1).to(self.weight.dtype)
        return torch.relu(x @ self.weight.T + self.bias)
