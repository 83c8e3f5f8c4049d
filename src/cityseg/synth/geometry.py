"""World-frame vectors and faces, as plain tuples.

The world frame is in metres: X right, Y up, Z forward along the street. A scene has a few hundred
primitives, and numpy's per-call overhead on 3-vectors would cost more than the arithmetic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

Point = tuple[float, float, float]  # world, metres
Pixel = tuple[float, float]  # image (column, row)

UP: Point = (0.0, 1.0, 0.0)
ALONG_STREET: Point = (0.0, 0.0, 1.0)
ACROSS_STREET: Point = (1.0, 0.0, 0.0)


def along(origin: Sequence[float], k: float, direction: Sequence[float]) -> Point:
    """origin + k * direction."""
    return (origin[0] + k * direction[0], origin[1] + k * direction[1], origin[2] + k * direction[2])


def dot(a: Sequence[float], b: Sequence[float]) -> float:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def rectangle(cx: float, cy: float, half_w: float, half_h: float) -> list[Pixel]:
    """An axis-aligned rectangle in pixels, centred on (cx, cy)."""
    return [
        (cx - half_w, cy - half_h),
        (cx + half_w, cy - half_h),
        (cx + half_w, cy + half_h),
        (cx - half_w, cy + half_h),
    ]


class Face(NamedTuple):
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
        """World Z of the face's centre: what its haze and drawing order go by."""
        return self.at(self.lu / 2, self.lv / 2)[2]
