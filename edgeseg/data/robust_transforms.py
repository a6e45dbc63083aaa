"""Robustness augmentations for road scenes: exposure, gamma, low light, sensor noise, blur,
cast shadows (image only) and horizon shift (image and label together).

Each fires with probability ``p`` and draws its strength from a range, always from the ``rng``
it is given, so a (seed, epoch, index) generator replays it exactly. Brightness changes work in
linear light through 256-entry lookup tables (an exposure change multiplies photons, not sRGB
values), which keeps each one a single pass over the image.

Select them by name with :func:`robust_transforms` (``edgeseg train --augment exposure,shadow``).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from edgeseg.runtime.errors import UsageError, unknown_name

from .base import Pair
from .transforms import Transform

_RAMP = np.arange(256, dtype=np.float32) / 255.0  # (256,) lookup-table input on the [0, 1] scale
_GAMMA = 2.2  # sRGB <-> linear light, close enough for augmentation


def _range(value: tuple[float, float], what: str, low: float = 0.0) -> tuple[float, float]:
    lo, hi = float(value[0]), float(value[1])
    if not low <= lo <= hi:
        raise UsageError(f"{what} range {value} is invalid; expected {low} <= low <= high")
    return lo, hi


def _check_p(p: float) -> float:
    if not 0.0 <= p <= 1.0:
        raise UsageError(f"augmentation probability {p} must be in [0, 1]")
    return float(p)


def _linear_gain_lut(gain: float) -> np.ndarray:
    """(256,) uint8 table: sRGB -> linear light x ``gain`` -> sRGB, clipped."""
    lin = _RAMP ** _GAMMA * gain
    return np.clip(np.power(np.clip(lin, 0, 1), 1 / _GAMMA) * 255.0 + 0.5, 0, 255).astype(np.uint8)


class Exposure(Transform):
    """Over- or under-exposure by ``stops`` (linear light x 2**stops), e.g. tunnels, low sun."""

    def __init__(self, p: float = 0.3, stops: tuple[float, float] = (-1.5, 1.0),
                 rng: np.random.Generator | int | None = None) -> None:
        super().__init__(rng)
        self.p, self.stops = _check_p(p), _range(stops, "exposure stops", low=-10.0)

    def apply(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> Pair:
        if rng.random() >= self.p:
            return image, label
        return cv2.LUT(image, _linear_gain_lut(2.0 ** rng.uniform(*self.stops))), label  # (H, W, 3) uint8


class Gamma(Transform):
    """A different tone curve: ``v ** gamma`` on the [0, 1] scale (camera and ISP differences)."""

    def __init__(self, p: float = 0.3, gamma: tuple[float, float] = (0.6, 1.6),
                 rng: np.random.Generator | int | None = None) -> None:
        super().__init__(rng)
        self.p, self.gamma = _check_p(p), _range(gamma, "gamma", low=1e-3)

    def apply(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> Pair:
        if rng.random() >= self.p:
            return image, label
        lut = np.clip(_RAMP ** rng.uniform(*self.gamma) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return cv2.LUT(image, lut), label


class LowLight(Transform):
    """Dusk or night: light down to ``level`` x, colours washed towards grey, dark-pixel noise.

    Noise in a dim picture is amplified sensor noise, so it is added after the dimming and
    scaled by the gain the camera would have applied (capped).
    """

    def __init__(self, p: float = 0.2, level: tuple[float, float] = (0.05, 0.4),
                 desaturate: tuple[float, float] = (0.2, 0.6), noise_std: float = 3.0,
                 rng: np.random.Generator | int | None = None) -> None:
        super().__init__(rng)
        self.p, self.level = _check_p(p), _range(level, "low-light level", low=1e-3)
        self.desaturate = _range(desaturate, "desaturation")
        self.noise_std = float(noise_std)

    def apply(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> Pair:
        if rng.random() >= self.p:
            return image, label
        level = rng.uniform(*self.level)
        grey = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)  # (H, W, 3)
        mix = rng.uniform(*self.desaturate)
        image = cv2.addWeighted(image, 1.0 - mix, grey, mix, 0.0)  # (H, W, 3) uint8
        image = cv2.LUT(image, _linear_gain_lut(level))
        std = self.noise_std * min(4.0, 1.0 / np.sqrt(level))
        noise = rng.normal(0.0, std, size=image.shape).astype(np.float32)  # (H, W, 3)
        return cv2.add(image, noise, dtype=cv2.CV_8U), label


class SensorNoise(Transform):
    """Gaussian noise with a standard deviation drawn from ``std`` (grey levels)."""

    def __init__(self, p: float = 0.3, std: tuple[float, float] = (2.0, 10.0),
                 rng: np.random.Generator | int | None = None) -> None:
        super().__init__(rng)
        self.p, self.std = _check_p(p), _range(std, "noise std")

    def apply(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> Pair:
        if rng.random() >= self.p:
            return image, label
        noise = rng.normal(0.0, rng.uniform(*self.std), size=image.shape).astype(np.float32)  # (H, W, 3)
        return cv2.add(image, noise, dtype=cv2.CV_8U), label


class Blur(Transform):
    """Defocus (Gaussian, ``sigma``) or motion blur (a line ``length`` pixels long at any angle)."""

    def __init__(self, p: float = 0.3, sigma: tuple[float, float] = (0.5, 2.0),
                 length: tuple[int, int] = (3, 15), motion_p: float = 0.5,
                 rng: np.random.Generator | int | None = None) -> None:
        super().__init__(rng)
        self.p, self.motion_p = _check_p(p), _check_p(motion_p)
        self.sigma = _range(sigma, "blur sigma", low=1e-3)
        lo, hi = _range(length, "motion blur length", low=1)
        self.length = (int(lo), int(hi))

    def apply(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> Pair:
        if rng.random() >= self.p:
            return image, label
        if rng.random() >= self.motion_p:
            return cv2.GaussianBlur(image, (0, 0), rng.uniform(*self.sigma)), label
        n = int(rng.integers(self.length[0], self.length[1] + 1)) | 1  # odd: the line has a centre
        kernel = np.zeros((n, n), np.float32)  # (n, n) one line through the centre
        kernel[n // 2, :] = 1.0
        turn = cv2.getRotationMatrix2D(((n - 1) / 2, (n - 1) / 2), rng.uniform(0, 180), 1.0)
        kernel = cv2.warpAffine(kernel, turn, (n, n))
        kernel /= max(float(kernel.sum()), 1e-6)
        return cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT), label


class CastShadow(Transform):
    """A soft-edged shadow (a random quadrilateral, as of a building or tree) darkening part of
    the frame by ``strength`` in linear light; the label is untouched: shadowed road is road."""

    def __init__(self, p: float = 0.3, strength: tuple[float, float] = (0.3, 0.8),
                 rng: np.random.Generator | int | None = None) -> None:
        super().__init__(rng)
        self.p, self.strength = _check_p(p), _range(strength, "shadow strength")
        if self.strength[1] > 1.0:
            raise UsageError(f"shadow strength {strength} must stay within [0, 1]")

    def apply(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> Pair:
        if rng.random() >= self.p:
            return image, label
        h, w = image.shape[:2]
        # Two corners on the top or bottom edge, two anywhere: shadows reach into the frame from outside.
        edge_y = 0 if rng.random() < 0.5 else h - 1
        xs = np.sort(rng.uniform(0, w, 2))
        corners = np.array([[xs[0], edge_y], [xs[1], edge_y],
                            [rng.uniform(0, w), rng.uniform(0, h)], [rng.uniform(0, w), rng.uniform(0, h)]])
        hull = cv2.convexHull(corners.astype(np.float32)).astype(np.int32)
        mask = np.zeros((h, w), np.uint8)  # (H, W) 255 inside the shadow
        cv2.fillConvexPoly(mask, hull, 255)
        soft = max(1.0, 0.01 * max(h, w) * rng.uniform(0.5, 3.0))  # penumbra width
        mask = cv2.GaussianBlur(mask, (0, 0), soft)
        dark = cv2.LUT(image, _linear_gain_lut(1.0 - rng.uniform(*self.strength)))  # (H, W, 3) uint8
        alpha = mask.astype(np.float32)[:, :, None] / 255.0  # (H, W, 1)
        out = image.astype(np.float32) * (1.0 - alpha) + dark.astype(np.float32) * alpha  # (H, W, 3)
        return np.clip(out + 0.5, 0, 255).astype(np.uint8), label


class HorizonShift(Transform):
    """Shift image and label up or down by up to ``max_shift`` of the height (camera pitch and
    mounting height differ between vehicles); the uncovered rows get ``fill`` and the ignore label."""

    def __init__(self, p: float = 0.5, max_shift: float = 0.15, ignore_index: int = 255,
                 fill: tuple[int, int, int] = (0, 0, 0), rng: np.random.Generator | int | None = None) -> None:
        super().__init__(rng)
        self.p = _check_p(p)
        if not 0.0 <= max_shift < 1.0:
            raise UsageError(f"horizon shift {max_shift} must be a fraction of the height in [0, 1)")
        if not 0 <= ignore_index <= 255:
            raise UsageError(f"horizon shift ignore_index {ignore_index} is not an 8-bit label value")
        self.max_shift, self.ignore_index = float(max_shift), int(ignore_index)
        self.fill = tuple(int(v) for v in fill)

    def apply(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> Pair:
        if rng.random() >= self.p:
            return image, label
        h = label.shape[0]
        dy = int(round(rng.uniform(-self.max_shift, self.max_shift) * h))
        if dy == 0:
            return image, label
        out_img = np.empty_like(image)  # (H, W, 3)
        out_lab = np.empty_like(label)  # (H, W)
        out_img[:] = np.array(self.fill, np.uint8)
        out_lab[:] = self.ignore_index
        if dy > 0:  # content moves down
            out_img[dy:], out_lab[dy:] = image[:h - dy], label[:h - dy]
        else:
            out_img[:h + dy], out_lab[:h + dy] = image[-dy:], label[-dy:]
        return out_img, out_lab


ROBUST = {"horizon": HorizonShift, "shadow": CastShadow, "exposure": Exposure, "gamma": Gamma,
          "lowlight": LowLight, "blur": Blur, "noise": SensorNoise}
GEOMETRIC = ("horizon",)  # run before the crop, with the other geometry


def parse_augment(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"exposure,shadow"``, ``"all"`` or a list -> names in the order they are applied."""
    if not text:
        return ()
    names = [s.strip() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    if names == ["all"]:
        return tuple(ROBUST)
    for name in names:
        if name not in ROBUST:
            raise unknown_name("augmentation", name, ["all", *ROBUST])
    return tuple(n for n in ROBUST if n in names)  # a fixed order whatever the order given


def robust_transforms(names: Sequence[str], ignore_index: int = 255,
                      fill: tuple[int, int, int] = (0, 0, 0)) -> tuple[list[Transform], list[Transform]]:
    """(geometric, photometric) transforms for ``names`` with their default strengths."""
    geometric: list[Transform] = []
    photometric: list[Transform] = []
    for name in parse_augment(names):
        if name == "horizon":
            geometric.append(HorizonShift(ignore_index=ignore_index, fill=fill))
        else:
            photometric.append(ROBUST[name]())
    return geometric, photometric
