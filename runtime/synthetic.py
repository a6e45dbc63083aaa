"""Procedural driving scenes with exact labels (numpy + cv2, no torch).

A pinhole camera looks down a (possibly curving) street: road with lanes and
dashed markings, kerbs and pavements, building facades with windows, trees and
hedges, fences, poles with lamps and signs, pedestrians, and cars/vans/trucks
seen from behind. Every shape is rasterised into the image and the label with
the same polygon, so the label is exact by construction; lighting, haze, colour
temperature, blur and sensor noise vary per scene.

Two modes:

* ``SceneGenerator(size, seed).scene(i)``: an independent random scene per index
  (a dataset sample); the same ``(seed, i)`` always gives the same pixels.
* ``clip_frame(t)`` / ``frames()``: one world seen by a camera driving forward at
  a constant speed, so markings, facades and cars move smoothly frame to frame
  (the runtime's ``synthetic://`` video source).

Class ids follow CamVid's 11-class order for the classes drawn here (Bicyclist
is never drawn, so it is left out); there is no void in a procedural scene, but
``SYNTHETIC_IGNORE`` is reserved for padding by augmentations.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from .errors import UsageError
from .sizes import parse_hw

SYNTHETIC_CLASSES: tuple[str, ...] = ("Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol",
                                      "Fence", "Car", "Pedestrian")
SYNTHETIC_PALETTE: tuple[tuple[int, int, int], ...] = (  # RGB, CamVid display colours
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
    (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0))
SYNTHETIC_IGNORE = 255

SKY, BUILDING, POLE, ROAD, PAVEMENT, TREE, SIGN, FENCE, CAR, PEDESTRIAN = range(10)

# Texture strength per class: (fine grain, blotchy) noise std in grey levels. Distinct
# statistics per class are what a small model can learn quickly beyond colour.
_TEXTURE = np.array([(1.0, 5.0), (4.0, 9.0), (2.0, 2.0), (7.0, 5.0), (6.0, 7.0), (9.0, 22.0), (1.5, 1.5),
                     (5.0, 6.0), (2.0, 3.0), (4.0, 5.0)], dtype=np.float32)

_Z_NEAR = 0.6  # m: ground polygons start here (below the image bottom for any sane camera)
_Z_FAR = 160.0  # m: ground and objects end here (a few pixels above the horizon)
_SHIFT = 2  # cv2 fixed-point bits: polygons are placed with 1/4-pixel precision
_ONE = 1 << _SHIFT

_BUILDING_COLOURS = ((190, 170, 140), (160, 82, 62), (122, 122, 128), (212, 206, 196), (140, 110, 82),
                     (98, 90, 86), (182, 150, 110), (150, 160, 170), (200, 180, 160))
_CAR_COLOURS = ((230, 230, 230), (25, 25, 28), (160, 162, 168), (170, 30, 30), (30, 60, 140),
                (70, 72, 76), (20, 90, 60), (200, 170, 40), (110, 20, 30), (210, 210, 200))
_SHIRT_COLOURS = ((200, 40, 40), (40, 60, 150), (230, 230, 230), (30, 30, 30), (60, 130, 60), (220, 180, 40),
                  (120, 70, 140), (150, 150, 150))
_SKIN_COLOURS = ((230, 190, 160), (200, 150, 110), (150, 100, 70), (100, 70, 50))


# -- the world ------------------------------------------------------------------------------------
@dataclass
class _Cell:
    """A stretch of one roadside, [z0, z1) metres along the road, and what stands on it."""
    z0: float
    z1: float
    kind: str  # "building", "trees" or "open"
    setback: float = 0.0  # m behind the pavement's outer edge
    height: float = 0.0
    colour: tuple[int, int, int] = (0, 0, 0)
    floor_h: float = 3.0
    win_pitch: float = 2.5
    win_colour: tuple[int, int, int] = (60, 70, 80)
    fence: bool = False
    fence_colour: tuple[int, int, int] = (0, 0, 0)
    fence_h: float = 1.1
    trees: list[tuple[float, float, float, tuple[int, int, int]]] = field(default_factory=list)  # z, r, trunk h, green
    poles: list[tuple[float, str, float]] = field(default_factory=list)  # z, kind, height
    people: list[tuple[float, float, float, float, int, int]] = field(default_factory=list)  # z, x, speed, h, shirt, skin


@dataclass
class _Car:
    lane: int
    z0: float  # m ahead of the camera at time 0
    dv: float  # m/s relative to the camera
    x_jitter: float
    width: float
    height: float
    length: float
    colour: tuple[int, int, int]
    kind: str  # "car", "van", "truck"


class _World:
    """All random choices for one scene or one clip, drawn from ``rng`` (roadside cells lazily)."""

    def __init__(self, rng: np.random.Generator, hw: tuple[int, int], seed_key: tuple[int, ...],
                 z_start: float = -30.0) -> None:
        h, w = hw
        self.seed_key = seed_key
        self.z_start = z_start  # roadside cells begin here (behind the camera's first position)
        u = rng.uniform
        # Camera: focal length, height, pitch (horizon row) and yaw (vanishing column).
        self.f = w * u(0.72, 1.05)
        self.cam_h = u(1.2, 1.75)
        self.horizon = h * u(0.36, 0.52)
        self.xv = w * (0.5 + u(-0.07, 0.07))
        self.curv = u(-0.0016, 0.0016) if rng.random() < 0.6 else 0.0  # lateral shift = curv * z^2
        # Road: lanes left to right from x = 0; the camera drives in lane `ego`.
        self.lanes = int(rng.integers(2, 5))
        self.lane_w = u(3.0, 3.8)
        self.ego = int(rng.integers(0, self.lanes))
        self.cam_x = (self.ego + 0.5) * self.lane_w + u(-0.35, 0.35)
        self.road_w = self.lanes * self.lane_w
        self.walk_w = (u(1.8, 4.5), u(1.8, 4.5))  # left, right pavement widths
        self.kerb = (u(0.1, 0.2), u(0.1, 0.2))
        self.dash = (u(2.0, 4.0), u(7.0, 12.0))  # dash length, period
        self.dash_phase = u(0.0, 12.0)
        self.mark_w = u(0.10, 0.16)
        self.edge_lines = rng.random() < 0.7
        self.mark_colour = (235, 235, 225) if rng.random() < 0.85 else (230, 190, 60)
        # Materials.
        g = u(62, 118)
        self.asphalt = _rgb(g + u(-4, 4), g + u(-4, 4), g + u(0, 8))
        if rng.random() < 0.7:
            p = u(135, 195)
            self.pavement = _rgb(p, p - u(0, 10), p - u(0, 20))
        else:  # red/brown pavers
            self.pavement = _rgb(u(150, 190), u(100, 130), u(85, 115))
        self.kerb_colour = _rgb(*(np.array(self.pavement, float) * u(0.75, 1.1)))
        self.grass = _rgb(u(60, 110), u(100, 150), u(35, 70))
        self.sky_top, self.sky_low = _sky_colours(rng)
        self.skyline_kind = BUILDING if rng.random() < 0.5 else TREE
        self.skyline_colour = _rgb(*(np.array(self.sky_low, float) * u(0.45, 0.75)))
        self.skyline = rng.uniform(0.0, 1.0, size=24)  # heights of the distant silhouette
        # Light and sensor.
        self.gain = u(0.7, 1.25)
        self.tint = np.array([u(0.92, 1.08), 1.0, u(0.92, 1.08)], np.float32)  # RGB multipliers
        self.haze = u(0.0, 0.45)
        self.texture = u(0.6, 1.4)
        self.blur = u(0.4, 1.2) if rng.random() < 0.35 else 0.0
        self.noise = u(1.0, 5.0)
        # Traffic: a fixed relative speed per lane keeps the gaps between cars in a lane.
        self.speed = u(8.0, 14.0)  # m/s, camera speed in clip mode
        lane_dv = rng.uniform(-3.0, 3.0, size=self.lanes)
        lane_dv[self.ego] = u(-0.6, 0.6)
        self.cars: list[_Car] = []
        for lane in range(self.lanes):
            z = u(7.0, 14.0) if lane == self.ego else u(3.0, 10.0)
            while z < 110:
                if rng.random() < 0.45:
                    kind = rng.choice(["car"] * 7 + ["van"] * 2 + ["truck"])
                    width, height, length = {"car": (u(1.65, 1.9), u(1.35, 1.6), u(4.0, 4.8)),
                                             "van": (u(1.85, 2.05), u(1.85, 2.3), u(4.8, 5.8)),
                                             "truck": (u(2.3, 2.55), u(2.8, 3.6), u(7.0, 11.0))}[kind]
                    colour = _jitter(_CAR_COLOURS[int(rng.integers(len(_CAR_COLOURS)))], rng, 12)
                    self.cars.append(_Car(lane, z, float(lane_dv[lane]), u(-0.3, 0.3), width, height, length,
                                          colour, str(kind)))
                    z += length
                z += u(4.0, 20.0)
        self._cells: tuple[list[_Cell], list[_Cell]] = ([], [])
        self._cell_rng = [np.random.default_rng((*seed_key, 7, side)) for side in (0, 1)]

    # Roadside cells are generated in order along the road, as far as the camera needs them.
    def cells(self, side: int, z_end: float) -> list[_Cell]:
        cells = self._cells[side]
        rng = self._cell_rng[side]
        while not cells or cells[-1].z1 < z_end:
            z0 = cells[-1].z1 if cells else self.z_start
            cells.append(self._new_cell(rng, z0))
        return cells

    def _new_cell(self, rng: np.random.Generator, z0: float) -> _Cell:
        u = rng.uniform
        r = rng.random()
        kind = "building" if r < 0.58 else ("trees" if r < 0.88 else "open")
        cell = _Cell(z0, z0 + u(7.0, 22.0), kind)
        if kind == "building":
            cell.setback = u(0.0, 4.0) if rng.random() < 0.6 else 0.0
            cell.height = u(5.0, 26.0)
            cell.colour = _jitter(_BUILDING_COLOURS[int(rng.integers(len(_BUILDING_COLOURS)))], rng, 14)
            cell.floor_h = u(2.8, 3.6)
            cell.win_pitch = u(1.8, 3.2)
            v = u(30, 110)
            cell.win_colour = _rgb(v, v + u(0, 15), v + u(5, 35))
        if kind != "building" or rng.random() < 0.25:
            cell.fence = rng.random() < 0.45
            cell.fence_colour = _jitter(((120, 90, 60), (90, 95, 100), (50, 80, 50), (150, 150, 145))[
                int(rng.integers(4))], rng, 10)
            cell.fence_h = u(0.9, 1.6)
        if kind in ("trees", "open") or rng.random() < 0.3:
            z = cell.z0 + u(1.0, 6.0)
            while z < cell.z1:
                cell.trees.append((z, u(1.2, 3.0), u(1.8, 3.2),
                                   _rgb(u(35, 85), u(85, 140), u(25, 60))))
                z += u(4.0, 10.0)
        z = cell.z0 + u(0.0, 25.0)
        while z < cell.z1:
            kind_p = "sign" if rng.random() < 0.4 else "lamp"
            cell.poles.append((z, kind_p, u(2.6, 3.4) if kind_p == "sign" else u(5.0, 8.0)))
            z += u(15.0, 40.0)
        for _ in range(int(rng.poisson(0.6))):
            cell.people.append((u(cell.z0, cell.z1), u(0.2, 0.8), u(-1.4, 1.4) if rng.random() < 0.7 else 0.0,
                                u(1.55, 1.9), int(rng.integers(len(_SHIRT_COLOURS))),
                                int(rng.integers(len(_SKIN_COLOURS)))))
        return cell


def _rgb(r: float, g: float, b: float) -> tuple[int, int, int]:
    return (min(255, max(0, int(r))), min(255, max(0, int(g))), min(255, max(0, int(b))))


def _jitter(c: Sequence[int], rng: np.random.Generator, amount: float) -> tuple[int, int, int]:
    d = rng.uniform(-amount, amount, size=3)
    return _rgb(c[0] + d[0], c[1] + d[1], c[2] + d[2])


def _shade(c: Sequence[int], k: float) -> tuple[int, int, int]:
    return _rgb(c[0] * k, c[1] * k, c[2] * k)


def _sky_colours(rng: np.random.Generator) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    r = rng.random()
    if r < 0.5:  # clear
        return _jitter((70, 125, 200), rng, 15), _jitter((175, 205, 232), rng, 12)
    if r < 0.85:  # overcast
        v = rng.uniform(140, 200)
        return _rgb(v, v + 4, v + 10), _rgb(v + 30, v + 32, v + 35)
    return _jitter((60, 80, 140), rng, 15), _jitter((232, 170, 120), rng, 15)  # dusk


# -- noise bank ---------------------------------------------------------------------------------
class _NoiseBank:
    """Pre-generated unit-variance noise twice the frame size; each frame reads random windows."""

    def __init__(self, hw: tuple[int, int]) -> None:
        h, w = hw
        rng = np.random.default_rng(12345)  # fixed: the bank is a constant texture, not per-seed
        fine = rng.standard_normal((2 * h, 2 * w)).astype(np.float32)  # (2H, 2W)
        coarse = cv2.GaussianBlur(fine, (0, 0), max(2.0, w / 160))
        coarse /= coarse.std() + 1e-6
        self.fine, self.coarse = fine, coarse
        self.hw = hw

    def window(self, which: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = self.hw
        y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
        return which[y:y + h, x:x + w]  # (H, W) float32 view


_BANKS: dict[tuple[int, int], _NoiseBank] = {}


def _bank(hw: tuple[int, int]) -> _NoiseBank:
    if hw not in _BANKS:
        if len(_BANKS) > 8:
            _BANKS.clear()
        _BANKS[hw] = _NoiseBank(hw)
    return _BANKS[hw]


# -- rendering ----------------------------------------------------------------------------------
class _Canvas:
    """Colour and label in one 4-channel buffer: each shape is one rasterisation, painting RGB and
    class id together, so the label is exactly aligned with the image (and half the draw calls).
    Details painted on a surface (markings, joints, shadows, windows) pass the class of that surface.
    """

    def __init__(self, hw: tuple[int, int]) -> None:
        self.buf = np.zeros((*hw, 4), np.uint8)  # (H, W, 4) uint8: R, G, B, class id

    @property
    def img(self) -> np.ndarray:
        return self.buf[:, :, :3]  # (H, W, 3) uint8 RGB view, flat colours

    @property
    def lab(self) -> np.ndarray:
        return self.buf[:, :, 3]  # (H, W) uint8 view, class ids

    def poly(self, polys: Sequence[np.ndarray] | np.ndarray, colour: Sequence[int], cls: int) -> None:
        if isinstance(polys, np.ndarray):  # (N, K, 2): many polygons with K corners, converted at once
            pts = list(np.round(polys * _ONE).astype(np.int32))
        else:
            pts = [np.round(p * _ONE).astype(np.int32) for p in polys if len(p) >= 3]
        if pts:
            cv2.fillPoly(self.buf, pts, (int(colour[0]), int(colour[1]), int(colour[2]), int(cls)), cv2.LINE_8,
                         _SHIFT)

    def ellipse(self, cx: float, cy: float, ax: float, ay: float, colour: Sequence[int], cls: int) -> None:
        if ax < 0.5 or ay < 0.5:
            return
        c = (int(round(cx * _ONE)), int(round(cy * _ONE)))
        a = (int(round(ax * _ONE)), int(round(ay * _ONE)))
        cv2.ellipse(self.buf, c, a, 0, 0, 360, (int(colour[0]), int(colour[1]), int(colour[2]), int(cls)), -1,
                    cv2.LINE_8, _SHIFT)


def _rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], np.float64)  # (4, 2)


class _Renderer:
    """Draws one frame of a world for a camera at ``cam_z`` metres along the road."""

    def __init__(self, world: _World, hw: tuple[int, int], cam_z: float, time_s: float,
                 bounce: float = 0.0) -> None:
        self.w, self.hw, self.cam_z, self.time = world, hw, cam_z, time_s
        self.horizon = world.horizon + bounce
        self.cv = _Canvas(hw)

    # Road coordinates (x across from the left road edge, y up, z along) -> pixels.
    def project(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        w = self.w
        zr = np.maximum(np.asarray(z, np.float64) - self.cam_z, 1e-3)
        lateral = np.asarray(x, np.float64) - w.cam_x + w.curv * zr * zr
        u = w.xv + w.f * lateral / zr
        v = self.horizon + w.f * (w.cam_h - np.asarray(y, np.float64)) / zr
        return np.stack([u, v], axis=-1)  # (..., 2)

    def point(self, x: float, y: float, z: float) -> tuple[float, float]:
        """One point (plain floats: much cheaper than the array path for single points)."""
        w = self.w
        zr = max(z - self.cam_z, 1e-3)
        return (w.xv + w.f * (x - w.cam_x + w.curv * zr * zr) / zr, self.horizon + w.f * (w.cam_h - y) / zr)

    def ground_quads(self, x0: np.ndarray, x1: np.ndarray, z0: np.ndarray, z1: np.ndarray) -> list[np.ndarray]:
        """Many short ground rectangles at once (markings, joints): corners projected in one call."""
        xs = np.stack([x0, x1, x1, x0], 1)  # (N, 4)
        zs = np.stack([z0, z0, z1, z1], 1)  # (N, 4)
        return self.project(xs, np.zeros_like(xs), zs)  # (N, 4, 2)

    def ground_strip(self, x0: float, x1: float, z0: float, z1: float, n: int = 20) -> np.ndarray:
        """A ground polygon between two lines of constant x, sampled along z (curves stay smooth)."""
        zs = np.exp(np.linspace(math.log(z0), math.log(z1), n))  # denser near the camera
        left = self.project(np.full(n, x0), np.zeros(n), zs)
        right = self.project(np.full(n, x1), np.zeros(n), zs)
        return np.concatenate([left, right[::-1]])  # (2n, 2)

    def wall(self, x: float, z0: float, z1: float, y0: float, y1: float, n: int = 6) -> np.ndarray:
        """A vertical rectangle at constant x from z0 to z1 (sampled along z for curves)."""
        zr0, zr1 = z0 - self.cam_z, z1 - self.cam_z  # sample densely near the camera
        zs = self.cam_z + np.exp(np.linspace(math.log(zr0), math.log(zr1), n))
        bottom = self.project(np.full(n, x), np.full(n, y0), zs)
        top = self.project(np.full(n, x), np.full(n, y1), zs)
        return np.concatenate([bottom, top[::-1]])  # (2n, 2)

    def render(self) -> tuple[np.ndarray, np.ndarray]:
        w, cv = self.w, self.cv
        h_img, w_img = self.hw
        near, far = self.cam_z + _Z_NEAR, self.cam_z + _Z_FAR
        # Sky gradient and everything below the horizon starts as grass.
        hz = int(np.clip(round(self.horizon), 0, h_img))
        t = np.linspace(0.0, 1.0, max(hz, 1), dtype=np.float32)[:, None]  # (hz, 1)
        grad = np.array(w.sky_top, np.float32) * (1 - t) + np.array(w.sky_low, np.float32) * t  # (hz, 3)
        cv.buf[:hz, :, :3] = grad[:, None, :].astype(np.uint8)
        cv.buf[:hz, :, 3] = SKY
        cv.buf[hz:] = (*w.grass, TREE)
        # Distant skyline silhouette sitting on the horizon.
        xs = np.linspace(-0.05, 1.05, len(w.skyline)) * w_img
        tops = self.horizon + 1 - w.skyline * 0.07 * h_img
        sil = np.concatenate([np.stack([xs, tops], 1), [[xs[-1], self.horizon + 2], [xs[0], self.horizon + 2]]])
        cv.poly([sil], w.skyline_colour, w.skyline_kind)

        # Ground: pavements (with kerbs), road, markings.
        lw, rw = w.walk_w
        cv.poly([self.ground_strip(-lw, 0.0, near, far), self.ground_strip(w.road_w, w.road_w + rw, near, far)],
                w.pavement, PAVEMENT)
        cv.poly([self.ground_strip(-w.kerb[0], 0.0, near, far),
                 self.ground_strip(w.road_w, w.road_w + w.kerb[1], near, far)], w.kerb_colour, PAVEMENT)
        self._paving_joints(lw, rw)
        cv.poly([self.ground_strip(0.0, w.road_w, near, far)], w.asphalt, ROAD)
        self._markings()

        # Upright things, far to near (painter's algorithm). Walls parallel to the road sort by
        # their far end, so anything standing in front of them along their length is drawn later.
        items: list[tuple[float, int, object]] = []
        for side in (0, 1):
            for cell in w.cells(side, far):
                if cell.z1 <= near or cell.z0 >= far:
                    continue
                items.append((min(cell.z1, far), 0, ("cell", side, cell)))
                for tree in cell.trees:
                    items.append((tree[0], 1, ("tree", side, tree)))
                for pole in cell.poles:
                    items.append((pole[0], 2, ("pole", side, pole)))
                for person in cell.people:
                    z = person[0] + person[2] * self.time
                    items.append((z, 3, ("person", side, person, z)))
        for car in w.cars:
            z = self._car_z(car)
            items.append((z, 4, ("car", car, z)))
        self._shadows([it[2] for it in items if it[2][0] == "car"])
        items.sort(key=lambda it: (-it[0], it[1]))
        for z, _, item in items:
            if not near < z < far and item[0] != "cell":
                continue
            kind = item[0]
            if kind == "cell":
                self._cell(item[1], item[2])
            elif kind == "tree":
                self._tree(item[1], item[2])
            elif kind == "pole":
                self._pole(item[1], item[2])
            elif kind == "person":
                self._person(item[1], item[2], item[3])
            else:
                self._car(item[1], item[2])
        return cv.img, np.ascontiguousarray(cv.lab)  # (H, W, 3) RGB view, (H, W) uint8

    # -- ground details -----------------------------------------------------------------------
    def _markings(self) -> None:
        w = self.w
        dash, period = w.dash
        z_lo, z_hi = self.cam_z + _Z_NEAR, self.cam_z + 90.0
        k0 = math.floor((z_lo - w.dash_phase - dash) / period)
        z0 = w.dash_phase + np.arange(k0, k0 + int((z_hi - z_lo) / period) + 3) * period  # (K,) dash starts
        z0 = z0[(z0 + dash > z_lo) & (z0 < z_hi)]
        x = np.arange(1, w.lanes) * w.lane_w  # (L-1,) lane dividers
        xx, zz = np.meshgrid(x, z0)  # (K, L-1)
        xx, zz = xx.ravel(), zz.ravel()
        half = w.mark_w / 2
        if xx.size:
            self.cv.poly(self.ground_quads(xx - half, xx + half, np.maximum(zz, z_lo), zz + dash), w.mark_colour, ROAD)
        if w.edge_lines:
            self.cv.poly([self.ground_strip(x - half, x + half, z_lo, self.cam_z + _Z_FAR)
                          for x in (0.35, w.road_w - 0.35)], w.mark_colour, ROAD)

    def _paving_joints(self, lw: float, rw: float) -> None:
        # Transverse joints on the pavements: a texture cue that tells pavement from road.
        w = self.w
        step = 1.2
        z = np.arange(math.ceil((self.cam_z + 1.0) / step) * step, self.cam_z + 35.0, step)  # (N,)
        ones = np.ones_like(z)
        polys = np.concatenate([self.ground_quads(-lw * ones, -w.kerb[0] * ones, z, z + 0.06),
                                self.ground_quads((w.road_w + w.kerb[1]) * ones, (w.road_w + rw) * ones, z, z + 0.06)])
        self.cv.poly(polys, _shade(w.pavement, 0.8), PAVEMENT)

    def _car_z(self, car: _Car) -> float:
        # Relative position wraps inside a window ahead of the camera, so traffic never runs out.
        lo, hi = (6.0, 110.0) if car.lane == self.w.ego else (2.0, 110.0)
        rel = lo + (car.z0 - lo + car.dv * self.time) % (hi - lo)
        return self.cam_z + rel

    def _shadows(self, cars: list[tuple]) -> None:
        for _, car, z in cars:
            x = (car.lane + 0.5) * self.w.lane_w + car.x_jitter
            poly = self.ground_strip(x - car.width * 0.55, x + car.width * 0.55, z - 0.3, z + car.length * 0.9, 4)
            self.cv.poly([poly], _shade(self.w.asphalt, 0.45), ROAD)  # stays inside its lane

    # -- upright things -----------------------------------------------------------------------
    def _side_x(self, side: int, offset: float) -> float:
        """x of a line ``offset`` metres outward from the road edge on ``side`` (0 left, 1 right)."""
        return -offset if side == 0 else self.w.road_w + offset

    def _cell(self, side: int, cell: _Cell) -> None:
        w, cv = self.w, self.cv
        near = self.cam_z + _Z_NEAR
        z0, z1 = max(cell.z0, near), min(cell.z1, self.cam_z + _Z_FAR)
        if z1 <= z0:
            return
        edge = w.walk_w[side]
        if cell.fence:
            x = self._side_x(side, edge - 0.05)
            cv.poly([self.wall(x, z0, z1, 0.0, cell.fence_h)], cell.fence_colour, FENCE)
            self._fence_slats(x, z0, z1, cell)
        if cell.kind == "trees" and not cell.fence:
            # A hedge behind the pavement.
            x = self._side_x(side, edge + 0.4)
            cv.poly([self.wall(x, z0, z1, 0.0, 1.2)], _shade(cell.trees[0][3] if cell.trees else w.grass, 0.8),
                    TREE)
        if cell.kind != "building":
            return
        x = self._side_x(side, edge + cell.setback)
        out = -1.0 if side == 0 else 1.0
        # The wall facing the camera at the near end, then the facade along the road.
        if cell.z0 >= near:
            face = self.project(np.array([x, x + out * 12, x + out * 12, x]), np.array([0, 0, cell.height, cell.height]),
                                np.full(4, cell.z0))
            cv.poly([face], _shade(cell.colour, 0.72), BUILDING)
        cv.poly([self.wall(x, z0, z1, 0.0, cell.height)], cell.colour, BUILDING)
        self._windows(x, z0, z1, cell)

    def _windows(self, x: float, z0: float, z1: float, cell: _Cell) -> None:
        if z0 - self.cam_z > 70.0:
            return
        pitch, fh = cell.win_pitch, cell.floor_h
        ww, wh = pitch * 0.55, fh * 0.5
        n_floors = int((cell.height - 1.0) // fh)
        starts = np.arange(cell.z0 + pitch * 0.3, cell.z1 - ww, pitch)
        starts = starts[(starts >= z0) & (starts + ww <= z1)]
        if n_floors < 1 or starts.size == 0:
            return
        ys = 1.0 + np.arange(n_floors) * fh + fh * 0.25
        za, ya = np.meshgrid(starts, ys)  # (floors, columns)
        za, ya = za.ravel(), ya.ravel()
        xs = np.full((za.size, 4), x)
        zs = np.stack([za, za + ww, za + ww, za], 1)  # (N, 4)
        yy = np.stack([ya, ya, ya + wh, ya + wh], 1)  # (N, 4)
        self.cv.poly(self.project(xs, yy, zs), cell.win_colour, BUILDING)  # (N, 4, 2) corners

    def _fence_slats(self, x: float, z0: float, z1: float, cell: _Cell) -> None:
        if z0 - self.cam_z > 40.0:
            return
        zs = np.arange(math.ceil(z0 / 0.5) * 0.5, z1, 0.5)
        if zs.size == 0:
            return
        xs = np.full((zs.size, 4), x)
        zz = np.stack([zs, zs + 0.06, zs + 0.06, zs], 1)  # (N, 4)
        yy = np.tile(np.array([0.0, 0.0, cell.fence_h, cell.fence_h]), (zs.size, 1))  # (N, 4)
        self.cv.poly(self.project(xs, yy, zz), _shade(cell.fence_colour, 0.6), FENCE)  # (N, 4, 2)

    def _tree(self, side: int, tree: tuple) -> None:
        z, r, trunk_h, green = tree
        x = self._side_x(side, self.w.walk_w[side] - 0.7)
        zr = z - self.cam_z
        s = self.w.f / zr
        cx, cy = self.point(x, 0.0, z)
        tw = max(0.3 * s, 1.0)
        self.cv.poly([_rect(cx - tw / 2, cy, cx + tw / 2, cy - trunk_h * s)], (85, 65, 45), TREE)
        ccy = cy - (trunk_h + r * 0.8) * s
        self.cv.ellipse(cx, ccy, r * s, r * 0.9 * s, green, TREE)
        # Lit and shaded clumps inside the crown for texture (same label).
        self.cv.ellipse(cx - r * 0.3 * s, ccy - r * 0.3 * s, r * 0.5 * s, r * 0.4 * s, _shade(green, 1.25), TREE)
        self.cv.ellipse(cx + r * 0.35 * s, ccy + r * 0.3 * s, r * 0.45 * s, r * 0.35 * s, _shade(green, 0.7), TREE)

    def _pole(self, side: int, pole: tuple) -> None:
        z, kind, height = pole
        x = self._side_x(side, 0.45)
        s = self.w.f / (z - self.cam_z)
        cx, cy = self.point(x, 0.0, z)
        pw = max(0.14 * s, 1.0)
        grey = (95, 98, 104) if kind == "lamp" else (140, 142, 146)
        self.cv.poly([_rect(cx - pw / 2, cy, cx + pw / 2, cy - height * s)], grey, POLE)
        if kind == "lamp":
            inward = 1.0 if side == 0 else -1.0
            arm = _rect(cx, cy - height * s, cx + inward * 1.6 * s, cy - (height - 0.12) * s)
            self.cv.poly([arm], grey, POLE)
            return
        # A sign plate on top: round (red ring), triangular (red edge) or square (blue).
        top = cy - height * s
        r = 0.35 * s
        shape = int((z * 7.31) % 3)  # stable per pole without another random draw
        if shape == 0:
            self.cv.ellipse(cx, top - r * 0.8, r, r, (200, 30, 30), SIGN)
            self.cv.ellipse(cx, top - r * 0.8, r * 0.72, r * 0.72, (240, 240, 240), SIGN)
        elif shape == 1:
            tri = np.array([(cx - r, top), (cx + r, top), (cx, top - 1.7 * r)])
            self.cv.poly([tri], (210, 40, 35), SIGN)
            inner = np.array([(cx - r * 0.6, top - r * 0.2), (cx + r * 0.6, top - r * 0.2), (cx, top - 1.25 * r)])
            self.cv.poly([inner], (245, 245, 240), SIGN)
        else:
            self.cv.poly([_rect(cx - r, top, cx + r, top - 1.6 * r)], (30, 80, 170), SIGN)
            self.cv.poly([_rect(cx - r * 0.6, top - 0.5 * r, cx + r * 0.6, top - 1.1 * r)], (235, 235, 235), SIGN)

    def _person(self, side: int, person: tuple, z: float) -> None:
        _, xoff, speed, height, shirt, skin = person
        x = self._side_x(side, self.w.walk_w[side] * xoff + 0.3)
        s = self.w.f / (z - self.cam_z)
        cx, cy = self.point(x, 0.0, z)
        hp = height * s
        bw = 0.42 * s
        stride = 0.08 * s * math.sin(self.time * 6.0 + z) if speed else 0.0
        legs = (40, 45, 70)
        self.cv.poly([_rect(cx - bw / 2 + stride, cy, cx - 0.02 * s + stride, cy - 0.48 * hp),
                      _rect(cx + 0.02 * s - stride, cy, cx + bw / 2 - stride, cy - 0.48 * hp)], legs, PEDESTRIAN)
        self.cv.poly([_rect(cx - bw / 2, cy - 0.46 * hp, cx + bw / 2, cy - 0.82 * hp)], _SHIRT_COLOURS[shirt],
                     PEDESTRIAN)
        arm = 0.09 * s
        self.cv.poly([_rect(cx - bw / 2 - arm, cy - 0.5 * hp, cx - bw / 2, cy - 0.8 * hp),
                      _rect(cx + bw / 2, cy - 0.5 * hp, cx + bw / 2 + arm, cy - 0.8 * hp)],
                     _shade(_SHIRT_COLOURS[shirt], 0.85), PEDESTRIAN)
        self.cv.ellipse(cx, cy - 0.91 * hp, 0.11 * s, 0.13 * s, _SKIN_COLOURS[skin], PEDESTRIAN)

    def _car(self, car: _Car, z: float) -> None:
        w, cv = self.w, self.cv
        x = (car.lane + 0.5) * w.lane_w + car.x_jitter
        hw = car.width / 2
        # The side facing the camera (seen for cars in other lanes), then the rear.
        lateral = x - w.cam_x + w.curv * (z - self.cam_z) ** 2
        if abs(lateral) > hw:
            sx = x - hw if lateral > 0 else x + hw
            body_h = car.height * (0.55 if car.kind == "car" else 0.85)
            cv.poly([self.wall(sx, z, z + car.length, 0.25, body_h, 3)], _shade(car.colour, 0.8), CAR)
            if car.kind == "car":
                cv.poly([self.wall(sx * 0.97 + x * 0.03, z + 0.9, z + car.length - 1.0, body_h, car.height, 3)],
                        (40, 45, 55), CAR)
        cx, cy = self.point(x, 0.0, z)
        s = w.f / (z - self.cam_z)
        W, H = car.width * s, car.height * s
        wheel_w, wheel_h = 0.14 * W, 0.2 * H if car.kind == "car" else 0.13 * H
        cv.poly([_rect(cx - W * 0.46, cy, cx - W * 0.46 + wheel_w, cy - wheel_h),
                 _rect(cx + W * 0.46 - wheel_w, cy, cx + W * 0.46, cy - wheel_h)], (22, 22, 24), CAR)
        if car.kind == "car":
            body_top = cy - 0.6 * H
            cv.poly([_rect(cx - W / 2, cy - 0.1 * H, cx + W / 2, body_top)], car.colour, CAR)
            cabin = np.array([(cx - 0.45 * W, body_top), (cx + 0.45 * W, body_top), (cx + 0.36 * W, cy - H),
                              (cx - 0.36 * W, cy - H)])
            cv.poly([cabin], _shade(car.colour, 0.92), CAR)
            glass = np.array([(cx - 0.4 * W, body_top - 0.04 * H), (cx + 0.4 * W, body_top - 0.04 * H),
                              (cx + 0.33 * W, cy - 0.94 * H), (cx - 0.33 * W, cy - 0.94 * H)])
            cv.poly([glass], (45, 52, 62), CAR)
            light_y = body_top
        else:
            cv.poly([_rect(cx - W / 2, cy - 0.08 * H, cx + W / 2, cy - H)], car.colour, CAR)
            if car.kind == "van":
                cv.poly([_rect(cx - 0.4 * W, cy - 0.62 * H, cx + 0.4 * W, cy - 0.92 * H)], (45, 52, 62), CAR)
            else:  # truck: doors seam and a darker roof line
                cv.poly([_rect(cx - 0.01 * W, cy - 0.12 * H, cx + 0.01 * W, cy - 0.97 * H)], _shade(car.colour, 0.6),
                        CAR)
            light_y = cy - 0.3 * H
        cv.poly([_rect(cx - W / 2, cy - 0.1 * H, cx + W / 2, cy - 0.2 * H)], _shade(car.colour, 0.5), CAR)  # bumper
        lw_, lh = 0.16 * W, 0.08 * H
        cv.poly([_rect(cx - W / 2 + 0.02 * W, light_y + 0.02 * H, cx - W / 2 + 0.02 * W + lw_, light_y + 0.02 * H + lh),
                 _rect(cx + W / 2 - 0.02 * W - lw_, light_y + 0.02 * H, cx + W / 2 - 0.02 * W, light_y + 0.02 * H + lh)],
                (200, 25, 25), CAR)
        cv.poly([_rect(cx - 0.13 * W, cy - 0.22 * H, cx + 0.13 * W, cy - 0.32 * H)], (225, 225, 215), CAR)  # plate


def _finish(world: _World, img: np.ndarray, lab: np.ndarray, horizon: float, rng: np.random.Generator
            ) -> np.ndarray:
    """Flat-colour RGB render -> textured, hazy, lit, blurred, noisy BGR uint8 frame."""
    hw = lab.shape
    bank = _bank(hw)
    lut = np.zeros((256, 2), np.float32)
    lut[: len(_TEXTURE)] = _TEXTURE * world.texture
    tex = bank.window(bank.fine, rng) * cv2.LUT(lab, lut[:, 0].copy())  # (H, W) float32 grain
    tex += bank.window(bank.coarse, rng) * cv2.LUT(lab, lut[:, 1].copy())  # (H, W) blotches
    if world.blur == 0:
        tex += bank.window(bank.fine, rng) * world.noise  # sensor noise (no blur to come after it)
    # Light and aerial perspective as one per-row affine map: out = (img + tex) * a + b, where rows
    # near the horizon fade towards the horizon sky colour (haze) and everything gets gain x tint.
    # Channels are reversed here so the result comes out BGR without another pass.
    rows = np.arange(hw[0], dtype=np.float32)
    k = world.haze * np.exp(-np.abs(rows - horizon) / (0.12 * hw[0]))  # (H,)
    light = (world.gain * world.tint)[::-1]  # (3,) BGR
    a = ((1 - k)[:, None] * light)[:, None, :]  # (H, 1, 3)
    b = ((k[:, None] * np.array(world.sky_low[::-1], np.float32)) * light)[:, None, :]  # (H, 1, 3)
    out = img[:, :, ::-1].astype(np.float32)  # (H, W, 3) float32 BGR
    out += tex[:, :, None]
    out *= a
    out += b
    if world.blur > 0:
        out = cv2.GaussianBlur(out, (0, 0), world.blur)
        out += (bank.window(bank.fine, rng) * world.noise)[:, :, None]
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)  # (H, W, 3) uint8 BGR


# -- public API ---------------------------------------------------------------------------------
class SceneGenerator:
    """Random driving scenes with exact labels, deterministic per ``(seed, index)``.

    >>> gen = SceneGenerator((360, 480), seed=0)
    >>> image_bgr, label = gen.scene(0)   # (360, 480, 3) uint8, (360, 480) uint8
    >>> frame_bgr, label = gen.clip_frame(10)  # frame 10 of the seed's driving clip
    """

    classes = SYNTHETIC_CLASSES
    palette = SYNTHETIC_PALETTE
    ignore_index = SYNTHETIC_IGNORE

    def __init__(self, size: tuple[int, int] | str | int = (360, 480), seed: int = 0, fps: float = 25.0) -> None:
        self.size = parse_hw(size, "synthetic scene size")
        self.seed = int(seed)
        if fps <= 0:
            raise UsageError(f"synthetic clip fps {fps} must be positive")
        self.fps = float(fps)
        self._clip_world: _World | None = None

    def scene(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Scene ``index``: (image (H, W, 3) uint8 BGR, label (H, W) uint8 class ids)."""
        if index < 0:
            raise UsageError(f"synthetic scene index {index} must be >= 0")
        key = (self.seed, 0, int(index))
        rng = np.random.default_rng((*key, 1))
        cam_z = float(rng.uniform(0.0, 40.0))
        world = _World(np.random.default_rng(key), self.size, key, z_start=cam_z - rng.uniform(5.0, 20.0))
        img, lab = _Renderer(world, self.size, cam_z, time_s=0.0).render()
        return _finish(world, img, lab, world.horizon, rng), lab

    def clip_frame(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame ``t`` of this seed's clip: the camera drives forward at a constant speed."""
        if t < 0:
            raise UsageError(f"synthetic clip frame {t} must be >= 0")
        if self._clip_world is None:
            key = (self.seed, 1, 0)  # scenes use (seed, 0, index): the clip world is distinct from all
            self._clip_world = _World(np.random.default_rng(key), self.size, key)
        world = self._clip_world
        time_s = t / self.fps
        bounce = 0.004 * self.size[0] * math.sin(time_s * 9.0)  # pixels of suspension pitch
        renderer = _Renderer(world, self.size, world.speed * time_s, time_s, bounce)
        img, lab = renderer.render()
        rng = np.random.default_rng((self.seed, 1, 1, int(t)))
        return _finish(world, img, lab, renderer.horizon, rng), lab

    def frames(self, n: int | None = None, start: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Clip frames ``start, start+1, ...`` (endless when ``n`` is None)."""
        t = start
        while n is None or t < start + n:
            yield self.clip_frame(t)
            t += 1
