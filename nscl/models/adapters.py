r"""AdaptFormer-style adapters in every block of an open_clip CLIP (vision and text), as DMNSP places them.

In each residual block the adapter runs in parallel with the MLP on the post-attention residual
stream (not layer-normed), and its scaled output is added beside the MLP's:

$$x \leftarrow x + \mathrm{Attn}(\mathrm{LN}_1 x),\qquad
a = s\,\big(W_{up}\,\mathrm{Drop}(\mathrm{ReLU}(W_{down} x + b_{down})) + b_{up}\big),\qquad
x \leftarrow x + \mathrm{MLP}(\mathrm{LN}_2 x) + a .$$

Official settings (RL-VIG/DMNSP clip/adapter.py, clip/model.py): bottleneck 64, scale s = 0.1,
dropout 0.1, "lora" init ($W_{down}$ kaiming-uniform with a = sqrt(5), $W_{up}$ and biases zero, so the
model starts as zero-shot CLIP). A recorder attached to the `AdapterSet` sees each adapter's input
and output (DMNSP's feature sources).
"""

from __future__ import annotations

import math
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Adapter", "AdapterBlock", "AdapterSet", "add_adapters", "adapter_parameters"]

Recorder = Callable[[str, int, torch.Tensor, torch.Tensor], None]


class Adapter(nn.Module):
    def __init__(self, dim: int, bottleneck: int = 64, scale: float = 0.1, dropout: float = 0.1) -> None:
        super().__init__()
        self.down_proj = nn.Linear(dim, bottleneck)
        self.up_proj = nn.Linear(bottleneck, dim)
        self.scale = scale
        self.dropout = dropout
        with torch.no_grad():  # the official "lora" init: the adapter starts as an exact zero
            nn.init.kaiming_uniform_(self.down_proj.weight, a=math.sqrt(5))
            nn.init.zeros_(self.down_proj.bias)
            nn.init.zeros_(self.up_proj.weight)
            nn.init.zeros_(self.up_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.dropout(F.relu(self.down_proj(x)), p=self.dropout, training=self.training)
        return self.up_proj(h) * self.scale


class AdapterBlock(nn.Module):
    """An open_clip ResidualAttentionBlock with an adapter beside its MLP."""

    def __init__(self, block: nn.Module, adapter: Adapter, tower: str, index: int, owner: AdapterSet) -> None:
        super().__init__()
        if not (hasattr(block, "ln_1") and hasattr(block, "mlp")):
            raise TypeError(
                f"cannot add an adapter to {type(block).__name__}: expected an open_clip ResidualAttentionBlock"
            )
        self.block = block
        self.adaptmlp = adapter  # the official parameter name contains "adapt"
        self.tower, self.index = tower, index
        self._owner = [owner]  # not registered as a sub-module

    def get_weight_dtype(self) -> torch.dtype:  # open_clip's Transformer asks its first block for this
        return self.block.get_weight_dtype()

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        blk = self.block
        x = x + blk.ls_1(blk.attention(q_x=blk.ln_1(x), attn_mask=attn_mask))
        a = self.adaptmlp(x)
        recorder = self._owner[0].recorder
        if recorder is not None:
            recorder(self.tower, self.index, x, a)
        return x + blk.ls_2(blk.mlp(blk.ln_2(x))) + a


class AdapterSet(nn.Module):
    """All adapters of a CLIP model, by tower: `visual[i]`, `text[i]`."""

    def __init__(self) -> None:
        super().__init__()
        self.visual = nn.ModuleList()
        self.text = nn.ModuleList()
        self.recorder: Recorder | None = None

    def tower(self, name: Literal["visual", "text"]) -> nn.ModuleList:
        return self.visual if name == "visual" else self.text


def add_adapters(
    clip_model: nn.Module,
    bottleneck: int = 64,
    scale: float = 0.1,
    dropout: float = 0.1,
    generator: torch.Generator | None = None,
) -> AdapterSet:
    """Insert an adapter into every block of both towers (in place); returns the set holding them."""
    adapters = AdapterSet()
    towers = {"visual": clip_model.visual.transformer.resblocks, "text": clip_model.transformer.resblocks}
    for name, blocks in towers.items():
        for i in range(len(blocks)):
            dim = blocks[i].ln_1.normalized_shape[0]
            if generator is not None:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
                    adapter = Adapter(dim, bottleneck, scale, dropout)
            else:
                adapter = Adapter(dim, bottleneck, scale, dropout)
            adapters.tower(name).append(adapter)
            blocks[i] = AdapterBlock(blocks[i], adapter, name, i, adapters)
    return adapters


def adapter_parameters(clip_model: nn.Module) -> dict[str, nn.Parameter]:
    """Every adapter parameter, by name ("adapt" in the name, as the official code selects them)."""
    return {n: p for n, p in clip_model.named_parameters() if "adapt" in n}
