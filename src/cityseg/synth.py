"""Procedurally drawn street scenes: cityseg's built-in dataset, with the exact labels beside every pair.

``cityseg synth OUT`` writes pairs in the layout and encoding of the Kaggle Cityscapes pairs (512x256 JPEG,
photo left, colour mask right, quality 95, 4:2:0 chroma) and beside each one its exact official label ids as a
lossless PNG (``N_labelIds.png``), so the whole pipeline runs without a download and a labeller can be scored
against the truth.

A scene is a pinhole-camera view down a street. Everything is placed in metres in a world frame
(X right, Y up, Z forward; the camera sits at (0, camera height, 0)) and projected, so perspective, sizes and
occlusion (painter's order, far to near) agree. Each primitive is drawn twice with ``PIL.ImageDraw``: into the
label image with its official label id (hard edges, no antialiasing) and into the photo with a material colour,
lit by the scene's sun and hazed with distance. Then, vectorised in numpy: windows, fence bars, wall joints and
paving joints (each pixel's ray meets its surface's plane, patterns are box-filtered so they never flicker),
per-class texture (noise at three scales), cast shadows, exposure, colour temperature, blur and sensor noise.

Geometry is plain Python on tuples: a scene has a few hundred primitives, and numpy's per-call overhead on
3-vectors would cost more than the arithmetic. Scalar random numbers come from a pre-drawn pool for the same
reason; every number still comes from the one generator passed in, so a seed fixes a scene.

The masks use only ids whose colour maps back to them (``classes.color_to_label_id``), so decoding a mask by
its colours recovers the label-id PNG exactly; the ego-vehicle bonnet at the bottom is ``unlabeled`` (0).
"""

from __future__ import annotations

import functools
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw

from cityseg.classes import LABEL_BY_NAME, LABELS, NUM_LABEL_IDS, class_set
from cityseg.errors import CitysegError
from cityseg.files import atomic_path, ensure_writable_dir

# ---- label ids and colours ----------------------------------------------------------------------

UNLABELED = LABEL_BY_NAME["unlabeled"].id
ROAD = LABEL_BY_NAME["road"].id
SIDEWALK = LABEL_BY_NAME["sidewalk"].id
BUILDING = LABEL_BY_NAME["building"].id
WALL = LABEL_BY_NAME["wall"].id
FENCE = LABEL_BY_NAME["fence"].id
POLE = LABEL_BY_NAME["pole"].id
TRAFFIC_LIGHT = LABEL_BY_NAME["traffic light"].id
TRAFFIC_SIGN = LABEL_BY_NAME["traffic sign"].id
VEGETATION = LABEL_BY_NAME["vegetation"].id
TERRAIN = LABEL_BY_NAME["terrain"].id
SKY = LABEL_BY_NAME["sky"].id
PERSON = LABEL_BY_NAME["person"].id
RIDER = LABEL_BY_NAME["rider"].id
CAR = LABEL_BY_NAME["car"].id
TRUCK = LABEL_BY_NAME["truck"].id
BUS = LABEL_BY_NAME["bus"].id
BICYCLE = LABEL_BY_NAME["bicycle"].id

# fmt: off
DRAWN_IDS = (UNLABELED, ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, TRAFFIC_LIGHT, TRAFFIC_SIGN, VEGETATION,
             TERRAIN, SKY, PERSON, RIDER, CAR, TRUCK, BUS, BICYCLE)  # every id a scene can contain
# fmt: on

ID_COLORS = np.zeros((256, 3), dtype=np.uint8)  # official label id -> mask colour (unknown ids black)
for _label in LABELS:
    if _label.id >= 0:
        ID_COLORS[_label.id] = _label.color

IMAGE_SIZE = (256, 256)  # (H, W) of each half of a written pair, as in the Kaggle pairs
JPEG_QUALITY = 95
JPEG_SUBSAMPLING = 2  # PIL's code for 4:2:0 chroma, what the real pairs use


def colorize_label_ids(label_ids: np.ndarray) -> np.ndarray:
    """(H, W) official label ids -> (H, W, 3) uint8 mask in the official Cityscapes colours."""
    return ID_COLORS[label_ids]


# ---- materials and textures ---------------------------------------------------------------------

Colour = tuple[float, float, float]
Point = tuple[float, float, float]  # world, metres
Pixel = tuple[float, float]

# Material palettes (RGB before lighting); one is picked per object and jittered.
# fmt: off
ASPHALT = ((96, 96, 100), (110, 108, 106), (84, 86, 92), (122, 120, 118), (100, 96, 92))
PAVING = ((150, 146, 140), (168, 160, 150), (140, 128, 122), (176, 174, 170), (150, 120, 110))
PLASTER = ((196, 178, 150), (214, 208, 196), (150, 148, 144), (150, 84, 62), (206, 168, 104), (176, 190, 176),
           (190, 160, 160), (120, 116, 112), (222, 216, 200), (168, 150, 128), (110, 70, 58))
ROOFING = ((110, 60, 50), (70, 70, 76), (120, 80, 60))
GLASS = ((34, 40, 52), (52, 60, 70), (26, 28, 34), (70, 84, 100))
SHOP_SIGN = ((160, 40, 40), (40, 60, 120), (60, 60, 60), (200, 180, 150), (40, 90, 60))
FOLIAGE = ((58, 86, 34), (46, 74, 30), (72, 96, 40), (40, 64, 36), (84, 100, 46))
BARK = ((80, 70, 60), (100, 92, 80), (60, 54, 48))
GRASS = ((112, 132, 66), (100, 124, 58), (132, 138, 78), (118, 140, 80), (140, 130, 82))
WALL_STONE = ((170, 166, 156), (140, 132, 120), (150, 96, 80), (120, 120, 116))
FENCE_PAINT = ((60, 62, 58), (90, 70, 50), (40, 56, 46), (130, 130, 126))
CAR_PAINT = ((205, 205, 210), (165, 168, 172), (30, 32, 36), (72, 74, 80), (30, 50, 110), (140, 24, 24),
             (28, 64, 44), (200, 190, 160), (90, 110, 140), (220, 220, 216), (120, 40, 40), (48, 48, 60))
TRUCK_PAINT = ((222, 222, 218), (190, 192, 196), (200, 60, 40), (40, 80, 150), (60, 110, 70), (230, 190, 60),
               (150, 150, 150))
BUS_PAINT = ((232, 210, 60), (225, 225, 215), (190, 40, 40), (40, 90, 170), (70, 140, 90), (235, 235, 225))
CLOTHES = ((30, 32, 40), (50, 50, 56), (70, 60, 50), (150, 30, 40), (40, 60, 110), (200, 200, 195), (120, 110, 90),
           (60, 90, 60), (180, 150, 110), (90, 40, 90), (25, 25, 25), (140, 90, 60))
CYCLING_WEAR = ((200, 230, 40), (240, 120, 20), (220, 40, 30), (30, 90, 200), (20, 20, 22), (240, 240, 235))
TROUSERS = ((30, 34, 50), (40, 50, 80), (24, 24, 24), (70, 70, 72), (120, 100, 80), (60, 70, 90))
SKIN = ((226, 190, 160), (200, 152, 120), (160, 110, 80), (110, 74, 54))
HAIR = ((30, 24, 20), (70, 48, 30), (160, 130, 80), (120, 120, 120), (20, 20, 20))
HELMET = ((230, 230, 230), (200, 40, 40), (30, 30, 30), (40, 90, 200))
METAL = ((120, 124, 128), (88, 92, 96), (150, 152, 150), (56, 70, 60), (46, 46, 50))
BIKE_PAINT = ((30, 30, 30), (160, 30, 30), (30, 60, 140), (200, 200, 200), (40, 90, 60))
LIGHT_HOUSING = ((30, 32, 30), (44, 46, 40), (60, 60, 56))
TYRE, RIM, LAMP_OFF = (26, 26, 28), (120, 122, 126), (36, 36, 36)
TAIL_LAMP, HEAD_LAMP, PLATE = (150, 20, 20), (225, 225, 210), (225, 225, 220)
SIGNAL_LAMPS = ((255, 50, 40), (255, 180, 30), (60, 255, 140))  # red, amber, green
# fmt: on


def _texture_table(values: dict[int, float]) -> np.ndarray:
    table = np.zeros(256, dtype=np.float32)
    for label_id, amount in values.items():
        table[label_id] = amount
    return table


# Relative brightness variation per class at three scales: blotches (~1/10 image), grain (~3 px), pixel noise.
# They give each class a characteristic surface: smooth sky and paint, grainy asphalt, leafy vegetation.
# fmt: off
TEXTURE_BLOTCH = _texture_table({ROAD: 0.06, SIDEWALK: 0.06, BUILDING: 0.08, WALL: 0.08, FENCE: 0.04,
                                 VEGETATION: 0.22, TERRAIN: 0.14, SKY: 0.05, CAR: 0.03, TRUCK: 0.04, BUS: 0.03,
                                 UNLABELED: 0.04})
TEXTURE_GRAIN = _texture_table({ROAD: 0.04, SIDEWALK: 0.05, BUILDING: 0.03, WALL: 0.08, FENCE: 0.06,
                                VEGETATION: 0.42, TERRAIN: 0.2, PERSON: 0.05, RIDER: 0.05, POLE: 0.02})
TEXTURE_PIXEL = _texture_table({ROAD: 0.08, SIDEWALK: 0.06, BUILDING: 0.03, WALL: 0.06, FENCE: 0.05,
                                VEGETATION: 0.14, TERRAIN: 0.14, SKY: 0.008, PERSON: 0.04, RIDER: 0.04, CAR: 0.02,
                                TRUCK: 0.02, BUS: 0.02, POLE: 0.03, TRAFFIC_LIGHT: 0.03, TRAFFIC_SIGN: 0.02,
                                BICYCLE: 0.03})
# fmt: on
IS_GROUND = np.zeros(256, dtype=bool)  # surfaces that take cast shadows and per-row distance haze
IS_GROUND[[ROAD, SIDEWALK, TERRAIN]] = True


def _uniform_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Zero-mean, unit-variance uniform noise (float32), from raw bytes: far cheaper than normal samples."""
    raw = np.frombuffer(rng.bytes(math.prod(shape)), dtype=np.uint8).reshape(shape)
    return (raw.astype(np.float32) - np.float32(127.5)) * np.float32(1 / 73.9)


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """(H, W) float32 zero-mean noise with features about ``cell`` pixels across (bilinear upsampling)."""
    gh, gw = max(2, math.ceil(height / cell) + 1), max(2, math.ceil(width / cell) + 1)
    grid = rng.standard_normal((gh, gw), dtype=np.float32)
    return np.asarray(Image.fromarray(grid, mode="F").resize((width, height), Image.Resampling.BILINEAR)) * 2.0


def _coverage(pos: np.ndarray, period, duty, footprint) -> np.ndarray:
    """Share of a pixel covered by the "on" part of a periodic pattern (box-filtered, so far patterns don't alias).

    The pattern is on where ``pos mod period < duty * period``; a pixel spans ``footprint`` along ``pos``.
    """

    def cumulative(x):
        q = x / period
        whole = np.floor(q)
        return (whole * duty + np.minimum(q - whole, duty)) * period

    footprint = np.maximum(footprint, 1e-4)
    return (cumulative(pos + footprint / 2) - cumulative(pos - footprint / 2)) / footprint


def _soften(image: np.ndarray, weight: float) -> np.ndarray:
    """(H, W, C) separable 3-tap blur [w, 1 - 2w, w] (edges repeat): a cheap, slight lens softness."""
    out = image * np.float32(1 - 2 * weight)
    out[1:] += image[:-1] * np.float32(weight)
    out[:-1] += image[1:] * np.float32(weight)
    out[0] += image[0] * np.float32(weight)
    out[-1] += image[-1] * np.float32(weight)
    result = out * np.float32(1 - 2 * weight)
    result[:, 1:] += out[:, :-1] * np.float32(weight)
    result[:, :-1] += out[:, 1:] * np.float32(weight)
    result[:, 0] += out[:, 0] * np.float32(weight)
    result[:, -1] += out[:, -1] * np.float32(weight)
    return result


@functools.lru_cache(maxsize=8)
def _radius2(height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    return ((xx - width / 2) / width) ** 2 + ((yy - height / 2) / height) ** 2  # (H, W)


# ---- small helpers: colours, vectors, random numbers ----------------------------------------------


def _rgb(colour: Sequence[float]) -> tuple[int, int, int]:
    r, g, b = (min(255, max(0, int(c + 0.5))) for c in colour)
    return (r, g, b)


def _scale(colour: Sequence[float], k: float) -> Colour:
    return (colour[0] * k, colour[1] * k, colour[2] * k)


def _mix(a: Sequence[float], b: Sequence[float], t: float) -> Colour:
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t)


def _along(origin: Sequence[float], k: float, direction: Sequence[float]) -> Point:
    """origin + k * direction."""
    return (origin[0] + k * direction[0], origin[1] + k * direction[1], origin[2] + k * direction[2])


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


UP: Point = (0.0, 1.0, 0.0)
ALONG_STREET: Point = (0.0, 0.0, 1.0)
ACROSS_STREET: Point = (1.0, 0.0, 0.0)


class _Dice:
    """Scalar random numbers from a pool drawn in blocks from the scene's generator (cheap and reproducible)."""

    def __init__(self, rng: np.random.Generator):
        self._rng = rng
        self._pool: list[float] = []
        self._next = 0

    def random(self) -> float:
        if self._next == len(self._pool):
            self._pool, self._next = self._rng.random(512).tolist(), 0
        self._next += 1
        return self._pool[self._next - 1]

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * self.random()

    def integers(self, low: int, high: int) -> int:
        """An int in [low, high)."""
        return min(low + int((high - low) * self.random()), high - 1)

    def chance(self, p: float) -> bool:
        return self.random() < p

    def choice(self, items: Sequence, weights: Sequence[float] | None = None):
        if weights is None:
            return items[self.integers(0, len(items))]
        x, total = self.random() * sum(weights), 0.0
        for item, weight in zip(items, weights, strict=True):
            total += weight
            if x < total:
                return item
        return items[-1]

    def poisson(self, mean: float) -> int:
        """Knuth's method; fine for the small means used here."""
        limit, k, product = math.exp(-mean), 0, self.random()
        while product > limit:
            k += 1
            product *= self.random()
        return k


# ---- camera, faces, canvas ---------------------------------------------------------------------

NEAR = 0.5  # metres; points closer than this are pushed onto it before projection (all such geometry is off-screen)


@dataclass(frozen=True)
class _Camera:
    fx: float  # horizontal focal length in pixels
    fy: float  # vertical focal length in pixels (about 2 fx: the pairs squeeze 2048x1024 photos into 256x256)
    cx: float  # column of the vanishing point
    horizon: float  # row of the horizon
    height: float  # metres above the road

    def point(self, p: Sequence[float]) -> Pixel:
        z = max(p[2], NEAR)
        return (self.cx + self.fx * p[0] / z, self.horizon - self.fy * (p[1] - self.height) / z)

    def points(self, ps: Sequence[Sequence[float]]) -> list[Pixel]:
        return [self.point(p) for p in ps]


class _Face(NamedTuple):
    """A rectangle in space: ``origin + a*u + b*v`` for a in [0, lu], b in [0, lv]."""

    name: str  # back/front (across the box's forward axis), left/right, top
    origin: Point
    u: Point  # unit vector along the face
    v: Point  # unit vector up the face (sideways for the top)
    lu: float
    lv: float
    normal: Point  # outward

    def at(self, a: float, b: float) -> Point:
        o, u, v = self.origin, self.u, self.v
        return (o[0] + a * u[0] + b * v[0], o[1] + a * u[1] + b * v[1], o[2] + a * u[2] + b * v[2])

    @property
    def depth(self) -> float:
        return self.at(self.lu / 2, self.lv / 2)[2]


class _Canvas:
    """The label image, the photo, a shadow layer and a surface layer, drawn with the same polygons."""

    def __init__(self, background: np.ndarray):  # background: (H, W, 3) uint8 sky
        height, width = background.shape[:2]
        self.label = Image.new("L", (width, height), SKY)
        self.photo = Image.fromarray(background)
        self.shadow = Image.new("L", (width, height), 255)  # 255 = fully lit; applied to ground pixels only
        self.surface = Image.new("L", (width, height), 0)  # which patterned surface (windows, bars...) a pixel shows
        self._label = ImageDraw.Draw(self.label)
        self._photo = ImageDraw.Draw(self.photo)
        self._shadow = ImageDraw.Draw(self.shadow)
        self._surface = ImageDraw.Draw(self.surface)

    def polygon(self, xy: list[Pixel], label: int | None, colour: Sequence[float], surface: int | None = None) -> None:
        """Fill a polygon; ``label=None`` paints the photo only (a detail on a surface already labelled).

        ``surface`` (an index into the scene's surface table, 0 for none) marks the pixels for the pattern pass.
        """
        if label is not None:
            self._label.polygon(xy, fill=label)
        if surface is not None:
            self._surface.polygon(xy, fill=surface)
        self._photo.polygon(xy, fill=_rgb(colour))

    def ellipse(self, centre: Pixel, rx: float, ry: float, label: int | None, colour: Sequence[float]) -> None:
        box = (centre[0] - rx, centre[1] - ry, centre[0] + rx, centre[1] + ry)
        if label is not None:
            self._label.ellipse(box, fill=label)
        self._photo.ellipse(box, fill=_rgb(colour))

    def line(self, xy: list[Pixel], width: float, label: int | None, colour: Sequence[float]) -> None:
        width = max(1, round(width))
        if label is not None:
            self._label.line(xy, fill=label, width=width, joint="curve")
        self._photo.line(xy, fill=_rgb(colour), width=width, joint="curve")

    def cast_shadow(self, xy: list[Pixel], darkness: float) -> None:
        """Darken the ground under ``xy`` by ``darkness`` (0 none .. 1 black); objects drawn later stay lit."""
        self._shadow.polygon(xy, fill=round(255 * (1 - darkness)))


@dataclass
class _Side:
    sign: int  # -1 left of the camera, +1 right
    curb: float  # distance from the camera to the kerb, metres
    verge: float  # grass strip between kerb and sidewalk
    walk: float  # sidewalk width
    kind: str  # "buildings" or "park"

    @property
    def walk_inner(self) -> float:
        return self.curb + self.verge

    @property
    def edge(self) -> float:  # outer edge of the sidewalk, where frontages start
        return self.curb + self.verge + self.walk


# ---- the scene ----------------------------------------------------------------------------------


class _Street:
    """One random street scene: draws itself into a :class:`_Canvas` and returns (photo, label ids)."""

    def __init__(self, rng: np.random.Generator, height: int, width: int):
        self.rng = rng  # for noise images
        self.dice = _Dice(rng)  # for everything else
        self.h, self.w = height, width
        self.px = width / 256  # minimum sizes below are in pixels at 256 wide
        d = self.dice
        fx = width * d.uniform(0.95, 1.25)
        self.cam = _Camera(
            fx=fx,
            fy=fx * 2 * height / width,
            cx=width * (0.5 + d.uniform(-0.1, 0.1)),
            horizon=height * d.uniform(0.36, 0.47),
            height=d.uniform(1.15, 1.5),
        )
        self._objects: list[tuple[float, int, Callable[[], None]]] = []
        self.surfaces: list[dict[str, float]] = []  # patterned faces; surface id i is entry i - 1
        self._lighting()
        self._layout()

    # ---- random scene parameters ----

    def pick(self, palette: Sequence[Sequence[float]], jitter: float = 0.08) -> Colour:
        d = self.dice
        base = d.choice(palette)
        k = d.uniform(1 - jitter, 1 + jitter)
        return (
            base[0] * k * d.uniform(1 - jitter, 1 + jitter),
            base[1] * k * d.uniform(1 - jitter, 1 + jitter),
            base[2] * k * d.uniform(1 - jitter, 1 + jitter),
        )

    def _lighting(self) -> None:
        d = self.dice
        self.overcast = d.chance(0.45)
        azimuth, elevation = d.uniform(0, 2 * math.pi), d.uniform(0.35, 1.0)
        self.sun = (
            math.cos(azimuth) * math.cos(elevation),
            math.sin(elevation),
            math.sin(azimuth) * math.cos(elevation),
        )
        self.ambient = d.uniform(0.72, 0.85) if self.overcast else d.uniform(0.45, 0.62)
        if self.overcast:
            top, low = _scale((175, 182, 192), d.uniform(0.85, 1.1)), (218, 222, 226)
        else:
            k = d.uniform(0.8, 1.15)
            top = (70 * k + d.uniform(-15, 15), 120 * k + d.uniform(-15, 15), 200 * k + d.uniform(-15, 15))
            low = _scale((188, 208, 232), d.uniform(0.9, 1.05))
        self.sky_top, self.sky_low = top, tuple(min(c, 250.0) for c in low)
        self.haze_colour = _scale(self.sky_low, 0.9)
        self.visibility = d.uniform(180, 700)  # metres at which haze covers 63 %

    def _layout(self) -> None:
        d = self.dice
        lanes = d.integers(2, 5)
        lane_w = d.uniform(2.9, 3.6)
        one_way = d.chance(0.3)
        oncoming = 0 if one_way else lanes // 2
        cam_lane = oncoming + d.integers(0, lanes - oncoming)
        shift = d.uniform(-0.4, 0.4)
        left_edges = [(i - cam_lane - 0.5) * lane_w + shift for i in range(lanes)]
        self.lanes = [(left + lane_w / 2, -1 if i < oncoming else 1) for i, left in enumerate(left_edges)]
        self.lane_lines = [(left_edges[i], i == oncoming) for i in range(1, lanes)]  # (x, separates directions)
        road_left, road_right = -left_edges[0], left_edges[-1] + lane_w  # both positive distances
        self.parking = {-1: d.chance(0.45), 1: d.chance(0.55)}
        road_left += 2.3 * self.parking[-1]
        road_right += 2.3 * self.parking[1]
        self.road_edges = (road_left, road_right)
        self.sides = {}
        for sign, curb in ((-1, road_left), (1, road_right)):
            verge = d.uniform(1.0, 3.0) if d.chance(0.25) else 0.0
            kind = "buildings" if d.chance(0.72) else "park"
            self.sides[sign] = _Side(sign, curb, verge, d.uniform(2.5, 6.0), kind)
        self.crossing = None  # (near z, far z) of a cross street
        if d.chance(0.4):
            z = d.uniform(18, 45)
            self.crossing = (z, z + d.uniform(10, 16))
        self.z_end = d.uniform(110, 260)
        self.asphalt = self.pick(ASPHALT, 0.06)
        self.paving = self.pick(PAVING, 0.06)
        self.grass = self.pick(GRASS, 0.08)
        self.slab = (d.uniform(0.3, 1.5), d.uniform(0.3, 1.5))  # paving slab length and width, metres

    # ---- geometry helpers ----

    def haze(self, colour: Sequence[float], z: float) -> Colour:
        return _mix(colour, self.haze_colour, 1 - math.exp(-max(z, 0.0) / self.visibility))

    def lighting(self, normal: Sequence[float]) -> float:
        return self.ambient + (1 - self.ambient) * max(0.0, _dot(normal, self.sun)) * 1.25

    def shade(self, colour: Sequence[float], normal: Sequence[float], z: float) -> Colour:
        """Light a surface colour by its normal and blend it toward the haze by its distance ``z``."""
        return self.haze(_scale(colour, self.lighting(normal)), z)

    def ground_quad(self, x0: float, x1: float, z0: float, z1: float) -> list[Pixel]:
        return self.cam.points(((x0, 0.0, z0), (x1, 0.0, z0), (x1, 0.0, z1), (x0, 0.0, z1)))

    def box_faces(self, origin: Point, forward: Point, right: Point, la: float, lb: float, lc: float) -> list[_Face]:
        """The faces of a box the camera can see, far to near.

        The box spans ``origin + a*forward + b*right + c*up`` for a in [0, la], b in [0, lb], c in [0, lc].
        """
        back, left = (-forward[0], -forward[1], -forward[2]), (-right[0], -right[1], -right[2])
        candidates = (
            _Face("back", origin, right, UP, lb, lc, back),
            _Face("front", _along(origin, la, forward), right, UP, lb, lc, forward),
            _Face("left", origin, forward, UP, la, lc, left),
            _Face("right", _along(origin, lb, right), forward, UP, la, lc, right),
            _Face("top", _along(origin, lc, UP), forward, right, la, lb, UP),
        )
        cam_y = self.cam.height
        visible = []
        for face in candidates:
            cx, cy, cz = face.at(face.lu / 2, face.lv / 2)
            to_cam = (-cx, cam_y - cy, -cz)
            if _dot(face.normal, to_cam) > 1e-6 and cz > NEAR:
                visible.append((-_dot(to_cam, to_cam), face))
        visible.sort(key=lambda item: item[0])
        return [face for _, face in visible]

    def quad(self, face: _Face, u0: float, u1: float, v0: float, v1: float) -> list[Pixel]:
        """A rectangle in a face's (u, v) metres, in pixels."""
        return self.cam.points((face.at(u0, v0), face.at(u1, v0), face.at(u1, v1), face.at(u0, v1)))

    def outline(self, face: _Face) -> list[Pixel]:
        return self.quad(face, 0.0, face.lu, 0.0, face.lv)

    def circle(self, face: _Face, u: float, v: float, radius: float, points: int = 12) -> list[Pixel]:
        step = 2 * math.pi / points
        return self.cam.points(
            [face.at(u + radius * math.cos(i * step), v + radius * math.sin(i * step)) for i in range(points)]
        )

    def segment(self, p0: Pixel, p1: Pixel, width_m: float, z: float, min_px: float) -> list[Pixel]:
        """A limb or bar between pixels p0 and p1, ``width_m`` metres wide at depth z (at least ``min_px``)."""
        sx, sy = self.cam.fx / z, self.cam.fy / z
        dx, dy = (p1[0] - p0[0]) / sx, (p1[1] - p0[1]) / sy  # direction in metres: pixels are not square
        norm = math.hypot(dx, dy)
        if norm < 1e-9:
            nx, ny = 1.0, 0.0
        else:
            nx, ny = -dy / norm * sx, dx / norm * sy  # perpendicular, back in pixels per metre
        half = math.hypot(nx, ny) * width_m / 2
        k = max(half, min_px / 2) / (math.hypot(nx, ny) or 1.0)
        ox, oy = nx * k, ny * k
        return [(p0[0] + ox, p0[1] + oy), (p1[0] + ox, p1[1] + oy), (p1[0] - ox, p1[1] - oy), (p0[0] - ox, p0[1] - oy)]

    def rectangle(self, cx: float, cy: float, half_w: float, half_h: float) -> list[Pixel]:
        return [
            (cx - half_w, cy - half_h),
            (cx + half_w, cy - half_h),
            (cx + half_w, cy + half_h),
            (cx - half_w, cy + half_h),
        ]

    def add_object(self, z: float, draw: Callable[[], None]) -> None:
        """Queue something standing in the street, to be drawn in order of depth ``z`` (far first)."""
        self._objects.append((z, len(self._objects), draw))

    def add_surface(self, face: _Face, label: int, **pattern) -> int:
        """Register a vertical, axis-aligned face for the pattern pass; returns its id for the surface layer.

        ``pattern`` holds the pattern's numbers (metres) and colours (3-tuples, lit and hazed here like the face).
        """
        if len(self.surfaces) >= 255:
            return 0  # more patterned faces than the layer can number: this one stays plain
        on_x = abs(face.normal[0]) > 0.5  # the face lies in a plane X = const (else Z = const)
        entry = {
            "label": label,
            "axis": 0.0 if on_x else 1.0,
            "plane": face.origin[0] if on_x else face.origin[2],
            "u0": face.origin[2] if on_x else face.origin[0],
            "udir": face.u[2] if on_x else face.u[0],
            "v0": face.origin[1],
            "lu": face.lu,
            "lv": face.lv,
        }
        lit = self.lighting(face.normal)
        for key, value in pattern.items():
            if isinstance(value, tuple):
                for channel, c in zip("rgb", self.haze(_scale(value, lit), face.depth), strict=True):
                    entry[f"{key}_{channel}"] = c / 255
            else:
                entry[key] = float(value)
        self.surfaces.append(entry)
        return len(self.surfaces)

    # ---- the scene, back to front ----

    def render(self) -> tuple[np.ndarray, np.ndarray]:
        self.canvas = _Canvas(self._sky())
        self._ground()
        self._far_end()
        for side in self.sides.values():
            if side.kind == "buildings":
                self._buildings(side)
            else:
                self._park(side)
        self._street_furniture()
        self._traffic()
        self._people()
        for _, _, draw in sorted(self._objects, key=lambda item: (-item[0], item[1])):
            draw()
        self._bonnet()
        return self._finish()

    def _sky(self) -> np.ndarray:
        rows = np.clip(np.arange(self.h, dtype=np.float32) / max(self.cam.horizon, 1.0), 0, 1) ** 0.8
        top, low = np.asarray(self.sky_top, np.float32), np.asarray(self.sky_low, np.float32)
        gradient = top[None, :] * (1 - rows[:, None]) + low[None, :] * rows[:, None]  # (H, 3)
        return np.broadcast_to(np.clip(gradient, 0, 255).astype(np.uint8)[:, None, :], (self.h, self.w, 3)).copy()

    def _ground(self) -> None:
        d, cv, h, w = self.dice, self.canvas, self.h, self.w
        horizon = self.cam.horizon
        cv.polygon([(0, horizon), (w, horizon), (w, h), (0, h)], TERRAIN, self.haze(self.grass, 60))
        far = 2000.0
        left, right = self.road_edges
        for side in self.sides.values():
            s = side.sign
            cv.polygon(self.ground_quad(s * side.walk_inner, s * side.edge, NEAR, far), SIDEWALK, self.paving)
            kerb = self.ground_quad(s * side.curb, s * (side.curb + 0.25), NEAR, far)  # light kerb stones
            cv.polygon(
                kerb,
                SIDEWALK if side.verge == 0 else TERRAIN,
                _scale(self.paving, 1.15) if side.verge == 0 else self.grass,
            )
        cv.polygon(self.ground_quad(-left, right, NEAR, far), ROAD, self.asphalt)
        if self.crossing:
            z0, z1 = self.crossing
            cv.polygon(self.ground_quad(-400, 400, z0, z1), ROAD, self.asphalt)
            x = -left + 0.5
            paint = _scale(self.asphalt, 1.9)
            while x < right - 0.5:  # zebra crossing
                cv.polygon(self.ground_quad(x, x + 0.55, z0 - 4.0, z0 - 1.0), None, paint)
                x += 1.1
        self._lane_marks()
        for _ in range(d.integers(0, 4)):  # asphalt repairs break up the surface
            x, z = d.uniform(-left, right), d.uniform(4, 40)
            quad = self.ground_quad(x, x + d.uniform(0.6, 2.5), z, z + d.uniform(0.6, 6))
            cv.polygon(quad, None, _scale(self.asphalt, d.uniform(0.75, 1.2)))

    def _lane_marks(self) -> None:
        d, cv = self.dice, self.canvas
        white = _scale((215, 215, 210), d.uniform(0.8, 1.05))
        period, dash = d.uniform(9, 13), d.uniform(2.5, 4.5)
        gap = (self.crossing[0] - 4, self.crossing[1]) if self.crossing else (1e9, 1e9)  # no marks in a junction
        for x, centre in self.lane_lines:
            if centre and d.chance(0.5):  # a solid centre line
                spans = [(NEAR, min(gap[0], 120.0)), (gap[1], 120.0)]
            else:
                spans, z = [], d.uniform(0, period)
                while z < 90:
                    if z + dash < gap[0] or z > gap[1]:
                        spans.append((z, z + dash))
                    z += period
            for z0, z1 in spans:
                if z1 > z0:
                    cv.polygon(self.ground_quad(x - 0.075, x + 0.075, z0, z1), None, white)
        left, right = self.road_edges
        if d.chance(0.5):  # edge lines along the parking lane or kerb
            for x in (-left + 0.3 + 2.3 * self.parking[-1], right - 0.3 - 2.3 * self.parking[1]):
                cv.polygon(self.ground_quad(x - 0.06, x + 0.06, NEAR, 120.0), None, _scale(white, 0.9))

    def _far_end(self) -> None:
        """A row of buildings or trees closing the street far away, or open sky."""
        d = self.dice
        if d.chance(0.25):
            return
        z, x = self.z_end, -d.uniform(150, 250)
        while x < 250:
            width = d.uniform(15, 45)
            if d.chance(0.65):
                self._building((x, 0.0, z), 20, width, d.uniform(8, 28), along_street=False)
            else:
                self._tree(x + width / 2, z + 5, d.uniform(5, 12), d.uniform(4, 9), now=True)
            x += width

    # ---- frontages ----

    def _intervals(self, start: float, end: float) -> list[tuple[float, float]]:
        """Stretches of street frontage, broken by the cross street."""
        if not self.crossing:
            return [(start, end)]
        return [(start, self.crossing[0]), (self.crossing[1], end)]

    def _buildings(self, side: _Side) -> None:
        d, s = self.dice, side.sign
        blocks = []
        for start, end in self._intervals(d.uniform(-10, 0), self.z_end):
            z = start
            while z < end - 2:
                length = min(d.uniform(8, 30), end - z)
                if d.chance(0.1) and z > 10:  # a gap between buildings shows a backyard
                    self._backyard(side, z, length)
                else:
                    blocks.append((z, length))
                z += length
        garden_prob = d.uniform(0, 0.5)
        for z, length in reversed(blocks):  # far to near
            garden = d.chance(garden_prob)
            setback = d.uniform(2.5, 6) if garden else d.uniform(0, 0.6)
            height, depth = d.uniform(6, 26), d.uniform(15, 30)
            x_face = s * (side.edge + setback)
            if not self.overcast and self.sun[0] * s < 0:  # the sun is behind this row: it shades the street
                reach = min(height * math.cos(math.asin(self.sun[1])) / self.sun[1] * abs(self.sun[0]), 40)
                shadow = self.ground_quad(x_face, x_face - s * (reach + setback), z, z + length)
                self.canvas.cast_shadow(shadow, 0.45)
            if d.chance(0.35):
                self._roof(x_face, s, z, length, height)
            self._building((x_face if s > 0 else x_face - depth, 0.0, z), length, depth, height, shops=setback < 1)
            if garden:
                self._boundary(side, z, z + length, d.choice(("wall", "fence", "hedge"), (0.4, 0.35, 0.25)))

    def _building(
        self, origin: Point, along: float, across: float, height: float, along_street: bool = True, shops: bool = False
    ) -> None:
        """A box of a building with windows: ``along`` metres along the street and ``across`` (or facing us)."""
        colour = self.pick(PLASTER, 0.07)
        la, lb = (along, across) if along_street else (across, along)
        windows = self._window_style(colour, shops)
        for face in self.box_faces(origin, ALONG_STREET, ACROSS_STREET, la, lb, height):
            surface = 0 if face.name == "top" else self.add_surface(face, BUILDING, **windows)
            self.canvas.polygon(self.outline(face), BUILDING, self.shade(colour, face.normal, face.depth), surface)

    def _window_style(self, wall: Colour, shops: bool) -> dict:
        """The window grid of one building, in metres on its faces (see ``_patterns``)."""
        d = self.dice
        floor_h, spacing, ground = d.uniform(2.9, 3.6), d.uniform(2.2, 4.0), d.uniform(3.2, 4.5)
        framed = d.chance(0.5)
        return {
            "kind": 1,
            "spacing": spacing,
            "win_w": spacing * d.uniform(0.35, 0.62),
            "floor_h": floor_h,
            "win_h": floor_h * d.uniform(0.4, 0.62),
            "u_start": d.uniform(0.3, 1.2),
            "v_first": ground + 0.8,
            "glass": _mix(_scale(self.pick(GLASS, 0.15), 0.75), self.sky_low, 0.12),
            "frame": tuple(min(c * 1.25 + 25, 250.0) for c in wall) if framed else wall,
            "shop": float(shops and d.chance(0.7)),
            "ground": ground,
            "shop_w": d.uniform(2, 4),
            "shop_gap": d.uniform(0.6, 2),
            "band": self.pick(SHOP_SIGN),
            "shop_glass": _scale(self.pick(GLASS, 0.2), 0.8),
        }

    def _roof(self, x_face: float, s: int, z: float, length: float, height: float) -> None:
        rise, inset = self.dice.uniform(1.5, 4), self.dice.uniform(2, 5)
        pts = (
            (x_face, height, z),
            (x_face, height, z + length),
            (x_face + s * inset, height + rise, z + length),
            (x_face + s * inset, height + rise, z),
        )
        colour = self.haze(self.pick(ROOFING), z + length / 2)
        self.canvas.polygon(self.cam.points(pts), BUILDING, colour, surface=0)

    def _backyard(self, side: _Side, z: float, length: float) -> None:
        d, s = self.dice, side.sign
        for _ in range(d.integers(0, 3)):
            self._tree(
                s * (side.edge + d.uniform(4, 15)),
                z + d.uniform(0, length),
                d.uniform(4, 10),
                d.uniform(2.5, 5),
                now=True,
            )
        if d.chance(0.5):
            self._boundary(side, z, z + length, d.choice(("wall", "fence", "hedge")), now=True)

    def _park(self, side: _Side) -> None:
        d, s = self.dice, side.sign
        if d.chance(0.6):  # buildings beyond the park
            x, z = s * (side.edge + d.uniform(30, 70)), 0.0
            while z < self.z_end:
                length = d.uniform(15, 40)
                self._building((x if s > 0 else x - 15, 0.0, z), length, 15, d.uniform(8, 25))
                z += length + d.uniform(0, 20)
        trees = [
            (s * (side.edge + d.uniform(1.5, 30)), d.uniform(-5, self.z_end * 0.6)) for _ in range(d.integers(5, 14))
        ]
        for x, z in sorted(trees, key=lambda t: -t[1]):
            self._tree(x, z, d.uniform(4, 9), d.uniform(2, 4.5), now=True)
        kind = d.choice(("fence", "wall", "hedge", "none"), (0.35, 0.25, 0.25, 0.15))
        if kind != "none":
            for start, end in self._intervals(-5, self.z_end * d.uniform(0.3, 1)):
                self._boundary(side, start, end, kind, now=True)

    def _boundary(self, side: _Side, z0: float, z1: float, kind: str, now: bool = False) -> None:
        """A wall, fence or hedge along the outer edge of the sidewalk."""
        d, s = self.dice, side.sign
        z0 = max(z0, NEAR)
        if z1 <= z0:
            return
        thick = d.uniform(0.6, 1.2) if kind == "hedge" else 0.3
        height = {"wall": d.uniform(0.6, 2.2), "fence": d.uniform(1.0, 2.0), "hedge": d.uniform(0.8, 1.8)}[kind]
        origin = (s * side.edge if s > 0 else s * side.edge - thick, 0.0, z0)
        label = {"wall": WALL, "fence": FENCE, "hedge": VEGETATION}[kind]
        colour = self.pick({"wall": WALL_STONE, "fence": FENCE_PAINT, "hedge": FOLIAGE}[kind])
        pattern = {
            "fence": {"kind": 2, "step": d.uniform(0.12, 0.3), "bar": _scale(colour, 1.3)},
            "wall": {
                "kind": 3,
                "course": d.uniform(0.2, 0.5),
                "block": d.uniform(0.4, 1.2),
                "cap": _scale(colour, 1.2),
            },
        }.get(kind)

        def draw() -> None:
            for face in self.box_faces(origin, ALONG_STREET, ACROSS_STREET, z1 - z0, thick, height):
                base = _scale(colour, 0.5) if kind == "fence" and face.name != "top" else colour
                surface = None
                if pattern is not None:
                    surface = 0 if face.name == "top" else self.add_surface(face, label, **pattern)
                self.canvas.polygon(self.outline(face), label, self.shade(base, face.normal, face.depth), surface)

        if now:
            draw()
        else:
            self.add_object(z0, draw)

    # ---- vegetation, poles, signs, lights ----

    def _tree(self, x: float, z: float, crown_y: float, radius: float, now: bool = False) -> None:
        d = self.dice
        foliage, bark = self.pick(FOLIAGE, 0.12), self.pick(BARK)
        blobs = sorted(
            (
                (
                    d.uniform(-0.6, 0.6) * radius,
                    d.uniform(-0.5, 0.6) * radius,
                    d.uniform(-0.3, 0.3) * radius,
                    d.uniform(0.45, 0.75) * radius,
                    d.uniform(0.75, 1.2),
                )
                for _ in range(d.integers(4, 8))
            ),
            key=lambda b: b[1],
        )  # lower (shaded) blobs first, the lit top last

        def draw() -> None:
            cam, cv = self.cam, self.canvas
            zz = max(z, NEAR + 0.5)
            base, top = cam.point((x, 0.0, zz)), cam.point((x, crown_y, zz))
            cv.polygon(self.segment(base, top, 0.35, zz, 2 * self.px), VEGETATION, self.haze(bark, zz))
            for dx, dy, dz, r, tone in blobs:
                cz = max(zz + dz, NEAR + 0.3)
                colour = self.haze(_scale(foliage, tone * (0.8 + 0.35 * (dy / radius + 0.5))), cz)
                cv.ellipse(cam.point((x + dx, crown_y + dy, cz)), cam.fx * r / cz, cam.fy * r / cz, VEGETATION, colour)
            if not self.overcast:
                shadow = self.ground_quad(x - radius * 0.8, x + radius * 0.8, zz - radius * 0.5, zz + radius * 0.5)
                cv.cast_shadow(shadow, 0.35)

        if now:
            draw()
        else:
            self.add_object(z - radius * 0.3, draw)

    def _pole(self, x: float, z: float, top: float, colour: Colour, width_m: float = 0.18) -> None:
        """A vertical pole, at least 3 px wide so it survives downscaling, with a lit stripe to look round."""
        cam = self.cam
        (bx, by), (_, ty) = cam.point((x, 0.0, z)), cam.point((x, top, z))
        half = max(cam.fx * width_m / z, 3.0 * self.px) / 2
        lit = self.haze(colour, z)
        mid_y = (ty + by) / 2
        self.canvas.polygon(self.rectangle(bx, mid_y, half, (by - ty) / 2), POLE, _scale(lit, 0.8))
        self.canvas.polygon(self.rectangle(bx, mid_y, half / 3, (by - ty) / 2), None, _scale(lit, 1.2))

    def _street_furniture(self) -> None:
        d = self.dice
        for side in self.sides.values():
            s = side.sign
            if d.chance(0.7):  # street lights
                spacing = d.uniform(18, 35)
                z = d.uniform(3, spacing)
                while z < min(self.z_end, 150):
                    self.add_object(z, self._street_light_drawer(s * (side.curb + 0.5), z, s))
                    z += spacing
            if d.chance(0.4):  # street trees
                spacing = d.uniform(8, 15)
                inset = min(1.2, side.walk / 2) if side.verge == 0 else -side.verge / 2
                z = d.uniform(2, spacing)
                while z < min(self.z_end, 120):
                    self._tree(s * (side.walk_inner + inset), z, d.uniform(4.5, 7.5), d.uniform(1.6, 2.8))
                    z += spacing
            for _ in range(d.poisson(0.4)):  # parked bicycles on the sidewalk
                z = d.uniform(5, 30)
                heading = ACROSS_STREET if d.chance(0.6) else ALONG_STREET
                x = s * (side.walk_inner + d.uniform(0.6, max(0.7, side.walk - 0.6)))
                self.add_object(z, self._bicycle_drawer((x, 0.0, z), heading, None))
        for _ in range(d.integers(1, 5)):  # signs on their own posts
            side = self.sides[1 if d.chance(0.65) else -1]
            z = d.uniform(5, 45)
            self.add_object(z, self._sign_post_drawer(side.sign * (side.curb + d.uniform(0.4, 1.0)), z))
        lights_at = []
        if self.crossing:
            lights_at = [(side, self.crossing[0] - d.uniform(0, 3)) for side in self.sides.values()]
        elif d.chance(0.45):
            lights_at = [(self.sides[1], d.uniform(8, 40))]
            if d.chance(0.5):
                lights_at.append((self.sides[-1], d.uniform(8, 40)))
        for side, z in lights_at:
            self.add_object(z, self._traffic_light_post_drawer(side.sign * (side.curb + 0.6), z, side.sign))

    def _street_light_drawer(self, x: float, z: float, s: int) -> Callable[[], None]:
        d = self.dice
        height, arm = d.uniform(6.5, 9), d.uniform(1.2, 2.5)
        colour = self.pick(METAL)
        sign = self._sign_spec() if d.chance(0.25) else None

        def draw() -> None:
            cam, cv = self.cam, self.canvas
            self._pole(x, z, height, colour)
            a, b = cam.point((x, height, z)), cam.point((x - s * arm, height + 0.3, z))
            cv.polygon(self.segment(a, b, 0.15, z, 2.5 * self.px), POLE, self.haze(colour, z))
            lamp = self.segment(b, cam.point((x - s * (arm + 0.6), height + 0.25, z)), 0.3, z, 3 * self.px)
            cv.polygon(lamp, POLE, self.haze(_scale(colour, 0.6), z))
            if sign:
                self._sign(x, 2.6, z, *sign)

        return draw

    def _sign_spec(self) -> tuple[str, float, bool]:
        kind = self.dice.choice(("prohibit", "mandatory", "warning", "priority", "info", "stop"))
        return kind, self.dice.uniform(0.6, 0.9), self.dice.chance(0.2)

    def _sign_post_drawer(self, x: float, z: float) -> Callable[[], None]:
        d = self.dice
        specs = [self._sign_spec() for _ in range(1 if d.chance(0.7) else 2)]
        bottom, colour = d.uniform(2.0, 2.6), self.pick(METAL)

        def draw() -> None:
            top = bottom + 0.85 * len(specs)
            self._pole(x, z, top, colour, width_m=0.08)
            for i, spec in enumerate(specs):
                self._sign(x, top - 0.45 - 0.85 * i, z, *spec)

        return draw

    def _sign(self, x: float, y: float, z: float, kind: str, size: float, back: bool) -> None:
        """A traffic sign facing the camera, at least 6 px wide; its shape and colours say what kind it is."""
        cam, cv = self.cam, self.canvas
        cx, cy = cam.point((x, y, z))
        w = max(cam.fx * size / z, 6.0 * self.px)
        rx, ry = w / 2, w / 2 * cam.fy / cam.fx * (0.65 if kind == "info" else 1.0)
        shape = {
            "prohibit": "circle",
            "mandatory": "circle",
            "stop": "octagon",
            "warning": "triangle",
            "priority": "diamond",
            "info": "rect",
        }[kind]
        if shape == "triangle":
            unit = ((0, -1), (1, 0.8), (-1, 0.8))
        elif shape == "diamond":
            unit = ((0, -1), (1, 0), (0, 1), (-1, 0))
        elif shape == "rect":
            unit = ((-1, -1), (1, -1), (1, 1), (-1, 1))
        else:
            n = 8 if shape == "octagon" else 16
            unit = tuple(
                (math.cos(2 * math.pi * i / n + math.pi / 8), math.sin(2 * math.pi * i / n + math.pi / 8))
                for i in range(n)
            )

        def outline(scale: float) -> list[Pixel]:
            return [(cx + ux * rx * scale, cy + uy * ry * scale) for ux, uy in unit]

        if back:  # the grey back of a sign facing the other way
            cv.polygon(outline(1.0), TRAFFIC_SIGN, self.haze(_scale((150, 150, 150), self.dice.uniform(0.7, 1.1)), z))
            return
        outer, inner, symbol = {
            "prohibit": ((200, 30, 30), (235, 235, 230), (40, 40, 40)),
            "mandatory": ((30, 70, 170), (30, 70, 170), (240, 240, 240)),
            "stop": ((200, 20, 25), (200, 20, 25), (245, 245, 245)),
            "warning": ((200, 30, 30), (240, 240, 235), (30, 30, 30)),
            "priority": ((240, 240, 235), (240, 200, 20), (240, 200, 20)),
            "info": ((240, 240, 240), (30, 80, 160), (240, 240, 240)),
        }[kind]
        cv.polygon(outline(1.0), TRAFFIC_SIGN, self.haze(outer, z))
        cv.polygon(outline(0.72), None, self.haze(inner, z))
        cv.polygon(self.rectangle(cx, cy, rx * 0.25, ry * 0.28), None, self.haze(symbol, z))

    def _traffic_light_post_drawer(self, x: float, z: float, s: int) -> Callable[[], None]:
        d = self.dice
        mast, arm, height = d.chance(0.5), d.uniform(3, 6), d.uniform(2.8, 4.0)
        colour, housing = self.pick(METAL), self.pick(LIGHT_HOUSING)
        lit, plate = d.integers(0, 3), d.chance(0.4)

        def draw() -> None:
            cam, cv = self.cam, self.canvas
            self._pole(x, z, 6.0 if mast else height, colour)
            self._traffic_light(x, height - 0.6, z, housing, lit, plate)
            if mast:  # an arm over the road with a second light hanging from it
                a, b = cam.point((x, 5.8, z)), cam.point((x - s * arm, 5.8, z))
                cv.polygon(self.segment(a, b, 0.16, z, 2.5 * self.px), POLE, self.haze(colour, z))
                self._traffic_light(x - s * arm, 5.0, z, housing, lit, plate)

        return draw

    def _traffic_light(self, x: float, y: float, z: float, housing: Colour, lit: int, plate: bool) -> None:
        """A signal head facing the camera, at least 4 px wide, with one lamp lit."""
        cam, cv = self.cam, self.canvas
        cx, cy = cam.point((x, y, z))
        w = cam.fx * 0.34 / z
        grow = max(1.0, 4.0 * self.px / w)
        w, h = w * grow, cam.fy * 0.95 / z * grow
        if plate:  # a backplate with a light border belongs to the light
            cv.polygon(self.rectangle(cx, cy, w, h * 0.6), TRAFFIC_LIGHT, self.haze((200, 200, 196), z))
            cv.polygon(self.rectangle(cx, cy, w * 0.8, h * 0.55), None, self.haze((25, 25, 25), z))
        cv.polygon(self.rectangle(cx, cy, w / 2, h / 2), TRAFFIC_LIGHT, self.haze(housing, z))
        for i in range(3):
            colour = SIGNAL_LAMPS[i] if i == lit else LAMP_OFF
            cv.ellipse((cx, cy - h / 2 + h * (2 * i + 1) / 6), w * 0.32, h * 0.12, None, colour)

    # ---- vehicles ----

    def _traffic(self) -> None:
        d = self.dice
        occupied: list[tuple[float, float, float]] = []  # (x, z0, z1) footprints already used

        def place(kind: str, x: float, z: float, heading: int) -> None:
            length = self._vehicle_length(kind)
            if z < 3.5 or any(abs(x - ox) < 2.4 and z < oz1 + 1 and z + length > oz0 - 1 for ox, oz0, oz1 in occupied):
                return
            occupied.append((x, z, z + length))
            self.add_object(z, self._vehicle_drawer(kind, x, z, length, heading))

        for s, side in self.sides.items():
            if not self.parking[s]:
                continue
            z = d.uniform(2, 8)
            while z < 80:
                if d.chance(0.6) and not (self.crossing and self.crossing[0] - 6 < z < self.crossing[1]):
                    kind = d.choice(("car", "van", "truck"), (0.82, 0.1, 0.08))
                    place(kind, s * (side.curb - 1.15) + d.uniform(-0.15, 0.15), z, 1 if d.chance(0.8) else -1)
                z += d.uniform(5.5, 7.5)
        for x, direction in self.lanes:
            for _ in range(d.poisson(1.0)):
                kind = d.choice(("car", "van", "truck", "bus"), (0.62, 0.08, 0.13, 0.17))
                place(kind, x + d.uniform(-0.3, 0.3), d.uniform(7 if abs(x) > 1.5 else 10, 75), direction)
        if self.crossing and d.chance(0.6):  # cross traffic in the junction
            z0, z1 = self.crossing
            kind = d.choice(("car", "truck", "bus"), (0.7, 0.15, 0.15))
            x, z = d.uniform(-15, 15), (z0 + z1) / 2 - 1.2
            self.add_object(z0 + 1, self._vehicle_drawer(kind, x, z, self._vehicle_length(kind), heading=0))

    def _vehicle_length(self, kind: str) -> float:
        low, high = {"car": (3.9, 4.9), "van": (4.8, 5.4), "truck": (7, 11), "bus": (10.5, 12.5)}[kind]
        return self.dice.uniform(low, high)

    def _vehicle_drawer(self, kind: str, x: float, z: float, length: float, heading: int) -> Callable[[], None]:
        """A car, van, truck or bus as boxes with glass, lamps and wheels.

        ``heading``: +1 driving away (we see its back), -1 toward us, 0 crossing from side to side.
        """
        d = self.dice
        label = {"car": CAR, "van": CAR, "truck": TRUCK, "bus": BUS}[kind]
        paint = self.pick({"car": CAR_PAINT, "van": CAR_PAINT, "truck": TRUCK_PAINT, "bus": BUS_PAINT}[kind], 0.06)
        cargo, glass = self.pick(TRUCK_PAINT, 0.06), self.pick(GLASS, 0.1)
        width = {"car": d.uniform(1.7, 1.9), "van": d.uniform(1.9, 2.0), "truck": 2.5, "bus": 2.55}[kind]
        height = {
            "car": d.uniform(1.4, 1.55),
            "van": d.uniform(1.9, 2.1),
            "truck": d.uniform(3.2, 3.8),
            "bus": d.uniform(2.95, 3.15),
        }[kind]
        body_h = d.uniform(0.85, 1.0)
        if heading == 0:
            forward: Point = (1.0, 0.0, 0.0) if d.chance(0.5) else (-1.0, 0.0, 0.0)
            centre = (x, 0.0, z + width / 2)
        else:
            forward, centre = (0.0, 0.0, float(heading)), (x, 0.0, z + length / 2)
        right: Point = (forward[2], 0.0, -forward[0])
        rear = _along(_along(centre, -length / 2, forward), -width / 2, right)  # a = 0 is the back, b = 0 the left

        def part(a0: float, a1: float, inset: float, c0: float, c1: float) -> list[_Face]:
            origin = _along(_along(_along(rear, a0, forward), inset, right), c0, UP)
            return self.box_faces(origin, forward, right, a1 - a0, width - 2 * inset, c1 - c0)

        def draw() -> None:
            corners = ((-0.2, -0.2), (length + 0.2, -0.2), (length + 0.2, width + 0.2), (-0.2, width + 0.2))
            foot = [_along(_along(rear, a, forward), b, right) for a, b in corners]
            self.canvas.cast_shadow(self.cam.points(foot), 0.4 if self.overcast else 0.55)
            if kind in ("car", "van"):
                self._paint_faces(part(0, length, 0, 0, body_h), label, paint, "body", glass)
                if kind == "car":  # sloping rear window and windscreen
                    bottom, top = (length * 0.2, length * 0.75), (length * 0.3, length * 0.55)
                else:
                    bottom, top = (0.1, length * 0.8), (0.15, length * 0.68)
                self._cabin(rear, forward, right, bottom, top, width, body_h, height, label, paint, glass)
            elif kind == "truck":
                cab = min(2.3, length * 0.3)
                self._paint_faces(part(0, length, 0.15, 0.2, 1.1), label, (40, 40, 42), "chassis", glass)
                self._paint_faces(part(0, length - cab - 0.2, 0, 1.0, height), label, cargo, "cargo", glass)
                self._paint_faces(part(length - cab, length, 0, 0.3, height * 0.82), label, paint, "cab", glass)
            else:
                self._paint_faces(part(0, length, 0, 0.15, height), label, paint, "bus", glass)
            for face in part(0, length, 0, 0, 0.7):  # wheels, and tyres showing under the body
                self._wheels(face, label, length, kind)

        return draw

    def _paint_faces(self, faces: list[_Face], label: int, paint: Colour, part: str, glass: Colour) -> None:
        cv, d = self.canvas, self.dice
        for face in faces:
            z = face.depth
            cv.polygon(self.outline(face), label, self.shade(paint, face.normal, z))
            if face.name == "top":
                continue
            lu, lv, end, front = face.lu, face.lv, face.name in ("back", "front"), face.name == "front"
            glass_z, lamp_z = self.haze(glass, z), self.haze(TAIL_LAMP if not front else HEAD_LAMP, z)
            if part == "body" and end:
                cv.polygon(self.quad(face, 0.08, 0.36, lv - 0.3, lv - 0.12), None, lamp_z)
                cv.polygon(self.quad(face, lu - 0.36, lu - 0.08, lv - 0.3, lv - 0.12), None, lamp_z)
                cv.polygon(self.quad(face, lu / 2 - 0.26, lu / 2 + 0.26, 0.3, 0.42), None, self.haze(PLATE, z))
                cv.polygon(self.quad(face, 0, lu, 0, 0.2), None, self.haze((30, 30, 32), z))
            elif part == "body":
                cv.polygon(self.quad(face, 0, lu, 0, 0.2), None, self.haze((30, 30, 32), z))
            elif part == "cargo" and end:
                seam = self.quad(face, lu / 2 - 0.02, lu / 2 + 0.02, 0.1, lv - 0.1)
                cv.polygon(seam, None, self.shade(_scale(paint, 0.55), face.normal, z))
                cv.polygon(self.quad(face, 0, lu, 0, 0.12), None, self.haze((40, 40, 40), z))
            elif part == "cab" and front:
                cv.polygon(self.quad(face, 0.15, lu - 0.15, lv * 0.55, lv - 0.1), None, glass_z)
                cv.polygon(self.quad(face, 0.1, 0.4, 0.45, 0.65), None, lamp_z)
                cv.polygon(self.quad(face, lu - 0.4, lu - 0.1, 0.45, 0.65), None, lamp_z)
            elif part == "cab" and not end:
                cv.polygon(self.quad(face, 0.3, lu - 0.4, lv * 0.55, lv - 0.15), None, glass_z)
            elif part == "bus" and end:
                bottom, top = (1.0, lv - 0.45) if front else (1.7, lv - 0.35)
                cv.polygon(self.quad(face, 0.12, lu - 0.12, bottom, top), None, glass_z)
                if front:  # destination display
                    cv.polygon(self.quad(face, 0.3, lu - 0.3, lv - 0.4, lv - 0.12), None, self.haze((60, 40, 10), z))
                cv.polygon(self.quad(face, 0.1, 0.4, 0.4, 0.6), None, lamp_z)
                cv.polygon(self.quad(face, lu - 0.4, lu - 0.1, 0.4, 0.6), None, lamp_z)
            elif part == "bus":
                step = d.uniform(1.2, 1.6)
                u = 0.4
                while u < lu - step:
                    cv.polygon(self.quad(face, u, u + step - 0.15, 1.05, lv - 0.45), None, glass_z)
                    u += step
                cv.polygon(self.quad(face, 0, lu, 0.15, 0.35), None, self.shade(_scale(paint, 0.7), face.normal, z))

    def _cabin(
        self,
        rear: Point,
        forward: Point,
        right: Point,
        bottom: tuple[float, float],
        top: tuple[float, float],
        width: float,
        c0: float,
        c1: float,
        label: int,
        paint: Colour,
        glass: Colour,
    ) -> None:
        """A car's glasshouse: a frustum from ``bottom`` (a0, a1 at the waist) to the narrower ``top`` (the roof)."""
        cam, cv = self.cam, self.canvas

        def at(a: float, b: float, c: float) -> Point:
            return _along(_along(_along(rear, a, forward), b, right), c, UP)

        inset_low, inset_high = 0.08, 0.22
        low = [
            at(bottom[0], inset_low, c0),
            at(bottom[0], width - inset_low, c0),
            at(bottom[1], width - inset_low, c0),
            at(bottom[1], inset_low, c0),
        ]
        high = [
            at(top[0], inset_high, c1),
            at(top[0], width - inset_high, c1),
            at(top[1], width - inset_high, c1),
            at(top[1], inset_high, c1),
        ]
        centre = at((bottom[0] + bottom[1]) / 2, width / 2, (c0 + c1) / 2)
        faces = [
            ("back", [low[0], low[1], high[1], high[0]]),
            ("right", [low[1], low[2], high[2], high[1]]),
            ("front", [low[2], low[3], high[3], high[2]]),
            ("left", [low[3], low[0], high[0], high[3]]),
            ("top", high),
        ]
        visible = []
        for name, quad in faces:
            mid = tuple(sum(p[k] for p in quad) / 4 for k in range(3))
            e1, e2 = [quad[1][k] - quad[0][k] for k in range(3)], [quad[3][k] - quad[0][k] for k in range(3)]
            normal = (e1[1] * e2[2] - e1[2] * e2[1], e1[2] * e2[0] - e1[0] * e2[2], e1[0] * e2[1] - e1[1] * e2[0])
            if _dot(normal, [mid[k] - centre[k] for k in range(3)]) < 0:
                normal = (-normal[0], -normal[1], -normal[2])
            length = math.sqrt(_dot(normal, normal)) or 1.0
            normal = (normal[0] / length, normal[1] / length, normal[2] / length)
            to_cam = (-mid[0], cam.height - mid[1], -mid[2])
            if _dot(normal, to_cam) > 0 and mid[2] > NEAR:
                visible.append((-_dot(to_cam, to_cam), name, quad, normal, mid))
        for _, name, quad, normal, mid in sorted(visible, key=lambda item: item[0]):
            z = mid[2]
            cv.polygon(cam.points(quad), label, self.shade(paint, normal, z))
            if name == "top":
                continue
            # glass fills the face but for thin pillars; the sides are split in two by the middle pillar
            panes = (
                [quad]
                if name in ("back", "front")
                else [
                    [quad[0], _mix(quad[0], quad[1], 0.5), _mix(quad[3], quad[2], 0.5), quad[3]],
                    [_mix(quad[0], quad[1], 0.5), quad[1], quad[2], _mix(quad[3], quad[2], 0.5)],
                ]
            )
            tint = _mix(self.haze(glass, z), self.sky_low, 0.08 + 0.1 * max(0.0, normal[1]))  # slopes reflect sky
            for pane in panes:
                pane_mid = tuple(sum(p[k] for p in pane) / 4 for k in range(3))
                shrunk = [_mix(pane_mid, p, 0.82) for p in pane]
                cv.polygon(cam.points(shrunk), None, tint)

    def _wheels(self, face: _Face, label: int, length: float, kind: str) -> None:
        cv, z = self.canvas, face.depth
        tyre = self.haze(TYRE, z)
        if face.name in ("left", "right"):
            radius = 0.33 if kind in ("car", "van") else 0.5
            for u in (min(0.9, length * 0.2), length - min(1.0, length * 0.2)):
                cv.polygon(self.circle(face, u, radius, radius), label, tyre)
                cv.polygon(self.circle(face, u, radius, radius * 0.55, 8), None, self.haze(RIM, z))
        elif face.name in ("back", "front"):
            cv.polygon(self.quad(face, 0.1, 0.35, 0, 0.3), label, tyre)
            cv.polygon(self.quad(face, face.lu - 0.35, face.lu - 0.1, 0, 0.3), label, tyre)

    # ---- people and bicycles ----

    def _people(self) -> None:
        d = self.dice
        for side in self.sides.values():
            for _ in range(d.poisson(1.8)):
                x = side.sign * (side.walk_inner + d.uniform(0.3, max(0.4, side.walk - 0.3)))
                z = d.uniform(4, 40)
                facing = ALONG_STREET if d.chance(0.5) else (0.0, 0.0, -1.0)
                self.add_object(z, self._person_drawer((x, 0.0, z), facing))
        if self.crossing:
            left, right = self.road_edges
            for _ in range(d.poisson(1.5)):
                z = self.crossing[0] - d.uniform(1.2, 3.8)
                facing = ACROSS_STREET if d.chance(0.5) else (-1.0, 0.0, 0.0)
                self.add_object(z, self._person_drawer((d.uniform(-left, right), 0.0, z), facing))
        for _ in range(d.poisson(0.9)):  # cyclists near the kerb, or crossing
            s = 1 if d.chance(0.7) else -1
            edge = self.road_edges[0 if s < 0 else 1] - (2.3 if self.parking[s] else 0)
            x, z = s * (edge - d.uniform(0.6, 1.2)), d.uniform(5, 35)
            heading: Point = (0.0, 0.0, float(s))
            if d.chance(0.25):
                heading = (1.0 if d.chance(0.5) else -1.0, 0.0, 0.0)
            self.add_object(z, self._bicycle_drawer((x, 0.0, z), heading, self._looks(riding=True)))

    def _looks(self, riding: bool = False) -> dict:
        d = self.dice
        return {
            "height": d.uniform(1.55, 1.92),
            "top": self.pick(CYCLING_WEAR if riding else CLOTHES, 0.1),
            "legs": self.pick(TROUSERS, 0.1),
            "skin": self.pick(SKIN, 0.05),
            "hair": self.pick(HAIR, 0.1),
            "phase": d.uniform(0, 2 * math.pi),
            "helmet": self.pick(HELMET) if riding and d.chance(0.85) else None,
            "bag": self.pick(CLOTHES) if d.chance(0.3) else None,
        }

    def _draw_figure(self, joints: dict[str, Point], looks: dict, z: float, label: int, from_behind: bool) -> None:
        """A person as thick limbs between projected joints, then the head."""
        cam, cv = self.cam, self.canvas
        p = {name: cam.point(point) for name, point in joints.items()}
        thin = 1.5 * self.px
        legs, top = self.haze(looks["legs"], z), self.haze(looks["top"], z)
        for hip, knee, foot in (("hip_l", "knee_l", "foot_l"), ("hip_r", "knee_r", "foot_r")):
            cv.polygon(self.segment(p[hip], p[knee], 0.17, z, thin), label, legs)
            cv.polygon(self.segment(p[knee], p[foot], 0.14, z, thin), label, _scale(legs, 0.9))
        cv.polygon([p["shoulder_l"], p["shoulder_r"], p["hip_r"], p["hip_l"]], label, top)
        waist = ((p["hip_l"][0] + p["hip_r"][0]) / 2, (p["hip_l"][1] + p["hip_r"][1]) / 2)
        cv.polygon(self.segment(p["neck"], waist, 0.3, z, 2 * thin), label, top)
        if looks["bag"] is not None:
            strap = (p["neck"][0] * 0.6 + p["hip_l"][0] * 0.4, p["neck"][1] * 0.6 + p["hip_l"][1] * 0.4)
            cv.polygon(self.segment(strap, p["hip_l"], 0.25, z, thin), label, self.haze(looks["bag"], z))
        for shoulder, hand in (("shoulder_l", "hand_l"), ("shoulder_r", "hand_r")):
            cv.polygon(self.segment(p[shoulder], p[hand], 0.1, z, thin), label, _scale(top, 0.85))
        (hx, hy), rx, ry = p["head"], max(cam.fx * 0.11 / z, thin), max(cam.fy * 0.12 / z, thin)
        cv.ellipse((hx, hy), rx, ry, label, self.haze(looks["hair"] if from_behind else looks["skin"], z))
        cover = looks["helmet"] if looks["helmet"] is not None else looks["hair"]
        cv.ellipse((hx, hy - ry * 0.35), rx * 1.02, ry * 0.7, None, self.haze(cover, z))

    def _person_drawer(self, base: Point, facing: Point) -> Callable[[], None]:
        looks = self._looks()
        h = looks["height"]
        right = (facing[2], 0.0, -facing[0])
        stride = 0.3 * math.sin(looks["phase"])

        def at(a: float, b: float, c: float) -> Point:
            return _along(_along(_along(base, a, facing), b, right), c, UP)

        joints = {
            "hip_l": at(0, -0.1, 0.5 * h),
            "hip_r": at(0, 0.1, 0.5 * h),
            "knee_l": at(stride * 0.55 + 0.03, -0.09, 0.27 * h),
            "knee_r": at(-stride * 0.55 + 0.03, 0.09, 0.27 * h),
            "foot_l": at(stride, -0.09, 0.03),
            "foot_r": at(-stride, 0.09, 0.03),
            "shoulder_l": at(0, -0.2, 0.81 * h),
            "shoulder_r": at(0, 0.2, 0.81 * h),
            "neck": at(0, 0, 0.84 * h),
            "hand_l": at(-stride * 0.7, -0.25, 0.46 * h),
            "hand_r": at(stride * 0.7, 0.25, 0.46 * h),
            "head": at(0, 0, 0.925 * h),
        }
        from_behind = facing[2] > 0.5  # walking away: we see the back of the head

        def draw() -> None:
            self._draw_figure(joints, looks, base[2], PERSON, from_behind)

        return draw

    def _bicycle_drawer(self, base: Point, heading: Point, rider: dict | None) -> Callable[[], None]:
        """A bicycle (wheels, frame, handlebar), with a rider on it when ``rider`` gives their looks."""
        d = self.dice
        paint = self.pick(BIKE_PAINT)
        right = (heading[2], 0.0, -heading[0])
        crank = d.uniform(0, 2 * math.pi)

        def at(a: float, c: float, b: float = 0.0) -> Point:
            return _along(_along(_along(base, a, heading), c, UP), b, right)

        rider_joints = {}
        if rider is not None:
            hip = at(-0.18, 0.98)
            pedal = {
                side: at(0.17 * math.cos(crank + phase), 0.3 + 0.17 * math.sin(crank + phase), b)
                for side, phase, b in (("l", 0.0, -0.12), ("r", math.pi, 0.12))
            }
            knee = {
                side: _along(
                    _along(
                        _along(hip, 0.5, tuple(pv - hv for pv, hv in zip(pedal[side], hip, strict=True))), 0.25, heading
                    ),
                    0.12,
                    UP,
                )
                for side in "lr"
            }
            shoulder = at(0.12, 1.5)
            rider_joints = {
                "hip_l": at(-0.18, 0.98, -0.12),
                "hip_r": at(-0.18, 0.98, 0.12),
                "knee_l": _along(knee["l"], -0.12, right),
                "knee_r": _along(knee["r"], 0.12, right),
                "foot_l": pedal["l"],
                "foot_r": pedal["r"],
                "shoulder_l": _along(shoulder, -0.2, right),
                "shoulder_r": _along(shoulder, 0.2, right),
                "neck": at(0.15, 1.55),
                "hand_l": at(0.45, 1.05, -0.28),
                "hand_r": at(0.45, 1.05, 0.28),
                "head": at(0.2, 1.7),
            }

        def draw() -> None:
            cam, cv = self.cam, self.canvas
            z = max(base[2], NEAR + 1)
            tyre_px = max(cam.fx * 0.06 / z, 2.0 * self.px)
            for hub in (-0.53, 0.53):
                ring = cam.points(
                    [
                        _along(at(hub + 0.33 * math.cos(t), 0.34 + 0.33 * math.sin(t)), 0, UP)
                        for t in (2 * math.pi * i / 14 for i in range(14))
                    ]
                )
                cv.polygon(ring, BICYCLE, self.haze((92, 92, 90), z))  # spokes blur to grey
                cv.line([*ring, ring[0]], tyre_px, BICYCLE, self.haze((22, 22, 22), z))
            hub_r, bracket, seat, head, hub_f, bar = (
                cam.point(at(a, c))
                for a, c in ((-0.53, 0.34), (0, 0.3), (-0.15, 0.92), (0.42, 0.95), (0.53, 0.34), (0.45, 1.05))
            )
            frame, thin = self.haze(paint, z), 1.8 * self.px
            for a, b in (
                (hub_r, bracket),
                (bracket, seat),
                (seat, hub_r),
                (bracket, head),
                (seat, head),
                (head, hub_f),
                (head, bar),
            ):
                cv.polygon(self.segment(a, b, 0.05, z, thin), BICYCLE, frame)
            handle = self.segment(cam.point(at(0.45, 1.05, -0.3)), cam.point(at(0.45, 1.05, 0.3)), 0.05, z, thin)
            cv.polygon(handle, BICYCLE, _scale(frame, 0.6))
            if rider is not None:
                self._draw_figure(rider_joints, rider, z, RIDER, heading[2] > 0.5)

        return draw

    # ---- the camera car and the photo finish ----

    def _bonnet(self) -> None:
        """The ego car's bonnet along the bottom edge, as in every Cityscapes frame (void: ``unlabeled``)."""
        d, w, h = self.dice, self.w, self.h
        top = h * (1 - d.uniform(0.06, 0.11))
        xs = [w * (-0.05 + 1.1 * i / 16) for i in range(17)]
        ys = [top + (h - top) * 0.55 * ((x - w / 2) / (w / 2)) ** 2 for x in xs]
        edge = list(zip(xs, ys, strict=True))
        paint = _scale((28, 30, 34), d.uniform(0.7, 1.4))
        self.canvas.polygon([*edge, (1.05 * w, h + 1), (-0.05 * w, h + 1)], UNLABELED, paint)
        gleam = [(x, y + 1) for x, y in edge] + [(x, y + 0.25 * (h - top)) for x, y in reversed(edge)]
        self.canvas.polygon(gleam, None, _mix(_scale(paint, 0.5), self.sky_low, 0.25))

    def _finish(self) -> tuple[np.ndarray, np.ndarray]:
        rng, d, h, w = self.rng, self.dice, self.h, self.w
        label = np.asarray(self.canvas.label, dtype=np.uint8)  # (H, W) official label ids
        photo = np.asarray(self.canvas.photo, dtype=np.float32) / 255  # (H, W, 3)
        self._patterns(photo, label)
        self._paving(photo, label)
        texture = (
            TEXTURE_BLOTCH[label] * _smooth_noise(rng, h, w, h / 10)
            + TEXTURE_GRAIN[label] * _smooth_noise(rng, h, w, 2.5 * self.px)
            + TEXTURE_PIXEL[label] * _uniform_noise(rng, (h, w))
        )  # (H, W)
        ground = IS_GROUND[label]
        shadow = np.where(ground, np.asarray(self.canvas.shadow, dtype=np.float32) / 255, np.float32(1))
        vignette = 1 - np.float32(d.uniform(0.1, 0.3)) * _radius2(h, w)
        photo *= (np.clip(1 + texture, 0.2, 2.0) * vignette)[..., None]
        photo *= 1 - (1 - shadow[..., None]) * np.array([1.0, 0.96, 0.88], dtype=np.float32)  # shadows are bluish
        rows = np.arange(h, dtype=np.float32) - np.float32(self.cam.horizon)
        depth = np.float32(self.cam.fy * self.cam.height) / np.maximum(rows, np.float32(0.5))  # metres to road, per row
        haze = (1 - np.exp(-depth / np.float32(self.visibility)))[:, None] * ground  # (H, W)
        photo += (np.asarray(self.haze_colour, dtype=np.float32) / 255 - photo) * haze[..., None]
        photo = _soften(
            photo * 255 + _uniform_noise(rng, (h, w, 3)) * np.float32(d.uniform(1.0, 3.5)), d.uniform(0.06, 0.2)
        )  # sensor noise, then a slight lens blur
        image = Image.fromarray(np.clip(photo + 0.5, 0, 255).astype(np.uint8))
        # exposure, colour temperature and gamma as one lookup table per channel
        exposure, warmth, gamma = d.uniform(0.72, 1.18), d.uniform(-1, 1), d.uniform(0.9, 1.1)
        gains = (exposure * (1 + 0.07 * warmth), exposure, exposure * (1 - 0.09 * warmth))
        lut = [
            min(255, int(min(1.0, level / 255 * gain) ** gamma * 255 + 0.5)) for gain in gains for level in range(256)
        ]
        return np.asarray(image.point(lut)), label

    def _patterns(self, photo: np.ndarray, label: np.ndarray) -> None:
        """Windows, fence bars and wall joints, computed per pixel where each patterned face is visible.

        Each pixel's ray is intersected with its face's plane to get face coordinates (u along, v up, metres);
        the patterns are box-filtered over the pixel's footprint, so far facades blur instead of flickering.
        """
        if not self.surfaces:
            return
        surface_ids = np.asarray(self.canvas.surface)
        keys = sorted({key for entry in self.surfaces for key in entry})
        column = {key: i for i, key in enumerate(keys)}
        table = np.zeros((256, len(keys)), dtype=np.float32)  # surface id -> its parameters; row 0 unused
        table[1 : len(self.surfaces) + 1] = [[entry.get(key, 0.0) for key in keys] for entry in self.surfaces]
        visible = (surface_ids > 0) & (label == table[:, column["label"]].astype(np.uint8)[surface_ids])
        ys, xs = np.nonzero(visible)
        if len(ys) == 0:
            return
        sid = surface_ids[ys, xs]
        params = table[sid]  # (N, K)

        def p(key: str, rows=slice(None)) -> np.ndarray:
            return params[rows, column[key]] if key in column else np.zeros_like(params[rows, 0])

        def colour(key: str, rows) -> np.ndarray:
            return np.stack([p(f"{key}_r", rows), p(f"{key}_g", rows), p(f"{key}_b", rows)], -1)  # (n, 3)

        cam = self.cam
        ray_x = (xs.astype(np.float32) + np.float32(0.5 - cam.cx)) / np.float32(cam.fx)  # ray direction per metre ahead
        ray_y = (np.float32(cam.horizon - 0.5) - ys.astype(np.float32)) / np.float32(cam.fy)
        on_x, plane = p("axis") == 0, p("plane")
        safe_x = np.where(np.abs(ray_x) < 1e-4, np.float32(1e-4), ray_x)
        depth = np.maximum(np.where(on_x, plane / safe_x, plane), np.float32(NEAR))
        u = (np.where(on_x, depth, depth * ray_x) - p("u0")) * p("udir")
        v = np.float32(cam.height) + depth * ray_y - p("v0")
        foot_u = np.where(
            on_x, depth * depth / (np.float32(cam.fx) * np.maximum(np.abs(plane), 0.1)), depth / np.float32(cam.fx)
        )
        foot_v = depth / np.float32(cam.fy)
        rgb = photo[ys, xs]  # (N, 3): the flat, lit wall colour
        kind = p("kind")

        rows = np.nonzero(kind == 1)[0]  # windows: a grid above the ground floor, shop fronts, a darker cornice
        if len(rows):
            uu, vv, fu, fv = u[rows], v[rows], foot_u[rows], foot_v[rows]
            spacing, floor_h = np.maximum(p("spacing", rows), 0.1), np.maximum(p("floor_h", rows), 0.1)
            win_w, win_h, u_start, v_first = p("win_w", rows), p("win_h", rows), p("u_start", rows), p("v_first", rows)
            inside = (
                (uu > u_start - 0.2) & (uu < p("lu", rows) - 0.3) & (vv > v_first - 0.2) & (vv < p("lv", rows) - 0.6)
            )
            du, dv = uu - u_start, vv - v_first
            glass = _coverage(du, spacing, win_w / spacing, fu) * _coverage(dv, floor_h, win_h / floor_h, fv) * inside
            framed = (
                _coverage(du + 0.12, spacing, (win_w + 0.24) / spacing, fu)
                * _coverage(dv + 0.15, floor_h, (win_h + 0.3) / floor_h, fv)
                * inside
                - glass
            )
            cell = (
                (np.floor(du / spacing).astype(np.int32) * 73856093)
                ^ (np.floor(dv / floor_h).astype(np.int32) * 19349663)
                ^ (sid[rows].astype(np.int32) * 83492791)
            )
            tone = np.float32(0.7) + np.float32(0.6 / 1023) * (cell & 1023).astype(np.float32)  # windows differ
            shop_w, ground = p("shop_w", rows), p("ground", rows)
            shop_period = np.maximum(shop_w + p("shop_gap", rows), 0.1)
            shop = (
                p("shop", rows)
                * (vv > 0.3)
                * (vv < ground - 0.6)
                * _coverage(uu - 0.5, shop_period, shop_w / shop_period, fu)
            )
            band = (p("shop", rows) > 0) & (vv >= ground - 0.6) & (vv < ground - 0.1)
            out = rgb[rows] * (1 - framed[:, None]) + colour("frame", rows) * framed[:, None]
            out = out * (1 - glass[:, None]) + colour("glass", rows) * (glass * tone)[:, None]
            out = out * (1 - shop[:, None]) + colour("shop_glass", rows) * shop[:, None]
            out = np.where(band[:, None], colour("band", rows), out)
            out *= np.where(vv > p("lv", rows) - 0.45, np.float32(0.78), np.float32(1))[:, None]
            rgb[rows] = out

        rows = np.nonzero(kind == 2)[0]  # fences: bars over the dark gaps between them, and two rails
        if len(rows):
            vv = v[rows]
            bars = _coverage(u[rows], np.maximum(p("step", rows), 0.05), 0.45, foot_u[rows])[:, None]
            rails = (np.abs(vv - 0.15) < 0.06) | (np.abs(vv - p("lv", rows) + 0.12) < 0.06)
            bar = colour("bar", rows)
            rgb[rows] = np.where(rails[:, None], bar * 0.85, rgb[rows] * (1 - bars) + bar * bars)

        rows = np.nonzero(kind == 3)[0]  # walls: mortar joints between courses of blocks, offset every other course
        if len(rows):
            uu, vv = u[rows], v[rows]
            course, block = np.maximum(p("course", rows), 0.05), np.maximum(p("block", rows), 0.05)
            offset = np.mod(np.floor(vv / course), 2) * block / 2
            joints = np.maximum(
                _coverage(vv, course, 0.03 / course, foot_v[rows]),
                _coverage(uu + offset, block, 0.03 / block, foot_u[rows]),
            )
            capped = (vv > p("lv", rows) - 0.08)[:, None]
            rgb[rows] = np.where(capped, colour("cap", rows), rgb[rows] * (1 - 0.35 * joints[:, None]))
        photo[ys, xs] = rgb

    def _paving(self, photo: np.ndarray, label: np.ndarray) -> None:
        """Joints between paving slabs on the sidewalks, in ground-plane metres (box-filtered like the windows)."""
        cam = self.cam
        first = max(int(cam.horizon) + 2, 0)
        ys, xs = np.nonzero(label[first:] == SIDEWALK)
        if len(ys) == 0:
            return
        ys = ys + first
        z = cam.fy * cam.height / (ys + 0.5 - cam.horizon)
        x = (xs + 0.5 - cam.cx) * z / cam.fx
        joints = np.maximum(
            _coverage(z, self.slab[0], 0.04 / self.slab[0], z * z / (cam.fy * cam.height)),
            _coverage(x, self.slab[1], 0.04 / self.slab[1], z / cam.fx),
        )
        photo[ys, xs] *= (1 - 0.35 * joints)[:, None].astype(np.float32)


def render_scene(rng: np.random.Generator, size: tuple[int, int] = IMAGE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Draw one random street scene and its exact labels.

    Args:
        rng: the only source of randomness; the same generator state gives the same scene.
        size: (height, width) in pixels; default 256x256, one half of a Kaggle pair.

    Returns:
        (photo, label_ids): (H, W, 3) uint8 RGB, and (H, W) uint8 official Cityscapes label ids (0..33).

    Example:
        >>> photo, ids = render_scene(np.random.default_rng(0))
        >>> photo.shape, ids.shape, ids.dtype
        ((256, 256, 3), (256, 256), dtype('uint8'))
    """
    height, width = size
    if height < 32 or width < 32:
        raise ValueError(f"scene size must be at least 32x32 pixels, got {height}x{width}")
    return _Street(rng, height, width).render()


# ---- writing pairs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`write_scenes` wrote; ``str()`` gives the CLI's short report."""

    out: Path
    train: int  # pairs in OUT/train
    val: int  # pairs in OUT/val
    class_shares: dict[str, float]  # train19 class -> share of all pixels, classes present only, largest first
    seconds: float

    @property
    def count(self) -> int:
        return self.train + self.val

    @property
    def scenes_per_second(self) -> float:
        return self.count / max(self.seconds, 1e-9)

    def __str__(self) -> str:
        where = f"{self.out / 'train'} ({self.train})"
        if self.val:
            where += f" and {self.out / 'val'} ({self.val})"
        classes = ", ".join(f"{name} {share:.1%}" for name, share in self.class_shares.items())
        return (
            f"wrote {self.count} synthetic pairs to {where} in {self.seconds:.1f} s "
            f"({self.scenes_per_second:.1f} scenes/s)\n"
            f"classes present ({len(self.class_shares)} of 19, share of pixels): {classes}"
        )


_PAIR_NAME = re.compile(r"^(\d+)\.jpg$", re.IGNORECASE)


def _check_folder(folder: Path, count: int) -> None:
    """Refuse to overwrite images cityseg synth did not write, or to leave a larger earlier run mixed in."""
    for path in folder.iterdir():
        if path.suffix.lower() not in (".jpg", ".jpeg"):
            continue
        match = _PAIR_NAME.match(path.name)
        if not match or not (folder / f"{match.group(1)}_labelIds.png").exists():
            raise CitysegError(
                f"{folder} already holds images that cityseg synth did not write (e.g. {path.name}); "
                "choose an empty output folder"
            )
        if int(match.group(1)) > count:
            raise CitysegError(
                f"{folder} holds synthetic pairs from a larger earlier run (e.g. {path.name}); "
                f"delete {folder} or choose an empty output folder"
            )


def _write_pair(path: Path, photo: np.ndarray, label_ids: np.ndarray) -> None:
    pair = np.concatenate([photo, colorize_label_ids(label_ids)], axis=1)  # (H, 2W, 3): photo left, mask right
    try:
        with atomic_path(path.with_name(f"{path.stem}_labelIds.png")) as tmp:
            Image.fromarray(label_ids).save(tmp, format="PNG")
        with atomic_path(path) as tmp:
            Image.fromarray(pair).save(tmp, format="JPEG", quality=JPEG_QUALITY, subsampling=JPEG_SUBSAMPLING)
    except OSError as exc:
        raise CitysegError(
            f"cannot write {path}: {exc.strerror or exc}; free some space or choose another folder"
        ) from None


def write_scenes(out: str | Path, count: int = 100, seed: int = 0, val_fraction: float = 0.0) -> SynthSummary:
    """Write ``count`` synthetic pairs in the Cityscapes-pairs layout, with exact label ids beside them.

    Scene ``i`` (0-based, train first, then val) is drawn from ``np.random.default_rng([seed, i])``, so the same
    seed gives byte-identical files, and a larger count only adds scenes.

    Args:
        out: output folder; pairs go to ``out/train/N.jpg`` (N = 1, 2, ...) with ``out/train/N_labelIds.png``
            (official label ids, lossless) beside each.
        count: number of scenes.
        seed: random seed (0 or more).
        val_fraction: the last ``round(count * val_fraction)`` scenes go to ``out/val``, numbered from 1 there.

    Returns:
        A :class:`SynthSummary`: counts, class pixel shares, time taken.

    Raises:
        CitysegError: bad arguments, an unwritable folder, or a folder holding other images.

    Example:
        >>> summary = write_scenes("data/synth", count=300, seed=0, val_fraction=0.2)  # doctest: +SKIP
        >>> print(summary)  # doctest: +SKIP
    """
    if count < 1:
        raise CitysegError(f"--count must be at least 1, got {count}")
    if seed < 0:
        raise CitysegError(f"--seed must be 0 or more, got {seed}")
    if not 0 <= val_fraction < 1:
        raise CitysegError(f"--val-fraction must be at least 0 and below 1, got {val_fraction}")
    out = ensure_writable_dir(out)
    n_val = round(count * val_fraction)
    splits = [(name, n) for name, n in (("train", count - n_val), ("val", n_val)) if n > 0]
    folders = {}
    for name, n in splits:
        folders[name] = ensure_writable_dir(out / name)
        _check_folder(folders[name], n)
    start = time.perf_counter()
    pixels = np.zeros(256, dtype=np.int64)  # per official label id
    index = 0
    for name, n in splits:
        for number in range(1, n + 1):
            photo, label_ids = render_scene(np.random.default_rng([seed, index]))
            _write_pair(folders[name] / f"{number}.jpg", photo, label_ids)
            pixels += np.bincount(label_ids.ravel(), minlength=256)
            index += 1
    seconds = time.perf_counter() - start
    return SynthSummary(out, count - n_val, n_val, train_class_shares(pixels[:NUM_LABEL_IDS]), seconds)


def train_class_shares(label_id_pixels: np.ndarray) -> dict[str, float]:
    """Pixels per official label id (length 34) -> {train19 class: share of pixels}, present only, largest first."""
    train19 = class_set("train19")
    total = max(int(label_id_pixels.sum()), 1)
    shares = np.zeros(train19.num_classes)
    for label_id, n in enumerate(label_id_pixels):
        cls = int(train19.id_to_class[label_id])
        if cls < train19.num_classes:
            shares[cls] += n / total
    order = np.argsort(-shares, kind="stable")
    return {train19.names[i]: float(shares[i]) for i in order if shares[i] > 0}
