"""Every registered model: any H x W in, logits at H x W out; gradients flow; FCN structure."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.models import create_model, list_models
from edgeseg.models.blocks import BilinearUp, bilinear_kernel
from edgeseg.runtime.errors import UsageError

NUM_CLASSES = 5
LITE = ["unet_lite", "fcn8s_lite"]
_CACHE: dict[str, nn.Module] = {}


def _model(name: str) -> nn.Module:
    # The VGG FCNs have 134 M parameters: build each once per session.
    if name not in _CACHE:
        torch.manual_seed(0)
        _CACHE[name] = create_model(name, NUM_CLASSES)
    return _CACHE[name]


def test_registry_lists_every_family() -> None:
    assert {"fcn32s", "fcn16s", "fcn8s", "fcn8s_lite", "unet", "unet_lite"} <= set(list_models())


VGG = {"fcn32s", "fcn16s", "fcn8s"}  # 134 M parameters, ~2 GFLOPs even at 64x96: one odd size is enough
SIZE_CASES = [(n, hw) for n in list_models() for hw in ([(61, 83)] if n in VGG else [(64, 96), (61, 83)])]


@pytest.mark.parametrize(("name", "hw"), SIZE_CASES)
def test_output_is_input_size(name: str, hw: tuple[int, int]) -> None:
    model = _model(name).eval()
    with torch.no_grad():
        y = model(torch.randn(1, 3, *hw))  # (1, K, H, W)
    assert y.shape == (1, NUM_CLASSES, *hw)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", LITE)
@pytest.mark.parametrize("hw", [(360, 480), (375, 500), (361, 479)])
def test_lite_models_at_camvid_and_odd_sizes(name: str, hw: tuple[int, int]) -> None:
    model = _model(name).eval()
    x = torch.randn(2, 3, *hw).contiguous(memory_format=torch.channels_last)  # (2, 3, H, W)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, NUM_CLASSES, *hw)


@pytest.mark.parametrize("name", list_models())
def test_gradients_reach_first_conv(name: str) -> None:
    model = _model(name).train()
    x = torch.randn(2, 3, 37, 45)  # odd size, padded to 64x64 inside
    target = torch.randint(0, NUM_CLASSES, (2, 37, 45))
    loss = F.cross_entropy(model(x), target)
    loss.backward()
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    try:
        assert first.weight.grad is not None
        assert first.weight.grad.abs().sum() > 0
    finally:
        model.zero_grad(set_to_none=True)


def test_bilinear_up_equals_bilinear_interpolation_in_the_interior() -> None:
    for factor in (2, 8, 32):
        up = BilinearUp(3, factor)
        x = torch.randn(1, 3, 6, 7)
        with torch.no_grad():
            y = up(x)  # (1, 3, 6f, 7f)
        ref = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
        assert y.shape == ref.shape
        b = factor  # borders differ: interpolate clamps, the deconvolution zero-pads
        torch.testing.assert_close(y[..., b:-b, b:-b], ref[..., b:-b, b:-b], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["fcn32s", "fcn16s", "fcn8s", "fcn8s_lite"])
def test_fcn_deconvolutions_start_bilinear(name: str) -> None:
    ups = [m for m in _model(name).modules() if isinstance(m, nn.ConvTranspose2d)]
    assert ups and all(isinstance(m, BilinearUp) for m in ups)
    for m in ups:
        expected = bilinear_kernel(m.in_channels, m.out_channels, m.kernel_size[0])
        torch.testing.assert_close(m.weight.detach(), expected)
        off_diagonal = m.weight.detach().clone()
        off_diagonal[range(m.in_channels), range(m.in_channels)] = 0
        assert off_diagonal.abs().sum() == 0  # class c only feeds class c


def _shapes(name: str) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):  # shapes only: no 134 M-parameter allocation
        model = create_model(name, NUM_CLASSES)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_fcn_variants_differ_only_in_their_skips() -> None:
    s32, s16, s8 = _shapes("fcn32s"), _shapes("fcn16s"), _shapes("fcn8s")

    def skip_free(s: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
        # The final deconvolution's factor (x32/x16/x8) follows from the skips.
        return {k: v for k, v in s.items() if not k.startswith("decoder.skip_") and k != "head.weight"}

    assert skip_free(s32) == skip_free(s16) == skip_free(s8)
    assert not any(k.startswith("decoder.skip_") for k in s32)
    skips16 = {k for k in s16 if k.startswith("decoder.skip_")}
    skips8 = {k for k in s8 if k.startswith("decoder.skip_")}
    assert skips16 < skips8
    assert s16["decoder.skip_scores.0.weight"] == (NUM_CLASSES, 512, 1, 1)  # pool4
    assert s8["decoder.skip_scores.1.weight"] == (NUM_CLASSES, 256, 1, 1)  # pool3
    assert [s["head.weight"][-1] for s in (s32, s16, s8)] == [64, 32, 16]  # k = 2 x factor


def test_new_fcn_skips_start_as_no_ops() -> None:
    # Zero-initialised skip scores (as in the paper): at init pool4/pool3 add nothing.
    model = _model("fcn8s")
    for conv in model.decoder.skip_scores:
        assert conv.weight.abs().sum() == 0 and conv.bias.abs().sum() == 0


def test_unet_lite_has_no_full_resolution_conv_and_stays_small() -> None:
    model = _model("unet_lite").eval()
    full_res = []

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        if out.shape[-2:] == (64, 96):
            full_res.append(module)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 96))
    for h in handles:
        h.remove()
    assert full_res == []  # the stride-2 stem keeps the costly full-resolution stage out
    assert 1.0e6 <= sum(p.numel() for p in model.parameters()) <= 2.0e6


def test_width_multiplier_scales_the_models() -> None:
    small = create_model("unet_lite", NUM_CLASSES)
    big = create_model("unet_lite", NUM_CLASSES, width=2.0)
    n_small = sum(p.numel() for p in small.parameters())
    n_big = sum(p.numel() for p in big.parameters())
    assert 3.5 * n_small < n_big < 4.5 * n_small  # conv weights grow with width^2
    assert big.channels == [32, 64, 128, 256, 512]
    lite = sum(p.numel() for p in create_model("fcn8s_lite", NUM_CLASSES, width=0.25).parameters())
    assert lite < sum(p.numel() for p in _model("fcn8s_lite").parameters())


def test_unknown_model_suggests_close_match() -> None:
    with pytest.raises(UsageError, match="did you mean 'unet_lite'"):
        create_model("unet_lit", NUM_CLASSES)
    with pytest.raises(UsageError, match="num_classes"):
        create_model("unet_lite", 0)
    with pytest.raises(UsageError, match="does not accept"):
        create_model("unet_lite", NUM_CLASSES, depth=7)


def test_vgg_fcn_batch_norm_option() -> None:
    with torch.device("meta"):
        plain = create_model("fcn8s", NUM_CLASSES)
        bn = create_model("fcn8s", NUM_CLASSES, batch_norm=True)
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in bn.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())  # the paper's layout
    assert n_bn == 13 + 2  # 13 VGG16 convs + fc6 + fc7
