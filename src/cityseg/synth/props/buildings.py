"""Frontages: buildings with windows and shops, parks, backyards, walls, fences and hedges; the street's far end."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from cityseg.synth.camera import NEAR
from cityseg.synth.geometry import ACROSS_STREET, ALONG_STREET, Point
from cityseg.synth.ids import BUILDING, FENCE, VEGETATION, WALL
from cityseg.synth.materials import (
    FENCE_PAINT,
    FOLIAGE,
    GLASS,
    PLASTER,
    ROOFING,
    SHOP_SIGN,
    WALL_STONE,
    Colour,
    mix,
    scale,
)
from cityseg.synth.patterns import BARS, JOINTS, WINDOWS
from cityseg.synth.props.vegetation import tree

if TYPE_CHECKING:
    from cityseg.synth.scene import Scene
    from cityseg.synth.street import Side


def far_end(scene: Scene) -> None:
    """A row of buildings or trees closing the street far away, or open sky."""
    d = scene.dice
    if d.chance(0.25):
        return
    z, x = scene.street.z_end, -d.uniform(150, 250)
    while x < 250:
        width = d.uniform(15, 45)
        if d.chance(0.65):
            building(scene, (x, 0.0, z), 20, width, d.uniform(8, 28), along_street=False)
        else:
            tree(scene, x + width / 2, z + 5, d.uniform(5, 12), d.uniform(4, 9), now=True)
        x += width


def buildings(scene: Scene, side: Side) -> None:
    """A row of buildings along one side, with gaps onto backyards, front gardens, roofs and cast shadows."""
    d, s = scene.dice, side.sign
    blocks = []
    for start, end in scene.street.intervals(d.uniform(-10, 0), scene.street.z_end):
        z = start
        while z < end - 2:
            length = min(d.uniform(8, 30), end - z)
            if d.chance(0.1) and z > 10:  # a gap between buildings shows a backyard
                _backyard(scene, side, z, length)
            else:
                blocks.append((z, length))
            z += length
    garden_prob = d.uniform(0, 0.5)
    light, sun = scene.light, scene.light.sun
    for z, length in reversed(blocks):  # far to near
        garden = d.chance(garden_prob)
        setback = d.uniform(2.5, 6) if garden else d.uniform(0, 0.6)
        height, depth = d.uniform(6, 26), d.uniform(15, 30)
        x_face = s * (side.edge + setback)
        if not light.overcast and sun[0] * s < 0:  # the sun is behind this row: it shades the street
            reach = min(height * math.cos(math.asin(sun[1])) / sun[1] * abs(sun[0]), 40)
            shadow = scene.cam.ground_quad(x_face, x_face - s * (reach + setback), z, z + length)
            scene.canvas.cast_shadow(shadow, 0.45)
        if d.chance(0.35):
            _roof(scene, x_face, s, z, length=length, height=height)
        building(scene, (x_face if s > 0 else x_face - depth, 0.0, z), length, depth, height, shops=setback < 1)
        if garden:
            boundary(scene, side, z, z + length, d.choice(("wall", "fence", "hedge"), (0.4, 0.35, 0.25)))


def building(
    scene: Scene,
    origin: Point,
    along: float,
    across: float,
    height: float,
    along_street: bool = True,
    shops: bool = False,
) -> None:
    """A box of a building with windows: ``along`` metres along the street and ``across`` (or facing us)."""
    colour = scene.pick(PLASTER, 0.07)
    la, lb = (along, across) if along_street else (across, along)
    windows = _window_style(scene, colour, shops)
    for face in scene.cam.box_faces(origin, ALONG_STREET, ACROSS_STREET, la, lb, height):
        surface = 0 if face.name == "top" else scene.add_surface(face, BUILDING, **windows)
        scene.canvas.polygon(scene.cam.outline(face), BUILDING, scene.shade(colour, face.normal, face.depth), surface)


def _window_style(scene: Scene, wall: Colour, shops: bool) -> dict:
    """The window grid of one building, in metres on its faces (see ``patterns``)."""
    d = scene.dice
    floor_h, spacing, ground = d.uniform(2.9, 3.6), d.uniform(2.2, 4.0), d.uniform(3.2, 4.5)
    framed = d.chance(0.5)
    return {
        "kind": WINDOWS,
        "spacing": spacing,
        "win_w": spacing * d.uniform(0.35, 0.62),
        "floor_h": floor_h,
        "win_h": floor_h * d.uniform(0.4, 0.62),
        "u_start": d.uniform(0.3, 1.2),
        "v_first": ground + 0.8,
        "glass": mix(scale(scene.pick(GLASS, 0.15), 0.75), scene.light.sky_low, 0.12),
        "frame": tuple(min(c * 1.25 + 25, 250.0) for c in wall) if framed else wall,
        "shop": float(shops and d.chance(0.7)),
        "ground": ground,
        "shop_w": d.uniform(2, 4),
        "shop_gap": d.uniform(0.6, 2),
        "band": scene.pick(SHOP_SIGN),
        "shop_glass": scale(scene.pick(GLASS, 0.2), 0.8),
    }


def _roof(scene: Scene, x_face: float, s: int, z: float, *, length: float, height: float) -> None:
    rise, inset = scene.dice.uniform(1.5, 4), scene.dice.uniform(2, 5)
    pts = (
        (x_face, height, z),
        (x_face, height, z + length),
        (x_face + s * inset, height + rise, z + length),
        (x_face + s * inset, height + rise, z),
    )
    colour = scene.haze(scene.pick(ROOFING), z + length / 2)
    scene.canvas.polygon(scene.cam.points(pts), BUILDING, colour, surface=0)


def _backyard(scene: Scene, side: Side, z: float, length: float) -> None:
    d, s = scene.dice, side.sign
    for _ in range(d.integers(0, 3)):
        tree(
            scene,
            s * (side.edge + d.uniform(4, 15)),
            z + d.uniform(0, length),
            d.uniform(4, 10),
            d.uniform(2.5, 5),
            now=True,
        )
    if d.chance(0.5):
        boundary(scene, side, z, z + length, d.choice(("wall", "fence", "hedge")), now=True)


def park(scene: Scene, side: Side) -> None:
    """A park along one side: trees on grass, maybe buildings beyond, and a fence, wall or hedge in front."""
    d, s = scene.dice, side.sign
    if d.chance(0.6):  # buildings beyond the park
        x, z = s * (side.edge + d.uniform(30, 70)), 0.0
        while z < scene.street.z_end:
            length = d.uniform(15, 40)
            building(scene, (x if s > 0 else x - 15, 0.0, z), length, 15, d.uniform(8, 25))
            z += length + d.uniform(0, 20)
    still_end = scene.street.z_end - scene.stretch  # where a still scene's street would end
    reach = scene.ahead(still_end * 0.6)
    trees = [
        (s * (side.edge + d.uniform(1.5, 30)), d.uniform(-5, reach))
        for _ in range(round(scene.denser(d.integers(5, 14), -5, still_end * 0.6)))
    ]
    for x, z in sorted(trees, key=lambda t: -t[1]):
        tree(scene, x, z, d.uniform(4, 9), d.uniform(2, 4.5), now=True)
    kind = d.choice(("fence", "wall", "hedge", "none"), (0.35, 0.25, 0.25, 0.15))
    if kind != "none":
        for start, end in scene.street.intervals(-5, scene.ahead(still_end * d.uniform(0.3, 1))):
            boundary(scene, side, start, end, kind, now=True)


def boundary(scene: Scene, side: Side, z0: float, z1: float, kind: str, now: bool = False) -> None:
    """A wall, fence or hedge along the outer edge of the sidewalk."""
    d, s = scene.dice, side.sign
    z0 = max(z0, NEAR)
    if z1 <= z0:
        return
    thick = d.uniform(0.6, 1.2) if kind == "hedge" else 0.3
    # every entry is drawn whatever the kind: the dice sequence, and so every later draw, depends on it
    height = {"wall": d.uniform(0.6, 2.2), "fence": d.uniform(1.0, 2.0), "hedge": d.uniform(0.8, 1.8)}[kind]
    origin = (s * side.edge if s > 0 else s * side.edge - thick, 0.0, z0)
    label = {"wall": WALL, "fence": FENCE, "hedge": VEGETATION}[kind]
    colour = scene.pick({"wall": WALL_STONE, "fence": FENCE_PAINT, "hedge": FOLIAGE}[kind])
    pattern = {
        "fence": {"kind": BARS, "step": d.uniform(0.12, 0.3), "bar": scale(colour, 1.3)},
        "wall": {
            "kind": JOINTS,
            "course": d.uniform(0.2, 0.5),
            "block": d.uniform(0.4, 1.2),
            "cap": scale(colour, 1.2),
        },
    }.get(kind)

    def draw() -> None:
        for face in scene.cam.box_faces(origin, ALONG_STREET, ACROSS_STREET, z1 - z0, thick, height):
            base = scale(colour, 0.5) if kind == "fence" and face.name != "top" else colour
            surface = None
            if pattern is not None:
                surface = 0 if face.name == "top" else scene.add_surface(face, label, **pattern)
            scene.canvas.polygon(scene.cam.outline(face), label, scene.shade(base, face.normal, face.depth), surface)

    if now:
        draw()
    else:
        scene.add_object(z0, draw)
