"""Augmentations keep image and label aligned; randomness is controlled."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.data import (
    Compose,
    HorizontalFlip,
    PhotometricJitter,
    RandomCrop,
    RandomScale,
    Resize,
    eval_transform,
    train_transform,
)
from edgeseg.runtime.errors import UsageError


def blocks(h: int = 64, w: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """A label of 8x8 blocks of ids 0, 10, ..., 50 (gaps, so any blending shows) and an image
    whose red channel encodes the id (x 4)."""
    ids = (np.add.outer(np.arange(h) // 8, np.arange(w) // 8) % 6 * 10).astype(np.uint8)  # (h, w)
    img = np.zeros((h, w, 3), np.uint8)
    img[:, :, 0] = ids * 4
    img[:, :, 1] = np.arange(w, dtype=np.uint8)[None, :]  # column ramp: shows flips
    return img, ids


def decoded(img: np.ndarray) -> np.ndarray:
    """(H, W) ids read back from the image, snapped to the nearest multiple of 10."""
    return (np.rint(img[:, :, 0] / 40.0) * 10).astype(np.int64)


def test_flip_and_crop_are_exact() -> None:
    img, lab = blocks()
    f_img, f_lab = HorizontalFlip(p=1.0)(img, lab)
    np.testing.assert_array_equal(f_lab, lab[:, ::-1])
    np.testing.assert_array_equal(f_img, img[:, ::-1])
    assert f_lab.flags.c_contiguous and f_img.flags.c_contiguous
    c_img, c_lab = RandomCrop((20, 30), rng=1)(img, lab)
    assert c_img.shape == (20, 30, 3) and c_lab.shape == (20, 30)
    np.testing.assert_array_equal(decoded(c_img), c_lab)


def test_crop_pads_with_fill_and_ignore() -> None:
    img, lab = blocks(10, 12)
    out_img, out_lab = RandomCrop((16, 20), ignore_index=250, fill=(7, 8, 9), rng=0)(img, lab)
    assert out_img.shape == (16, 20, 3) and out_lab.shape == (16, 20)
    pad = out_lab == 250
    assert pad.sum() == 16 * 20 - 10 * 12
    assert (out_img[pad] == (7, 8, 9)).all()
    np.testing.assert_array_equal(decoded(out_img)[~pad], out_lab[~pad])


@pytest.mark.parametrize("factor", [0.5, 1.7])
def test_scale_uses_nearest_for_labels(factor: float) -> None:
    img, lab = blocks()
    s_img, s_lab = RandomScale((factor, factor))(img, lab)
    assert s_lab.shape == (round(64 * factor), round(96 * factor)) and s_img.shape[:2] == s_lab.shape
    assert set(np.unique(s_lab)) <= set(range(0, 60, 10))  # no blended ids
    # Bilinear image edges blend, block interiors must agree with the label.
    assert (decoded(s_img) == s_lab).mean() > 0.85


def test_train_transform_keeps_alignment_and_is_reproducible() -> None:
    img, lab = blocks()
    t = train_transform(crop=(32, 48), scale=(0.5, 2.0), photometric=False, ignore_index=255, seed=3)
    for i in range(20):
        out_img, out_lab = t(img, lab, np.random.default_rng(i))
        assert out_img.shape == (32, 48, 3) and out_lab.shape == (32, 48) and out_lab.dtype == np.uint8
        valid = out_lab != 255
        assert (decoded(out_img)[valid] == out_lab[valid]).mean() > 0.8
    a = t(img, lab, np.random.default_rng(7))
    b = t(img, lab, np.random.default_rng(7))
    np.testing.assert_array_equal(a[0], b[0])
    t.reseed(11)
    c = t(img, lab)
    t.reseed(11)
    np.testing.assert_array_equal(c[0], t(img, lab)[0])


def test_photometric_changes_image_only() -> None:
    img = np.random.default_rng(0).integers(30, 220, (40, 50, 3), dtype=np.uint8)
    lab = np.random.default_rng(1).integers(0, 5, (40, 50), dtype=np.uint8)
    jitter = PhotometricJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.05, blur_p=1.0, noise_p=1.0)
    out_img, out_lab = jitter(img, lab, np.random.default_rng(2))
    assert out_img.shape == img.shape and out_img.dtype == np.uint8
    assert out_lab is lab
    assert np.abs(out_img.astype(int) - img).mean() > 2
    no_op = PhotometricJitter(0, 0, 0, 0, blur_p=0, noise_p=0)(img, lab)[0]
    np.testing.assert_array_equal(no_op, img)


def test_eval_transform_and_resize() -> None:
    img, lab = blocks()
    same = eval_transform()(img, lab)
    assert same[0] is img and same[1] is lab
    r_img, r_lab = eval_transform("32x48")(img, lab)
    assert r_img.shape == (32, 48, 3) and r_lab.shape == (32, 48)
    assert isinstance(eval_transform(16), Resize)
    composed = Compose([Resize((32, 48)), HorizontalFlip(1.0)])
    np.testing.assert_array_equal(composed(img, lab)[1], r_lab[:, ::-1])


def test_bad_arguments() -> None:
    with pytest.raises(UsageError, match="scale range"):
        RandomScale((2.0, 0.5))
    with pytest.raises(UsageError, match="crop size"):
        RandomCrop("tiny")


@pytest.mark.parametrize("ignore", [-1, 256])
def test_crop_refuses_an_ignore_index_labels_cannot_hold(ignore: int) -> None:
    """uint8 labels: cv2 clipped -1 padding to 0, turning padding into class 0."""
    with pytest.raises(UsageError, match=f"ignore_index {ignore} "):
        RandomCrop((20, 20), ignore_index=ignore)
    with pytest.raises(UsageError, match=f"ignore_index {ignore} "):
        train_transform(crop=(20, 20), ignore_index=ignore)
