"""The shape every edgeseg model has: encoder -> decoder -> head, any H x W in, logits at H x W out."""

from __future__ import annotations

import torch
from torch import nn

from .blocks import pad_to_multiple


class SegmentationModel(nn.Module):
    """Pads the input to a multiple of the total stride, runs encoder/decoder/head, crops back.

    Padding (rather than resizing) keeps every pixel's logits computed at the input's own scale,
    and makes all skip connections line up exactly, for any H x W (360x480, 375x500, 361x479, ...).
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, head: nn.Module, pad_multiple: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.head = head
        self.pad_multiple = int(pad_multiple)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._logits(x, coarse=False)  # (N, num_classes, H, W)

    @property
    def head_stride(self) -> int:
        """Stride of the logits before the head's final fixed upsampling (1: the head does not upsample)."""
        return int(getattr(self.head, "upsample_factor", 1))

    def forward_coarse(self, x: torch.Tensor) -> torch.Tensor:
        """Logits before the head's final upsampling: (N, C, ceil(H/s), ceil(W/s)), s = ``head_stride``.

        For deployment: argmax at stride s, then a nearest upsampling of the uint8 class map,
        skips upsampling C float planes (export's ``output_stride``).
        """
        return self._logits(x, coarse=self.head_stride > 1)

    def _logits(self, x: torch.Tensor, coarse: bool) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        x = pad_to_multiple(x, self.pad_multiple)  # (N, 3, H', W'), H' and W' multiples of the stride
        features = self.encoder(x)  # list, finest first
        out = self.decoder(features)
        if not coarse:
            out = self.head(out)  # (N, num_classes, H', W')
            return out[:, :, :h, :w]  # (N, num_classes, H, W)
        s = self.head_stride
        out = self.head.coarse(out)  # (N, num_classes, H'/s, W'/s)
        return out[:, :, :(h + s - 1) // s, :(w + s - 1) // s]  # (N, num_classes, ceil(H/s), ceil(W/s))
