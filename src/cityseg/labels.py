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
"""

from __future__ import annotations

import hashlib
import json
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
    """(..., 3) uint8 RGB -> (...) uint32 index r<<16 | g<<8 | b into a 2^24-entry table."""
    packed = rgb[..., 0].astype(np.uint32)
    packed <<= 8
    packed |= rgb[..., 1]
    packed <<= 8
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
    at a time from separable squared distances, only against colours that can be within reach of that
    red value, so a table takes about half a second.

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
    dtype = np.uint16 if 2 * outer + 1 <= np.iinfo(np.uint16).max else np.int32
    values = np.arange(256, dtype=np.int64)
    green = (values[None, :] - colors[:, 1:2]) ** 2  # (P, 256)
    blue = (values[None, :] - colors[:, 2:3]) ** 2  # (P, 256)
    # squared green+blue distance of every (g, b) to each colour, saturated just above the outer limit
    green_blue = np.minimum(green[:, :, None] + blue[:, None, :], outer + 1).reshape(len(colors), -1).astype(dtype)
    red = (values[:, None] - colors[None, :, 0]) ** 2  # (256, P)
    table = np.full((256, 256 * 256), FAR, dtype=np.uint8)
    if luma_tolerance is not None:
        color_luma = _to_ycbcr(colors)[:, 0]  # (P,)
        green_blue_luma = (0.587 * values[:, None] + 0.114 * values[None, :]).ravel().astype(np.float32)  # (65536,)
    for r in range(256):
        near = np.flatnonzero(red[r] <= outer)
        if len(near) == 0:
            continue
        distance = green_blue[near] + red[r, near].astype(dtype)[:, None]  # (P', 65536)
        best = distance.argmin(axis=0)
        best_distance = np.take_along_axis(distance, best[None], axis=0)[0]
        row = near[best].astype(np.uint8)
        row[best_distance > inner] |= UNCERTAIN
        if luma_tolerance is not None:
            luma_error = np.abs(green_blue_luma + np.float32(0.299 * r) - color_luma[near][best])
            row[luma_error > luma_tolerance] |= UNCERTAIN
        row[best_distance > outer] = FAR
        table[r] = row
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


def _or_filter(bits: np.ndarray, radius: int) -> np.ndarray:
    """Bitwise OR over a (2r+1)^2 square window: which colour bits occur near each pixel."""
    out = bits.copy()
    for d in range(1, radius + 1):
        out[:, d:] |= bits[:, :-d]
        out[:, :-d] |= bits[:, d:]
    rows = out.copy()
    for d in range(1, radius + 1):
        out[d:] |= rows[:-d]
        out[:-d] |= rows[d:]
    return out


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
        self._palette_ycbcr = _to_ycbcr(PALETTE_COLORS)  # (P, 3)
        self._palette_luma = np.ascontiguousarray(self._palette_ycbcr[:, 0])  # (P,) ascending
        # the same with a last row no pixel is near, for "no candidate" (index -1)
        self._palette_or_none = np.vstack([self._palette_ycbcr, np.float32([1e4, 0, 0])])
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
        skip = ("_traps", "_trap_rows", "_trap_colour")
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
            codes = table[_pack(rgb)]  # (pairs, 289)
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
            self._trap_colour = self._trap_rows.any(axis=1)  # (256,) colours some blend resembles
            self._traps = traps
        return self._traps

    def unknown_share(self, mask_rgb: np.ndarray) -> float:
        """Share of the mask covered by its most common colour that is no official colour (nor near one).

        Above UNKNOWN_SHARE (2%) :meth:`label` refuses the mask; the real pairs stay near 0.2%.
        """
        mask_rgb = _check_mask(mask_rgb, "")
        return _unknown_colour(mask_rgb, self._table()[_pack(mask_rgb)])[0]

    # -- labelling --------------------------------------------------------------------------------
    def label(self, mask_rgb: np.ndarray, source: str = "") -> np.ndarray:
        return self._code_to_class[self._label_codes(mask_rgb, source)]

    def label_ids(self, mask_rgb: np.ndarray, source: str = "") -> np.ndarray:
        """(H, W, 3) uint8 colour mask -> (H, W) uint8 official label ids (0..33)."""
        return PALETTE_IDS_BY_CODE[self._label_codes(mask_rgb, source)]

    def _label_codes(self, mask_rgb: np.ndarray, source: str) -> np.ndarray:
        """(H, W, 3) uint8 colour mask -> (H, W) uint8 palette index of each pixel's colour."""
        mask_rgb = _check_mask(mask_rgb, source)
        code = self._table()[_pack(mask_rgb)]  # (H, W) palette index, flagged UNCERTAIN, or FAR
        _check_unknown_colours(mask_rgb, code, source)
        if self.border and min(code.shape) > 2:
            # The outermost pixels are not the scene: the masks carry a thin dark frame, and JPEG chroma
            # upsampling bleeds the photo into the column next to it. Take them from the pixels inside.
            code[[0, -1], :] |= UNCERTAIN
            code[:, [0, -1]] |= UNCERTAIN
        bits = _CODE_BITS[code]  # (H, W) one bit per confident colour, _UNSURE_BIT for the rest
        near = None
        if self.slivers:
            near = _or_filter(bits, 1)  # colours in each 3x3 neighbourhood
            slivers = self._sliver_pixels(code, bits, near)  # flat indices
            if len(slivers):
                code.ravel()[slivers] |= UNCERTAIN
                bits.ravel()[slivers] = _UNSURE_BIT
                near = None
        uncertain = np.flatnonzero(code >= UNCERTAIN)
        if len(uncertain) == code.size:
            raise CitysegError(
                f"{source or 'mask'}: no pixel is within {self.max_distance:g} of an official Cityscapes colour; "
                "is it a colour mask (try --mask-side), drawn in the Cityscapes palette?"
            )
        if len(uncertain):
            if near is None or self.search_radius > 1:  # colours within search_radius of each pixel
                near = _or_filter(bits, self.search_radius)
            self._fill(mask_rgb, code, uncertain, near)
        return code

    def _sliver_pixels(self, code: np.ndarray, bits: np.ndarray, near: np.ndarray) -> np.ndarray:
        """Flat indices of edge pixels of a colour c with colours a and b nearby whose blend looks like c."""
        self._trap_triples()
        suspects = np.flatnonzero((near != bits) & self._trap_colour[code])  # edges of colours blends resemble
        if len(suspects) == 0:
            return suspects
        colour = code.ravel()[suspects].astype(np.uint32)
        around = _or_filter(near, self.blend_radius - 1) if self.blend_radius > 1 else near
        around = around.ravel()[suspects] & ~(_UNSURE_BIT | (np.uint32(1) << colour))  # (N,) other colours near
        # few distinct (colour, colours around) combinations occur: judge each once
        combos, which = np.unique((colour.astype(np.uint64) << np.uint64(32)) | around, return_inverse=True)
        colour, around = (combos >> np.uint64(32)).astype(np.intp), (combos & np.uint64(0xFFFFFFFF)).astype(np.uint32)
        # blended: some colour a around has a partner b around that blends with it into c (trap_rows[c, a])
        has_a = ((around[:, None] >> np.arange(len(PALETTE_COLORS), dtype=np.uint32)) & 1).astype(bool)  # (K, P)
        has_partner = (self._trap_rows[colour] & around[:, None]) != 0  # (K, P)
        blended = (has_a & has_partner).any(axis=1)
        return suspects[blended[which]]

    def _fill(self, mask_rgb: np.ndarray, code: np.ndarray, uncertain: np.ndarray, near: np.ndarray) -> None:
        """Give each uncertain pixel (flat indices) the nearby confident colour that best explains its colour.

        ``near`` holds the confident colours within ``search_radius`` of each pixel.

        Luma decides (chroma is weighted by ``chroma_weight``), so the best candidate is one of the two
        nearest in luma: the brightest candidate darker than the pixel or the darkest one brighter. The
        palette is sorted by luma, so both are found with bit arithmetic on the candidate bits.
        """
        pixels = _to_ycbcr(mask_rgb.reshape(-1, 3)[uncertain])  # (N, 3)
        candidates = near.ravel()[uncertain] & ~_UNSURE_BIT  # (N,) bit i: confident colour i is near
        best, found = self._best_candidates(pixels, candidates)
        flat = code.ravel()
        flat[uncertain[found]] = best[found]
        lonely = uncertain[~found]
        if len(lonely) == 0:
            return
        # a few have no confident colour that close: look three times as far, sampling the map of
        # colours within search_radius at a grid of offsets that tiles the wider square
        height, width = code.shape
        rows, cols = np.divmod(lonely, width)
        candidates = np.zeros(len(lonely), dtype=np.uint32)
        step = 2 * self.search_radius
        for dy in (-step, 0, step):
            for dx in (-step, 0, step):
                candidates |= near[np.clip(rows + dy, 0, height - 1), np.clip(cols + dx, 0, width - 1)]
        candidates &= ~_UNSURE_BIT
        best, found = self._best_candidates(pixels[~found], candidates)
        flat[lonely[found]] = best[found]
        if found.all():
            return
        # none even there: take the colour of the nearest confident pixel
        from scipy import ndimage

        alone = np.zeros(code.shape, dtype=bool)
        alone.ravel()[lonely[~found]] = True
        nearest = ndimage.distance_transform_edt(alone, return_distances=False, return_indices=True)
        code[...] = code[tuple(nearest)]

    def _best_candidates(self, pixels: np.ndarray, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3) YCbCr pixels and (N,) candidate bits -> best colour index (N,) and whether there was one (N,)."""
        darker_bits = np.searchsorted(self._palette_luma, pixels[:, 0]).astype(np.uint32)
        darker = candidates & ((np.uint32(1) << darker_bits) - np.uint32(1))
        sides = (_highest_bit(darker), _lowest_bit(candidates & ~darker))  # (N,) colour index or -1 (none)
        costs = []
        for side in sides:
            difference = pixels - self._palette_or_none[side]  # index -1: a colour no pixel is near
            costs.append(difference[:, 0] ** 2 + self.chroma_weight * (difference[:, 1] ** 2 + difference[:, 2] ** 2))
        best = np.where(costs[1] < costs[0], sides[1], sides[0])
        return best, best >= 0


def _highest_bit(words: np.ndarray) -> np.ndarray:
    """(N,) uint32 -> index of the highest set bit, -1 where none."""
    return np.frexp(words.astype(np.float64))[1].astype(np.intp) - 1


def _lowest_bit(words: np.ndarray) -> np.ndarray:
    """(N,) uint32 -> index of the lowest set bit, -1 where none."""
    return _highest_bit(words & (~words + np.uint32(1)))


_UNSURE_BIT = np.uint32(1 << 31)  # bit of a pixel that is not a confident colour
_CODE_BITS = np.full(256, _UNSURE_BIT, dtype=np.uint32)  # table code -> its bit
_CODE_BITS[: len(PALETTE_COLORS)] = np.uint32(1) << np.arange(len(PALETTE_COLORS), dtype=np.uint32)
PALETTE_IDS_BY_CODE = np.zeros(256, dtype=np.uint8)  # table code -> official label id
PALETTE_IDS_BY_CODE[: len(PALETTE_IDS)] = PALETTE_IDS


def _check_mask(mask_rgb: np.ndarray, source: str) -> np.ndarray:
    mask_rgb = np.asarray(mask_rgb)
    if mask_rgb.ndim != 3 or mask_rgb.shape[2] != 3 or mask_rgb.dtype != np.uint8:
        raise CitysegError(
            f"{source or 'mask'}: expected an (H, W, 3) uint8 RGB mask, got {mask_rgb.shape} {mask_rgb.dtype}"
        )
    return mask_rgb


def _unknown_colour(mask_rgb: np.ndarray, code: np.ndarray, at_least: float = 0.0) -> tuple[float, tuple]:
    """Share of the mask covered by its most common unknown colour (binned 16 levels per channel), and that colour.

    ``code`` is FAR for pixels farther than UNKNOWN_DISTANCE (or max_distance) from every official colour.
    JPEG blends are spread thinly over many colours along edges; another palette's class is one colour
    over a region, so it fills one bin. The colour is worked out only for shares above ``at_least``.
    """
    unknown = code == FAR
    if np.count_nonzero(unknown) <= at_least * code.size:
        return 0.0, ()  # too few unknown pixels to fill any bin beyond at_least
    pixels = mask_rgb[unknown]  # (N, 3)
    coarse = (pixels >> 4).astype(np.int32)  # 16 levels per channel
    bins = (coarse[:, 0] << 8) | (coarse[:, 1] << 4) | coarse[:, 2]
    counts = np.bincount(bins, minlength=4096)
    worst = int(counts.argmax())
    share = counts[worst] / code.size
    if share <= at_least:
        return share, ()
    return share, tuple(int(v) for v in np.median(pixels[bins == worst], axis=0))


def _check_unknown_colours(mask_rgb: np.ndarray, code: np.ndarray, source: str) -> None:
    """Raise if one colour that belongs to no class covers more than UNKNOWN_SHARE of the mask."""
    share, colour = _unknown_colour(mask_rgb, code, at_least=UNKNOWN_SHARE)
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
        return _cached_table(self._centers_u8(), None)[_pack(mask_rgb)]

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
    return factory(label_config, list(paths), mask_side, cache_dir)


# ---- the label cache ----------------------------------------------------------------------------


class LabelCache:
    """Labels of pair images, computed once and kept on disk as ``.npy`` files.

    An entry is keyed by the source file (resolved path, size, mtime_ns), the labeller's
    :meth:`~Labeller.key` and the mask side, so a changed file or setting is relabelled; entries are
    written to a temporary file and renamed, so an interrupted run never leaves a partial one.

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
        """``(photo, labels)``, decoding the image once; ``photo`` is None when not needed and labels are cached."""
        from cityseg.pairs import read_pair

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


def _count_one(path: Path) -> tuple[np.ndarray | None, str | None]:
    """Label one image (via the cache); return its per-value pixel counts, or the reason it was skipped."""
    try:
        labels = _WORKER["cache"].get(path, _WORKER["mask_side"])
    except CitysegError as exc:
        if _WORKER["skip_bad"]:
            return None, str(exc)
        raise
    return np.bincount(labels.ravel(), minlength=256), None


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

    def collect(path: Path, counts: np.ndarray | None, reason: str | None) -> None:
        if counts is None:
            report.skipped.append((path, reason or "unreadable"))
        else:
            report.pixel_counts += counts[:num]
            report.image_counts += counts[:num] >= max(1.0, PRESENCE_SHARE * counts.sum())
            report.ignored_pixels += int(counts[num:].sum())
            report.count += 1
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
