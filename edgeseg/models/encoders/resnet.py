"""A ResNet-18-like encoder for edge models: stride-2 conv stem, four stages of two BasicBlocks."""

from __future__ import annotations

import torch
from torch import nn

from ..blocks import BasicBlock, ConvBNReLU, make_divisible


class ResNetEncoder(nn.Module):
    """ResNet-18 layout (He et al. 2016), width-scalable; returns the four stage outputs (strides 4..32).

    The stem is two 3x3 convs (stride 2, then 1) and a max-pool instead of the 7x7 conv: same stride 4,
    and 3x3 convolutions are the kernels CPU and TensorRT INT8 paths handle best.
    """

    def __init__(self, width: float = 1.0, blocks: tuple[int, ...] = (2, 2, 2, 2), in_channels: int = 3) -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        channels = [make_divisible(c * width) for c in (64, 128, 256, 512)][: len(blocks)]
        stem_ch = channels[0]
        self.stem = nn.Sequential(
            ConvBNReLU(in_channels, stem_ch // 2, 3, stride=2),
            ConvBNReLU(stem_ch // 2, stem_ch, 3),
            nn.MaxPool2d(2, stride=2, ceil_mode=True),
        )
        stages = []
        c_in = stem_ch
        for i, (c_out, n) in enumerate(zip(channels, blocks, strict=True)):
            stride = 1 if i == 0 else 2
            layers = [BasicBlock(c_in, c_out, stride)] + [BasicBlock(c_out, c_out) for _ in range(n - 1)]
            stages.append(nn.Sequential(*layers))
            c_in = c_out
        self.stages = nn.ModuleList(stages)
        self.out_channels = channels
        self.strides = [4 * 2**i for i in range(len(channels))]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)  # (N, C0, H/4, W/4)
        features = []
        for stage in self.stages:
            x = stage(x)  # (N, C_i, H / s_i, W / s_i)
            features.append(x)
        return features
