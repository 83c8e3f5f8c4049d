"""Vehicles: parked and moving cars, vans, trucks and buses as lit boxes with glass, lamps and wheels; the ego bonnet.

``vehicle_drawer`` draws its random numbers when a vehicle is placed and returns a function that draws it,
to be queued by depth with ``scene.add_object``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from cityseg.synth.camera import NEAR
from cityseg.synth.geometry import UP, Face, Point, along, dot
from cityseg.synth.ids import BUS, CAR, TRUCK, UNLABELED
from cityseg.synth.materials import (
    BUS_PAINT,
    CAR_PAINT,
    GLASS,
    HEAD_LAMP,
    PLATE,
    RIM,
    TAIL_LAMP,
    TRUCK_PAINT,
    TYRE,
    Colour,
    mix,
    scale,
)

if TYPE_CHECKING:
    from cityseg.synth.scene import Scene

VEHICLE_LABELS = {"car": CAR, "van": CAR, "truck": TRUCK, "bus": BUS}
VEHICLE_PAINTS = {"car": CAR_PAINT, "van": CAR_PAINT, "truck": TRUCK_PAINT, "bus": BUS_PAINT}
VEHICLE_LENGTHS = {"car": (3.9, 4.9), "van": (4.8, 5.4), "truck": (7, 11), "bus": (10.5, 12.5)}  # metres


def traffic(scene: Scene) -> None:
    """Cars parked along the kerbs, traffic in the lanes both ways, and cross traffic in a junction.

    In a drive the lanes' traffic moves on (each lane at its own speed, ``Street.lane_speed``, so no car runs
    into another), and the camera's own lane and path are kept clear.
    """
    d, street = scene.dice, scene.street
    occupied: list[tuple[float, float, float]] = []  # (x, z0, z1) footprints already used, where they start

    def place(kind: str, x: float, z: float, heading: int, speed: float = 0.0) -> None:
        length = vehicle_length(scene, kind)
        if z < 3.5 or any(abs(x - ox) < 2.4 and z < oz1 + 1 and z + length > oz0 - 1 for ox, oz0, oz1 in occupied):
            return
        occupied.append((x, z, z + length))
        if speed:
            z += speed * scene.time
        scene.add_object(z, vehicle_drawer(scene, kind, x, z, length, heading))

    for s, side in street.sides.items():
        if not street.parking[s]:
            continue
        z = d.uniform(2, 8)
        while z < scene.ahead(80):
            if d.chance(0.6) and not (street.crossing and street.crossing[0] - 6 < z < street.crossing[1]):
                kind = d.choice(("car", "van", "truck"), (0.82, 0.1, 0.08))
                place(kind, s * (side.curb - 1.15) + d.uniform(-0.15, 0.15), z, 1 if d.chance(0.8) else -1)
            z += d.uniform(5.5, 7.5)
    for x, direction in street.lanes:
        if scene.in_path(x, 0.0):
            continue
        speed = street.lane_speed(x)
        start = 7 if abs(x) > 1.5 else 10
        end = scene.ahead(75) + (scene.stretch if direction < 0 else 0.0)  # oncoming traffic has further to come
        for _ in range(d.poisson((end - start) / (75 - start) if scene.moving else 1.0)):
            kind = d.choice(("car", "van", "truck", "bus"), (0.62, 0.08, 0.13, 0.17))
            place(kind, x + d.uniform(-0.3, 0.3), d.uniform(start, end), direction, speed)
    if street.crossing and d.chance(0.6):  # cross traffic in the junction
        z0, z1 = street.crossing
        kind = d.choice(("car", "truck", "bus"), (0.7, 0.15, 0.15))
        x, z = d.uniform(-15, 15), (z0 + z1) / 2 - 1.2
        length = vehicle_length(scene, kind)
        draw = vehicle_drawer(scene, kind, x, z, length, heading=0)
        if not scene.in_path(x, length / 2):
            scene.add_object(z0 + 1, draw)


def vehicle_length(scene: Scene, kind: str) -> float:
    """A random length, in metres, for a vehicle of ``kind`` (``VEHICLE_LENGTHS``)."""
    low, high = VEHICLE_LENGTHS[kind]
    return scene.dice.uniform(low, high)


def vehicle_drawer(scene: Scene, kind: str, x: float, z: float, length: float, heading: int) -> Callable[[], None]:
    """A car, van, truck or bus as boxes with glass, lamps and wheels.

    ``heading``: +1 driving away (we see its back), -1 toward us, 0 crossing from side to side.
    """
    d = scene.dice
    label = VEHICLE_LABELS[kind]
    paint = scene.pick(VEHICLE_PAINTS[kind], 0.06)
    cargo, glass = scene.pick(TRUCK_PAINT, 0.06), scene.pick(GLASS, 0.1)
    # every entry is drawn whatever the kind: the dice sequence, and so every later draw, depends on it
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
    rear = along(along(centre, -length / 2, forward), -width / 2, right)  # a = 0 is the back, b = 0 the left

    def part(a0: float, a1: float, inset: float, c0: float, c1: float) -> list[Face]:
        origin = along(along(along(rear, a0, forward), inset, right), c0, UP)
        return scene.cam.box_faces(origin, forward, right, a1 - a0, width - 2 * inset, c1 - c0)

    def draw() -> None:
        if scene.passed(z + (width if heading == 0 else length)):  # a drive has passed it
            return
        if scene.moving and z + length > scene.street.z_end:  # driven on past the street's far end
            return
        corners = ((-0.2, -0.2), (length + 0.2, -0.2), (length + 0.2, width + 0.2), (-0.2, width + 0.2))
        foot = [along(along(rear, a, forward), b, right) for a, b in corners]
        scene.canvas.cast_shadow(scene.cam.points(foot), 0.4 if scene.light.overcast else 0.55)
        if kind in ("car", "van"):
            paint_faces(scene, part(0, length, 0, 0, body_h), label, paint, "body", glass)
            if kind == "car":  # sloping rear window and windscreen
                bottom, top = (length * 0.2, length * 0.75), (length * 0.3, length * 0.55)
            else:
                bottom, top = (0.1, length * 0.8), (0.15, length * 0.68)
            frame = (rear, forward, right)
            _cabin(scene, frame, bottom, top, width, heights=(body_h, height), label=label, paint=paint, glass=glass)
        elif kind == "truck":
            cab = min(2.3, length * 0.3)
            paint_faces(scene, part(0, length, 0.15, 0.2, 1.1), label, (40, 40, 42), "chassis", glass)
            paint_faces(scene, part(0, length - cab - 0.2, 0, 1.0, height), label, cargo, "cargo", glass)
            paint_faces(scene, part(length - cab, length, 0, 0.3, height * 0.82), label, paint, "cab", glass)
        else:
            paint_faces(scene, part(0, length, 0, 0.15, height), label, paint, "bus", glass)
        for face in part(0, length, 0, 0, 0.7):  # wheels, and tyres showing under the body
            _wheels(scene, face, label, length, kind)

    return draw


def paint_faces(scene: Scene, faces: list[Face], label: int, paint: Colour, part: str, glass: Colour) -> None:
    """Paint a vehicle part's faces, then the trim its kind of part has (``TRIMS``): lamps, glass, seams."""
    trim = TRIMS.get(part)
    for face in faces:
        z = face.depth
        scene.canvas.polygon(scene.cam.outline(face), label, scene.shade(paint, face.normal, z))
        if face.name == "top" or trim is None:
            continue
        lamp = scene.haze(HEAD_LAMP if face.name == "front" else TAIL_LAMP, z)
        trim(scene, face, paint, scene.haze(glass, z), lamp)


def _body_trim(scene: Scene, face: Face, paint: Colour, glass: Colour, lamp: Colour) -> None:
    """A car's or van's lower body: lamps and a number plate at the ends, a dark sill all round."""
    cv, quad, z, lu, lv = scene.canvas, scene.cam.quad, face.depth, face.lu, face.lv
    if face.name in ("back", "front"):
        cv.polygon(quad(face, 0.08, 0.36, lv - 0.3, lv - 0.12), None, lamp)
        cv.polygon(quad(face, lu - 0.36, lu - 0.08, lv - 0.3, lv - 0.12), None, lamp)
        cv.polygon(quad(face, lu / 2 - 0.26, lu / 2 + 0.26, 0.3, 0.42), None, scene.haze(PLATE, z))
    cv.polygon(quad(face, 0, lu, 0, 0.2), None, scene.haze((30, 30, 32), z))


def _cargo_trim(scene: Scene, face: Face, paint: Colour, glass: Colour, lamp: Colour) -> None:
    """A truck's cargo box: the seam between the rear doors and a dark bottom edge."""
    if face.name not in ("back", "front"):
        return
    cv, quad, z, lu, lv = scene.canvas, scene.cam.quad, face.depth, face.lu, face.lv
    seam = quad(face, lu / 2 - 0.02, lu / 2 + 0.02, 0.1, lv - 0.1)
    cv.polygon(seam, None, scene.shade(scale(paint, 0.55), face.normal, z))
    cv.polygon(quad(face, 0, lu, 0, 0.12), None, scene.haze((40, 40, 40), z))


def _cab_trim(scene: Scene, face: Face, paint: Colour, glass: Colour, lamp: Colour) -> None:
    """A truck's cab: windscreen and headlamps in front, a side window either side."""
    cv, quad, lu, lv = scene.canvas, scene.cam.quad, face.lu, face.lv
    if face.name == "front":
        cv.polygon(quad(face, 0.15, lu - 0.15, lv * 0.55, lv - 0.1), None, glass)
        cv.polygon(quad(face, 0.1, 0.4, 0.45, 0.65), None, lamp)
        cv.polygon(quad(face, lu - 0.4, lu - 0.1, 0.45, 0.65), None, lamp)
    elif face.name != "back":
        cv.polygon(quad(face, 0.3, lu - 0.4, lv * 0.55, lv - 0.15), None, glass)


def _bus_trim(scene: Scene, face: Face, paint: Colour, glass: Colour, lamp: Colour) -> None:
    """A bus: big end windows, a destination display and lamps; a row of side windows over a dark band."""
    cv, quad, z, lu, lv = scene.canvas, scene.cam.quad, face.depth, face.lu, face.lv
    if face.name in ("back", "front"):
        front = face.name == "front"
        bottom, top = (1.0, lv - 0.45) if front else (1.7, lv - 0.35)
        cv.polygon(quad(face, 0.12, lu - 0.12, bottom, top), None, glass)
        if front:  # destination display
            cv.polygon(quad(face, 0.3, lu - 0.3, lv - 0.4, lv - 0.12), None, scene.haze((60, 40, 10), z))
        cv.polygon(quad(face, 0.1, 0.4, 0.4, 0.6), None, lamp)
        cv.polygon(quad(face, lu - 0.4, lu - 0.1, 0.4, 0.6), None, lamp)
        return
    step = scene.dice.uniform(1.2, 1.6)
    u = 0.4
    while u < lu - step:
        cv.polygon(quad(face, u, u + step - 0.15, 1.05, lv - 0.45), None, glass)
        u += step
    cv.polygon(quad(face, 0, lu, 0.15, 0.35), None, scene.shade(scale(paint, 0.7), face.normal, z))


# vehicle part -> what is drawn on its (non-top) faces after the paint; a truck's chassis has none
TRIMS: dict[str, Callable[[Scene, Face, Colour, Colour, Colour], None]] = {
    "body": _body_trim,
    "cargo": _cargo_trim,
    "cab": _cab_trim,
    "bus": _bus_trim,
}


def _cabin(
    scene: Scene,
    frame: tuple[Point, Point, Point],
    bottom: tuple[float, float],
    top: tuple[float, float],
    width: float,
    *,
    heights: tuple[float, float],
    label: int,
    paint: Colour,
    glass: Colour,
) -> None:
    """A car's glasshouse: a frustum from ``bottom`` (a0, a1 at the waist) to the narrower ``top`` (the roof).

    ``frame`` is the car's (rear corner, forward, right); ``heights`` the (waist, roof) heights in metres.
    """
    rear, forward, right = frame
    c0, c1 = heights

    def at(a: float, b: float, c: float) -> Point:
        return along(along(along(rear, a, forward), b, right), c, UP)

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
    cam, cv = scene.cam, scene.canvas
    for name, quad, normal, mid in _visible_quads(scene, faces, centre):
        z = mid[2]
        cv.polygon(cam.points(quad), label, scene.shade(paint, normal, z))
        if name == "top":
            continue
        # glass fills the face but for thin pillars; the sides are split in two by the middle pillar
        panes = (
            [quad]
            if name in ("back", "front")
            else [
                [quad[0], mix(quad[0], quad[1], 0.5), mix(quad[3], quad[2], 0.5), quad[3]],
                [mix(quad[0], quad[1], 0.5), quad[1], quad[2], mix(quad[3], quad[2], 0.5)],
            ]
        )
        tint = mix(scene.haze(glass, z), scene.light.sky_low, 0.08 + 0.1 * max(0.0, normal[1]))  # slopes reflect sky
        for pane in panes:
            pane_mid = tuple(sum(p[k] for p in pane) / 4 for k in range(3))
            shrunk = [mix(pane_mid, p, 0.82) for p in pane]
            cv.polygon(cam.points(shrunk), None, tint)


def _visible_quads(
    scene: Scene, faces: list[tuple[str, list[Point]]], centre: Point
) -> list[tuple[str, list[Point], Point, Point]]:
    """The named quads of a closed solid around ``centre`` that face the camera, far to near.

    Returns:
        (name, quad, outward unit normal, middle point) per visible quad.
    """
    visible = []
    for name, quad in faces:
        mid = tuple(sum(p[k] for p in quad) / 4 for k in range(3))
        e1, e2 = [quad[1][k] - quad[0][k] for k in range(3)], [quad[3][k] - quad[0][k] for k in range(3)]
        normal = (e1[1] * e2[2] - e1[2] * e2[1], e1[2] * e2[0] - e1[0] * e2[2], e1[0] * e2[1] - e1[1] * e2[0])
        if dot(normal, [mid[k] - centre[k] for k in range(3)]) < 0:
            normal = (-normal[0], -normal[1], -normal[2])
        length = math.sqrt(dot(normal, normal)) or 1.0
        normal = (normal[0] / length, normal[1] / length, normal[2] / length)
        to_cam = scene.cam.to_camera(mid)
        if dot(normal, to_cam) > 0 and scene.cam.depth(mid[2]) > NEAR:
            visible.append((-dot(to_cam, to_cam), name, quad, normal, mid))
    visible.sort(key=lambda item: item[0])
    return [(name, quad, normal, mid) for _, name, quad, normal, mid in visible]


def _wheels(scene: Scene, face: Face, label: int, length: float, kind: str) -> None:
    """Wheels with rims on a side face; the tyres' bottoms showing under the back or front."""
    cv, z = scene.canvas, face.depth
    tyre = scene.haze(TYRE, z)
    if face.name in ("left", "right"):
        radius = 0.33 if kind in ("car", "van") else 0.5
        for u in (min(0.9, length * 0.2), length - min(1.0, length * 0.2)):
            cv.polygon(scene.cam.circle(face, u, radius, radius), label, tyre)
            cv.polygon(scene.cam.circle(face, u, radius, radius * 0.55, 8), None, scene.haze(RIM, z))
    elif face.name in ("back", "front"):
        cv.polygon(scene.cam.quad(face, 0.1, 0.35, 0, 0.3), label, tyre)
        cv.polygon(scene.cam.quad(face, face.lu - 0.35, face.lu - 0.1, 0, 0.3), label, tyre)


def ego_bonnet(scene: Scene) -> None:
    """The ego car's bonnet along the bottom edge, as in every Cityscapes frame (void: ``unlabeled``)."""
    d, w, h = scene.dice, scene.w, scene.h
    top = h * (1 - d.uniform(0.06, 0.11))
    xs = [w * (-0.05 + 1.1 * i / 16) for i in range(17)]
    ys = [top + (h - top) * 0.55 * ((x - w / 2) / (w / 2)) ** 2 for x in xs]
    edge = list(zip(xs, ys, strict=True))
    paint = scale((28, 30, 34), d.uniform(0.7, 1.4))
    scene.canvas.polygon([*edge, (1.05 * w, h + 1), (-0.05 * w, h + 1)], UNLABELED, paint)
    gleam = [(x, y + 1) for x, y in edge] + [(x, y + 0.25 * (h - top)) for x, y in reversed(edge)]
    scene.canvas.polygon(gleam, None, mix(scale(paint, 0.5), scene.light.sky_low, 0.25))
