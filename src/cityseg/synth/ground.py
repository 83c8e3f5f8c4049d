"""The ground of a street scene: terrain to the horizon, sidewalks and kerbs, the road, its marks and repairs.

Drawn first, straight onto the canvas, from the street's layout (``street``) as the scene's camera sees it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cityseg.synth.camera import NEAR
from cityseg.synth.ids import ROAD, SIDEWALK, TERRAIN
from cityseg.synth.materials import scale

if TYPE_CHECKING:
    from cityseg.synth.scene import Scene


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
