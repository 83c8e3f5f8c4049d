"""The overlay of a video frame: the photo overlay's colours and blending, and a legend of the classes present.

The colours are :func:`cityseg.outputs.colour_image`, blended over the frame by :func:`~cityseg.outputs.overlay_image`
at the same ``alpha``, exactly as the photos' ``STEM_overlay.jpg`` (:class:`cityseg.outputs.OutputWriter`), so a
frame and a photo with the same labels look alike. The legend, in the top-left corner, lists the classes
present in the frame with their colours, in PIL's default font at a size that follows the frame's height;
each set of classes is drawn once and pasted from a small cache after that, since consecutive frames
mostly show the same classes.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cityseg.classes import ClassSet
from cityseg.defaults import OVERLAY_ALPHA
from cityseg.outputs import colour_image, overlay_image

LEGEND_LINES_PER_FRAME = 40  # the legend's text is 1/40 of the frame's height (18 px at 720p) ...
LEGEND_MIN_FONT = 8  # ... but never below 8 px
LEGEND_BACKGROUND = (0, 0, 0, 160)  # translucent black behind the names
LEGEND_CACHE = 64  # legends kept, one per set of classes seen


class Legend:
    """Draws, in the top-left corner of a frame, the classes present in its labels and their colours.

    Args:
        classes: the model's classes (names and colours).
        frame_height: the frames' height in pixels, which sets the font size.

    Example:
        >>> legend = Legend(class_set("train19"), frame_height=720)  # doctest: +SKIP
        >>> legend.draw(frame, labels)  # frame: RGB PIL image, labels: (H, W) uint8; drawn in place  # doctest: +SKIP
    """

    def __init__(self, classes: ClassSet, frame_height: int):
        self.classes = classes
        self.font_size = max(LEGEND_MIN_FONT, round(frame_height / LEGEND_LINES_PER_FRAME))
        self.font = _default_font(self.font_size)
        self._patches: OrderedDict[tuple[int, ...], Image.Image] = OrderedDict()

    def present(self, labels: np.ndarray) -> tuple[int, ...]:
        """The class indices that occur in ``labels``, in class order (ignored pixels, 255, left out)."""
        counts = np.bincount(labels.ravel(), minlength=256)[: self.classes.num_classes]
        return tuple(int(index) for index in np.flatnonzero(counts))

    def draw(self, frame: Image.Image, labels: np.ndarray) -> None:
        """Paste the legend of the classes in ``labels`` onto ``frame`` (in place)."""
        present = self.present(labels)
        if not present:
            return
        patch = self._patch(present)
        margin = max(2, self.font_size // 2)
        frame.paste(patch, (margin, margin), patch)  # the patch's alpha is the mask

    def _patch(self, present: tuple[int, ...]) -> Image.Image:
        patch = self._patches.get(present)
        if patch is None:
            patch = self._render(present)
            self._patches[present] = patch
            if len(self._patches) > LEGEND_CACHE:
                self._patches.popitem(last=False)
        else:
            self._patches.move_to_end(present)
        return patch

    def _render(self, present: tuple[int, ...]) -> Image.Image:
        """An RGBA patch: one line per class, a colour swatch and the name, on a translucent background."""
        line = self.font_size + max(2, self.font_size // 4)
        pad = max(2, self.font_size // 3)
        names = [self.classes.names[index] for index in present]
        text_width = max(round(self.font.getlength(name)) for name in names)
        size = (pad * 3 + self.font_size + text_width, pad * 2 + line * len(present))
        patch = Image.new("RGBA", size, LEGEND_BACKGROUND)
        draw = ImageDraw.Draw(patch)
        for row, (index, name) in enumerate(zip(present, names, strict=True)):
            top = pad + row * line
            colour = tuple(int(c) for c in self.classes.colors[index])
            draw.rectangle((pad, top, pad + self.font_size - 1, top + self.font_size - 1), fill=(*colour, 255))
            draw.text((pad * 2 + self.font_size, top), name, font=self.font, fill=(255, 255, 255, 255))
        return patch


def _default_font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """PIL's default font at ``size`` pixels; its fixed bitmap font where PIL was built without FreeType."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ValueError, OSError, ImportError):
        return ImageFont.load_default()


def draw_overlay(
    rgb: np.ndarray, labels: np.ndarray, classes: ClassSet, alpha: float = OVERLAY_ALPHA, legend: Legend | None = None
) -> Image.Image:
    """A frame's overlay: its class colours blended over it (as a photo's) and, with ``legend``, the legend.

    Args:
        rgb: (H, W, 3) uint8 frame.
        labels: (H, W) uint8 class indices.
        classes: the model's classes.
        alpha: weight of the colours.
        legend: what draws the legend; None draws none.

    Returns:
        The RGB overlay, (W, H).
    """
    frame = Image.fromarray(rgb)
    overlay = overlay_image(frame, colour_image(labels, classes), alpha)  # as OutputWriter.write blends a photo
    if legend is not None:
        legend.draw(overlay, labels)
    return overlay
