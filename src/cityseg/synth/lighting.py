"""The scene's light: sun or overcast, sky gradient, and distance haze; how a surface colour is lit."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cityseg.synth.camera import Camera
from cityseg.synth.dice import Dice
from cityseg.synth.geometry import Point, dot
from cityseg.synth.materials import Colour, mix, scale


@dataclass(frozen=True)
class Lighting:
    """The light a whole scene is lit by."""

    overcast: bool  # no sun: soft light, no cast shadows
    sun: Point  # unit vector toward the sun
    ambient: float  # share of light that does not depend on a surface's normal
    sky_top: Colour  # sky colour at the top of the image ...
    sky_low: Colour  # ... and at the horizon
    haze_colour: Colour
    visibility: float  # metres at which haze covers 63 %

    @classmethod
    def random(cls, dice: Dice) -> Lighting:
        """Sun (45 % of scenes overcast) somewhere above the horizon, a clear or grey sky, haze."""
        overcast = dice.chance(0.45)
        azimuth, elevation = dice.uniform(0, 2 * math.pi), dice.uniform(0.35, 1.0)
        sun = (
            math.cos(azimuth) * math.cos(elevation),
            math.sin(elevation),
            math.sin(azimuth) * math.cos(elevation),
        )
        ambient = dice.uniform(0.72, 0.85) if overcast else dice.uniform(0.45, 0.62)
        if overcast:
            top, low = scale((175, 182, 192), dice.uniform(0.85, 1.1)), (218, 222, 226)
        else:
            k = dice.uniform(0.8, 1.15)
            top = (70 * k + dice.uniform(-15, 15), 120 * k + dice.uniform(-15, 15), 200 * k + dice.uniform(-15, 15))
            low = scale((188, 208, 232), dice.uniform(0.9, 1.05))
        sky_low = tuple(min(c, 250.0) for c in low)
        return cls(overcast, sun, ambient, top, sky_low, scale(sky_low, 0.9), dice.uniform(180, 700))

    def haze(self, colour: Sequence[float], z: float) -> Colour:
        """``colour`` blended toward the haze by distance ``z`` (metres)."""
        return mix(colour, self.haze_colour, 1 - math.exp(-max(z, 0.0) / self.visibility))

    def brightness(self, normal: Sequence[float]) -> float:
        """How brightly a surface facing ``normal`` is lit (ambient 1-ish, sunlit faces above 1)."""
        return self.ambient + (1 - self.ambient) * max(0.0, dot(normal, self.sun)) * 1.25

    def shade(self, colour: Sequence[float], normal: Sequence[float], z: float) -> Colour:
        """Light a surface colour by its normal and blend it toward the haze by its distance ``z``."""
        return self.haze(scale(colour, self.brightness(normal)), z)

    def sky(self, camera: Camera, height: int, width: int) -> np.ndarray:
        """(H, W, 3) uint8 background: the sky's gradient from the top of the image down to the horizon."""
        rows = np.clip(np.arange(height, dtype=np.float32) / max(camera.horizon, 1.0), 0, 1) ** 0.8
        top, low = np.asarray(self.sky_top, np.float32), np.asarray(self.sky_low, np.float32)
        gradient = top[None, :] * (1 - rows[:, None]) + low[None, :] * rows[:, None]  # (H, 3)
        return np.broadcast_to(np.clip(gradient, 0, 255).astype(np.uint8)[:, None, :], (height, width, 3)).copy()
