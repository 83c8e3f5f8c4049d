"""The canvas a scene is drawn on: label ids and photo from the same polygons, plus shadow and surface layers.

Every primitive is drawn twice with ``PIL.ImageDraw``, once into the label image with its official label id
(hard edges, no antialiasing) and once into the photo with its lit colour, so labels and photo agree pixel
for pixel.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from cityseg.synth.geometry import Pixel
from cityseg.synth.ids import SKY
from cityseg.synth.materials import rgb


class Canvas:
    """The label image, the photo, a shadow layer and a surface layer, drawn with the same polygons."""

    def __init__(self, background: np.ndarray, wide_surfaces: bool = False):  # background: (H, W, 3) uint8 sky
        height, width = background.shape[:2]
        self.label = Image.new("L", (width, height), SKY)
        self.photo = Image.fromarray(background)
        self.shadow = Image.new("L", (width, height), 255)  # 255 = fully lit; applied to ground pixels only
        # which patterned surface (windows, bars...) a pixel shows: 255 of them, or (wide) as many as a drive has
        self.surface = Image.new("I" if wide_surfaces else "L", (width, height), 0)
        self._label = ImageDraw.Draw(self.label)
        self._photo = ImageDraw.Draw(self.photo)
        self._shadow = ImageDraw.Draw(self.shadow)
        self._surface = ImageDraw.Draw(self.surface)

    def polygon(self, xy: list[Pixel], label: int | None, colour: Sequence[float], surface: int | None = None) -> None:
        """Fill a polygon; ``label=None`` paints the photo only (a detail on a surface already labelled).

        ``surface`` (an index into the scene's surface table, 0 for none) marks the pixels for the pattern pass.
        """
        if label is not None:
            self._label.polygon(xy, fill=label)
        if surface is not None:
            self._surface.polygon(xy, fill=surface)
        self._photo.polygon(xy, fill=rgb(colour))

    def ellipse(self, centre: Pixel, rx: float, ry: float, label: int | None, colour: Sequence[float]) -> None:
        box = (centre[0] - rx, centre[1] - ry, centre[0] + rx, centre[1] + ry)
        if label is not None:
            self._label.ellipse(box, fill=label)
        self._photo.ellipse(box, fill=rgb(colour))

    def line(self, xy: list[Pixel], width: float, label: int | None, colour: Sequence[float]) -> None:
        width = max(1, round(width))
        if label is not None:
            self._label.line(xy, fill=label, width=width, joint="curve")
        self._photo.line(xy, fill=rgb(colour), width=width, joint="curve")

    def cast_shadow(self, xy: list[Pixel], darkness: float) -> None:
        """Darken the ground under ``xy`` by ``darkness`` (0 none .. 1 black); objects drawn later stay lit."""
        self._shadow.polygon(xy, fill=round(255 * (1 - darkness)))
