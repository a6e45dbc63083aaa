"""Fully Convolutional Networks after Long, Shelhamer & Darrell, CVPR 2015.

FCN-32s scores the last feature map and upsamples x32; FCN-16s adds the pool4 skip, FCN-8s the pool4
and pool3 skips. The three differ only in their skips (and therefore in the final upsampling factor).

Alignment: the paper pads conv1_1 by 100 pixels and crops every upsampled map with fixed offsets.
Here the input is padded (bottom/right) to a multiple of 32 and fc6 is a 'same' 7x7 conv, so every
map at stride s is exactly H/s; each learned upsampling is ConvTranspose2d(k=2f, s=f, p=f/2), whose
padding is the paper's centred crop done inside the layer. Skips then add without offsets, and the
logits are cropped back to the input H x W: exact for any size, and export-friendly (no data-dependent
crop offsets).
"""

from __future__ import annotations

import torch
from torch import nn

from .base import SegmentationModel
from .blocks import BilinearUp, init_weights
from .encoders import ResNetEncoder, VGG16Encoder
from .registry import register_model


class FCNDecoder(nn.Module):
    """Scores the deepest map and fuses ``num_skips`` shallower ones (pool4, then pool3).

    Returns fused class scores at stride ``32 / 2**num_skips``.
    """

    def __init__(self, in_channels: list[int], num_classes: int, num_skips: int) -> None:
        super().__init__()
        if not 0 <= num_skips <= len(in_channels) - 1:
            raise ValueError(f"num_skips must be in 0..{len(in_channels) - 1}, got {num_skips}")
        self.score_fr = nn.Conv2d(in_channels[-1], num_classes, 1)
        # Skip i fuses in_channels[-2 - i]: pool4 first, then pool3.
        self.skip_ups = nn.ModuleList([BilinearUp(num_classes, 2) for _ in range(num_skips)])
        self.skip_scores = nn.ModuleList([nn.Conv2d(in_channels[-2 - i], num_classes, 1) for i in range(num_skips)])
        self.num_skips = num_skips

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        score = self.score_fr(features[-1])  # (N, K, H/32, W/32)
        for i, (up, skip_score) in enumerate(zip(self.skip_ups, self.skip_scores, strict=True)):
            score = up(score) + skip_score(features[-2 - i])  # (N, K, H/16, W/16), then (N, K, H/8, W/8)
        return score


class FCN(SegmentationModel):
    def __init__(self, encoder: nn.Module, num_classes: int, num_skips: int) -> None:
        decoder = FCNDecoder(encoder.out_channels[-3:], num_classes, num_skips)
        head = BilinearUp(num_classes, 32 // 2**num_skips)  # x32 / x16 / x8 to the input scale
        super().__init__(encoder, decoder, head, pad_multiple=32)
        init_weights(self)
        # The paper zero-initialises the skip score layers: a new skip starts as a no-op on the coarser net.
        for conv in self.decoder.skip_scores:
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)


def _vgg_fcn(num_classes: int, num_skips: int, batch_norm: bool, dropout: float, in_channels: int) -> FCN:
    encoder = VGG16Encoder(in_channels=in_channels, batch_norm=batch_norm, dropout=dropout)
    return FCN(encoder, num_classes, num_skips)


@register_model
def fcn32s(num_classes: int, batch_norm: bool = False, dropout: float = 0.5, in_channels: int = 3) -> FCN:
    """FCN-32s (Long 2015): VGG16, fc6/fc7 as convs, one x32 bilinear-initialised deconvolution."""
    return _vgg_fcn(num_classes, 0, batch_norm, dropout, in_channels)


@register_model
def fcn16s(num_classes: int, batch_norm: bool = False, dropout: float = 0.5, in_channels: int = 3) -> FCN:
    """FCN-16s (Long 2015): VGG16 FCN-32s plus the pool4 skip, x16 final deconvolution."""
    return _vgg_fcn(num_classes, 1, batch_norm, dropout, in_channels)


@register_model
def fcn8s(num_classes: int, batch_norm: bool = False, dropout: float = 0.5, in_channels: int = 3) -> FCN:
    """FCN-8s (Long 2015): VGG16 with pool4 and pool3 skips, x8 final deconvolution."""
    return _vgg_fcn(num_classes, 2, batch_norm, dropout, in_channels)


@register_model
def fcn8s_lite(num_classes: int, width: float = 0.5, in_channels: int = 3) -> FCN:
    """Edge FCN-8s: ResNet-18-like encoder (BasicBlocks, stride-2 stem, width 0.5), pool4/pool3-style skips."""
    return FCN(ResNetEncoder(width=width, in_channels=in_channels), num_classes, num_skips=2)
