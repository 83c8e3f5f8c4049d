"""The palette labeller: nearest official colour, with uncertain pixels taken from the neighbouring classes.

The steps live beside it: :mod:`cityseg.labels.colour_lookup` (the colour table), :mod:`cityseg.labels.blends`
(slivers a blend of two neighbours would make) and :mod:`cityseg.labels.fill` (choosing among neighbours).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import TYPE_CHECKING

import numpy as np

from cityseg.classes import class_set
from cityseg.errors import CitysegError
from cityseg.images import pack_rgb
from cityseg.labels.base import LabelData, Labeller, check_mask
from cityseg.labels.blends import BlendTraps, blend_traps, sliver_pixels
from cityseg.labels.colour_lookup import (
    FAR,
    PALETTE_COLORS,
    PALETTE_IDS_BY_CODE,
    UNCERTAIN,
    cached_table,
    colour_bits,
)
from cityseg.labels.fill import fill_uncertain

if TYPE_CHECKING:
    from cityseg.config import LabelConfig

UNKNOWN_DISTANCE = 30.0  # a colour this far from every official colour is not a palette colour ...
UNKNOWN_SHARE = 0.02  # ... and covering this share of a mask (in one 16^3 colour bin), it is another palette
PALETTE_VERSION = 1  # bump when the palette labeller's algorithm changes: its labels are then recomputed
_FRAME = 0x7F  # code of the frame around a mask while it is labelled: no colour, and not UNCERTAIN


class PaletteLabeller(Labeller):
    """Nearest official colour, with uncertain pixels taken from the neighbouring classes.

    1. *Confident* pixels are within ``max_distance`` (RGB) of an official colour and within
       ``luma_tolerance`` of its luma: 4:2:0 JPEG keeps luma per pixel but shares chroma between 2x2
       pixels, so an edge pixel keeps the luma of its own class while its chroma drifts towards its
       neighbour's. The mask's outermost pixels (a dark frame, and the photo's bleed) are never confident.
    2. *Slivers* are made uncertain: edge pixels of a colour c with colours a and b within
       ``blend_radius`` pixels whose blend (resize or JPEG) looks like c, e.g. truck between car and black.
    3. Every uncertain pixel takes, among the confident colours within ``search_radius`` pixels (then
       three times as far), the one nearest in YCbCr with chroma weighted by ``chroma_weight``: mostly
       the luma decides. The rare pixel with none in reach takes the colour of the nearest confident pixel.

    Colours become official label ids (``classes.color_to_label_id``), then classes of ``classes``.

    Args:
        classes: class set to map onto: ``train19``, ``categories``, ``labelids``, or a class table (its file or
            dict, :mod:`cityseg.user_classes`; its ids are read as official label ids).
        max_distance: RGB distance within which a pixel may be a palette colour plus JPEG noise.
        luma_tolerance: luma difference allowed on top of that (None: no luma test).
        search_radius: how far (pixels) an uncertain pixel looks for candidate classes.
        blend_radius: how far (pixels) a sliver looks for the two classes that would blend into it.
        chroma_weight: weight of chroma against luma when choosing among candidates.
        slivers: make blend-coloured slivers uncertain (step 2).
        border: never trust the outermost pixels (step 1).

    Example:
        >>> labeller = PaletteLabeller("train19")
        >>> mask = np.zeros((4, 4, 3), np.uint8); mask[:] = (128, 64, 128)  # road
        >>> int(labeller.label(mask)[1, 1])
        0
    """

    method = "palette"

    def __init__(
        self,
        classes: str | dict = "train19",
        max_distance: float = 45.0,
        luma_tolerance: float | None = 5.0,
        search_radius: int = 3,
        blend_radius: int = 3,
        chroma_weight: float = 0.02,
        slivers: bool = True,
        border: bool = True,
    ):
        if not max_distance > 0:
            raise CitysegError(f"labels.max_distance must be positive, not {max_distance}")
        if search_radius < 1 or blend_radius < 1:
            raise CitysegError("the palette labeller's search_radius and blend_radius must be at least 1")
        try:
            self.class_set = class_set(classes)
        except ValueError as exc:
            raise CitysegError(str(exc)) from None
        self.classes = self.class_set.spec()  # a table travels as itself, so labeller.json needs no other file
        self.max_distance = float(max_distance)
        self.luma_tolerance = None if luma_tolerance is None else float(luma_tolerance)
        self.search_radius = int(search_radius)
        self.blend_radius = int(blend_radius)
        self.chroma_weight = float(chroma_weight)
        self.slivers = bool(slivers)
        self.border = bool(border)
        self._code_to_class = self.class_set.from_label_ids(PALETTE_IDS_BY_CODE)  # (256,) palette index -> class
        self._traps: BlendTraps | None = None

    @classmethod
    def from_config(cls, label_config: LabelConfig, data: LabelData) -> PaletteLabeller:
        """The palette labeller of ``label_config``'s classes and max_distance (it fits on nothing)."""
        return cls(label_config.classes, label_config.max_distance)

    @classmethod
    def from_dict(cls, values: dict) -> PaletteLabeller:
        """Rebuild a palette labeller from :meth:`to_dict` output; unknown settings are a one-line error."""
        options = {k: v for k, v in values.items() if k != "method"}
        try:
            return cls(**options)
        except TypeError as exc:
            raise CitysegError(f"bad palette labeller settings {options}: {exc}") from None

    def key(self) -> str:
        digest = hashlib.sha1(json.dumps([PALETTE_VERSION, self.to_dict()], sort_keys=True).encode()).hexdigest()
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.class_set.name)
        return f"palette-{name}-d{self.max_distance:g}-{digest[:10]}"

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "classes": self.classes,
            "max_distance": self.max_distance,
            "luma_tolerance": self.luma_tolerance,
            "search_radius": self.search_radius,
            "blend_radius": self.blend_radius,
            "chroma_weight": self.chroma_weight,
            "slivers": self.slivers,
            "border": self.border,
        }

    def prepare(self) -> PaletteLabeller:
        self.blend_traps()  # builds the colour table too
        return self

    def __getstate__(self):  # worker processes rebuild (or inherit) the tables, never pickle them
        return {**self.__dict__, "_traps": None}

    def color_table(self) -> np.ndarray:
        """The 2^24-entry code of every RGB colour (:func:`~cityseg.labels.colour_lookup.nearest_color_table`)."""
        outer = max(self.max_distance, UNKNOWN_DISTANCE)
        return cached_table(PALETTE_COLORS, self.max_distance, outer, self.luma_tolerance)

    def blend_traps(self) -> BlendTraps:
        """The blends of two palette colours that look like a third (:func:`~cityseg.labels.blends.blend_traps`)."""
        if self._traps is None:
            self._traps = blend_traps(self.color_table())
        return self._traps

    def unknown_share(self, mask_rgb: np.ndarray) -> float:
        """Share of the mask covered by its most common colour that is no official colour (nor near one).

        Above UNKNOWN_SHARE (2%) :meth:`label` refuses the mask; the real pairs stay near 0.2%.
        """
        packed = pack_rgb(check_mask(mask_rgb, ""))
        return _unknown_colour(packed, self.color_table().take(packed))[0]

    # -- labelling --------------------------------------------------------------------------------
    def label(self, mask_rgb: np.ndarray, source: str = "") -> np.ndarray:
        return self._code_to_class.take(self.label_codes(mask_rgb, source), mode="clip")  # clip: faster, same

    def label_ids(self, mask_rgb: np.ndarray, source: str = "") -> np.ndarray:
        """(H, W, 3) uint8 colour mask -> (H, W) uint8 official label ids (0..33)."""
        return PALETTE_IDS_BY_CODE.take(self.label_codes(mask_rgb, source), mode="clip")

    def label_codes(self, mask_rgb: np.ndarray, source: str = "") -> np.ndarray:
        """(H, W, 3) uint8 colour mask -> (H, W) uint8 palette index of each pixel's colour (a view).

        About 85% of a real mask's pixels are confident and away from any edge: they cost only the table
        look-up and a few whole-image passes over 1- and 4-byte arrays. The decisions run only on the pixels
        that need them, addressed by flat index into a copy of the codes framed by ``pad`` empty pixels,
        where every square around a mask pixel lies inside the array.
        """
        mask_rgb = check_mask(mask_rgb, source)
        packed = pack_rgb(mask_rgb)  # (H, W) uint32 r<<16 | g<<8 | b
        code = self.color_table().take(packed, mode="clip")  # (H, W) palette index, flagged UNCERTAIN, or FAR
        _check_unknown_colours(packed, code, source)
        if self.border and min(code.shape) > 2:
            # The outermost pixels are not the scene: the masks carry a thin dark frame, and JPEG chroma
            # upsampling bleeds the photo into the column next to it. Take them from the pixels inside.
            code[[0, -1], :] |= UNCERTAIN
            code[:, [0, -1]] |= UNCERTAIN
        height, width = code.shape
        pad = max(self.search_radius, self.blend_radius)
        framed = np.full((height + 2 * pad, width + 2 * pad), _FRAME, dtype=np.uint8)
        inside = framed[pad:-pad, pad:-pad]  # (H, W) view: the result
        inside[...] = code
        flat = framed.reshape(-1)
        bits = colour_bits(flat)  # (F,) one bit per confident colour, 0 for the rest and the frame
        if self.slivers:
            slivers = sliver_pixels(framed, pad, bits, self.blend_traps(), self.blend_radius)  # flat indices
            flat[slivers] |= UNCERTAIN
            bits[slivers] = 0
        uncertain = np.flatnonzero(flat >= UNCERTAIN)
        if len(uncertain) == code.size:
            raise CitysegError(
                f"{source or 'mask'}: no pixel is within {self.max_distance:g} of an official Cityscapes colour; "
                "is it a colour mask (try --mask-side), drawn in the Cityscapes palette?"
            )
        if len(uncertain):
            fill_uncertain(packed, framed, pad, uncertain, bits, self.search_radius, self.chroma_weight)
        return inside


def _unknown_colour(packed: np.ndarray, code: np.ndarray, at_least: float = 0.0) -> tuple[float, tuple]:
    """Share of the mask covered by its most common unknown colour (binned 16 levels per channel), and that colour.

    ``packed`` holds the mask's packed RGB (:func:`~cityseg.images.pack_rgb`); ``code`` is FAR for
    pixels farther than UNKNOWN_DISTANCE (or max_distance) from every official colour.
    JPEG blends are spread thinly over many colours along edges; another palette's class is one colour
    over a region, so it fills one bin. The colour is worked out only for shares above ``at_least``.
    """
    unknown = code == FAR
    if np.count_nonzero(unknown) <= at_least * code.size:
        return 0.0, ()  # too few unknown pixels to fill any bin beyond at_least
    pixels = packed[unknown]  # (N,) r<<16 | g<<8 | b
    bins = ((pixels >> 12) & 0xF00) | ((pixels >> 8) & 0xF0) | ((pixels >> 4) & 0xF)  # top 4 bits of r, g, b
    counts = np.bincount(bins, minlength=4096)
    worst = int(counts.argmax())
    share = counts[worst] / code.size
    if share <= at_least:
        return share, ()
    chosen = pixels[bins == worst]
    rgb = np.stack([chosen >> 16, (chosen >> 8) & 0xFF, chosen & 0xFF], axis=1)
    return share, tuple(int(v) for v in np.median(rgb, axis=0))


def _check_unknown_colours(packed: np.ndarray, code: np.ndarray, source: str) -> None:
    """Raise if one colour that belongs to no class covers more than UNKNOWN_SHARE of the mask."""
    share, colour = _unknown_colour(packed, code, at_least=UNKNOWN_SHARE)
    if share > UNKNOWN_SHARE:
        raise CitysegError(
            f"{source or 'mask'}: colour {colour} covers {share:.0%} of the mask and is no Cityscapes class colour; "
            "is the mask on the other side (--mask-side) or drawn in another palette? Use --method kmeans for that"
        )
