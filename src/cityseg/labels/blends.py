"""Blend slivers: edge pixels whose colour is what a blend of the two classes beside them would make.

Resizing and 4:2:0 JPEG blend the colours at an edge between classes a and b, and some blends land
confidently near a third, unrelated colour c (car next to black looks like truck). :func:`blend_traps`
finds every such (c, a, b) once per colour table; :func:`sliver_pixels` finds the pixels of a mask that
fall into one, so the palette labeller takes them from their neighbours instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cityseg.images import pack_rgb
from cityseg.labels.colour_lookup import PALETTE_COLORS, UNCERTAIN, YCBCR, colour_bits, lowest_bit, squares, to_ycbcr


@dataclass(frozen=True)
class BlendTraps:
    """The colours some blend of two others resembles, as triples and as bit tables.

    Attributes:
        triples: (c, a, b) palette indices: some blend of colours a and b is confidently nearest to colour c.
        rows: (256, P) uint32; rows[c, a] holds the bits of the colours b whose blend with a looks like c.
        bits: bits of the colours some blend resembles.
        partners: (256,) uint32; partners[c] holds the bits of the colours that blend with another into c.
    """

    triples: list[tuple[int, int, int]]
    rows: np.ndarray
    bits: np.uint32
    partners: np.ndarray


def blend_traps(table: np.ndarray) -> BlendTraps:
    """Every (c, a, b) where a blend of palette colours a and b takes colour c's confident code in ``table``.

    Blends are what resizing and 4:2:0 JPEG make at an edge between a and b: the luma of one mix of
    a and b with the chroma of another (luma is kept per pixel, chroma is shared by 2x2 pixels).

    Args:
        table: the palette's nearest-colour table (:func:`~cityseg.labels.colour_lookup.nearest_color_table`).
    """
    ycc = to_ycbcr(PALETTE_COLORS)  # (P, 3)
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
    rgb = np.clip(np.rint(blend @ np.linalg.inv(YCBCR).T), 0, 255).astype(np.uint8)
    codes = table.take(pack_rgb(rgb))  # (pairs, 289)
    triples = []
    for pair, (ia, ib) in enumerate(zip(a_index, b_index, strict=True)):
        triples += [(int(c), int(ia), int(ib)) for c in np.unique(codes[pair]) if c < UNCERTAIN and c not in (ia, ib)]
    rows = np.zeros((256, len(PALETTE_COLORS)), dtype=np.uint32)
    for c, a, b in triples:
        rows[c, a] |= np.uint32(1 << b)
        rows[c, b] |= np.uint32(1 << a)
    bits_of = colour_bits(np.arange(len(PALETTE_COLORS), dtype=np.uint8))  # (P,)
    bits = np.bitwise_or.reduce(bits_of[rows[: len(PALETTE_COLORS)].any(axis=1)])
    partners = np.bitwise_or.reduce((rows != 0) * bits_of, axis=1)  # (256,)
    return BlendTraps(triples, rows, bits, partners)


def sliver_pixels(framed: np.ndarray, pad: int, bits: np.ndarray, traps: BlendTraps, radius: int) -> np.ndarray:
    """Edge pixels of a colour c with colours a and b nearby whose blend looks like c: flat indices into framed.

    Args:
        framed: the mask's codes in a frame of 0x7F (no colour, not UNCERTAIN) ``pad`` wide, at least ``radius``.
        pad: the frame's width.
        bits: (F,) colour bit of each pixel of ``framed``, flattened.
        traps: from :func:`blend_traps`, for the table that made the codes.
        radius: how far (pixels) a sliver looks for the two colours that would blend into it.
    """
    stride = framed.shape[1]
    flat = framed.reshape(-1)
    # Edge pixels: another code in the 3x3 square. For a confident code c, the square's minimum is
    # below c or its maximum above c. The frame (0x7F) is above every confident code, so it cannot
    # lower a minimum; for the maximum it is set to 0 in a copy. Squares are cut at the border.
    low = squares(flat, 1, np.minimum, stride)
    zero_framed = np.zeros_like(framed)
    zero_framed[pad:-pad, pad:-pad] = framed[pad:-pad, pad:-pad]
    high = squares(zero_framed.reshape(-1), 1, np.maximum, stride)
    centre = stride + 1  # flat offset from a square's top-left pixel to its centre
    edges = low != high
    edges &= (bits[centre : centre + len(edges)] & traps.bits) != 0  # edges of colours blends resemble
    suspects = np.flatnonzero(edges) + centre
    if len(suspects) == 0:
        return suspects
    colour = flat.take(suspects)
    around = squares(bits, radius, np.bitwise_or, stride).take(suspects - radius * centre)  # colours near
    # Only colours that blend with another colour into this one matter (that drops the pixel's own
    # colour too), and at least two must be around: most suspects go here, before any sorting.
    around &= traps.partners.take(colour)
    two = np.flatnonzero(around & (around - np.uint32(1)))  # more than one bit set
    suspects, colour, around = suspects[two], colour[two].astype(np.intp), around[two]
    # Blended: some colour a around has a partner b around that blends with it into c (rows[c, a]).
    # First a = the lowest colour around: that settles every suspect with two colours around (most).
    lowest = lowest_bit(around)
    blended = (traps.rows.reshape(-1).take(colour * len(PALETTE_COLORS) + lowest) & around) != 0
    rest = around ^ (np.uint32(1) << lowest.astype(np.uint32))
    more = np.flatnonzero(~blended & ((rest & (rest - np.uint32(1))) != 0))  # 3+ colours, no pair found yet
    if len(more):
        blended[more] = _blended_among_many(colour[more], around[more], traps)
    return suspects[blended]


def _blended_among_many(colour: np.ndarray, around: np.ndarray, traps: BlendTraps) -> np.ndarray:
    """(N,) colours and (N,) bits of the 3+ colours around each -> whether any two around blend into it.

    Few distinct (colour, colours around) combinations occur: each is judged once, against every a.
    """
    keys = (colour.astype(np.uint64) << np.uint64(32)) | around
    combos = np.sort(keys)  # np.unique, without its overheads on small arrays
    combos = combos[np.flatnonzero(np.diff(combos, prepend=combos[0] - np.uint64(1)))]
    which = np.searchsorted(combos, keys)
    combo_colour = (combos >> np.uint64(32)).astype(np.intp)
    combo_around = (combos & np.uint64(0xFFFFFFFF)).astype(np.uint32)[:, None]  # (K, 1)
    has_a = ((combo_around >> np.arange(len(PALETTE_COLORS), dtype=np.uint32)) & 1).astype(bool)  # (K, P)
    has_partner = (traps.rows[combo_colour] & combo_around) != 0  # (K, P)
    return (has_a & has_partner).any(axis=1)[which]
