"""One street scene being drawn: its random numbers, camera, light, street layout, canvas and draw queue.

The props (``props``) are functions over a :class:`Scene`: each reads the layout, draws what lies flat
behind everything straight onto the canvas, and queues what stands in the street, to be drawn far to near
(painter's order) once everything is placed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from cityseg.synth.camera import Camera
from cityseg.synth.canvas import Canvas
from cityseg.synth.dice import Dice
from cityseg.synth.geometry import Face
from cityseg.synth.layout import Street
from cityseg.synth.lighting import Lighting
from cityseg.synth.materials import Colour, pick, scale


class Scene:
    """A random street scene of ``height`` x ``width`` pixels; every number comes from ``rng``.

    The camera, light and street are drawn from ``rng`` here, in that order; the props draw the rest.
    """

    def __init__(self, rng: np.random.Generator, height: int, width: int):
        self.rng = rng  # for noise images
        self.dice = Dice(rng)  # for everything else
        self.h, self.w = height, width
        self.px = width / 256  # minimum sizes in the props are in pixels at 256 wide
        self.cam = Camera.random(self.dice, height, width)
        self.light = Lighting.random(self.dice)
        self.street = Street.random(self.dice)
        self.canvas = Canvas(self.light.sky(self.cam, height, width))
        self.surfaces: list[dict[str, float]] = []  # patterned faces; surface id i is entry i - 1
        self._queue: list[tuple[float, int, Callable[[], None]]] = []

    def pick(self, palette: Sequence[Sequence[float]], jitter: float = 0.08) -> Colour:
        """A jittered colour from ``palette`` (see ``materials.pick``)."""
        return pick(self.dice, palette, jitter)

    def haze(self, colour: Sequence[float], z: float) -> Colour:
        return self.light.haze(colour, z)

    def shade(self, colour: Sequence[float], normal: Sequence[float], z: float) -> Colour:
        return self.light.shade(colour, normal, z)

    def add_object(self, z: float, draw: Callable[[], None]) -> None:
        """Queue something standing in the street, to be drawn in order of depth ``z`` (far first)."""
        self._queue.append((z, len(self._queue), draw))

    def draw_queued(self) -> None:
        """Draw the queued objects far to near; ties keep the order they were queued in."""
        for _, _, draw in sorted(self._queue, key=lambda item: (-item[0], item[1])):
            draw()

    def add_surface(self, face: Face, label: int, **pattern) -> int:
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
        lit = self.light.brightness(face.normal)
        for key, value in pattern.items():
            if isinstance(value, tuple):
                for channel, c in zip("rgb", self.haze(scale(value, lit), face.depth), strict=True):
                    entry[f"{key}_{channel}"] = c / 255
            else:
                entry[key] = float(value)
        self.surfaces.append(entry)
        return len(self.surfaces)
