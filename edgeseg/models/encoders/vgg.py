"""VGG16 as FCN uses it (Long, Shelhamer & Darrell 2015): conv blocks 2-2-3-3-3 with 2x2 max-pools,
then fc6/fc7 turned into convolutions (7x7 -> 4096, 1x1 -> 4096, ReLU + element-wise dropout as in Caffe)."""

from __future__ import annotations

import torch
from torch import nn

_VGG16_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))  # (channels, convs) per block


def _conv(in_ch: int, out_ch: int, kernel_size: int, batch_norm: bool) -> list[nn.Module]:
    padding = kernel_size // 2
    if batch_norm:
        return [nn.Conv2d(in_ch, out_ch, kernel_size, padding=padding, bias=False), nn.BatchNorm2d(out_ch),
                nn.ReLU(inplace=True)]
    return [nn.Conv2d(in_ch, out_ch, kernel_size, padding=padding), nn.ReLU(inplace=True)]


class VGG16Encoder(nn.Module):
    """Returns ``[pool3, pool4, fc7]`` at strides 8, 16, 32 (256, 512, 4096 channels).

    fc6 is a 7x7 convolution with padding 3 instead of the paper's valid 7x7 on a 100-pixel-padded
    input: with the input padded to a multiple of 32 (see ``SegmentationModel``) every map is exactly
    H/stride, so no crop offsets are needed. ``batch_norm=True`` adds BatchNorm after every conv
    (not in the paper; it makes training from scratch without ImageNet weights practical).
    """

    def __init__(self, in_channels: int = 3, batch_norm: bool = False, fc_channels: int = 4096,
                 dropout: float = 0.5) -> None:
        super().__init__()
        blocks = []
        c_in = in_channels
        for c_out, n_convs in _VGG16_BLOCKS:
            layers: list[nn.Module] = []
            for _ in range(n_convs):
                layers += _conv(c_in, c_out, 3, batch_norm)
                c_in = c_out
            layers.append(nn.MaxPool2d(2, stride=2, ceil_mode=True))
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.ModuleList(blocks)
        self.fc6 = nn.Sequential(*_conv(512, fc_channels, 7, batch_norm), nn.Dropout(dropout))
        self.fc7 = nn.Sequential(*_conv(fc_channels, fc_channels, 1, batch_norm), nn.Dropout(dropout))
        self.out_channels = [256, 512, fc_channels]
        self.strides = [8, 16, 32]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        pools = []
        for block in self.blocks:
            x = block(x)  # (N, C_b, H / 2^b, W / 2^b)
            pools.append(x)
        x = self.fc7(self.fc6(pools[4]))  # (N, 4096, H/32, W/32)
        return [pools[2], pools[3], x]  # pool3 (N,256,H/8,W/8), pool4 (N,512,H/16,W/16), fc7
