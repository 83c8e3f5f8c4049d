"""The street's layout: lanes, parking, kerbs, sidewalks and frontages either side, a cross street.

Distances are metres from the starting camera, which drives in one of the lanes (see ``camera``); the ground
(``ground``) and the props stand on this layout and read it from ``scene.street``. A drive's street is laid
out longer by ``stretch`` metres, the way it will drive.
"""

from __future__ import annotations

from dataclasses import dataclass

from cityseg.synth.dice import Dice
from cityseg.synth.materials import ASPHALT, GRASS, PAVING, Colour, pick


@dataclass
class Side:
    """One side of the street, from the kerb outward."""

    sign: int  # -1 left of the camera, +1 right
    curb: float  # distance from the camera to the kerb, metres
    verge: float  # grass strip between kerb and sidewalk
    walk: float  # sidewalk width
    kind: str  # what lines it: "buildings" or "park" (see ``props.FRONTAGES``)

    @property
    def walk_inner(self) -> float:
        return self.curb + self.verge

    @property
    def edge(self) -> float:  # outer edge of the sidewalk, where frontages start
        return self.curb + self.verge + self.walk


@dataclass
class Street:
    """Where everything in a scene stands, and the colours of its ground."""

    lanes: list[tuple[float, int]]  # (centre x, direction: +1 away from the camera, -1 toward it)
    lane_lines: list[tuple[float, bool]]  # (x, separates directions)
    parking: dict[int, bool]  # side sign -> a parking lane along that kerb
    road_edges: tuple[float, float]  # distances from the camera to the left and right kerbs (both positive)
    sides: dict[int, Side]  # -1 left, +1 right
    crossing: tuple[float, float] | None  # (near z, far z) of a cross street
    z_end: float  # where the street ends (a row of buildings or trees, or open sky)
    asphalt: Colour
    paving: Colour
    grass: Colour
    slab: tuple[float, float]  # paving slab length and width, metres
    speeds: tuple[float, ...] = ()  # a drive's traffic: metres per second in each lane, signed by its direction

    @classmethod
    def random(cls, dice: Dice, stretch: float = 0.0) -> Street:
        """2 to 4 lanes, one-way or two-way, the camera in a lane its way; parking, sidewalks, maybe a junction.

        ``stretch``: metres a drive adds to the street's length (0 for a still scene).
        """
        d = dice
        lanes = d.integers(2, 5)
        lane_w = d.uniform(2.9, 3.6)
        one_way = d.chance(0.3)
        oncoming = 0 if one_way else lanes // 2
        cam_lane = oncoming + d.integers(0, lanes - oncoming)
        shift = d.uniform(-0.4, 0.4)
        left_edges = [(i - cam_lane - 0.5) * lane_w + shift for i in range(lanes)]
        road_left, road_right = -left_edges[0], left_edges[-1] + lane_w  # both positive distances
        parking = {-1: d.chance(0.45), 1: d.chance(0.55)}
        road_left += 2.3 * parking[-1]
        road_right += 2.3 * parking[1]
        sides = {}
        for sign, curb in ((-1, road_left), (1, road_right)):
            verge = d.uniform(1.0, 3.0) if d.chance(0.25) else 0.0
            kind = "buildings" if d.chance(0.72) else "park"
            sides[sign] = Side(sign, curb, verge, d.uniform(2.5, 6.0), kind)
        crossing = None
        if d.chance(0.4):
            z = d.uniform(18, 45 + stretch)
            crossing = (z, z + d.uniform(10, 16))
        street = cls(
            lanes=[(left + lane_w / 2, -1 if i < oncoming else 1) for i, left in enumerate(left_edges)],
            lane_lines=[(left_edges[i], i == oncoming) for i in range(1, lanes)],
            parking=parking,
            road_edges=(road_left, road_right),
            sides=sides,
            crossing=crossing,
            z_end=d.uniform(110, 260) + stretch,
            asphalt=pick(d, ASPHALT, 0.06),
            paving=pick(d, PAVING, 0.06),
            grass=pick(d, GRASS, 0.08),
            slab=(d.uniform(0.3, 1.5), d.uniform(0.3, 1.5)),
        )
        if stretch:  # a drive's traffic moves on, each lane at its own pace
            street.speeds = tuple(direction * d.uniform(4.0, 12.0) for _, direction in street.lanes)
        return street

    def lane_speed(self, x: float) -> float:
        """How fast traffic moves in the lane nearest ``x``, metres per second, + away from the camera (0: still)."""
        if not self.speeds:
            return 0.0
        nearest = min(range(len(self.lanes)), key=lambda i: abs(self.lanes[i][0] - x))
        return self.speeds[nearest]

    def intervals(self, start: float, end: float) -> list[tuple[float, float]]:
        """Stretches of street frontage, broken by the cross street."""
        if not self.crossing:
            return [(start, end)]
        return [(start, self.crossing[0]), (self.crossing[1], end)]
