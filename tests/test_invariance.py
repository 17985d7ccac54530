import torch

from nscl.analysis.invariance import block_output_change
from nscl.models.backbones import build_vit
from nscl.models.encoders import PromptedEncoder


def _encoder():
    vit = build_vit(pretrained=False, img_size=16, patch_size=8, embed_dim=32, depth=2, num_heads=2).double()
    encoder = PromptedEncoder(vit, None, 3, generator=torch.Generator().manual_seed(0)).double()
    images = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        tokens = vit.norm_pre(vit._pos_embed(vit.patch_embed(images)))
    return encoder, tokens


def test_block_output_change_sees_only_its_own_layers_prompts():
    encoder, tokens = _encoder()
    offset = torch.zeros_like(encoder.bank.prompts)
    assert block_output_change(encoder, tokens, offset) == 0.0
    offset[1] = torch.randn_like(offset[1])  # the second block's prompts: block 1 does not see them
    assert block_output_change(encoder, tokens, offset) == 0.0
    offset[0] = 0.1 * torch.randn_like(offset[0])  # its own prompts: the outputs move
    assert block_output_change(encoder, tokens, offset) > 1e-4
    assert encoder.bank.normed_offset is None  # the offset is removed afterwards
