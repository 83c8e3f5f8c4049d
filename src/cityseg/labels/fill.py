"""Filling uncertain pixels: each takes the nearby confident colour that best explains its own colour.

4:2:0 JPEG keeps luma per pixel but shares chroma between 2x2 pixels, so an uncertain edge pixel still
has the luma of its own class: luma decides among the candidates, chroma (weighted low) breaks near-ties.
"""

from __future__ import annotations

import numpy as np

from cityseg.labels.colour_lookup import (
    PALETTE_COLORS,
    LumaBins,
    highest_bit,
    lowest_bit,
    squares,
    to_ycbcr,
    ycbcr_of_packed,
)

_PALETTE_YCBCR = tuple(np.ascontiguousarray(channel) for channel in to_ycbcr(PALETTE_COLORS).T)  # Y, Cb, Cr: (P,)
_LUMA_BINS = LumaBins(_PALETTE_YCBCR[0])  # the palette is sorted by luma
# _DARKER[k]: the bits of the k darkest colours
_DARKER = (np.uint32(1) << np.arange(len(PALETTE_COLORS) + 1, dtype=np.uint32)) - np.uint32(1)


def fill_uncertain(
    packed: np.ndarray,
    framed: np.ndarray,
    pad: int,
    uncertain: np.ndarray,
    bits: np.ndarray,
    radius: int,
    chroma_weight: float,
) -> None:
    """Give each uncertain pixel the nearby confident colour that best explains its colour, in ``framed``.

    Args:
        packed: (H, W) packed RGB of the mask.
        framed: (H + 2 pad, W + 2 pad) the mask's codes in a frame; updated in place.
        pad: the frame's width, at least ``radius``.
        uncertain: flat indices into ``framed`` of the pixels to fill.
        bits: (F,) colour bit of each pixel of ``framed`` (0 for uncertain ones), flattened.
        radius: how far (pixels) a pixel looks for candidates; those with none look three times as far.
        chroma_weight: weight of chroma against luma when choosing among candidates.

    The candidates of a pixel are the confident colours within ``radius`` pixels (then three times as
    far); :func:`best_candidates` chooses among them. The rare pixel with none even there takes the
    colour of the nearest confident pixel.
    """
    height, width = packed.shape
    stride = framed.shape[1]
    # the colours within radius of pixel c: near[c - radius * (stride + 1)]
    near = squares(bits, radius, np.bitwise_or, stride)
    candidates = near.take(uncertain - radius * (stride + 1))
    rows = uncertain // stride  # framed row (image row + pad) of each pixel
    pixels = ycbcr_of_packed(packed.reshape(-1).take(uncertain - rows * (2 * pad) - pad * (width + 1)))
    best, found = best_candidates(pixels, candidates, chroma_weight)
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
    best, found = best_candidates(tuple(channel[lonely] for channel in pixels), candidates, chroma_weight)
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


def best_candidates(
    pixels: tuple[np.ndarray, np.ndarray, np.ndarray], candidates: np.ndarray, chroma_weight: float
) -> tuple[np.ndarray, np.ndarray]:
    """(luma, Cb, Cr) of N pixels and (N,) candidate bits -> best colour index (N,), whether there was one (N,).

    Luma decides (chroma is weighted by ``chroma_weight``), so the best candidate is one of the two
    nearest in luma: the brightest candidate darker than the pixel or the darkest one brighter. The
    palette is sorted by luma, so both are found with bit arithmetic on the candidate bits. Where
    only one of them exists it is the answer; costs are worked out only where there are two.
    """
    luma, blue, red = pixels
    darker = candidates & _DARKER.take(_LUMA_BINS.count_below(luma))
    brighter = candidates ^ darker
    sides = (highest_bit(darker), lowest_bit(brighter))  # (N,) colour index or -1 (none)
    best = np.maximum(*sides)  # the one side there is, or -1
    both = np.flatnonzero((darker != 0) & (brighter != 0))
    luma, blue, red = luma[both], blue[both], red[both]
    sides = [side[both] for side in sides]
    palette_luma, palette_blue, palette_red = _PALETTE_YCBCR
    costs = [
        (luma - palette_luma.take(side)) ** 2
        + chroma_weight * ((blue - palette_blue.take(side)) ** 2 + (red - palette_red.take(side)) ** 2)
        for side in sides
    ]
    best[both] = np.where(costs[1] < costs[0], sides[1], sides[0])
    return best, best >= 0
