"""Street furniture: street lights, sign posts and signs, traffic lights; poles at least 3 px wide.

The ``*_drawer`` functions draw their random numbers when called (placing the object) and return a function
that draws it, to be queued by depth with ``scene.add_object``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from cityseg.synth.geometry import ACROSS_STREET, ALONG_STREET, Pixel, rectangle
from cityseg.synth.ids import POLE, TRAFFIC_LIGHT, TRAFFIC_SIGN
from cityseg.synth.materials import LAMP_OFF, LIGHT_HOUSING, METAL, SIGN_COLOURS, SIGNAL_LAMPS, Colour, scale
from cityseg.synth.props.people import bicycle_drawer
from cityseg.synth.props.vegetation import tree

if TYPE_CHECKING:
    from cityseg.synth.scene import Scene


def _regular(n: int) -> tuple[tuple[float, float], ...]:
    """A regular n-gon of unit radius, turned so an octagon has a flat top."""
    return tuple(
        (math.cos(2 * math.pi * i / n + math.pi / 8), math.sin(2 * math.pi * i / n + math.pi / 8)) for i in range(n)
    )


# sign kind -> outline, in units of the sign's half width and half height; the shape says what kind it is
SIGN_OUTLINES = {
    "prohibit": _regular(16),
    "mandatory": _regular(16),
    "stop": _regular(8),
    "warning": ((0, -1), (1, 0.8), (-1, 0.8)),
    "priority": ((0, -1), (1, 0), (0, 1), (-1, 0)),
    "info": ((-1, -1), (1, -1), (1, 1), (-1, 1)),
}


def pole(scene: Scene, x: float, z: float, top: float, colour: Colour, width_m: float = 0.18) -> None:
    """A vertical pole, at least 3 px wide so it survives downscaling, with a lit stripe to look round."""
    cam = scene.cam
    (bx, by), (_, ty) = cam.point((x, 0.0, z)), cam.point((x, top, z))
    half = max(cam.width_px(width_m, z), 3.0 * scene.px) / 2
    lit = scene.haze(colour, z)
    mid_y = (ty + by) / 2
    scene.canvas.polygon(rectangle(bx, mid_y, half, (by - ty) / 2), POLE, scale(lit, 0.8))
    scene.canvas.polygon(rectangle(bx, mid_y, half / 3, (by - ty) / 2), None, scale(lit, 1.2))


def street_furniture(scene: Scene) -> None:
    """Street lights, street trees, parked bicycles, sign posts and traffic lights along both kerbs."""
    d = scene.dice
    for side in scene.street.sides.values():
        s = side.sign
        if d.chance(0.7):  # street lights
            spacing = d.uniform(18, 35)
            z = d.uniform(3, spacing)
            while z < min(scene.street.z_end, scene.ahead(150)):
                scene.add_object(z, street_light_drawer(scene, s * (side.curb + 0.5), z, s))
                z += spacing
        if d.chance(0.4):  # street trees
            spacing = d.uniform(8, 15)
            inset = min(1.2, side.walk / 2) if side.verge == 0 else -side.verge / 2
            z = d.uniform(2, spacing)
            while z < min(scene.street.z_end, scene.ahead(120)):
                tree(scene, s * (side.walk_inner + inset), z, d.uniform(4.5, 7.5), d.uniform(1.6, 2.8))
                z += spacing
        for _ in range(d.poisson(scene.denser(0.4, 5, 30))):  # parked bicycles on the sidewalk
            z = d.uniform(5, scene.ahead(30))
            heading = ACROSS_STREET if d.chance(0.6) else ALONG_STREET
            x = s * (side.walk_inner + d.uniform(0.6, max(0.7, side.walk - 0.6)))
            scene.add_object(z, bicycle_drawer(scene, (x, 0.0, z), heading, None))
    for _ in range(round(scene.denser(d.integers(1, 5), 5, 45))):  # signs on their own posts
        side = scene.street.sides[1 if d.chance(0.65) else -1]
        z = d.uniform(5, scene.ahead(45))
        scene.add_object(z, sign_post_drawer(scene, side.sign * (side.curb + d.uniform(0.4, 1.0)), z))
    lights_at = []
    if scene.street.crossing:
        lights_at = [(side, scene.street.crossing[0] - d.uniform(0, 3)) for side in scene.street.sides.values()]
    elif d.chance(0.45):
        lights_at = [(scene.street.sides[1], d.uniform(8, scene.ahead(40)))]
        if d.chance(0.5):
            lights_at.append((scene.street.sides[-1], d.uniform(8, scene.ahead(40))))
    for side, z in lights_at:
        scene.add_object(z, traffic_light_post_drawer(scene, side.sign * (side.curb + 0.6), z, side.sign))


def street_light_drawer(scene: Scene, x: float, z: float, s: int) -> Callable[[], None]:
    """A street light at the kerb, its arm and lamp reaching over the road (``s``: the side's sign)."""
    d = scene.dice
    height, arm = d.uniform(6.5, 9), d.uniform(1.2, 2.5)
    colour = scene.pick(METAL)
    mounted = sign_spec(scene) if d.chance(0.25) else None  # a sign on the lamp post

    def draw() -> None:
        cam, cv = scene.cam, scene.canvas
        if scene.passed(z):
            return
        pole(scene, x, z, height, colour)
        a, b = cam.point((x, height, z)), cam.point((x - s * arm, height + 0.3, z))
        cv.polygon(cam.segment(a, b, 0.15, z, 2.5 * scene.px), POLE, scene.haze(colour, z))
        lamp = cam.segment(b, cam.point((x - s * (arm + 0.6), height + 0.25, z)), 0.3, z, 3 * scene.px)
        cv.polygon(lamp, POLE, scene.haze(scale(colour, 0.6), z))
        if mounted:
            sign(scene, x, 2.6, z, *mounted)

    return draw


def sign_spec(scene: Scene) -> tuple[str, float, bool]:
    """A random sign: (kind, width in metres, seen from behind)."""
    kind = scene.dice.choice(("prohibit", "mandatory", "warning", "priority", "info", "stop"))
    return kind, scene.dice.uniform(0.6, 0.9), scene.dice.chance(0.2)


def sign_post_drawer(scene: Scene, x: float, z: float) -> Callable[[], None]:
    """A thin post with one or two signs."""
    d = scene.dice
    specs = [sign_spec(scene) for _ in range(1 if d.chance(0.7) else 2)]
    bottom, colour = d.uniform(2.0, 2.6), scene.pick(METAL)

    def draw() -> None:
        if scene.passed(z):
            return
        top = bottom + 0.85 * len(specs)
        pole(scene, x, z, top, colour, width_m=0.08)
        for i, spec in enumerate(specs):
            sign(scene, x, top - 0.45 - 0.85 * i, z, *spec)

    return draw


def sign(scene: Scene, x: float, y: float, z: float, kind: str, size: float, back: bool) -> None:
    """A traffic sign facing the camera, at least 6 px wide; its shape and colours say what kind it is."""
    cam, cv = scene.cam, scene.canvas
    cx, cy = cam.point((x, y, z))
    w = max(cam.width_px(size, z), 6.0 * scene.px)
    rx, ry = w / 2, w / 2 * cam.fy / cam.fx * (0.65 if kind == "info" else 1.0)
    unit = SIGN_OUTLINES[kind]

    def outline(k: float) -> list[Pixel]:
        return [(cx + ux * rx * k, cy + uy * ry * k) for ux, uy in unit]

    if back:  # the grey back of a sign facing the other way
        cv.polygon(outline(1.0), TRAFFIC_SIGN, scene.haze(scale((150, 150, 150), scene.dice.uniform(0.7, 1.1)), z))
        return
    outer, inner, symbol = SIGN_COLOURS[kind]
    cv.polygon(outline(1.0), TRAFFIC_SIGN, scene.haze(outer, z))
    cv.polygon(outline(0.72), None, scene.haze(inner, z))
    cv.polygon(rectangle(cx, cy, rx * 0.25, ry * 0.28), None, scene.haze(symbol, z))


def traffic_light_post_drawer(scene: Scene, x: float, z: float, s: int) -> Callable[[], None]:
    """A traffic light on a post, or on a mast with a second light on an arm over the road."""
    d = scene.dice
    mast, arm, height = d.chance(0.5), d.uniform(3, 6), d.uniform(2.8, 4.0)
    colour, housing = scene.pick(METAL), scene.pick(LIGHT_HOUSING)
    lit, plate = d.integers(0, 3), d.chance(0.4)

    def draw() -> None:
        cam, cv = scene.cam, scene.canvas
        if scene.passed(z):
            return
        pole(scene, x, z, 6.0 if mast else height, colour)
        traffic_light(scene, x, height - 0.6, z, housing, lit, plate)
        if mast:  # an arm over the road with a second light hanging from it
            a, b = cam.point((x, 5.8, z)), cam.point((x - s * arm, 5.8, z))
            cv.polygon(cam.segment(a, b, 0.16, z, 2.5 * scene.px), POLE, scene.haze(colour, z))
            traffic_light(scene, x - s * arm, 5.0, z, housing, lit, plate)

    return draw


def traffic_light(scene: Scene, x: float, y: float, z: float, housing: Colour, lit: int, plate: bool) -> None:
    """A signal head facing the camera, at least 4 px wide, with one lamp lit."""
    cam, cv = scene.cam, scene.canvas
    cx, cy = cam.point((x, y, z))
    w = cam.width_px(0.34, z)
    grow = max(1.0, 4.0 * scene.px / w)
    w, h = w * grow, cam.height_px(0.95, z) * grow
    if plate:  # a backplate with a light border belongs to the light
        cv.polygon(rectangle(cx, cy, w, h * 0.6), TRAFFIC_LIGHT, scene.haze((200, 200, 196), z))
        cv.polygon(rectangle(cx, cy, w * 0.8, h * 0.55), None, scene.haze((25, 25, 25), z))
    cv.polygon(rectangle(cx, cy, w / 2, h / 2), TRAFFIC_LIGHT, scene.haze(housing, z))
    for i in range(3):
        colour = SIGNAL_LAMPS[i] if i == lit else LAMP_OFF
        cv.ellipse((cx, cy - h / 2 + h * (2 * i + 1) / 6), w * 0.32, h * 0.12, None, colour)
