"""Fixtures for the export tests: a tiny hand-written model (the bring-your-own path)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F


class TinySegNet(nn.Module):
    """Encoder -> decoder -> head with a concatenated skip, transposed-conv upsampling and a resize."""

    def __init__(self, num_classes: int = 5, width: int = 8) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.down = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.BatchNorm2d(2 * width),
                                  nn.ReLU())
        self.up = nn.ConvTranspose2d(2 * width, width, 2, stride=2)
        self.head = nn.Conv2d(2 * width, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.stem(x)  # (N, w, H, W)
        b = self.down(a)  # (N, 2w, H/2, W/2)
        u = F.interpolate(self.up(b), size=a.shape[-2:], mode="bilinear", align_corners=False)  # (N, w, H, W)
        return self.head(torch.cat([a, u], 1))  # (N, C, H, W)


CLASSES = ["road", "car", "sky", "tree", "person"]


@pytest.fixture
def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    model = TinySegNet(len(CLASSES))
    # Non-trivial BatchNorm statistics so folding them is actually tested.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()
