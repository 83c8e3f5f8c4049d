"""One street scene being drawn: its random numbers, camera, light, street layout, canvas and draw queue.

The props (``props``) are functions over a :class:`Scene`: each reads the layout, draws what lies flat
behind everything straight onto the canvas, and queues what stands in the street, to be drawn far to near
(painter's order) once everything is placed.

A frame of a generated drive (``synth.drive``) is a scene with a :class:`Shot`: the same street is placed
again for every frame, from a generator seeded the same way, and drawn from the frame's camera pose. So
that the placement comes out the same whatever the camera sees, a drive's scene keeps apart what a still
scene draws from its one generator: the layout's dice are only used to place things; what is drawn while
drawing (the back of a sign, a bus's window spacing) comes from dice of that object's own, and the bonnet
and finish (exposure, blur, noise strength) from the drive's, the same in every frame. Noise images come
from the frame's own generator, except the per-class texture blotches, which stay for the whole drive.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from cityseg.synth.camera import NEAR, Camera
from cityseg.synth.canvas import Canvas
from cityseg.synth.dice import Dice, SeededDice
from cityseg.synth.geometry import Face
from cityseg.synth.lighting import Lighting
from cityseg.synth.materials import Colour, pick, scale
from cityseg.synth.street import Street

# streams of a drive's seed: Shot.entropy + (stream, ...) seeds each generator a drive uses
LAYOUT, NOISE, STEADY, OBJECT, FINISH, MOTION = 1, 2, 3, 4, 5, 6
DRIVE_VIEW = 400.0  # metres: a drive draws no street object farther ahead (a still scene's street ends by 260)
EGO_HALF_WIDTH = 1.5  # metres either side of a drive's path kept clear of anything standing in the road


@dataclass(frozen=True)
class Shot:
    """One frame of a generated drive: the camera's pose, the time, and the seeds of the frame's generators."""

    entropy: tuple[int, ...]  # the drive's seed; every generator of every frame derives from it
    frame: int  # 0-based
    time: float  # seconds since the drive began (moving traffic)
    x: float  # the camera's sideways sway, metres
    z: float  # metres driven
    stretch: float  # metres the street is laid out beyond a still scene's; the same in every frame

    def generator(self, *stream: int) -> np.random.Generator:
        return np.random.default_rng([*self.entropy, *stream])


class Scene:
    """A random street scene of ``height`` x ``width`` pixels; every number comes from ``rng``.

    The camera, light and street are drawn from ``rng`` here, in that order; the props draw the rest.
    With a ``shot`` it is one frame of a drive: ``rng`` places the street (the same for every frame), the
    camera stands where the shot says, and the other numbers come from the shot's generators.
    """

    def __init__(self, rng: np.random.Generator, height: int, width: int, shot: Shot | None = None):
        self.shot = shot
        self.rng = rng if shot is None else shot.generator(NOISE, shot.frame)  # for noise images
        self.steady_rng = rng if shot is None else shot.generator(STEADY)  # for noise that stays over a drive
        self.dice = Dice(rng)  # for everything else
        self.h, self.w = height, width
        self.px = width / 256  # minimum sizes in the props are in pixels at 256 wide
        self.cam = Camera.random(self.dice, height, width)
        self.stretch = 0.0 if shot is None else shot.stretch
        self.time = 0.0 if shot is None else shot.time
        if shot is not None:
            self.cam = self.cam.posed(shot.x, shot.z)
        self.light = Lighting.random(self.dice)
        self.street = Street.random(self.dice, self.stretch)
        self.canvas = Canvas(self.light.sky(self.cam, height, width), wide_surfaces=shot is not None)
        self.max_surfaces = 255 if shot is None else 2**31 - 1  # what the canvas's surface layer can number
        self.surfaces: list[dict[str, float]] = []  # patterned faces; surface id i is entry i - 1
        self._queue: list[tuple[float, int, Callable[[], None]]] = []

    @property
    def moving(self) -> bool:
        """Whether this is a frame of a drive."""
        return self.shot is not None

    def pick(self, palette: Sequence[Sequence[float]], jitter: float = 0.08) -> Colour:
        """A jittered colour from ``palette`` (see ``materials.pick``)."""
        return pick(self.dice, palette, jitter)

    def haze(self, colour: Sequence[float], z: float) -> Colour:
        """``colour`` hazed for world depth ``z`` (by its distance from the camera)."""
        return self.light.haze(colour, self.cam.depth(z))

    def shade(self, colour: Sequence[float], normal: Sequence[float], z: float) -> Colour:
        """``colour`` lit by its surface's ``normal`` and hazed for world depth ``z``."""
        return self.light.shade(colour, normal, self.cam.depth(z))

    # ---- a drive's longer street ----

    def ahead(self, z: float) -> float:
        """A still scene's far limit ``z`` (metres), moved on by the length of a drive."""
        return z + self.stretch if self.stretch else z

    def denser(self, mean: float, start: float, end: float) -> float:
        """The mean count of things a still scene puts between depths ``start`` and ``end``, for a drive's street."""
        return mean * (end - start + self.stretch) / (end - start) if self.stretch else mean

    def passed(self, z: float, margin: float = 0.0) -> bool:
        """Whether a drive's camera has come within ``margin`` of the near plane at world depth ``z`` (or past it)."""
        return self.moving and self.cam.depth(z) < NEAR + margin

    def in_path(self, x: float, half_width: float) -> bool:
        """Whether something ``half_width`` metres either side of ``x`` would stand in a drive's path."""
        return self.moving and abs(x) < half_width + EGO_HALF_WIDTH

    # ---- drawing ----

    def add_object(self, z: float, draw: Callable[[], None]) -> None:
        """Queue something standing in the street, to be drawn in order of depth ``z`` (far first)."""
        self._queue.append((z, len(self._queue), draw))

    def draw_queued(self) -> None:
        """Draw the queued objects far to near; ties keep the order they were queued in.

        A drive's objects draw from dice of their own (by their place in the queue, the same in every frame),
        then the dice are the drive's, for the bonnet and the finish.
        """
        for z, index, draw in sorted(self._queue, key=lambda item: (-item[0], item[1])):
            if self.shot is None:
                draw()
            elif self.cam.depth(z) < DRIVE_VIEW:
                self.dice = SeededDice([*self.shot.entropy, OBJECT, index])
                draw()
        if self.shot is not None:
            self.dice = SeededDice([*self.shot.entropy, FINISH])

    def add_surface(self, face: Face, label: int, **pattern) -> int:
        """Register a vertical, axis-aligned face for the pattern pass; returns its id for the surface layer.

        ``pattern`` holds the pattern's numbers (metres) and colours (3-tuples, lit and hazed here like the face).
        """
        if len(self.surfaces) >= self.max_surfaces:
            return 0  # more patterned faces than the layer can number: this one stays plain
        on_x = abs(face.normal[0]) > 0.5  # the face lies in a plane X = const (else Z = const)
        entry = {
            "key": len(self.surfaces) + 1 if self.shot is None else _face_key(face),
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


FACE_CODES = {"back": 1, "front": 2, "left": 3, "right": 4, "top": 5}


def _face_key(face: Face) -> int:
    """A number for a face that is the same in every frame of a drive (its surface id is not): seeds its windows."""
    x, y, z = (round(c * 8) for c in face.origin)
    return ((x * 73856093) ^ (y * 19349663) ^ (z * 83492791) ^ (FACE_CODES[face.name] * 2654435761)) % 1_000_003 + 1
