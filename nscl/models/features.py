"""Small fixed feature networks for the linear-algebra chapter."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["RandomReLUFeatures", "PooledEmbedding"]


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


class PooledEmbedding(nn.Module):
    """A pretrained backbone's pooled image embedding, frozen: what prototype classifiers average.

    timm ViT: the class token after the final norm (`forward_head(pre_logits=True)`, the feature SimpleCIL
    averages); open_clip CLIP: the projected image embedding (`encode_image`), the space its text lives in.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if hasattr(model, "forward_head") and hasattr(model, "forward_features"):
            self.kind = "timm"
        elif hasattr(model, "encode_image"):
            self.kind = "open_clip"
        else:
            raise TypeError(
                f"PooledEmbedding needs a timm ViT (forward_features/forward_head) or an open_clip CLIP model "
                f"(encode_image); got {type(model).__name__}"
            )
        self.model = model.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> PooledEmbedding:
        super().train(mode)
        self.model.eval()  # frozen statistics, no dropout
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.kind == "timm":
            return self.model.forward_head(self.model.forward_features(images), pre_logits=True)
        return self.model.encode_image(images)
