"""Transposed convolutions rewritten as sub-pixel convolutions, for deployment.

A ``ConvTranspose2d`` with stride s computes every output phase (a, b) = (Y mod s, X mod s) from a few
neighbouring input pixels. The same numbers come from one ordinary convolution at the input resolution
with ``C_out * s * s`` output channels (one group per phase) followed by ``DepthToSpace``
(``pixel_shuffle``). The rewrite is exact (up to float rounding) and changes no weights' meaning;
it matters at inference: ONNX Runtime's CPU ConvTranspose is slow and runs in float between
DequantizeLinear/QuantizeLinear in an INT8 graph, while Conv gets ONNX Runtime's blocked-layout and
integer kernels (docs/export.md#graph-rewrites-for-onnx-runtime).

Derivation: output row Y = s*q + a receives input row i = q + d through kernel row
``ky = a + p - d*s`` (p = padding) wherever 0 <= ky < k. Over all phases d runs from
``ceil((p - k + 1) / s)`` to ``floor((s - 1 + p) / s)``: that range is the sub-pixel kernel, with
the input padded by ``-d_min`` before and ``d_max`` after (equal when ``k - 2p == s``, so the conv's own
symmetric padding does it). Output sizes agree when ``k - 2p == s``
(e.g. FCN's k=2s, p=s/2); other layouts are left as they are. Only overlapping kernels (k > s) are
rewritten: for U-Net's k = s = 2 up-convolution ONNX Runtime's ConvTranspose is already a plain matrix
product, and the rewrite was slower in FP32.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import LogitUpsampler


def _tap_range(k: int, s: int, p: int) -> tuple[int, int]:
    """Input offsets d (i = q + d) that any output phase reads: (d_min, d_max)."""
    return -((k - 1 - p) // s), (s - 1 + p) // s  # ceil((p - k + 1) / s), floor((s - 1 + p) / s)


def can_rewrite(ct: nn.Module) -> bool:
    """Whether ``ct`` is a ConvTranspose2d this module rewrites exactly."""
    if not isinstance(ct, nn.ConvTranspose2d) or type(ct).forward is not nn.ConvTranspose2d.forward:
        return False  # a subclass with its own forward computes something else
    (kh, kw), (sh, sw), (ph, pw) = ct.kernel_size, ct.stride, ct.padding
    return (ct.groups == 1 and ct.dilation == (1, 1) and ct.output_padding == (0, 0) and sh == sw and kh == kw
            and ph == pw and kh > sh > 1 and kh - 2 * ph == sh and ct.padding_mode == "zeros")


class SubPixelConv(LogitUpsampler, nn.Module):
    """``pixel_shuffle(conv(pad(x)))``, equal to the ``ConvTranspose2d`` it was built from."""

    def __init__(self, ct: nn.ConvTranspose2d) -> None:
        super().__init__()
        if not can_rewrite(ct):
            raise ValueError(f"cannot rewrite {ct} as a sub-pixel convolution")
        k, s, p = ct.kernel_size[0], ct.stride[0], ct.padding[0]
        d_min, d_max = _tap_range(k, s, p)
        self.factor = s
        cin, cout = ct.in_channels, ct.out_channels
        taps = d_max - d_min + 1
        # -d_min == d_max whenever k - 2p == s (can_rewrite), so the padding is symmetric
        self.conv = nn.Conv2d(cin, cout * s * s, taps, padding=d_max, bias=ct.bias is not None)
        w = ct.weight.detach()  # (C_in, C_out, k, k)
        sub = w.new_zeros(cout, s, s, cin, taps, taps)  # (C_out, phase a, phase b, C_in, ty, tx)
        for a in range(s):
            for ty in range(taps):
                ky = a + p - (ty + d_min) * s
                if not 0 <= ky < k:
                    continue
                for b in range(s):
                    for tx in range(taps):
                        kx = b + p - (tx + d_min) * s
                        if 0 <= kx < k:
                            sub[:, a, b, :, ty, tx] = w[:, :, ky, kx].t()  # (C_out, C_in)
        with torch.no_grad():
            # channel order (o, a, b) is pixel_shuffle's: channel o*s*s + a*s + b -> output (o, s*q + a, s*r + b)
            self.conv.weight.copy_(sub.reshape(cout * s * s, cin, taps, taps))
            if ct.bias is not None:
                self.conv.bias.copy_(ct.bias.detach().repeat_interleave(s * s))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.conv(x), self.factor)  # (N, C_out, s*H, s*W)


def with_subpixel_upsampling(model: nn.Module) -> tuple[nn.Module, int]:
    """A deep copy of ``model`` with every rewritable ConvTranspose2d replaced by a :class:`SubPixelConv`;
    returns ``(copy, number replaced)``. The original is untouched; with nothing to replace it is returned."""
    if not any(can_rewrite(m) for m in model.modules()):
        return model, 0
    out = copy.deepcopy(model)
    count = 0

    def swap(parent: nn.Module) -> None:
        nonlocal count
        for name, child in parent.named_children():
            if can_rewrite(child):
                setattr(parent, name, SubPixelConv(child))
                count += 1
            else:
                swap(child)

    swap(out)
    return out.train(model.training), count
