"""Colour look-up tables and the array arithmetic the labellers share.

The official palette sorted by luma, 2^24-entry nearest-colour tables indexed by packed RGB, JPEG YCbCr,
min/max/or over squares of a flattened image, and bit tricks on uint32 words of colour bits (one bit per
palette colour: the palette has fewer than 32 distinct colours).
"""

from __future__ import annotations

import math

import numpy as np

from cityseg.classes import color_to_label_id


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
PALETTE_IDS_BY_CODE = np.zeros(256, dtype=np.uint8)  # table code -> official label id
PALETTE_IDS_BY_CODE[: len(PALETTE_IDS)] = PALETTE_IDS


# ---- packed RGB and nearest-colour tables ----------------------------------------------------------


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
        color_luma = to_ycbcr(colors)[:, 0]  # (P,)
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


def cached_table(
    colors: np.ndarray,
    max_distance: float | None,
    outer_distance: float | None = None,
    luma_tolerance: float | None = None,
) -> np.ndarray:
    """:func:`nearest_color_table`, built once per process for each set of arguments."""
    key = (np.asarray(colors, dtype=np.uint8).tobytes(), max_distance, outer_distance, luma_tolerance)
    if key not in _TABLES:
        _TABLES[key] = nearest_color_table(colors, max_distance, outer_distance, luma_tolerance)
    return _TABLES[key]


# ---- JPEG YCbCr ---------------------------------------------------------------------------------

YCBCR = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], dtype=np.float32)


def to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) RGB -> (..., 3) float32 JPEG YCbCr (without the 128 offset)."""
    rgb = np.asarray(rgb, dtype=np.float32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    # written out rather than a matrix product: tiny BLAS calls cost more than they compute
    return np.stack([YCBCR[i, 0] * r + YCBCR[i, 1] * g + YCBCR[i, 2] * b for i in range(3)], axis=-1)


def ycbcr_of_packed(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N,) uint32 packed RGB (:func:`cityseg.images.pack_rgb`) -> (luma, blue chroma, red chroma), each (N,) float32.

    The same float32 arithmetic as :func:`to_ycbcr`, so the same values, without an (N, 3) array between.
    """
    r = (packed >> 16).astype(np.float32)
    g = ((packed >> 8) & 0xFF).astype(np.float32)
    b = (packed & 0xFF).astype(np.float32)
    return tuple(YCBCR[i, 0] * r + YCBCR[i, 1] * g + YCBCR[i, 2] * b for i in range(3))


class LumaBins:
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


# ---- squares of a flattened image ---------------------------------------------------------------


def runs(values: np.ndarray, radius: int, op: np.ufunc, step: int = 1) -> np.ndarray:
    """``op`` over runs of 2r+1 elements ``step`` apart: element j covers values[j], values[j+step] .. [j+2r*step].

    Runs double in length at each pass (1, 2, 4, ...) and two overlapping ones finish the job, so a run
    of 7 costs 3 passes over the array rather than 6. ``op`` must not care about repeats (min, max, or).
    """
    length, span, result = 2 * radius + 1, 1, values
    while 2 * span <= length:
        result = op(result[: -span * step], result[span * step :])
        span *= 2
    if span < length:
        extra = (length - span) * step
        result = op(result[:-extra], result[extra:])
    return result


def squares(values: np.ndarray, radius: int, op: np.ufunc, stride: int) -> np.ndarray:
    """``op`` over every (2r+1)^2 square of a flattened row-major image ``stride`` pixels wide.

    Element j covers the square whose top-left pixel is j, so the square centred on pixel c is element
    ``c - radius * (stride + 1)``. Rows run into each other in the flat array: on an image framed by at least
    ``radius`` pixels that ``op`` ignores, squares centred on the image never see that.
    """
    return runs(runs(values, radius, op), radius, op, stride)


# ---- colour bits --------------------------------------------------------------------------------


def colour_bits(codes: np.ndarray) -> np.ndarray:
    """Table codes -> uint32 with bit c set for confident colour c, 0 for UNCERTAIN codes, FAR and the frame.

    A shift rather than a 256-entry look-up: 6x faster on uint8 codes. NumPy defines shifts by the
    bit width or more as 0, and every code that is not a confident colour is at least 0x7F.
    """
    return np.left_shift(np.uint32(1), codes, dtype=np.uint32)


def highest_bit(words: np.ndarray) -> np.ndarray:
    """(N,) uint32 -> index of the highest set bit, -1 where none.

    Read from the exponent of the words as float32. Clearing every bit just below a set bit first keeps
    the highest bit and leaves no run of ones that rounding to 24 bits could carry into the next power.
    """
    return _exponent(words & ~(words >> np.uint32(1)))


def lowest_bit(words: np.ndarray) -> np.ndarray:
    """(N,) uint32 -> index of the lowest set bit, -1 where none."""
    return _exponent(words & (~words + np.uint32(1)))  # isolate the lowest bit: a power of two rounds exactly


def _exponent(words: np.ndarray) -> np.ndarray:
    """(N,) uint32, each 0 or exactly representable in float32 -> floor(log2), -1 for 0 (from the float bits)."""
    return np.maximum((words.astype(np.float32).view(np.int32) >> 23) - 127, -1)
