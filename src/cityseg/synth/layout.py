"""The street layout: lanes, parking, kerbs, sidewalks and frontages either side, a cross street; the ground.

Distances are metres from the starting camera, which drives in one of the lanes (see ``camera``); the props
stand on this layout and read it from ``scene.street``. A drive's street is laid out longer by ``stretch``
metres, the way it will drive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cityseg.synth.camera import NEAR
from cityseg.synth.dice import Dice
from cityseg.synth.ids import ROAD, SIDEWALK, TERRAIN
from cityseg.synth.materials import ASPHALT, GRASS, PAVING, Colour, pick, scale

if TYPE_CHECKING:
    from cityseg.synth.scene import Scene


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


def draw_ground(scene: Scene) -> None:
    """Terrain to the horizon, sidewalks and kerbs, the road, a cross street with its zebra, marks and repairs."""
    d, cv, cam, street = scene.dice, scene.canvas, scene.cam, scene.street
    horizon, h, w = cam.horizon, scene.h, scene.w
    cv.polygon([(0, horizon), (w, horizon), (w, h), (0, h)], TERRAIN, scene.light.haze(street.grass, 60))
    far = 2000.0
    left, right = street.road_edges
    for side in street.sides.values():
        s = side.sign
        cv.polygon(cam.ground_quad(s * side.walk_inner, s * side.edge, NEAR, far), SIDEWALK, street.paving)
        kerb = cam.ground_quad(s * side.curb, s * (side.curb + 0.25), NEAR, far)  # light kerb stones
        cv.polygon(
            kerb,
            SIDEWALK if side.verge == 0 else TERRAIN,
            scale(street.paving, 1.15) if side.verge == 0 else street.grass,
        )
    cv.polygon(cam.ground_quad(-left, right, NEAR, far), ROAD, street.asphalt)
    if street.crossing:
        z0, z1 = street.crossing
        cv.polygon(cam.ground_quad(-400, 400, z0, z1), ROAD, street.asphalt)
        x = -left + 0.5
        paint = scale(street.asphalt, 1.9)
        while x < right - 0.5:  # zebra crossing
            cv.polygon(cam.ground_quad(x, x + 0.55, z0 - 4.0, z0 - 1.0), None, paint)
            x += 1.1
    _lane_marks(scene)
    for _ in range(round(scene.denser(d.integers(0, 4), 4, 40))):  # asphalt repairs break up the surface
        x, z = d.uniform(-left, right), d.uniform(4, scene.ahead(40))
        quad = cam.ground_quad(x, x + d.uniform(0.6, 2.5), z, z + d.uniform(0.6, 6))
        cv.polygon(quad, None, scale(street.asphalt, d.uniform(0.75, 1.2)))


def _lane_marks(scene: Scene) -> None:
    d, cv, cam, street = scene.dice, scene.canvas, scene.cam, scene.street
    white = scale((215, 215, 210), d.uniform(0.8, 1.05))
    period, dash = d.uniform(9, 13), d.uniform(2.5, 4.5)
    gap = (street.crossing[0] - 4, street.crossing[1]) if street.crossing else (1e9, 1e9)  # no marks in a junction
    for x, centre in street.lane_lines:
        if centre and d.chance(0.5):  # a solid centre line
            spans = [(NEAR, min(gap[0], scene.ahead(120.0))), (gap[1], scene.ahead(120.0))]
        else:
            spans, z = [], d.uniform(0, period)
            while z < scene.ahead(90):
                if z + dash < gap[0] or z > gap[1]:
                    spans.append((z, z + dash))
                z += period
        for z0, z1 in spans:
            if z1 > z0:
                cv.polygon(cam.ground_quad(x - 0.075, x + 0.075, z0, z1), None, white)
    left, right = street.road_edges
    if d.chance(0.5):  # edge lines along the parking lane or kerb
        for x in (-left + 0.3 + 2.3 * street.parking[-1], right - 0.3 - 2.3 * street.parking[1]):
            cv.polygon(cam.ground_quad(x - 0.06, x + 0.06, NEAR, scene.ahead(120.0)), None, scale(white, 0.9))
