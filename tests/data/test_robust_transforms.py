"""Robustness augmentations: seeded, label untouched by photometric ones, label moved with the image
by the horizon shift, selectable by name in the training transform and off by default."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.data import train_transform
from edgeseg.data.robust_transforms import (
    ROBUST,
    Blur,
    CastShadow,
    Exposure,
    Gamma,
    HorizonShift,
    LowLight,
    SensorNoise,
    parse_augment,
)
from edgeseg.runtime.errors import UsageError


def scene(h: int = 48, w: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """A mid-grey textured image and a label whose rows encode their index (shows vertical moves)."""
    rng = np.random.default_rng(0)
    img = rng.integers(60, 200, (h, w, 3), dtype=np.uint8)  # (h, w, 3) uint8
    img[:, :, 0] = (np.arange(h) * 4)[:, None]  # red channel = 4 x row: rows are traceable
    lab = np.repeat((np.arange(h) % 11).astype(np.uint8)[:, None], w, axis=1)  # (h, w) uint8
    return img, lab


PHOTOMETRIC = [Exposure(p=1), Gamma(p=1), LowLight(p=1), SensorNoise(p=1), Blur(p=1, motion_p=0),
               Blur(p=1, motion_p=1), CastShadow(p=1)]


@pytest.mark.parametrize("t", PHOTOMETRIC, ids=lambda t: type(t).__name__ + str(getattr(t, "motion_p", "")))
def test_photometric_changes_the_image_only_and_replays_with_the_seed(t):
    img, lab = scene()
    a_img, a_lab = t(img.copy(), lab.copy(), np.random.default_rng(5))
    b_img, b_lab = t(img.copy(), lab.copy(), np.random.default_rng(5))
    np.testing.assert_array_equal(a_img, b_img)  # deterministic given the generator
    np.testing.assert_array_equal(a_lab, lab)  # label untouched
    assert a_img.shape == img.shape and a_img.dtype == np.uint8
    assert not np.array_equal(a_img, img)  # it did something
    c_img, _ = t(img.copy(), lab.copy(), np.random.default_rng(6))
    assert not np.array_equal(a_img, c_img)  # and the draw depends on the generator


def test_p_zero_is_the_identity():
    img, lab = scene()
    for cls in ROBUST.values():
        out_img, out_lab = cls(p=0.0)(img, lab, np.random.default_rng(0))
        assert out_img is img and out_lab is lab


def test_brightness_directions():
    img, lab = scene()
    dark = Exposure(p=1, stops=(-2, -2))(img, lab)[0]
    bright = Exposure(p=1, stops=(1, 1))(img, lab)[0]
    assert dark.mean() < img.mean() < bright.mean()
    assert LowLight(p=1, level=(0.05, 0.05), noise_std=0)(img, lab)[0].mean() < 0.45 * img.mean()
    assert Gamma(p=1, gamma=(1.5, 1.5))(img, lab)[0].mean() < img.mean()


def test_shadow_darkens_a_part_not_all():
    img, lab = scene(96, 128)
    out = CastShadow(p=1, strength=(0.7, 0.7))(img, lab, np.random.default_rng(1))[0]
    darker = out.astype(int).sum(2) < img.astype(int).sum(2) - 10
    assert 0.02 < darker.mean() < 0.98


@pytest.mark.parametrize("seed", range(4))
def test_horizon_shift_moves_label_with_image_and_pads_with_ignore(seed):
    img, lab = scene()
    out_img, out_lab = HorizonShift(p=1, max_shift=0.3, ignore_index=250, fill=(1, 2, 3))(
        img, lab, np.random.default_rng(seed))
    pad = out_lab[:, 0] == 250
    assert 0 < pad.sum() <= round(0.3 * 48)
    assert (out_img[pad] == (1, 2, 3)).all()
    rows = out_img[~pad, 0, 0] // 4  # the source row each kept row came from
    np.testing.assert_array_equal(out_lab[~pad, 0], rows % 11)
    assert np.all(np.diff(rows) == 1)  # a pure shift: consecutive source rows


def test_train_transform_adds_them_by_name_and_is_off_by_default():
    base = train_transform(crop=(32, 48), seed=0)
    assert not any(type(t).__name__ in {c.__name__ for c in ROBUST.values()} for t in base.transforms)
    full = train_transform(crop=(32, 48), augment="all", ignore_index=11, seed=0)
    names = [type(t).__name__ for t in full.transforms]
    assert names.index("HorizonShift") < names.index("RandomCrop")  # geometry before the crop
    assert names[-6:] == ["CastShadow", "Exposure", "Gamma", "LowLight", "Blur", "SensorNoise"]
    img, lab = scene()
    a = full(img, lab, np.random.default_rng(3))
    b = full(img, lab, np.random.default_rng(3))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_unknown_names_and_bad_ranges_are_usage_errors():
    assert parse_augment("shadow, exposure") == ("shadow", "exposure")
    with pytest.raises(UsageError, match="shadow"):
        parse_augment("shadw")
    with pytest.raises(UsageError):
        Exposure(p=1.5)
    with pytest.raises(UsageError):
        Gamma(gamma=(2.0, 1.0))
    with pytest.raises(UsageError):
        HorizonShift(max_shift=1.0)


def test_train_config_refuses_an_unknown_augmentation():
    from edgeseg.train.config import TrainConfig

    with pytest.raises(UsageError, match="augmentation"):
        TrainConfig(augment=("fog",))
    assert TrainConfig.from_dict(TrainConfig(augment=("blur",)).to_dict()).augment == ("blur",)
