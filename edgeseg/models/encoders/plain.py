"""The U-Net contracting path: stages of two 3x3 ConvBNReLU separated by 2x2 max-pooling."""

from __future__ import annotations

import torch
from torch import nn

from ..blocks import ConvBNReLU, DoubleConv


class PlainEncoder(nn.Module):
    """``len(channels)`` stages; stage ``i`` runs at stride ``stem_stride * 2**i``.

    ``stem_stride=1`` is Ronneberger et al.'s layout (first stage at full resolution).
    ``stem_stride=2`` replaces the full-resolution stage by a strided 3x3 conv: on a 2-core CPU the
    full-resolution stage of a U-Net costs more than the rest of the encoder.
    """

    def __init__(self, channels: list[int], stem_stride: int = 1, in_channels: int = 3) -> None:
        super().__init__()
        if stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2, got {stem_stride}")
        self.out_channels = list(channels)
        self.strides = [stem_stride * 2**i for i in range(len(channels))]
        c0 = channels[0]
        if stem_stride == 2:
            stem: nn.Module = nn.Sequential(ConvBNReLU(in_channels, c0, 3, stride=2), ConvBNReLU(c0, c0, 3))
        else:
            stem = DoubleConv(in_channels, c0)
        stages: list[nn.Module] = [stem]
        for c_in, c_out in zip(channels[:-1], channels[1:], strict=True):
            stages.append(nn.Sequential(nn.MaxPool2d(2), DoubleConv(c_in, c_out)))
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for stage in self.stages:
            x = stage(x)  # (N, C_i, H / s_i, W / s_i)
            features.append(x)
        return features
