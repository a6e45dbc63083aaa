"""Parameter count and FLOPs of a model at a given input size, via forward hooks.

Counted layers: Conv2d, ConvTranspose2d and Linear (multiply-accumulates, MACs). BatchNorm, ReLU,
pooling and resizing are not counted: they are memory-bound and a few percent of the arithmetic.
FLOPs are reported as 2 x MACs (one multiply and one add), the convention of most papers' "GFLOPs"
tables; some tools print MACs under that name, so ``ModelStats`` carries both.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .registry import create_model


@dataclass(frozen=True)
class ModelStats:
    params: int  # all parameters, trainable or not
    macs: int  # multiply-accumulates of one forward pass at (H, W), batch 1
    input_hw: tuple[int, int]

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def params_m(self) -> float:
        return self.params / 1e6

    @property
    def gflops(self) -> float:
        return self.flops / 1e9


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _layer_macs(module: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        # every output element is a dot product over (C_in / groups) x kh x kw inputs
        k = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        return out.numel() * k
    if isinstance(module, nn.ConvTranspose2d):
        # every input element is scattered into (C_out / groups) x kh x kw outputs
        k = module.out_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        return inp.numel() * k
    if isinstance(module, nn.Linear):
        return out.numel() * module.in_features
    return 0


def profile_model(model: nn.Module, hw: tuple[int, int] = (360, 480), in_channels: int = 3) -> ModelStats:
    """Count parameters and MACs of ``model`` on a ``(1, in_channels, H, W)`` input.

    Runs one forward pass on the model's own device; build the model under ``torch.device("meta")``
    (as :func:`model_stats` does) to get the counts without allocating weights or computing anything.
    """
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    total = 0

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        total += _layer_macs(module, args[0], out)

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, in_channels, hw[0], hw[1], device=device))  # (1, C, H, W)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return ModelStats(params=count_params(model), macs=int(total), input_hw=(int(hw[0]), int(hw[1])))


def model_stats(name: str, num_classes: int, hw: tuple[int, int] = (360, 480), **kwargs: object) -> ModelStats:
    """Stats of a registered model, built on the meta device: instant even for the 134 M-parameter FCNs."""
    with torch.device("meta"):
        model = create_model(name, num_classes, **kwargs)
    return profile_model(model, hw, in_channels=int(kwargs.get("in_channels", 3)))  # type: ignore[arg-type]
