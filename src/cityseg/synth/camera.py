"""The pinhole camera: projection of world points, which faces it sees, and the ray through each pixel.

Everything that depends on where the camera stands and how it looks lives here: the props place things in
world metres and ask the camera for pixels, and the pattern, paving and haze passes ask it for per-pixel
rays. A still scene's camera sits at (0, ``height``, 0) looking down +Z with its horizon level; a drive's camera
(:meth:`Camera.posed`) stands at (``x``, ``height``, ``z``), looking the same way, one pose per frame. The props
keep placing things in world metres and pass world Z here: :meth:`Camera.depth` turns it into the distance
ahead that haze, minimum pixel sizes and culling go by.

A still scene's geometry near or behind the camera is off-screen, so pushing such points onto the ``NEAR``
plane is enough. A moving camera passes everything beside the street; its faces along the street then reach
behind it. Pushing the points of an edge parallel to Z onto the near plane is exactly clipping that edge, so
the projection stays right, and a moving camera keeps a face while any corner of it is ahead (a still one
goes by the face's centre, as the published scenes were drawn).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from cityseg.synth.dice import Dice
from cityseg.synth.geometry import UP, Face, Pixel, Point, along, dot

NEAR = 0.5  # metres; points closer than this are pushed onto it before projection (all such geometry is off-screen)


@dataclass(frozen=True)
class Camera:
    """A pinhole camera at (``x``, ``height``, ``z``) looking along +Z, in pixels of an image ``fx``-scaled."""

    fx: float  # horizontal focal length in pixels
    fy: float  # vertical focal length in pixels (about 2 fx: the pairs squeeze 2048x1024 photos into 256x256)
    cx: float  # column of the vanishing point
    horizon: float  # row of the horizon
    height: float  # metres above the road
    x: float = 0.0  # sideways position, metres (a drive's sway)
    z: float = 0.0  # position along the street, metres (how far a drive has come)
    moving: bool = False  # a drive's camera: keeps faces it has partly passed (see the module docstring)

    @classmethod
    def random(cls, dice: Dice, height: int, width: int) -> Camera:
        """A dashboard camera for an image of ``height`` x ``width`` pixels: focal length, aim and mount vary."""
        fx = width * dice.uniform(0.95, 1.25)
        return cls(
            fx=fx,
            fy=fx * 2 * height / width,
            cx=width * (0.5 + dice.uniform(-0.1, 0.1)),
            horizon=height * dice.uniform(0.36, 0.47),
            height=dice.uniform(1.15, 1.5),
        )

    def posed(self, x: float, z: float) -> Camera:
        """This camera moved to (``x``, ``height``, ``z``), as a drive's camera (``moving``)."""
        return replace(self, x=x, z=z, moving=True)

    # ---- distances ----

    def depth(self, z: float) -> float:
        """How far ahead of the camera world depth ``z`` lies, metres (negative behind it)."""
        return z - self.z

    def clamp_depth(self, z: float, nearest: float) -> float:
        """World depth ``z``, or the depth ``nearest`` metres ahead of the camera if ``z`` is nearer than that."""
        return self.z + max(z - self.z, nearest)

    def width_px(self, metres: float, z: float) -> float:
        """How many pixels across ``metres`` at world depth ``z`` spans."""
        return self.fx * metres / (z - self.z)

    def height_px(self, metres: float, z: float) -> float:
        """How many pixels tall ``metres`` at world depth ``z`` stands."""
        return self.fy * metres / (z - self.z)

    # ---- world points to pixels ----

    def point(self, p: Sequence[float]) -> Pixel:
        """World point -> (column, row) in pixels; points nearer than ``NEAR`` are pushed onto it first."""
        z = max(p[2] - self.z, NEAR)
        return (self.cx + self.fx * (p[0] - self.x) / z, self.horizon - self.fy * (p[1] - self.height) / z)

    def points(self, ps: Sequence[Sequence[float]]) -> list[Pixel]:
        return [self.point(p) for p in ps]

    def to_camera(self, p: Sequence[float]) -> Point:
        """The vector from world point ``p`` to the camera."""
        return (self.x - p[0], self.height - p[1], self.z - p[2])

    def ground_quad(self, x0: float, x1: float, z0: float, z1: float) -> list[Pixel]:
        """A rectangle on the road plane (Y = 0) between X = x0..x1 and Z = z0..z1, in pixels."""
        return self.points(((x0, 0.0, z0), (x1, 0.0, z0), (x1, 0.0, z1), (x0, 0.0, z1)))

    def quad(self, face: Face, u0: float, u1: float, v0: float, v1: float) -> list[Pixel]:
        """A rectangle in a face's (u, v) metres, in pixels."""
        return self.points((face.at(u0, v0), face.at(u1, v0), face.at(u1, v1), face.at(u0, v1)))

    def outline(self, face: Face) -> list[Pixel]:
        return self.quad(face, 0.0, face.lu, 0.0, face.lv)

    def circle(self, face: Face, u: float, v: float, radius: float, points: int = 12) -> list[Pixel]:
        """A circle of ``radius`` metres on a face, centred at its (u, v), as a polygon of ``points`` corners."""
        step = 2 * math.pi / points
        return self.points(
            [face.at(u + radius * math.cos(i * step), v + radius * math.sin(i * step)) for i in range(points)]
        )

    def segment(self, p0: Pixel, p1: Pixel, width_m: float, z: float, min_px: float) -> list[Pixel]:
        """A limb or bar between pixels p0 and p1, ``width_m`` metres wide at world depth z (at least ``min_px``)."""
        sx, sy = self.fx / (z - self.z), self.fy / (z - self.z)
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

    def box_faces(self, origin: Point, forward: Point, right: Point, la: float, lb: float, lc: float) -> list[Face]:
        """The faces of a box the camera can see, far to near.

        The box spans ``origin + a*forward + b*right + c*up`` for a in [0, la], b in [0, lb], c in [0, lc].
        """
        back, left = (-forward[0], -forward[1], -forward[2]), (-right[0], -right[1], -right[2])
        candidates = (
            Face("back", origin, right, UP, lb, lc, back),
            Face("front", along(origin, la, forward), right, UP, lb, lc, forward),
            Face("left", origin, forward, UP, la, lc, left),
            Face("right", along(origin, lb, right), forward, UP, la, lc, right),
            Face("top", along(origin, lc, UP), forward, right, la, lb, UP),
        )
        visible = []
        for face in candidates:
            centre = face.at(face.lu / 2, face.lv / 2)
            to_cam = self.to_camera(centre)
            if dot(face.normal, to_cam) > 1e-6 and self.depth(self._reach(face, centre)) > NEAR:
                visible.append((-dot(to_cam, to_cam), face))
        visible.sort(key=lambda item: item[0])
        return [face for _, face in visible]

    def _reach(self, face: Face, centre: Point) -> float:
        """The world depth a face must reach past the near plane to be drawn: its centre's, or a moving
        camera's farthest corner's."""
        if not self.moving:
            return centre[2]
        return max(face.at(u, v)[2] for u in (0.0, face.lu) for v in (0.0, face.lv))

    # ---- pixels back to the world (vectorised, for the per-pixel passes) ----

    def face_coordinates(
        self, xs: np.ndarray, ys: np.ndarray, on_x: np.ndarray, plane: np.ndarray, u0, udir, v0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Where each pixel's ray meets its vertical, axis-aligned face, in the face's metres.

        Args:
            xs, ys: (N,) pixel columns and rows.
            on_x: (N,) True where the face lies in a plane X = ``plane``, False where Z = ``plane``.
            plane: (N,) float32 the face plane's coordinate.
            u0, udir, v0: (N,) float32 the face's origin along it, its direction along it (+1/-1), its base height.

        Returns:
            (u, v, foot_u, foot_v): face coordinates along and up (metres), and a pixel's footprint along each.
        """
        ray_x = (xs.astype(np.float32) + np.float32(0.5 - self.cx)) / np.float32(self.fx)  # per metre ahead
        ray_y = (np.float32(self.horizon - 0.5) - ys.astype(np.float32)) / np.float32(self.fy)
        safe_x = np.where(np.abs(ray_x) < 1e-4, np.float32(1e-4), ray_x)
        cam_x, cam_z = np.float32(self.x), np.float32(self.z)
        across = plane - cam_x  # metres from the camera to an X = const plane, sideways
        depth = np.maximum(np.where(on_x, across / safe_x, plane - cam_z), np.float32(NEAR))
        u = (np.where(on_x, depth + cam_z, depth * ray_x + cam_x) - u0) * udir
        v = np.float32(self.height) + depth * ray_y - v0
        foot_u = np.where(
            on_x, depth * depth / (np.float32(self.fx) * np.maximum(np.abs(across), 0.1)), depth / np.float32(self.fx)
        )
        foot_v = depth / np.float32(self.fy)
        return u, v, foot_u, foot_v

    @property
    def first_ground_row(self) -> int:
        """The first image row safely below the horizon, where every pixel's ray meets the road plane."""
        return max(int(self.horizon) + 2, 0)

    def ground_coordinates(
        self, xs: np.ndarray, ys: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Where the rays of pixels below the horizon meet the road: (world X, world Z, footprint along X, along Z)."""
        z = self.fy * self.height / (ys + 0.5 - self.horizon)  # metres ahead
        x = (xs + 0.5 - self.cx) * z / self.fx  # metres to the side
        return x + self.x, z + self.z, z / self.fx, z * z / (self.fy * self.height)

    def row_ground_depth(self, rows: int) -> np.ndarray:
        """(rows,) float32 distance ahead, in metres, at which each image row's centre ray meets the road."""
        offset = np.arange(rows, dtype=np.float32) - np.float32(self.horizon)
        return np.float32(self.fy * self.height) / np.maximum(offset, np.float32(0.5))
