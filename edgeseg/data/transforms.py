"""Training augmentations and eval resizing on (image RGB uint8 HxWx3, label uint8 HxW) pairs.

numpy + cv2 only. Every transform is called ``t(image, label, rng=None) -> (image, label)``:
geometry touches both arrays (labels always with nearest neighbour, padding with the
ignore index), photometric changes touch the image only. Randomness comes from the
``rng`` argument when given (the dataset passes one per item, see
``SegDataset.item_rng``), else from the transform's own generator, which
:meth:`Transform.reseed` resets (e.g. per DataLoader worker).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from edgeseg.runtime.errors import UsageError
from edgeseg.runtime.sizes import parse_hw

from .base import Pair


class Transform:
    """Base: subclasses implement :meth:`apply` with an explicit generator."""

    def __init__(self, rng: np.random.Generator | int | None = None) -> None:
        self.rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)

    def reseed(self, seed: int | Sequence[int]) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator | None = None) -> Pair:
        return self.apply(image, label, self.rng if rng is None else rng)

    def apply(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> Pair:
        raise NotImplementedError(f"{type(self).__name__} must implement apply()")

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k != "rng")
        return f"{type(self).__name__}({fields})"


class Compose(Transform):
    """Apply transforms in order with one shared generator."""

    def __init__(self, transforms: Sequence[Transform], rng: np.random.Generator | int | None = None) -> None:
        super().__init__(rng)
        self.transforms = list(transforms)

    def apply(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> Pair:
        for t in self.transforms:
            image, label = t(image, label, rng)
        return image, label

    def __repr__(self) -> str:
        return "Compose([" + ", ".join(repr(t) for t in self.transforms) + "])"


class RandomScale(Transform):
    """Resize both by a factor drawn uniformly from ``scale`` (image bilinear, label nearest)."""

    def __init__(self, scale: tuple[float, float] = (0.5, 2.0), rng: np.random.Generator | int | None = None
                 ) -> None:
        super().__init__(rng)
        lo, hi = float(scale[0]), float(scale[1])
        if not 0 < lo <= hi:
            raise UsageError(f"scale range {scale} is invalid; expected 0 < low <= high, e.g. (0.5, 2.0)")
        self.scale = (lo, hi)

    def apply(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> Pair:
        s = rng.uniform(*self.scale)
        h, w = label.shape
        nh, nw = max(1, round(h * s)), max(1, round(w * s))
        if (nh, nw) == (h, w):
            return image, label
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR  # area avoids aliasing when shrinking
        image = cv2.resize(image, (nw, nh), interpolation=interp)  # (nh, nw, 3) uint8
        label = cv2.resize(label, (nw, nh), interpolation=cv2.INTER_NEAREST)  # (nh, nw) uint8
        return image, label


class RandomCrop(Transform):
    """Crop to ``size`` (H, W) at a random place; pad smaller inputs (image ``fill``, label ignore)."""

    def __init__(self, size: tuple[int, int] | str | int, ignore_index: int = 255,
                 fill: tuple[int, int, int] = (0, 0, 0), rng: np.random.Generator | int | None = None) -> None:
        super().__init__(rng)
        self.size = parse_hw(size, "crop size")
        self.ignore_index = int(ignore_index)
        if not 0 <= self.ignore_index <= 255:  # uint8 labels: cv2 would clip the padding to 0 or 255
            raise UsageError(f"crop ignore_index {self.ignore_index} is not an 8-bit label value; "
                             "pass the dataset's ignore index (0..255, usually 255)")
        self.fill = tuple(int(v) for v in fill)

    def apply(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> Pair:
        ch, cw = self.size
        h, w = label.shape
        if h < ch or w < cw:
            # Pad at a random side split so the content is not always top-left.
            ph, pw = max(0, ch - h), max(0, cw - w)
            top, left = int(rng.integers(0, ph + 1)), int(rng.integers(0, pw + 1))
            image = cv2.copyMakeBorder(image, top, ph - top, left, pw - left, cv2.BORDER_CONSTANT,
                                       value=self.fill)  # (>=ch, >=cw, 3)
            label = cv2.copyMakeBorder(label, top, ph - top, left, pw - left, cv2.BORDER_CONSTANT,
                                       value=self.ignore_index)  # (>=ch, >=cw)
            h, w = label.shape
        y = int(rng.integers(0, h - ch + 1))
        x = int(rng.integers(0, w - cw + 1))
        image = np.ascontiguousarray(image[y:y + ch, x:x + cw])  # (ch, cw, 3)
        label = np.ascontiguousarray(label[y:y + ch, x:x + cw])  # (ch, cw)
        return image, label


class HorizontalFlip(Transform):
    """Mirror left-right with probability ``p`` (driving scenes are left/right symmetric enough)."""

    def __init__(self, p: float = 0.5, rng: np.random.Generator | int | None = None) -> None:
        super().__init__(rng)
        self.p = float(p)

    def apply(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> Pair:
        if rng.random() < self.p:
            image = np.ascontiguousarray(image[:, ::-1])  # (H, W, 3)
            label = np.ascontiguousarray(label[:, ::-1])  # (H, W)
        return image, label


class PhotometricJitter(Transform):
    """Brightness, contrast, saturation and hue jitter, optional blur and noise (image only).

    ``brightness=0.25`` scales V by a factor in [0.75, 1.25]; ``hue=0.03`` shifts hue by up to
    3 % of the colour circle. All colour changes are 256-entry lookup tables, so the cost is a
    couple of passes over the image whatever the settings.
    """

    def __init__(self, brightness: float = 0.25, contrast: float = 0.25, saturation: float = 0.25,
                 hue: float = 0.03, blur_p: float = 0.1, noise_p: float = 0.1, noise_std: float = 6.0,
                 rng: np.random.Generator | int | None = None) -> None:
        super().__init__(rng)
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue
        self.blur_p, self.noise_p, self.noise_std = blur_p, noise_p, noise_std

    def apply(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> Pair:
        ramp = np.arange(256, dtype=np.float32)  # (256,) lookup-table input
        b = rng.uniform(1 - self.brightness, 1 + self.brightness)
        c = rng.uniform(1 - self.contrast, 1 + self.contrast)
        s = rng.uniform(1 - self.saturation, 1 + self.saturation)
        dh = int(round(rng.uniform(-self.hue, self.hue) * 180))  # OpenCV uint8 hue runs 0..179
        if c != 1:
            mean = float(image[::8, ::8].mean())  # contrast pivots on the mean grey level
            lut = np.clip((ramp - mean) * c + mean, 0, 255).astype(np.uint8)
            image = cv2.LUT(image, lut)  # (H, W, 3) uint8
        if dh or s != 1 or b != 1:
            hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)  # (H, W, 3) uint8, H in 0..179
            h_lut = ((np.arange(256) + dh) % 180).astype(np.uint8)
            s_lut = np.clip(ramp * s, 0, 255).astype(np.uint8)
            v_lut = np.clip(ramp * b, 0, 255).astype(np.uint8)
            hsv = cv2.merge([cv2.LUT(hsv[:, :, 0], h_lut), cv2.LUT(hsv[:, :, 1], s_lut),
                             cv2.LUT(hsv[:, :, 2], v_lut)])
            image = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)  # (H, W, 3) uint8
        if self.blur_p and rng.random() < self.blur_p:
            sigma = rng.uniform(0.5, 1.5)
            image = cv2.GaussianBlur(image, (0, 0), sigma)
        if self.noise_p and rng.random() < self.noise_p:
            noise = rng.normal(0.0, self.noise_std, size=image.shape).astype(np.float32)  # (H, W, 3)
            image = cv2.add(image, noise, dtype=cv2.CV_8U)  # saturating add
        return image, label


class Resize(Transform):
    """Resize to a fixed (H, W): image bilinear (area when shrinking), label nearest."""

    def __init__(self, size: tuple[int, int] | str | int) -> None:
        super().__init__(0)
        self.size = parse_hw(size, "resize size")

    def apply(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> Pair:
        h, w = self.size
        if label.shape == (h, w):
            return image, label
        shrink = h * w < label.shape[0] * label.shape[1]
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        label = cv2.resize(label, (w, h), interpolation=cv2.INTER_NEAREST)  # (h, w) uint8
        return image, label


class Identity(Transform):
    def apply(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> Pair:
        return image, label


def train_transform(crop: tuple[int, int] | str | int | None = (360, 480),
                    scale: tuple[float, float] | None = (0.5, 2.0), flip: bool = True,
                    photometric: bool = True, ignore_index: int = 255,
                    fill: tuple[int, int, int] = (0, 0, 0), seed: int | None = None,
                    augment: Sequence[str] = ()) -> Compose:
    """The standard training pipeline: scale -> crop -> flip -> photometric (each optional).

    ``augment`` adds robustness augmentations by name (see ``robust_transforms.ROBUST``):
    horizon shift after the scale, the photometric ones after the jitter.
    """
    from .robust_transforms import robust_transforms

    extra_geometric, extra_photometric = robust_transforms(augment, ignore_index=ignore_index, fill=fill)
    steps: list[Transform] = []
    if scale is not None and tuple(scale) != (1.0, 1.0):
        steps.append(RandomScale(scale))
    steps += extra_geometric
    if crop is not None:
        steps.append(RandomCrop(crop, ignore_index=ignore_index, fill=fill))
    if flip:
        steps.append(HorizontalFlip(0.5))
    if photometric:
        steps.append(PhotometricJitter())
    steps += extra_photometric
    return Compose(steps, rng=seed)


def eval_transform(size: tuple[int, int] | str | int | None = None) -> Transform:
    """Identity (native resolution, the metric convention) or a fixed resize."""
    return Identity() if size is None else Resize(size)
