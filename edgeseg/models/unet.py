"""U-Net after Ronneberger, Fischer & Brox, MICCAI 2015, and an edge variant.

Differences from the paper, on purpose: 'same' 3x3 convolutions (the paper's valid convolutions shrink
the output and need overlap-tiling), and BatchNorm after every convolution (trains from scratch on
small data such as CamVid without the paper's careful initialisation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import SegmentationModel
from .blocks import ConvBNReLU, DoubleConv, init_weights, make_divisible
from .encoders import PlainEncoder
from .registry import register_model


class UpConv(nn.Module):
    """The paper's 'up-convolution': ConvTranspose2d 2x2, stride 2, halving the channels."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(x)  # (N, out_ch, 2H, 2W)


class ReduceUp(nn.Module):
    """1x1 ConvBNReLU at the coarse scale, then nearest x2.

    Chosen over ConvTranspose2d for the edge model: after U8S8 Q/DQ quantization ONNX Runtime (1.31, x86)
    runs ConvTranspose in float between DequantizeLinear/QuantizeLinear, while nearest Resize runs
    directly on uint8 and the 1x1 conv becomes a QLinearConv; the 1x1 conv runs at the coarse scale (4x cheaper).
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.reduce = ConvBNReLU(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reduce(x)  # (N, out_ch, H, W)
        return F.interpolate(x, scale_factor=2.0, mode="nearest")  # (N, out_ch, 2H, 2W)


class UNetDecoder(nn.Module):
    """Expanding path: upsample, concatenate the encoder skip, two 3x3 ConvBNReLU; finest map out."""

    def __init__(self, channels: list[int], up: str = "convtranspose") -> None:
        super().__init__()
        up_cls = {"convtranspose": UpConv, "nearest": ReduceUp}[up]
        self.ups = nn.ModuleList()
        self.blocks = nn.ModuleList()
        for c_deep, c_skip in zip(channels[:0:-1], channels[-2::-1], strict=True):
            self.ups.append(up_cls(c_deep, c_skip))
            self.blocks.append(DoubleConv(2 * c_skip, c_skip))
        self.out_channels = channels[0]

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[-1]  # (N, C_last, H / s_last, W / s_last)
        for up, block, skip in zip(self.ups, self.blocks, features[-2::-1], strict=True):
            x = up(x)  # (N, C_skip, H_skip, W_skip): sizes match because the input is padded to s_last
            x = block(torch.cat([x, skip], dim=1))  # (N, C_skip, H_skip, W_skip)
        return x


class SegmentationHead(nn.Module):
    """1x1 conv to class logits, then bilinear upsampling back to the input scale if needed."""

    def __init__(self, in_ch: int, num_classes: int, upsample: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, num_classes, 1)
        self.upsample = int(upsample)

    @property
    def upsample_factor(self) -> int:
        return self.upsample

    def coarse(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits before the upsampling."""
        return self.conv(x)  # (N, num_classes, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)  # (N, num_classes, h, w)
        if self.upsample > 1:
            # Logits are smooth: bilinear on num_classes channels is cheap and better than nearest.
            x = F.interpolate(x, scale_factor=float(self.upsample), mode="bilinear", align_corners=False)
        return x  # (N, num_classes, h * upsample, w * upsample)


class UNet(SegmentationModel):
    """U-Net with ``len(channels)`` scales; ``stem_stride=2`` gives the edge layout."""

    def __init__(self, num_classes: int, channels: list[int], stem_stride: int = 1, up: str = "convtranspose",
                 in_channels: int = 3) -> None:
        encoder = PlainEncoder(channels, stem_stride=stem_stride, in_channels=in_channels)
        decoder = UNetDecoder(channels, up=up)
        head = SegmentationHead(decoder.out_channels, num_classes, upsample=stem_stride)
        super().__init__(encoder, decoder, head, pad_multiple=encoder.strides[-1])
        self.channels = list(channels)
        init_weights(self)


def _widths(base: int, width: float, depth: int) -> list[int]:
    if base < 1 or width <= 0:
        raise ValueError(f"base and width must be positive, got base={base}, width={width}")
    return [make_divisible(base * width * 2**i) for i in range(depth)]


@register_model
def unet(num_classes: int, width: float = 1.0, base: int = 64, in_channels: int = 3) -> UNet:
    """U-Net (Ronneberger 2015): widths 64..1024, BatchNorm, 2x2 up-convolutions, concatenated skips."""
    return UNet(num_classes, _widths(base, width, 5), stem_stride=1, up="convtranspose", in_channels=in_channels)


@register_model
def unet_lite(num_classes: int, width: float = 1.0, base: int = 16, in_channels: int = 3) -> UNet:
    """Edge U-Net: stride-2 stem, widths 16..256 at strides 2..32, nearest-up + 1x1, ~1.8 M params."""
    return UNet(num_classes, _widths(base, width, 5), stem_stride=2, up="nearest", in_channels=in_channels)
