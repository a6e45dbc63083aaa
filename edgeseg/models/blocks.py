"""Building blocks shared by the encoders, decoders and heads.

Everything here is plain ``Conv2d`` / ``BatchNorm2d`` / ``ReLU`` / ``MaxPool2d`` / ``ConvTranspose2d``
so that the exported ONNX graph holds only ops that ONNX Runtime and TensorRT fuse and quantize
(Conv+BN folds into Conv at export; Conv+ReLU fuses into one INT8 kernel).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor`` (SIMD-friendly), never below ``divisor``."""
    return max(divisor, int(value + divisor / 2) // divisor * divisor)


class ConvBNReLU(nn.Sequential):
    """``Conv2d(bias=False) -> BatchNorm2d -> ReLU``: the unit every edge model is made of."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1, dilation: int = 1,
                 relu: bool = True) -> None:
        padding = dilation * (kernel_size - 1) // 2  # 'same' for odd kernels: H_out = ceil(H / stride)
        layers: list[nn.Module] = [
            nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding, dilation=dilation, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class DoubleConv(nn.Sequential):
    """Two 3x3 ConvBNReLU: the U-Net stage."""

    def __init__(self, in_ch: int, out_ch: int, mid_ch: int | None = None) -> None:
        mid_ch = out_ch if mid_ch is None else mid_ch
        super().__init__(ConvBNReLU(in_ch, mid_ch, 3), ConvBNReLU(mid_ch, out_ch, 3))


class BasicBlock(nn.Module):
    """ResNet basic block (He et al. 2016): two 3x3 convs and an identity / 1x1 projection shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = ConvBNReLU(in_ch, out_ch, 3, stride)
        self.conv2 = ConvBNReLU(out_ch, out_ch, 3, relu=False)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = ConvBNReLU(in_ch, out_ch, 1, stride, relu=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv2(self.conv1(x)) + self.shortcut(x))  # (N, out_ch, H/s, W/s)


def bilinear_kernel(in_ch: int, out_ch: int, kernel_size: int) -> torch.Tensor:
    """Weights ``(in_ch, out_ch, k, k)`` that make a ConvTranspose2d a per-channel bilinear upsampler.

    Channel ``c`` maps to channel ``c`` only (FCN's ``upsample_filt``); with ``stride = k // 2`` and
    ``padding = k // 4`` the layer equals bilinear interpolation with half-pixel centres away from borders.
    """
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float64)
    filt1d = 1 - (og - center).abs() / factor  # (k,)
    filt = filt1d[:, None] * filt1d[None, :]  # (k, k)
    weight = torch.zeros(in_ch, out_ch, kernel_size, kernel_size, dtype=torch.float64)
    for c in range(min(in_ch, out_ch)):
        weight[c, c] = filt
    return weight.float()


class LogitUpsampler:
    """Mixin for an upsampling layer that can be a whole model head (FCN's final x8/x16/x32): the
    logits come in, so ``coarse`` is the identity, and ``upsample_factor`` is the layer's ``factor``
    (read by ``SegModel.head_stride`` for export's output stride)."""

    factor: int

    @property
    def upsample_factor(self) -> int:
        return self.factor

    def coarse(self, x: torch.Tensor) -> torch.Tensor:
        return x


class BilinearUp(LogitUpsampler, nn.ConvTranspose2d):
    """Learnable x``factor`` upsampling: ConvTranspose2d(k=2f, s=f, p=f/2) initialised to bilinear.

    The paper's deconvolutions have no padding and their output (f*n + f) is then cropped; ``padding=f/2``
    is exactly that centred crop done inside the layer, so the output is ``f * n`` with no offset to track.
    """

    def __init__(self, channels: int, factor: int) -> None:
        if factor < 2 or factor % 2:
            raise ValueError(f"BilinearUp factor must be an even number >= 2, got {factor}")
        super().__init__(channels, channels, 2 * factor, stride=factor, padding=factor // 2, bias=False)
        self.factor = factor
        with torch.no_grad():
            self.weight.copy_(bilinear_kernel(channels, channels, 2 * factor))

def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad bottom/right so H and W are multiples of ``multiple`` (zero = the dataset mean after
    normalisation). Written with tensor-size arithmetic so it exports with dynamic H/W."""
    h, w = x.shape[-2], x.shape[-1]
    # ceil-division form (not ``-h % m``): torch.export can then prove every pooled size is even.
    pad_h = (h + multiple - 1) // multiple * multiple - h
    pad_w = (w + multiple - 1) // multiple * multiple - w
    return F.pad(x, (0, pad_w, 0, pad_h))  # (N, C, ceil(H/m)*m, ceil(W/m)*m)


def init_weights(module: nn.Module) -> None:
    """He-normal convs (ReLU nets), unit BatchNorm; leaves ``BilinearUp`` weights as they are."""
    for m in module.modules():
        if isinstance(m, BilinearUp):
            continue
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
