"""People: pedestrians on the sidewalks and at the crossing, cyclists, parked bicycles.

A figure is a dozen joints in world metres, projected, with thick limbs between them and an ellipse for the
head; the ``*_drawer`` functions draw their random numbers when called and return a function that draws.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from cityseg.synth.camera import NEAR
from cityseg.synth.geometry import ACROSS_STREET, ALONG_STREET, UP, Point, along
from cityseg.synth.ids import BICYCLE, PERSON, RIDER
from cityseg.synth.materials import BIKE_PAINT, CLOTHES, CYCLING_WEAR, HAIR, HELMET, SKIN, TROUSERS, Colour, scale

if TYPE_CHECKING:
    from cityseg.synth.scene import Scene

BikePoint = Callable[..., Point]  # (a along the bike, c up, b to its right) metres -> world point


def people(scene: Scene) -> None:
    """Pedestrians on both sidewalks and on the crossing, and cyclists near the kerb or crossing the road.

    In a drive, the cyclists riding along the street move on with their lane's traffic, and nobody stands in
    the camera's path.
    """
    d, street = scene.dice, scene.street
    for side in street.sides.values():
        for _ in range(d.poisson(scene.denser(1.8, 4, 40))):
            x = side.sign * (side.walk_inner + d.uniform(0.3, max(0.4, side.walk - 0.3)))
            z = d.uniform(4, scene.ahead(40))
            facing = ALONG_STREET if d.chance(0.5) else (0.0, 0.0, -1.0)
            scene.add_object(z, person_drawer(scene, (x, 0.0, z), facing))
    if street.crossing:
        left, right = street.road_edges
        for _ in range(d.poisson(1.5)):
            z = street.crossing[0] - d.uniform(1.2, 3.8)
            facing = ACROSS_STREET if d.chance(0.5) else (-1.0, 0.0, 0.0)
            x = d.uniform(-left, right)
            draw = person_drawer(scene, (x, 0.0, z), facing)
            if not scene.in_path(x, 0.4):
                scene.add_object(z, draw)
    for _ in range(d.poisson(scene.denser(0.9, 5, 35))):  # cyclists near the kerb, or crossing
        s = 1 if d.chance(0.7) else -1
        edge = street.road_edges[0 if s < 0 else 1] - (2.3 if street.parking[s] else 0)
        x, z = s * (edge - d.uniform(0.6, 1.2)), d.uniform(5, scene.ahead(35))
        heading: Point = (0.0, 0.0, float(s))
        if d.chance(0.25):
            heading = (1.0 if d.chance(0.5) else -1.0, 0.0, 0.0)
        speed = street.lane_speed(x)
        if speed and heading[0] == 0:  # in a drive, riding on with the traffic of their lane
            heading, z = (0.0, 0.0, math.copysign(1.0, speed)), z + speed * scene.time
        draw = bicycle_drawer(scene, (x, 0.0, z), heading, random_looks(scene, riding=True))
        if not scene.in_path(x, 0.4 if heading[0] == 0 else 1.0):
            scene.add_object(z, draw)


def random_looks(scene: Scene, riding: bool = False) -> dict:
    """A person's height (metres), clothes, skin, hair, stride phase, and maybe a helmet and a bag."""
    d = scene.dice
    return {
        "height": d.uniform(1.55, 1.92),
        "top": scene.pick(CYCLING_WEAR if riding else CLOTHES, 0.1),
        "legs": scene.pick(TROUSERS, 0.1),
        "skin": scene.pick(SKIN, 0.05),
        "hair": scene.pick(HAIR, 0.1),
        "phase": d.uniform(0, 2 * math.pi),
        "helmet": scene.pick(HELMET) if riding and d.chance(0.85) else None,
        "bag": scene.pick(CLOTHES) if d.chance(0.3) else None,
    }


def draw_figure(scene: Scene, joints: dict[str, Point], looks: dict, z: float, label: int, from_behind: bool) -> None:
    """A person as thick limbs between projected joints, then the head."""
    cam, cv = scene.cam, scene.canvas
    p = {name: cam.point(point) for name, point in joints.items()}
    thin = 1.5 * scene.px
    legs, top = scene.haze(looks["legs"], z), scene.haze(looks["top"], z)
    for hip, knee, foot in (("hip_l", "knee_l", "foot_l"), ("hip_r", "knee_r", "foot_r")):
        cv.polygon(cam.segment(p[hip], p[knee], 0.17, z, thin), label, legs)
        cv.polygon(cam.segment(p[knee], p[foot], 0.14, z, thin), label, scale(legs, 0.9))
    cv.polygon([p["shoulder_l"], p["shoulder_r"], p["hip_r"], p["hip_l"]], label, top)
    waist = ((p["hip_l"][0] + p["hip_r"][0]) / 2, (p["hip_l"][1] + p["hip_r"][1]) / 2)
    cv.polygon(cam.segment(p["neck"], waist, 0.3, z, 2 * thin), label, top)
    if looks["bag"] is not None:
        strap = (p["neck"][0] * 0.6 + p["hip_l"][0] * 0.4, p["neck"][1] * 0.6 + p["hip_l"][1] * 0.4)
        cv.polygon(cam.segment(strap, p["hip_l"], 0.25, z, thin), label, scene.haze(looks["bag"], z))
    for shoulder, hand in (("shoulder_l", "hand_l"), ("shoulder_r", "hand_r")):
        cv.polygon(cam.segment(p[shoulder], p[hand], 0.1, z, thin), label, scale(top, 0.85))
    (hx, hy), rx, ry = p["head"], max(cam.width_px(0.11, z), thin), max(cam.height_px(0.12, z), thin)
    cv.ellipse((hx, hy), rx, ry, label, scene.haze(looks["hair"] if from_behind else looks["skin"], z))
    cover = looks["helmet"] if looks["helmet"] is not None else looks["hair"]
    cv.ellipse((hx, hy - ry * 0.35), rx * 1.02, ry * 0.7, None, scene.haze(cover, z))


def person_drawer(scene: Scene, base: Point, facing: Point) -> Callable[[], None]:
    """A pedestrian standing at ``base`` mid-stride, facing ``facing`` (a unit vector on the ground)."""
    looks = random_looks(scene)
    h = looks["height"]
    right = (facing[2], 0.0, -facing[0])
    stride = 0.3 * math.sin(looks["phase"])

    def at(a: float, b: float, c: float) -> Point:
        return along(along(along(base, a, facing), b, right), c, UP)

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
        if not scene.passed(base[2], 1.0):  # a drive has come level with them: they are off to the side
            draw_figure(scene, joints, looks, base[2], PERSON, from_behind)

    return draw


def bicycle_drawer(scene: Scene, base: Point, heading: Point, rider: dict | None) -> Callable[[], None]:
    """A bicycle (wheels, frame, handlebar), with a rider on it when ``rider`` gives their looks."""
    d = scene.dice
    paint = scene.pick(BIKE_PAINT)
    right = (heading[2], 0.0, -heading[0])
    crank = d.uniform(0, 2 * math.pi)

    def at(a: float, c: float, b: float = 0.0) -> Point:
        return along(along(along(base, a, heading), c, UP), b, right)

    rider_joints = {} if rider is None else _rider_joints(at, heading, right, crank)

    def draw() -> None:
        if scene.passed(base[2], 1.0):
            return
        z = scene.cam.clamp_depth(base[2], NEAR + 1)
        _draw_bicycle(scene, at, z, paint)
        if rider is not None:
            draw_figure(scene, rider_joints, rider, z, RIDER, heading[2] > 0.5)

    return draw


def _rider_joints(at: BikePoint, heading: Point, right: Point, crank: float) -> dict[str, Point]:
    """A cyclist's joints on the saddle, feet on the pedals at crank angle ``crank``, hands on the bar."""
    hip = at(-0.18, 0.98)
    pedal = {
        side: at(0.17 * math.cos(crank + phase), 0.3 + 0.17 * math.sin(crank + phase), b)
        for side, phase, b in (("l", 0.0, -0.12), ("r", math.pi, 0.12))
    }
    knee = {
        side: along(
            along(along(hip, 0.5, tuple(pv - hv for pv, hv in zip(pedal[side], hip, strict=True))), 0.25, heading),
            0.12,
            UP,
        )
        for side in "lr"
    }
    shoulder = at(0.12, 1.5)
    return {
        "hip_l": at(-0.18, 0.98, -0.12),
        "hip_r": at(-0.18, 0.98, 0.12),
        "knee_l": along(knee["l"], -0.12, right),
        "knee_r": along(knee["r"], 0.12, right),
        "foot_l": pedal["l"],
        "foot_r": pedal["r"],
        "shoulder_l": along(shoulder, -0.2, right),
        "shoulder_r": along(shoulder, 0.2, right),
        "neck": at(0.15, 1.55),
        "hand_l": at(0.45, 1.05, -0.28),
        "hand_r": at(0.45, 1.05, 0.28),
        "head": at(0.2, 1.7),
    }


def _draw_bicycle(scene: Scene, at: BikePoint, z: float, paint: Colour) -> None:
    """Two wheels (grey discs where the spokes blur, dark tyres), the diamond frame and the handlebar."""
    cam, cv = scene.cam, scene.canvas
    tyre_px = max(cam.width_px(0.06, z), 2.0 * scene.px)
    for hub in (-0.53, 0.53):
        ring = cam.points(
            [
                along(at(hub + 0.33 * math.cos(t), 0.34 + 0.33 * math.sin(t)), 0, UP)
                for t in (2 * math.pi * i / 14 for i in range(14))
            ]
        )
        cv.polygon(ring, BICYCLE, scene.haze((92, 92, 90), z))  # spokes blur to grey
        cv.line([*ring, ring[0]], tyre_px, BICYCLE, scene.haze((22, 22, 22), z))
    hub_r, bracket, seat, head, hub_f, bar = (
        cam.point(at(a, c))
        for a, c in ((-0.53, 0.34), (0, 0.3), (-0.15, 0.92), (0.42, 0.95), (0.53, 0.34), (0.45, 1.05))
    )
    frame, thin = scene.haze(paint, z), 1.8 * scene.px
    for a, b in (
        (hub_r, bracket),
        (bracket, seat),
        (seat, hub_r),
        (bracket, head),
        (seat, head),
        (head, hub_f),
        (head, bar),
    ):
        cv.polygon(cam.segment(a, b, 0.05, z, thin), BICYCLE, frame)
    handle = cam.segment(cam.point(at(0.45, 1.05, -0.3)), cam.point(at(0.45, 1.05, 0.3)), 0.05, z, thin)
    cv.polygon(handle, BICYCLE, scale(frame, 0.6))
