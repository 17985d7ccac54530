r"""Deep visual prompts as extra keys and values in every prompted block of a frozen ViT.

In each prompted block the $m$ prompt tokens $P \in \mathbb R^{m\times D}$ are layer-normed with
the block's own LayerNorm and appended to the keys and values; only the $N$ image tokens are
queries, and only image tokens leave the block (as in NSP²'s official code, where the block output
is cut back to the first $N$ tokens):

$$O = \mathrm{softmax}\!\Big(\tfrac{Q_X [K_X; K_P]^\top}{\sqrt d}\Big)\,[V_X; V_P],\qquad
Q_X = \mathrm{LN}(X) W_q^\top,\ K_P = \mathrm{LN}(P) W_k^\top,\ V_P = \mathrm{LN}(P) W_v^\top .$$

`PromptedBlock` wraps a timm `Block` or an open_clip `ResidualAttentionBlock` and reuses its
weights; `prompt_backbone` swaps them into a model in place. All prompts live in one parameter
of shape (L, m, D) (`PromptBank`), so NSP²'s projection of all layers is one batched matmul.
A `recorder` attached to the bank sees, per layer, the two quantities the consistency conditions
are built from (see `nscl.nsp2.method.ConditionRecorder`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "PromptBank",
    "PromptedBlock",
    "AttentionWeights",
    "prompt_backbone",
    "transformer_blocks",
    "prompted_attention",
    "AttentionRecorder",
]


class AttentionRecorder(Protocol):
    def __call__(
        self, layer: int, queries: torch.Tensor, prompt_attention: torch.Tensor, key_weight: torch.Tensor
    ) -> None:
        """queries (B, H, N, d) before scaling; prompt_attention (B, H, N, m) post-softmax; key_weight (H, d, D)."""


class PromptBank(nn.Module):
    """The prompts of all prompted layers: one parameter (L, m, D), uniform(-1, 1) as NSP² initialises."""

    def __init__(
        self,
        layers: Sequence[int],
        length: int,
        dim: int,
        init: str = "uniform",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if length < 1:
            raise ValueError(f"prompt length must be >= 1, got {length}")
        if len(set(layers)) != len(layers) or not layers:
            raise ValueError(f"prompt layers must be distinct block indices, got {list(layers)}")
        self.layers = tuple(int(i) for i in layers)
        prompts = torch.empty(len(self.layers), length, dim)
        if init == "uniform":
            prompts.uniform_(-1.0, 1.0, generator=generator)
        elif init == "zero":
            prompts.zero_()
        else:
            raise ValueError(f"prompt init {init!r}: choose 'uniform' or 'zero'")
        self.prompts = nn.Parameter(prompts)
        self.recorder: AttentionRecorder | None = None
        # Analysis hook: added to the layer-normed prompts, to study the consistency conditions
        # apart from LayerNorm (book chapter 2). None in training.
        self.normed_offset: torch.Tensor | None = None

    @property
    def length(self) -> int:
        return self.prompts.shape[1]

    def row(self, block_index: int) -> int:
        return self.layers.index(block_index)


@dataclass
class AttentionWeights:
    """The pieces of a pre-LN attention block, whichever library built it."""

    norm: nn.Module
    qkv_weight: torch.Tensor
    qkv_bias: torch.Tensor | None
    out: Callable[[torch.Tensor], torch.Tensor]  # merged heads -> block's attention output
    num_heads: int
    q_norm: Callable[[torch.Tensor], torch.Tensor]
    k_norm: Callable[[torch.Tensor], torch.Tensor]

    @property
    def head_dim(self) -> int:
        return self.qkv_weight.shape[0] // (3 * self.num_heads)

    def key_weight(self) -> torch.Tensor:
        """$W_k$ split per head: (H, d, D)."""
        dim = self.qkv_weight.shape[0] // 3
        return self.qkv_weight[dim : 2 * dim].reshape(self.num_heads, self.head_dim, -1)


def prompted_attention(
    x_norm: torch.Tensor,
    p_norm: torch.Tensor,
    w: AttentionWeights,
    recorder: AttentionRecorder | None = None,
    layer: int = -1,
) -> torch.Tensor:
    """Multi-head attention of image tokens over [image tokens; prompts]; returns (B, N, D) before `out`."""
    b, n, _ = x_norm.shape
    h, d = w.num_heads, w.head_dim
    q, k, v = F.linear(x_norm, w.qkv_weight, w.qkv_bias).reshape(b, n, 3, h, d).permute(2, 0, 3, 1, 4)
    # Prompt keys/values are the same for every image: compute them once and broadcast.
    kp, vp = F.linear(p_norm, w.qkv_weight, w.qkv_bias).reshape(-1, 3, h, d).permute(1, 2, 0, 3)[1:]
    q, k, kp = w.q_norm(q), w.k_norm(k), w.k_norm(kp)
    k = torch.cat([k, kp.unsqueeze(0).expand(b, -1, -1, -1)], dim=2)
    v = torch.cat([v, vp.unsqueeze(0).expand(b, -1, -1, -1)], dim=2)
    if recorder is None:
        out = F.scaled_dot_product_attention(q, k, v)
    else:
        attn = torch.softmax((q * d**-0.5) @ k.transpose(-2, -1), dim=-1)
        recorder(layer, q, attn[..., n:], w.key_weight())
        out = attn @ v
    return out.transpose(1, 2).reshape(b, n, h * d)


def _timm_weights(block: nn.Module) -> AttentionWeights:
    attn = block.attn
    if getattr(attn, "gate", None) is not None:
        raise NotImplementedError("gated timm attention is not supported for prompting")

    def out(x: torch.Tensor) -> torch.Tensor:
        return attn.proj_drop(attn.proj(attn.norm(x)))

    return AttentionWeights(block.norm1, attn.qkv.weight, attn.qkv.bias, out, attn.num_heads, attn.q_norm, attn.k_norm)


def _open_clip_weights(block: nn.Module) -> AttentionWeights:
    mha: nn.MultiheadAttention = block.attn
    if not mha.batch_first:
        raise NotImplementedError("open_clip blocks must run batch_first (the default since open_clip 2.x)")
    identity = nn.Identity()
    return AttentionWeights(
        block.ln_1, mha.in_proj_weight, mha.in_proj_bias, mha.out_proj, mha.num_heads, identity, identity
    )


class PromptedBlock(nn.Module):
    """A transformer block whose attention also attends to its layer's prompts."""

    def __init__(self, block: nn.Module, bank: PromptBank, block_index: int) -> None:
        super().__init__()
        self.block = block
        self.block_index = block_index
        self._bank = [bank]  # a list, so the bank is not registered twice as a sub-module
        if hasattr(block, "norm1") and hasattr(block, "attn") and hasattr(block.attn, "qkv"):
            self.kind = "timm"
        elif hasattr(block, "ln_1") and isinstance(getattr(block, "attn", None), nn.MultiheadAttention):
            self.kind = "open_clip"
        else:
            raise TypeError(
                f"cannot prompt a {type(block).__name__}: expected a timm Block or an open_clip ResidualAttentionBlock"
            )

    @property
    def bank(self) -> PromptBank:
        return self._bank[0]

    def get_weight_dtype(self) -> torch.dtype:  # open_clip's Transformer asks its first block for this
        return (
            self.block.get_weight_dtype()
            if hasattr(self.block, "get_weight_dtype")
            else next(self.block.parameters()).dtype
        )

    def weights(self) -> AttentionWeights:
        return _timm_weights(self.block) if self.kind == "timm" else _open_clip_weights(self.block)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        if attn_mask is not None:
            raise NotImplementedError("prompted blocks are for vision towers (no attention mask)")
        w = self.weights()
        bank = self.bank
        row = bank.row(self.block_index)
        p_norm = w.norm(bank.prompts[row].to(x.dtype))
        if bank.normed_offset is not None:
            p_norm = p_norm + bank.normed_offset[row].to(x.dtype)
        attn = w.out(prompted_attention(w.norm(x), p_norm, w, bank.recorder, self.block_index))
        blk = self.block
        if self.kind == "timm":
            x = x + blk.drop_path1(blk.ls1(attn))
            return x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))
        x = x + blk.ls_1(attn)
        return x + blk.ls_2(blk.mlp(blk.ln_2(x)))


def transformer_blocks(model: nn.Module) -> nn.Sequential | nn.ModuleList:
    """The block list of a timm ViT (`.blocks`) or an open_clip vision tower (`.transformer.resblocks`)."""
    if hasattr(model, "blocks"):
        return model.blocks
    if hasattr(model, "transformer") and hasattr(model.transformer, "resblocks"):
        return model.transformer.resblocks
    raise TypeError(f"{type(model).__name__} has neither .blocks (timm) nor .transformer.resblocks (open_clip)")


def prompt_backbone(
    model: nn.Module,
    layers: Sequence[int],
    length: int,
    init: str = "uniform",
    generator: torch.Generator | None = None,
) -> PromptBank:
    """Insert prompts into `layers` of `model` in place; returns the bank holding them."""
    blocks = transformer_blocks(model)
    if any(not 0 <= i < len(blocks) for i in layers):
        raise ValueError(f"prompt layers {list(layers)} out of range for a model with {len(blocks)} blocks")
    first = blocks[layers[0]]
    dim = (first.norm1 if hasattr(first, "norm1") else first.ln_1).normalized_shape[0]
    bank = PromptBank(layers, length, dim, init, generator)
    for i in layers:
        blocks[i] = PromptedBlock(blocks[i], bank, i)
    return bank
