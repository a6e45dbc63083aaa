"""Parameter and FLOP counting against hand-computed layers."""

from __future__ import annotations

import pytest
from torch import nn

from edgeseg.models import count_params, create_model, model_stats, profile_model


def test_conv_deconv_linear_macs_by_hand() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # out 8 x 10 x 12, each a 3*3*3 dot product: 960 * 27
        nn.ReLU(),
        nn.ConvTranspose2d(8, 2, 2, stride=2),  # 8*10*12 inputs, each scattered to 2*2*2 outputs: 960 * 8
        nn.Flatten(),
        nn.Linear(2 * 20 * 24, 5),  # 5 outputs of 960-long dot products
    )
    stats = profile_model(model, (10, 12))
    assert stats.macs == 960 * 27 + 960 * 8 + 5 * 960
    assert stats.flops == 2 * stats.macs
    assert stats.params == (8 * 27 + 8) + (8 * 2 * 4 + 2) + (960 * 5 + 5)
    assert stats.input_hw == (10, 12)


def test_grouped_conv_counts_per_group() -> None:
    dw = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)  # depthwise: 9 MACs per output
    assert profile_model(dw, (8, 8), in_channels=16).macs == 16 * 8 * 8 * 9


def test_meta_device_stats_equal_real_model() -> None:
    model = create_model("unet_lite", 11)
    real = profile_model(model, (64, 96))
    meta = model_stats("unet_lite", 11, (64, 96))
    assert meta == real
    assert meta.params == count_params(model)
    assert model.training  # profiling restores the mode


@pytest.mark.parametrize("name", ["fcn8s", "unet_lite"])
def test_flops_grow_with_padded_area(name: str) -> None:
    # Models pad to a multiple of 32: 360x480 computes on 384x480, 384x480 costs the same.
    a = model_stats(name, 11, (360, 480))
    b = model_stats(name, 11, (384, 480))
    c = model_stats(name, 11, (768, 960))
    assert a.macs == b.macs
    assert 3.9 * b.macs < c.macs < 4.1 * b.macs


def test_vgg16_fcn_size_matches_the_paper() -> None:
    # VGG16 convs 14.7 M + fc6 (7x7x512x4096) 102.8 M + fc7 16.8 M; FCN-8s reported ~134 M.
    assert 134.0e6 < model_stats("fcn8s", 21, (64, 64)).params < 134.6e6
