"""Colours to classes: turn the colour masks of pair images into per-pixel class indices.

The masks were drawn in the official Cityscapes palette, then resized and saved as JPEG with 4:2:0
chroma subsampling, so only about two thirds of their pixels still hold an exact palette colour.
Pixels at class edges are blends of two colours, and some blends land near a third, unrelated colour
(car next to black looks like truck). Two labellers recover the classes:

- :class:`PaletteLabeller` (default): a pixel near an official colour (RGB distance, and luma: 4:2:0
  JPEG keeps luma per pixel) takes its class, looked up in a 2^24-entry table. The others, and thin
  slivers whose colour a blend of their two neighbouring classes would make, take the neighbouring
  class whose luma (then chroma) best matches. On generated scenes with exact labels, JPEG-encoded like
  the real pairs, this recovers 99.6% of train19 labels (the plain nearest colour: 97.5%).
- :class:`KMeansLabeller` (the original project's method, done right): K clusters fitted on a seeded
  sample of real mask pixels, each named after the official class nearest its centre.

Labels are cached on disk (:class:`LabelCache`), keyed by the source file and the labeller's
parameters, and a whole dataset is labelled in parallel, streaming, by :func:`label_dataset`.

Photos of the official Cityscapes release (:func:`cityseg.pairs.is_release_photo`) need no labeller: their
``gtFine`` label-id PNGs are exact, so :class:`LabelCache` maps those ids to the labeller's class set as
it reads them, and caches nothing (the PNG already is the label). K-Means classes are clusters of mask
colours and have no meaning there, so ``labels.method=kmeans`` on release photos is refused.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cityseg.classes import IGNORE_INDEX, LABEL_BY_ID, NUM_LABEL_IDS, ClassSet, class_set, color_to_label_id
from cityseg.errors import CitysegError
from cityseg.files import atomic_path, ensure_writable_dir


def _palette_by_luma() -> tuple[np.ndarray, np.ndarray]:
    colors = np.array(list(color_to_label_id()), dtype=np.uint8)
    ids = np.array(list(color_to_label_id().values()), dtype=np.uint8)
    order = np.argsort(colors @ np.array([0.299, 0.587, 0.114]), kind="stable")
    return colors[order], ids[order]


# The distinct official colours (29: several label ids share a colour), darkest first, and the label id each
# stands for. Luma order lets the labeller find the candidate colours nearest in luma with bit arithmetic.
PALETTE_COLORS, PALETTE_IDS = _palette_by_luma()  # (P, 3), (P,)
UNCERTAIN = 0x80  # lookup-table flag: nearest colour index, but farther than max_distance from it
FAR = 0xFF  # lookup-table value: farther than every limit from every colour

UNKNOWN_DISTANCE = 30.0  # a colour this far from every official colour is not a palette colour ...
UNKNOWN_SHARE = 0.02  # ... and covering this share of a mask (in one 16^3 colour bin), it is another palette
PRESENCE_SHARE = 0.0003  # an image contains a class covering this share of it (20 pixels of 256x256)
CACHE_FORMAT = 1  # bump when the stored labels change meaning, so old caches are not reused
PALETTE_VERSION = 1  # bump when the palette labeller's algorithm changes: its labels are then recomputed


# ---- lookup tables ------------------------------------------------------------------------------


def _pack(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 RGB -> (...) uint32 index r<<16 | g<<8 | b into a 2^24-entry table.

    A C-contiguous array is packed in one pass: each pixel's 3 bytes and the first byte of the next pixel
    are read as one big-endian uint32 (r<<24 | g<<16 | b<<8 | next) through a view with a 3-byte stride,
    and the extra byte is shifted out. That is 3-4x cheaper than widening and combining three channel
    planes; the last pixel, which has no byte after it, is packed on its own.
    """
    rgb = np.asarray(rgb, dtype=np.uint8)
    packed = np.empty(rgb.shape[:-1], dtype=np.uint32)
    flat = packed.reshape(-1)
    if rgb.flags.c_contiguous and len(flat) >= 2:
        words = np.ndarray((len(flat) - 1,), dtype=">u4", buffer=rgb, strides=(3,))
        np.right_shift(words, 8, out=flat[:-1])
        r, g, b = rgb.reshape(-1, 3)[-1].tolist()
        flat[-1] = r << 16 | g << 8 | b
    else:
        np.left_shift(rgb[..., 0], 16, out=packed, dtype=np.uint32)
        packed |= np.left_shift(rgb[..., 1], 8, dtype=np.uint32)
        packed |= rgb[..., 2]
    return packed


def nearest_color_table(
    colors: np.ndarray,
    max_distance: float | None = None,
    outer_distance: float | None = None,
    luma_tolerance: float | None = None,
) -> np.ndarray:
    """A 2^24-entry uint8 table: packed RGB -> index of the nearest of ``colors`` (ties: lowest index).

    Entries farther than ``max_distance`` (Euclidean RGB) from every colour but within ``outer_distance``
    hold the index with :data:`UNCERTAIN` set; entries beyond both hold :data:`FAR`. Built one red value
    at a time: each colour within reach of that red value updates the running nearest distance only in
    the square of (green, blue) values it can reach, a few thousand of the 65536 entries: a table with limits
    takes a fraction of a second (without limits every colour reaches everywhere, and it takes longer).

    Args:
        colors: (P, 3) colours, P < 128.
        max_distance: None for no limit.
        outer_distance: a second, larger limit (None: same as ``max_distance``).
        luma_tolerance: entries whose luma differs more than this from their nearest colour's are
            flagged :data:`UNCERTAIN` too (None: no luma test).

    Returns:
        (2^24,) uint8, index it with ``table[r << 16 | g << 8 | b]``.
    """
    colors = np.asarray(colors, dtype=np.int64).reshape(-1, 3)
    if len(colors) >= UNCERTAIN:
        raise ValueError(f"at most {UNCERTAIN - 1} colours")
    inner = 3 * 255**2 if max_distance is None else int(np.floor(max_distance**2))
    outer = max(inner, int(np.floor(outer_distance**2)) if outer_distance is not None else inner)
    values = np.arange(256, dtype=np.int64)
    green = ((values[None, :] - colors[:, 1:2]) ** 2).astype(np.int32)  # (P, 256)
    blue = ((values[None, :] - colors[:, 2:3]) ** 2).astype(np.int32)  # (P, 256)
    red = (values[:, None] - colors[None, :, 0]) ** 2  # (256, P)
    table = np.full((256, 256, 256), FAR, dtype=np.uint8)
    if luma_tolerance is not None:
        color_luma = _to_ycbcr(colors)[:, 0]  # (P,)
        green_blue_luma = (0.587 * values[:, None] + 0.114 * values[None, :]).astype(np.float32)  # (256, 256)
    best = np.empty((256, 256), dtype=np.int32)  # squared distance to the nearest colour so far, per (g, b)
    nearest = np.empty((256, 256), dtype=np.uint8)  # its index
    for r in range(256):
        near = np.flatnonzero(red[r] <= outer)
        if len(near) == 0:
            continue
        best.fill(outer + 1)  # beyond every limit: FAR
        nearest.fill(0)
        for i in near:  # ascending, and only a strictly nearer colour replaces one: ties go to the lowest index
            reach = math.isqrt(int(outer - red[r, i]))  # farthest green or blue step still within outer
            g0, g1 = max(colors[i, 1] - reach, 0), min(colors[i, 1] + reach, 255) + 1
            b0, b1 = max(colors[i, 2] - reach, 0), min(colors[i, 2] + reach, 255) + 1
            distance = green[i, g0:g1, None] + blue[i, None, b0:b1] + np.int32(red[r, i])  # (g1-g0, b1-b0)
            window = best[g0:g1, b0:b1]
            np.copyto(nearest[g0:g1, b0:b1], np.uint8(i), where=distance < window)
            np.minimum(window, distance, out=window)
        row = table[r]  # (256, 256) view
        row[...] = nearest
        row[best > inner] |= UNCERTAIN
        if luma_tolerance is not None:
            luma_error = np.abs(green_blue_luma + np.float32(0.299 * r) - color_luma.take(nearest))
            row[luma_error > luma_tolerance] |= UNCERTAIN
        row[best > outer] = FAR
    return table.reshape(-1)


_TABLES: dict[tuple, np.ndarray] = {}  # built tables, per process (16 MiB each)


def _cached_table(
    colors: np.ndarray,
    max_distance: float | None,
    outer_distance: float | None = None,
    luma_tolerance: float | None = None,
) -> np.ndarray:
    key = (np.asarray(colors, dtype=np.uint8).tobytes(), max_distance, outer_distance, luma_tolerance)
    if key not in _TABLES:
        _TABLES[key] = nearest_color_table(colors, max_distance, outer_distance, luma_tolerance)
    return _TABLES[key]


_YCBCR = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], dtype=np.float32)


def _to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) RGB -> (..., 3) float32 JPEG YCbCr (without the 128 offset)."""
    rgb = np.asarray(rgb, dtype=np.float32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    # written out rather than a matrix product: tiny BLAS calls cost more than they compute
    return np.stack([_YCBCR[i, 0] * r + _YCBCR[i, 1] * g + _YCBCR[i, 2] * b for i in range(3)], axis=-1)


def _ycbcr_of_packed(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N,) uint32 packed RGB (see :func:`_pack`) -> (luma, blue chroma, red chroma), each (N,) float32.

    The same float32 arithmetic as :func:`_to_ycbcr`, so the same values, without an (N, 3) array between.
    """
    r = (packed >> 16).astype(np.float32)
    g = ((packed >> 8) & 0xFF).astype(np.float32)
    b = (packed & 0xFF).astype(np.float32)
    return tuple(_YCBCR[i, 0] * r + _YCBCR[i, 1] * g + _YCBCR[i, 2] * b for i in range(3))


def _runs(values: np.ndarray, radius: int, op: np.ufunc, step: int = 1) -> np.ndarray:
    """``op`` over runs of 2r+1 elements ``step`` apart: element j covers values[j], values[j+step] .. [j+2r*step].

    Runs double in length at each pass (1, 2, 4, ...) and two overlapping ones finish the job, so a run
    of 7 costs 3 passes over the array rather than 6. ``op`` must not care about repeats (min, max, or).
    """
    length, span, runs = 2 * radius + 1, 1, values
    while 2 * span <= length:
        runs = op(runs[: -span * step], runs[span * step :])
        span *= 2
    if span < length:
        extra = (length - span) * step
        runs = op(runs[:-extra], runs[extra:])
    return runs


def _squares(values: np.ndarray, radius: int, op: np.ufunc, stride: int) -> np.ndarray:
    """``op`` over every (2r+1)^2 square of a flattened row-major image ``stride`` pixels wide.

    Element j covers the square whose top-left pixel is j, so the square centred on pixel c is element
    ``c - radius * (stride + 1)``. Rows run into each other in the flat array: on an image framed by at least
    ``radius`` pixels that ``op`` ignores, squares centred on the image never see that.
    """
    return _runs(_runs(values, radius, op), radius, op, stride)


def _class_set(name: str) -> ClassSet:
    try:
        return class_set(name)
    except ValueError as exc:
        raise CitysegError(str(exc)) from None


# ---- labellers ----------------------------------------------------------------------------------


class Labeller:
    """Base: turns an (H, W, 3) uint8 colour mask into (H, W) uint8 class indices of ``class_set``.

    Subclasses set ``method`` and ``class_set`` and implement :meth:`label`, :meth:`key` and :meth:`to_dict`.
    """

    method = ""
    class_set: ClassSet

    def key(self) -> str:
        """Method and parameters, as a short file-name-safe string; cached labels are keyed by it."""
        raise NotImplementedError

    def label(self, mask_rgb: np.ndarray, source: str = "") -> np.ndarray:
        """(H, W, 3) uint8 colour mask -> (H, W) uint8 class indices (IGNORE_INDEX for void).

        ``source`` names the file in error messages.
        """
        raise NotImplementedError

    def prepare(self) -> Labeller:
        """Build lookup tables now (before worker processes fork, so they share them)."""
        return self

    def to_dict(self) -> dict:
        """Everything needed to rebuild this labeller (see :func:`labeller_from_dict`)."""
        raise NotImplementedError

    def save(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_dict` as JSON, atomically, so training, evaluation and prediction share one labeller."""
        path = Path(path)
        try:
            with atomic_path(path) as tmp:
                tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        except OSError as exc:
            raise CitysegError(
                f"cannot write labeller file {path}: {exc.strerror or exc}; choose a writable folder"
            ) from None
        return path


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
        classes: class set to map onto: ``train19``, ``categories`` or ``labelids``.
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
        classes: str = "train19",
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
        self.classes = classes
        self.class_set = _class_set(classes)
        self.max_distance = float(max_distance)
        self.luma_tolerance = None if luma_tolerance is None else float(luma_tolerance)
        self.search_radius = int(search_radius)
        self.blend_radius = int(blend_radius)
        self.chroma_weight = float(chroma_weight)
        self.slivers = bool(slivers)
        self.border = bool(border)
        self._code_to_class = self.class_set.from_label_ids(PALETTE_IDS_BY_CODE)  # (256,) palette index -> class
        palette_ycbcr = _to_ycbcr(PALETTE_COLORS)  # (P, 3)
        self._palette_luma = np.ascontiguousarray(palette_ycbcr[:, 0])  # (P,) ascending
        self._palette = tuple(np.ascontiguousarray(palette_ycbcr[:, i]) for i in range(3))  # Y, Cb, Cr: (P,) each
        # _darker[k]: the bits of the k darkest colours
        self._darker = (np.uint32(1) << np.arange(len(PALETTE_COLORS) + 1, dtype=np.uint32)) - np.uint32(1)
        self._luma_bins = _LumaBins(self._palette_luma)
        self._traps: list[tuple[int, int, int]] | None = None

    def key(self) -> str:
        digest = hashlib.sha1(json.dumps([PALETTE_VERSION, self.to_dict()], sort_keys=True).encode()).hexdigest()
        return f"palette-{self.classes}-d{self.max_distance:g}-{digest[:10]}"

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
        self._table()
        self._trap_triples()
        return self

    def __getstate__(self):  # worker processes rebuild (or inherit) the 16 MiB table, never pickle it
        skip = ("_traps", "_trap_rows", "_trap_bits", "_partners")
        return {k: v for k, v in self.__dict__.items() if k not in skip} | {"_traps": None}

    def _table(self) -> np.ndarray:
        outer = max(self.max_distance, UNKNOWN_DISTANCE)
        return _cached_table(PALETTE_COLORS, self.max_distance, outer, self.luma_tolerance)

    def _trap_triples(self) -> list[tuple[int, int, int]]:
        """(c, a, b) palette indices: some blend of colours a and b is confidently nearest to colour c.

        Blends are what resizing and 4:2:0 JPEG make at an edge between a and b: the luma of one mix of
        a and b with the chroma of another (luma is kept per pixel, chroma is shared by 2x2 pixels).
        """
        if self._traps is None:
            table = self._table()
            ycc = _to_ycbcr(PALETTE_COLORS)  # (P, 3)
            fractions = np.linspace(0.0, 1.0, 17, dtype=np.float32)
            luma_mix, chroma_mix = (m.ravel()[:, None] for m in np.meshgrid(fractions, fractions))  # (289, 1)
            a_index, b_index = np.triu_indices(len(PALETTE_COLORS), k=1)  # every pair a < b
            a, b = ycc[a_index][:, None, :], ycc[b_index][:, None, :]  # (pairs, 1, 3)
            blend = np.concatenate(
                [
                    a[..., :1] * (1 - luma_mix) + b[..., :1] * luma_mix,
                    a[..., 1:] * (1 - chroma_mix) + b[..., 1:] * chroma_mix,
                ],
                axis=-1,
            )  # (pairs, 289, 3) YCbCr
            rgb = np.clip(np.rint(blend @ np.linalg.inv(_YCBCR).T), 0, 255).astype(np.uint8)
            codes = table.take(_pack(rgb))  # (pairs, 289)
            traps = []
            for pair, (ia, ib) in enumerate(zip(a_index, b_index, strict=True)):
                traps += [
                    (int(c), int(ia), int(ib)) for c in np.unique(codes[pair]) if c < UNCERTAIN and c not in (ia, ib)
                ]
            # trap_rows[c, a]: bits of the colours b whose blend with a looks like c
            self._trap_rows = np.zeros((256, len(PALETTE_COLORS)), dtype=np.uint32)
            for c, a, b in traps:
                self._trap_rows[c, a] |= np.uint32(1 << b)
                self._trap_rows[c, b] |= np.uint32(1 << a)
            colour_bits = _colour_bits(np.arange(len(PALETTE_COLORS), dtype=np.uint8))  # (P,)
            # bits of the colours some blend resembles
            self._trap_bits = np.bitwise_or.reduce(colour_bits[self._trap_rows[: len(PALETTE_COLORS)].any(axis=1)])
            # partners[c]: bits of the colours that blend with some other colour into c
            self._partners = np.bitwise_or.reduce((self._trap_rows != 0) * colour_bits, axis=1)  # (256,)
            self._traps = traps
        return self._traps

    def unknown_share(self, mask_rgb: np.ndarray) -> float:
        """Share of the mask covered by its most common colour that is no official colour (nor near one).

        Above UNKNOWN_SHARE (2%) :meth:`label` refuses the mask; the real pairs stay near 0.2%.
        """
        packed = _pack(_check_mask(mask_rgb, ""))
        return _unknown_colour(packed, self._table().take(packed))[0]

    # -- labelling --------------------------------------------------------------------------------
    def label(self, mask_rgb: np.ndarray, source: str = "") -> np.ndarray:
        return self._code_to_class.take(self._label_codes(mask_rgb, source), mode="clip")  # clip: faster, same

    def label_ids(self, mask_rgb: np.ndarray, source: str = "") -> np.ndarray:
        """(H, W, 3) uint8 colour mask -> (H, W) uint8 official label ids (0..33)."""
        return PALETTE_IDS_BY_CODE.take(self._label_codes(mask_rgb, source), mode="clip")

    def _label_codes(self, mask_rgb: np.ndarray, source: str) -> np.ndarray:
        """(H, W, 3) uint8 colour mask -> (H, W) uint8 palette index of each pixel's colour (a view).

        About 85% of a real mask's pixels are confident and away from any edge: they cost only the table
        look-up and a few whole-image passes over 1- and 4-byte arrays. The decisions run only on the pixels
        that need them, addressed by flat index into a copy of the codes framed by ``pad`` empty pixels,
        where every square around a mask pixel lies inside the array.
        """
        mask_rgb = _check_mask(mask_rgb, source)
        packed = _pack(mask_rgb)  # (H, W) uint32 r<<16 | g<<8 | b
        code = self._table().take(packed, mode="clip")  # (H, W) palette index, flagged UNCERTAIN, or FAR
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
        bits = _colour_bits(flat)  # (F,) one bit per confident colour, 0 for the rest and the frame
        if self.slivers:
            slivers = self._sliver_pixels(framed, pad, bits)  # flat indices into framed
            flat[slivers] |= UNCERTAIN
            bits[slivers] = 0
        uncertain = np.flatnonzero(flat >= UNCERTAIN)
        if len(uncertain) == code.size:
            raise CitysegError(
                f"{source or 'mask'}: no pixel is within {self.max_distance:g} of an official Cityscapes colour; "
                "is it a colour mask (try --mask-side), drawn in the Cityscapes palette?"
            )
        if len(uncertain):
            self._fill(packed, framed, pad, uncertain, bits)
        return inside

    def _sliver_pixels(self, framed: np.ndarray, pad: int, bits: np.ndarray) -> np.ndarray:
        """Edge pixels of a colour c with colours a and b nearby whose blend looks like c: flat indices into framed.

        Args:
            framed: the mask's codes in a frame of _FRAME ``pad`` wide, at least ``blend_radius``.
            bits: (F,) colour bit of each pixel of ``framed``, flattened.
        """
        self._trap_triples()
        stride = framed.shape[1]
        flat = framed.reshape(-1)
        # Edge pixels: another code in the 3x3 square. For a confident code c, the square's minimum is
        # below c or its maximum above c. The frame (0x7F) is above every confident code, so it cannot
        # lower a minimum; for the maximum it is set to 0 in a copy. Squares are cut at the border.
        low = _squares(flat, 1, np.minimum, stride)
        zero_framed = np.zeros_like(framed)
        zero_framed[pad:-pad, pad:-pad] = framed[pad:-pad, pad:-pad]
        high = _squares(zero_framed.reshape(-1), 1, np.maximum, stride)
        centre = stride + 1  # flat offset from a square's top-left pixel to its centre
        edges = low != high
        edges &= (bits[centre : centre + len(edges)] & self._trap_bits) != 0  # edges of colours blends resemble
        suspects = np.flatnonzero(edges) + centre
        if len(suspects) == 0:
            return suspects
        colour = flat.take(suspects)
        radius = self.blend_radius
        around = _squares(bits, radius, np.bitwise_or, stride).take(suspects - radius * centre)  # colours near
        # Only colours that blend with another colour into this one matter (that drops the pixel's own
        # colour too), and at least two must be around: most suspects go here, before any sorting.
        around &= self._partners.take(colour)
        two = np.flatnonzero(around & (around - np.uint32(1)))  # more than one bit set
        suspects, colour, around = suspects[two], colour[two].astype(np.intp), around[two]
        # Blended: some colour a around has a partner b around that blends with it into c (trap_rows[c, a]).
        # First a = the lowest colour around: that settles every suspect with two colours around (most).
        lowest = _lowest_bit(around)
        blended = (self._trap_rows.reshape(-1).take(colour * len(PALETTE_COLORS) + lowest) & around) != 0
        rest = around ^ (np.uint32(1) << lowest.astype(np.uint32))
        more = np.flatnonzero(~blended & ((rest & (rest - np.uint32(1))) != 0))  # 3+ colours, no pair found yet
        if len(more):
            # few distinct (colour, colours around) combinations occur: judge each once, against every a
            keys = (colour[more].astype(np.uint64) << np.uint64(32)) | around[more]
            combos = np.sort(keys)  # np.unique, without its overheads on small arrays
            combos = combos[np.flatnonzero(np.diff(combos, prepend=combos[0] - np.uint64(1)))]
            which = np.searchsorted(combos, keys)
            combo_colour = (combos >> np.uint64(32)).astype(np.intp)
            combo_around = (combos & np.uint64(0xFFFFFFFF)).astype(np.uint32)[:, None]  # (K, 1)
            has_a = ((combo_around >> np.arange(len(PALETTE_COLORS), dtype=np.uint32)) & 1).astype(bool)  # (K, P)
            has_partner = (self._trap_rows[combo_colour] & combo_around) != 0  # (K, P)
            blended[more] = (has_a & has_partner).any(axis=1)[which]
        return suspects[blended]

    def _fill(self, packed: np.ndarray, framed: np.ndarray, pad: int, uncertain: np.ndarray, bits: np.ndarray) -> None:
        """Give each uncertain pixel the nearby confident colour that best explains its colour, in ``framed``.

        Args:
            packed: (H, W) packed RGB of the mask.
            framed: (H + 2 pad, W + 2 pad) the mask's codes in a frame; updated in place.
            pad: the frame's width, at least ``search_radius``.
            uncertain: flat indices into ``framed`` of the pixels to fill.
            bits: (F,) colour bit of each pixel of ``framed`` (0 for uncertain ones), flattened.

        The candidates of a pixel are the confident colours within ``search_radius`` pixels (then three
        times as far); :meth:`_best_candidates` chooses among them.
        """
        height, width = packed.shape
        stride = framed.shape[1]
        radius = self.search_radius
        # the colours within radius of pixel c: near[c - radius * (stride + 1)]
        near = _squares(bits, radius, np.bitwise_or, stride)
        candidates = near.take(uncertain - radius * (stride + 1))
        rows = uncertain // stride  # framed row (image row + pad) of each pixel
        pixels = _ycbcr_of_packed(packed.reshape(-1).take(uncertain - rows * (2 * pad) - pad * (width + 1)))
        best, found = self._best_candidates(pixels, candidates)
        flat = framed.reshape(-1)
        flat[uncertain] = best  # those not found (-1) become 0xFF, uncertain, until filled below
        if found.all():
            return
        # A few have no confident colour that close: look three times as far, sampling the colours within
        # radius at a grid of offsets that tiles the wider square (positions cut at the border).
        lonely = np.flatnonzero(~found)
        where = uncertain[lonely]
        rows, cols = rows[lonely] - pad, where % stride - pad  # image coordinates
        steps = np.array([-2 * radius, 0, 2 * radius])
        sample_rows = np.minimum(np.maximum(rows[:, None] + steps, 0), height - 1)  # (n, 3)
        sample_cols = np.minimum(np.maximum(cols[:, None] + steps, 0), width - 1)
        samples = (sample_rows[:, :, None] + pad - radius) * stride + (sample_cols[:, None, :] + pad - radius)
        candidates = np.bitwise_or.reduce(near.take(samples.reshape(len(where), 9)), axis=1)
        best, found = self._best_candidates(tuple(channel[lonely] for channel in pixels), candidates)
        flat[where] = best
        if found.all():
            return
        # none even there: take the colour of the nearest confident pixel
        from scipy import ndimage

        alone = np.zeros((height, width), dtype=bool)
        alone[rows[~found], cols[~found]] = True
        nearest = ndimage.distance_transform_edt(alone, return_distances=False, return_indices=True)
        inside = framed[pad:-pad, pad:-pad]
        inside[...] = inside[tuple(nearest)]

    def _best_candidates(
        self, pixels: tuple[np.ndarray, np.ndarray, np.ndarray], candidates: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(luma, Cb, Cr) of N pixels and (N,) candidate bits -> best colour index (N,), whether there was one (N,).

        Luma decides (chroma is weighted by ``chroma_weight``), so the best candidate is one of the two
        nearest in luma: the brightest candidate darker than the pixel or the darkest one brighter. The
        palette is sorted by luma, so both are found with bit arithmetic on the candidate bits. Where
        only one of them exists it is the answer; costs are worked out only where there are two.
        """
        luma, blue, red = pixels
        darker = candidates & self._darker.take(self._luma_bins.count_below(luma))
        brighter = candidates ^ darker
        sides = (_highest_bit(darker), _lowest_bit(brighter))  # (N,) colour index or -1 (none)
        best = np.maximum(*sides)  # the one side there is, or -1
        both = np.flatnonzero((darker != 0) & (brighter != 0))
        luma, blue, red = luma[both], blue[both], red[both]
        sides = [side[both] for side in sides]
        palette_luma, palette_blue, palette_red = self._palette
        costs = [
            (luma - palette_luma.take(side)) ** 2
            + self.chroma_weight * ((blue - palette_blue.take(side)) ** 2 + (red - palette_red.take(side)) ** 2)
            for side in sides
        ]
        best[both] = np.where(costs[1] < costs[0], sides[1], sides[0])
        return best, best >= 0


class _LumaBins:
    """How many of a sorted set of lumas lie below each of many pixel lumas: ``np.searchsorted``, 4x faster.

    A table over bins of luma narrower than the smallest gap between the values gives the count below each
    bin; one comparison with the next value (or as many as share a bin) finishes it exactly.
    """

    def __init__(self, values: np.ndarray):  # (P,) float32, ascending
        gaps = np.diff(values)
        smallest = float(gaps[gaps > 0].min()) if (gaps > 0).any() else 1.0
        self.scale = np.float32(2.0 ** np.ceil(np.log2(2.0 / smallest)))  # bins at most half the smallest gap
        edges = np.arange(int(256 * self.scale) + 2, dtype=np.float32) / self.scale  # every luma is below 256
        self.below = np.searchsorted(values, edges).astype(np.intp)  # (bins,) values below each bin
        self.per_bin = int(np.bincount(np.searchsorted(edges, values, side="right")).max())  # values sharing a bin
        self.padded = np.append(values, np.full(self.per_bin, np.inf, dtype=np.float32))

    def count_below(self, luma: np.ndarray) -> np.ndarray:
        """(N,) float32 lumas in [0, 256) -> (N,) number of values below each, as ``np.searchsorted(values, luma)``."""
        below = self.below.take((luma * self.scale).astype(np.intp))  # values below the pixel's bin
        count = below.copy()
        for extra in range(self.per_bin):  # values inside the bin and below the pixel
            count += self.padded.take(below + extra) < luma
        return count


def _highest_bit(words: np.ndarray) -> np.ndarray:
    """(N,) uint32 -> index of the highest set bit, -1 where none.

    Read from the exponent of the words as float32. Clearing every bit just below a set bit first keeps
    the highest bit and leaves no run of ones that rounding to 24 bits could carry into the next power.
    """
    return _exponent(words & ~(words >> np.uint32(1)))


def _lowest_bit(words: np.ndarray) -> np.ndarray:
    """(N,) uint32 -> index of the lowest set bit, -1 where none."""
    return _exponent(words & (~words + np.uint32(1)))  # isolate the lowest bit: a power of two rounds exactly


def _exponent(words: np.ndarray) -> np.ndarray:
    """(N,) uint32, each 0 or exactly representable in float32 -> floor(log2), -1 for 0 (from the float bits)."""
    return np.maximum((words.astype(np.float32).view(np.int32) >> 23) - 127, -1)


def _colour_bits(codes: np.ndarray) -> np.ndarray:
    """Table codes -> uint32 with bit c set for confident colour c, 0 for UNCERTAIN codes, FAR and _FRAME.

    A shift rather than a 256-entry look-up: 6x faster on uint8 codes. NumPy defines shifts by the
    bit width or more as 0, and every code that is not a confident colour is at least 0x7F.
    """
    return np.left_shift(np.uint32(1), codes, dtype=np.uint32)


_FRAME = 0x7F  # code of the frame around a mask while it is labelled: no colour, and not UNCERTAIN
PALETTE_IDS_BY_CODE = np.zeros(256, dtype=np.uint8)  # table code -> official label id
PALETTE_IDS_BY_CODE[: len(PALETTE_IDS)] = PALETTE_IDS


def _check_mask(mask_rgb: np.ndarray, source: str) -> np.ndarray:
    mask_rgb = np.asarray(mask_rgb)
    if mask_rgb.ndim != 3 or mask_rgb.shape[2] != 3 or mask_rgb.dtype != np.uint8:
        raise CitysegError(
            f"{source or 'mask'}: expected an (H, W, 3) uint8 RGB mask, got {mask_rgb.shape} {mask_rgb.dtype}"
        )
    return mask_rgb


def _unknown_colour(packed: np.ndarray, code: np.ndarray, at_least: float = 0.0) -> tuple[float, tuple]:
    """Share of the mask covered by its most common unknown colour (binned 16 levels per channel), and that colour.

    ``packed`` holds the mask's packed RGB (:func:`_pack`); ``code`` is FAR for pixels farther than
    UNKNOWN_DISTANCE (or max_distance) from every official colour.
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


class KMeansLabeller(Labeller):
    """K colour clusters of real mask pixels, each named after the official class nearest its centre.

    Build one with :meth:`fit`; :meth:`save` / :meth:`load` keep the fitted centres, so training,
    evaluation and prediction label alike. Pixels take the cluster with the nearest centre.

    Args:
        centers: (K, 3) cluster centres in RGB, in class order.
        seed, pixels, mask_side: how the centres were fitted (kept for the record and the cache key).

    Example:
        >>> labeller = KMeansLabeller.fit(paths, k=10, seed=0)  # doctest: +SKIP
        >>> labeller.class_set.names[:3]  # doctest: +SKIP
        ('unlabeled', 'road', 'sidewalk')
        >>> labeller.absorbed()[1]  # doctest: +SKIP
        ['road', 'ground']
    """

    method = "kmeans"

    def __init__(self, centers: np.ndarray, seed: int = 0, pixels: int = 0, mask_side: str = "right"):
        centers = np.asarray(centers, dtype=np.float64).reshape(-1, 3)
        if not 1 <= len(centers) < UNCERTAIN:
            raise CitysegError(f"kmeans needs 1..{UNCERTAIN - 1} clusters, got {len(centers)}")
        self.centers = centers
        self.seed, self.pixels, self.mask_side = int(seed), int(pixels), mask_side
        self.k = len(centers)
        self.label_ids = self._nearest_label_ids(centers)  # official id each cluster is named after
        names, seen = [], {}
        for label_id in self.label_ids:
            name = LABEL_BY_ID[int(label_id)].name
            seen[name] = seen.get(name, 0) + 1
            names.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
        id_to_class = np.full(NUM_LABEL_IDS, IGNORE_INDEX, dtype=np.uint8)
        for cluster in reversed(range(self.k)):  # an official id maps onto the first cluster named after it
            id_to_class[self.label_ids[cluster]] = cluster
        self.class_set = ClassSet(
            name="kmeans",
            names=tuple(names),
            colors=tuple(tuple(int(v) for v in np.clip(np.rint(c), 0, 255)) for c in centers),
            id_to_class=id_to_class,
            class_to_id=tuple(int(i) for i in self.label_ids),
        )

    @staticmethod
    def _nearest_label_ids(colors: np.ndarray) -> np.ndarray:
        distance = ((np.asarray(colors, dtype=np.float64)[:, None] - PALETTE_COLORS[None]) ** 2).sum(2)
        return PALETTE_IDS[distance.argmin(1)]

    @classmethod
    def fit(
        cls,
        paths: Sequence[str | os.PathLike],
        k: int = 10,
        seed: int = 0,
        pixels: int = 200_000,
        mask_side: str = "right",
        images: int = 200,
        skip_bad: bool = False,
    ) -> KMeansLabeller:
        """Fit K clusters on a seeded sample of mask pixels: ``pixels`` in all, from up to ``images`` images.

        Same paths and seed give the same centres, hence the same labels.
        """
        from sklearn.cluster import KMeans

        from cityseg.pairs import read_pair

        if not paths:
            raise CitysegError("kmeans labelling needs images to fit on; the dataset is empty")
        if k < 1 or pixels < k:
            raise CitysegError(f"kmeans needs k >= 1 and at least k sample pixels (k={k}, pixels={pixels})")
        rng = np.random.default_rng(seed)
        chosen = sorted(rng.permutation(len(paths))[: min(images, len(paths))])
        per_image = -(-pixels // len(chosen))  # ceil
        samples = []
        for i in chosen:
            try:
                _, mask = read_pair(paths[i], mask_side)
            except CitysegError:
                if skip_bad:
                    continue
                raise
            flat = mask.reshape(-1, 3)
            samples.append(flat[rng.choice(len(flat), size=min(per_image, len(flat)), replace=False)])
        if not samples:
            raise CitysegError("kmeans labelling found no readable image to fit on")
        sample = np.concatenate(samples)[:pixels].astype(np.float64)  # (pixels, 3)
        if len(np.unique(sample, axis=0)) < k:
            raise CitysegError(f"the sampled masks hold fewer than k={k} distinct colours; lower --k")
        model = KMeans(n_clusters=k, random_state=seed, n_init=1).fit(sample)
        centers = model.cluster_centers_
        # stable, meaningful order: by the official class each cluster is named after, then by distance to it
        label_ids = cls._nearest_label_ids(centers)
        own = PALETTE_COLORS[[list(PALETTE_IDS).index(i) for i in label_ids]].astype(np.float64)
        order = np.lexsort((((centers - own) ** 2).sum(1), label_ids))
        return cls(centers[order], seed=seed, pixels=len(sample), mask_side=mask_side)

    def key(self) -> str:
        digest = hashlib.sha1(np.round(self.centers, 6).tobytes()).hexdigest()[:10]
        return f"kmeans-k{self.k}-{digest}"

    def absorbed(self) -> dict[int, list[str]]:
        """Cluster index -> the official classes whose exact colour falls in that cluster."""
        out: dict[int, list[str]] = {i: [] for i in range(self.k)}
        table = self._table_for(PALETTE_COLORS)
        for label_id, cluster in sorted(zip(PALETTE_IDS.tolist(), table.tolist(), strict=True)):
            out[int(cluster)].append(LABEL_BY_ID[label_id].name)
        return out

    def _table_for(self, rgb: np.ndarray) -> np.ndarray:
        distance = ((np.asarray(rgb, dtype=np.float64)[:, None] - self.centers[None]) ** 2).sum(2)
        return distance.argmin(1)

    def prepare(self) -> KMeansLabeller:
        _cached_table(self._centers_u8(), None)
        return self

    def _centers_u8(self) -> np.ndarray:
        return np.clip(np.rint(self.centers), 0, 255).astype(np.uint8)

    def label(self, mask_rgb: np.ndarray, source: str = "") -> np.ndarray:
        mask_rgb = _check_mask(mask_rgb, source)
        return _cached_table(self._centers_u8(), None).take(_pack(mask_rgb))

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "k": self.k,
            "seed": self.seed,
            "pixels": self.pixels,
            "mask_side": self.mask_side,
            "centers": self.centers.round(6).tolist(),
            "names": list(self.class_set.names),
            "label_ids": [int(i) for i in self.label_ids],
            "absorbed": {str(i): names for i, names in self.absorbed().items()},
        }

    @classmethod
    def load(cls, path: str | os.PathLike) -> KMeansLabeller:
        labeller = load_labeller(path)
        if not isinstance(labeller, KMeansLabeller):
            raise CitysegError(f"{path} holds a {labeller.method} labeller, not kmeans centres")
        return labeller


def labeller_from_dict(values: dict) -> Labeller:
    """Rebuild a labeller from :meth:`Labeller.to_dict` output."""
    method = values.get("method")
    if method == "palette":
        options = {k: v for k, v in values.items() if k != "method"}
        try:
            return PaletteLabeller(**options)
        except TypeError as exc:
            raise CitysegError(f"bad palette labeller settings {options}: {exc}") from None
    if method == "kmeans":
        return KMeansLabeller(
            values["centers"], values.get("seed", 0), values.get("pixels", 0), values.get("mask_side", "right")
        )
    raise CitysegError(f"unknown labelling method {method!r}; valid: {', '.join(LABELLERS)}")


def load_labeller(path: str | os.PathLike) -> Labeller:
    """Read a labeller saved by :meth:`Labeller.save`."""
    try:
        values = json.loads(Path(path).read_text())
        return labeller_from_dict(values)
    except OSError as exc:
        raise CitysegError(f"cannot read labeller file {path}: {exc.strerror or exc}; check the path") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise CitysegError(f"labeller file {path} is corrupt ({exc}); delete it to refit") from None


# ---- choosing a labeller ------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/cityseg``, or ``~/.cache/cityseg``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cityseg"


def _cache_root(cache_dir: str | os.PathLike | None) -> Path:
    return Path(cache_dir) if cache_dir else default_cache_dir()


def _make_palette(label_config, paths, mask_side, cache_dir) -> Labeller:
    return PaletteLabeller(label_config.classes, label_config.max_distance)


def _make_kmeans(label_config, paths, mask_side, cache_dir) -> Labeller:
    """Reuse centres fitted earlier on the same images with the same settings, else fit and keep them."""
    fit_key = hashlib.sha1(
        json.dumps(
            [label_config.k, label_config.seed, label_config.kmeans_pixels, mask_side, [str(p) for p in paths]]
        ).encode()
    ).hexdigest()[:16]
    saved = ensure_writable_dir(_cache_root(cache_dir) / "kmeans") / f"{fit_key}.json"
    if saved.exists():
        try:
            return KMeansLabeller.load(saved)
        except CitysegError:
            pass  # a damaged file: refit and overwrite it
    labeller = KMeansLabeller.fit(
        paths, k=label_config.k, seed=label_config.seed, pixels=label_config.kmeans_pixels, mask_side=mask_side
    )
    labeller.save(saved)
    return labeller


LABELLERS: dict[str, Callable[..., Labeller]] = {"palette": _make_palette, "kmeans": _make_kmeans}


def make_labeller(
    label_config, paths: Sequence[Path], mask_side: str = "right", cache_dir: str | os.PathLike | None = None
) -> Labeller:
    """The labeller ``label_config.method`` names (a :class:`~cityseg.config.LabelConfig`).

    ``kmeans`` fits on ``paths`` (or reuses centres fitted before with the same settings, kept in the cache).
    """
    try:
        factory = LABELLERS[label_config.method]
    except KeyError:
        raise CitysegError(
            f"unknown labelling method {label_config.method!r}; choose one of: {', '.join(LABELLERS)}"
        ) from None
    paths = list(paths)
    if label_config.method == "kmeans":
        from cityseg.pairs import is_release_photo

        release = next((p for p in paths if is_release_photo(p)), None)
        if release is not None:
            _refuse_kmeans(release)
    return factory(label_config, paths, mask_side, cache_dir)


def _refuse_kmeans(photo: str | os.PathLike) -> None:
    raise CitysegError(
        f"labels.method=kmeans clusters the colours of pair images' masks, but {photo} is a Cityscapes release "
        "photo with exact label ids (gtFine); use labels.method=palette (the release's ids are then read as they are)"
    )


# ---- the label cache ----------------------------------------------------------------------------


class LabelCache:
    """Labels of pair images, computed once and kept on disk as ``.npy`` files.

    An entry is keyed by the source file (resolved path, size, mtime_ns), the labeller's
    :meth:`~Labeller.key` and the mask side, so a changed file or setting is relabelled; entries are
    written to a temporary file and renamed, so an interrupted run never leaves a partial one.

    A Cityscapes release photo (:func:`~cityseg.pairs.is_release_photo`) is served from its ``gtFine``
    label ids instead, mapped to ``labeller.class_set`` on every read and never cached: the PNG already
    is the label, and decoding it costs less than the photo beside it.

    Args:
        labeller: what computes the labels.
        cache_dir: cache folder (default ``$XDG_CACHE_HOME/cityseg`` or ``~/.cache/cityseg``).
        enabled: False to compute every time and write nothing.

    Example:
        >>> cache = LabelCache(PaletteLabeller())  # doctest: +SKIP
        >>> cache.get("train/1.jpg").shape  # doctest: +SKIP
        (256, 256)
    """

    def __init__(self, labeller: Labeller, cache_dir: str | os.PathLike | None = None, enabled: bool = True):
        self.labeller = labeller
        self.enabled = enabled
        self.folder = _cache_root(cache_dir) / "labels" / labeller.key()
        if enabled:
            ensure_writable_dir(self.folder)

    def entry(self, path: str | os.PathLike, mask_side: str = "right") -> Path:
        """The cache file for ``path``."""
        source = Path(path).resolve()
        try:
            stat = source.stat()
        except OSError as exc:
            raise CitysegError(f"cannot read {path}: {exc.strerror or exc}; check the path") from None
        key = f"{CACHE_FORMAT}|{source}|{stat.st_size}|{stat.st_mtime_ns}|{self.labeller.key()}|{mask_side}"
        return self.folder / f"{hashlib.sha1(key.encode()).hexdigest()[:32]}.npy"

    def get(self, path: str | os.PathLike, mask_side: str = "right") -> np.ndarray:
        """(H, W) uint8 class indices of the pair image ``path``, from the cache or computed and stored."""
        return self.pair(path, mask_side, need_photo=False)[1]

    def pair(
        self, path: str | os.PathLike, mask_side: str = "right", need_photo: bool = True
    ) -> tuple[np.ndarray | None, np.ndarray]:
        """``(photo, labels)``, decoding the image once; ``photo`` is None when not needed and labels are cached.

        For a release photo ``photo`` is None when not needed, and ``mask_side`` does not apply.
        """
        from cityseg.pairs import is_release_photo, read_pair

        if is_release_photo(path):
            return self._release_pair(path, need_photo)
        entry = self.entry(path, mask_side) if self.enabled else None
        if entry is not None and entry.exists():
            labels = _load_labels(entry)
            if labels is not None:
                photo = read_pair(path, mask_side)[0] if need_photo else None
                return photo, labels
        photo, mask = read_pair(path, mask_side)
        labels = self.labeller.label(mask, source=str(path))
        if entry is not None:
            try:
                with atomic_path(entry) as tmp:
                    np.save(tmp, labels)
            except OSError as exc:
                raise CitysegError(
                    f"cannot write label cache {entry}: {exc.strerror or exc}; free space or choose --cache-dir"
                ) from None
        return photo, labels

    def _release_pair(self, path: str | os.PathLike, need_photo: bool) -> tuple[np.ndarray | None, np.ndarray]:
        from cityseg.pairs import read_release, read_release_truth

        if self.labeller.method == "kmeans":
            _refuse_kmeans(path)
        if need_photo:
            photo, label_ids = read_release(path)  # (H, W, 3), (H, W); sizes checked against each other
        else:
            photo, label_ids = None, read_release_truth(path)
        return photo, self.labeller.class_set.from_label_ids(label_ids)  # (H, W) uint8 class indices


def _load_labels(entry: Path) -> np.ndarray | None:
    try:
        labels = np.load(entry, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None  # damaged entry: recompute and overwrite
    return labels if labels.dtype == np.uint8 and labels.ndim == 2 else None


# ---- labelling a dataset ------------------------------------------------------------------------


@dataclass
class LabelReport:
    """What :func:`label_dataset` found: class frequencies, how many images, what was skipped.

    Attributes:
        class_set: the classes counted.
        pixel_counts: (num_classes,) pixels of each class over all labelled images.
        image_counts: (num_classes,) images containing each class (on at least PRESENCE_SHARE of the image:
            blends leave specks of rare classes, e.g. truck along car edges, that would count everywhere).
        ignored_pixels: pixels labelled IGNORE_INDEX (void).
        count: images labelled.
        skipped: (path, reason) of each image skipped with ``skip_bad``.
    """

    class_set: ClassSet
    pixel_counts: np.ndarray
    image_counts: np.ndarray
    ignored_pixels: int = 0
    count: int = 0
    cached: int = 0  # of ``count``, labels read back from the cache (an earlier or interrupted run made them)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def total_pixels(self) -> int:
        return int(self.pixel_counts.sum()) + self.ignored_pixels

    def frequencies(self) -> np.ndarray:
        """(num_classes,) share of all labelled pixels (void included in the total)."""
        return self.pixel_counts / max(self.total_pixels, 1)

    def table(self) -> str:
        """The class-frequency table: class, share of pixels, images containing it."""
        names = [*self.class_set.names, "(void / ignored)"]
        width = max(len(n) for n in names)
        lines = [f"{'class':<{width}}  {'pixels %':>8}  {'images':>7}"]
        shares = self.frequencies()
        for i, name in enumerate(self.class_set.names):
            lines.append(f"{name:<{width}}  {100 * shares[i]:8.2f}  {int(self.image_counts[i]):7d}")
        void = 100 * self.ignored_pixels / max(self.total_pixels, 1)
        lines.append(f"{names[-1]:<{width}}  {void:8.2f}")
        lines.append(f"({self.count} images; 'images' counts those where the class covers >= {PRESENCE_SHARE:.2%})")
        return "\n".join(lines)


# Worker-process state, set once per process by _init_worker (the labeller is pickled once, not per image).
_WORKER: dict = {}


def _init_worker(labeller: Labeller, cache_dir, use_cache: bool, mask_side: str, skip_bad: bool) -> None:
    _WORKER.update(
        cache=LabelCache(labeller.prepare(), cache_dir, enabled=use_cache), mask_side=mask_side, skip_bad=skip_bad
    )


def _count_one(path: Path) -> tuple[np.ndarray | None, str | None, bool]:
    """Label one image (via the cache): its per-value pixel counts or the reason it was skipped, and whether
    the labels were already cached (so an interrupted run resumes: only the missing labels are computed)."""
    cache: LabelCache = _WORKER["cache"]
    try:
        cached = cache.enabled and cache.entry(path, _WORKER["mask_side"]).exists()
        labels = cache.get(path, _WORKER["mask_side"])
    except CitysegError as exc:
        if _WORKER["skip_bad"]:
            return None, str(exc), False
        raise
    return np.bincount(labels.ravel(), minlength=256), None, cached


def label_figure_rows(
    paths: Sequence[str | os.PathLike], cache: LabelCache, mask_side: str = "right"
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(photo, colour mask, class indices) of each image, for :func:`cityseg.plots.plot_label_figure`.

    A Cityscapes release photo has no colour mask: its truth's label ids are shown in their official colours.
    """
    from cityseg.pairs import is_release_photo, read_pair, read_release

    rows = []
    for path in paths:
        if is_release_photo(path):
            photo, label_ids = read_release(path)
            every_id = _class_set("labelids")
            mask = every_id.colorize(every_id.from_label_ids(label_ids))
        else:
            photo, mask = read_pair(path, mask_side)
        rows.append((photo, mask, cache.get(path, mask_side)))
    return rows


def label_dataset(
    paths: Sequence[str | os.PathLike],
    labeller: Labeller,
    cache_dir: str | os.PathLike | None = None,
    workers: int = 1,
    skip_bad: bool = False,
    progress: bool = True,
    mask_side: str = "right",
    use_cache: bool = True,
) -> LabelReport:
    """Label every image (filling the cache) and count classes, streaming: memory does not grow with the dataset.

    Args:
        paths: pair images.
        labeller: from :func:`make_labeller`.
        cache_dir: label cache folder (default: the user cache); ``use_cache=False`` computes without it.
        workers: worker processes (1 = label in this process).
        skip_bad: record unreadable or malformed images in ``skipped`` and go on, instead of stopping.
        progress: show a tqdm progress bar.
        mask_side: which half of each image holds the mask.

    Returns:
        A :class:`LabelReport`.

    Raises:
        CitysegError: the first bad image (without ``skip_bad``), or an unwritable cache folder.
    """
    from tqdm import tqdm

    paths = [Path(p) for p in paths]
    num = labeller.class_set.num_classes
    report = LabelReport(labeller.class_set, np.zeros(num, dtype=np.int64), np.zeros(num, dtype=np.int64))
    init_args = (labeller, cache_dir, use_cache, mask_side, skip_bad)
    labeller.prepare()  # build lookup tables once; forked workers inherit them
    bar = tqdm(total=len(paths), desc="labelling", unit="img", disable=not progress, dynamic_ncols=True)

    def collect(path: Path, counts: np.ndarray | None, reason: str | None, cached: bool) -> None:
        if counts is None:
            report.skipped.append((path, reason or "unreadable"))
        else:
            report.pixel_counts += counts[:num]
            report.image_counts += counts[:num] >= max(1.0, PRESENCE_SHARE * counts.sum())
            report.ignored_pixels += int(counts[num:].sum())
            report.count += 1
            report.cached += cached
        bar.update()

    try:
        if workers <= 1 or len(paths) < 2:
            _init_worker(*init_args)
            for path in paths:
                collect(path, *_count_one(path))
        else:
            from concurrent.futures import ProcessPoolExecutor

            chunksize = max(1, min(32, len(paths) // (workers * 8)))
            with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=init_args) as pool:
                try:
                    for path, result in zip(paths, pool.map(_count_one, paths, chunksize=chunksize), strict=True):
                        collect(path, *result)
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
    finally:
        bar.close()
        _WORKER.clear()
    return report
