"""Colour look-up tables, packed RGB, YCbCr and bit helpers (cityseg.labels.colour_lookup)."""

from __future__ import annotations

import numpy as np

from cityseg.images import pack_rgb  # the packing the tables are indexed by
from cityseg.labels.colour_lookup import (
    FAR,
    PALETTE_COLORS,
    UNCERTAIN,
    LumaBins,
    cached_table,
    highest_bit,
    lowest_bit,
    nearest_color_table,
    runs,
    squares,
    to_ycbcr,
    ycbcr_of_packed,
)


def test_table_matches_brute_force():
    colours = np.array([[0, 0, 0], [128, 64, 128], [70, 70, 70], [0, 0, 142], [128, 64, 128]])  # a repeat: ties
    rng = np.random.default_rng(0)
    rgb = np.concatenate(
        [rng.integers(0, 256, (3000, 3)), colours[rng.integers(0, 5, 3000)] + rng.integers(-40, 41, (3000, 3))]
    )
    rgb = np.clip(rgb, 0, 255)
    distance = ((rgb[:, None, :] - colours[None]) ** 2).sum(-1)
    nearest = distance.argmin(1)  # ties: the lowest index
    luma = rgb @ np.array([0.299, 0.587, 0.114])
    luma_error = np.abs(luma - colours[nearest] @ np.array([0.299, 0.587, 0.114]))
    unsure = luma_error > 4
    clear = np.abs(luma_error - 4) > 1e-3  # float32 rounding may decide exact ties either way
    for inner, outer, tolerance in [(30, None, None), (25, 40, None), (25, 40, 4.0)]:
        table = nearest_color_table(colours, max_distance=inner, outer_distance=outer, luma_tolerance=tolerance)
        expected = np.where(distance.min(1) <= inner**2, nearest, nearest | UNCERTAIN)
        if tolerance is not None:
            expected = np.where(unsure, expected | UNCERTAIN, expected)
        expected = np.where(distance.min(1) <= (outer or inner) ** 2, expected, FAR)
        got = table[(rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]]
        assert (got == expected)[clear].all()


def test_cached_table_is_built_once_per_arguments():
    colours = np.array([[0, 0, 0], [255, 255, 255]], dtype=np.uint8)
    first = cached_table(colours, 20.0)
    assert cached_table(colours, 20.0) is first
    assert cached_table(colours, 21.0) is not first


def test_pack_and_bit_helpers_match_plain_arithmetic():
    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)
    plain = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    read_only = rgb.copy()
    read_only.flags.writeable = False
    for packed, expected in [
        (pack_rgb(rgb), plain),
        (pack_rgb(read_only), plain),
        (pack_rgb(rgb[:, ::2]), plain[:, ::2]),  # not contiguous
        (pack_rgb(rgb[:1, :1]), plain[:1, :1]),  # one pixel
    ]:
        assert packed.dtype == np.uint32 and (packed == expected).all()

    words = np.concatenate([rng.integers(0, 2**32, 2000, dtype=np.uint64), [0, 1, 2**24 - 1, 2**25 - 1, 2**32 - 1]])
    words = words.astype(np.uint32)
    highest = np.array([int(w).bit_length() - 1 for w in words])
    lowest = np.array([(int(w) & -int(w)).bit_length() - 1 for w in words])
    assert (highest_bit(words) == highest).all() and (lowest_bit(words) == lowest).all()


def test_luma_bins_count_like_searchsorted():
    rng = np.random.default_rng(5)
    palette_luma = to_ycbcr(PALETTE_COLORS)[:, 0]
    lumas = np.concatenate(
        [rng.uniform(0, 255, 5000), palette_luma, np.nextafter(palette_luma, 0), np.arange(256)]
    ).astype(np.float32)
    bins = LumaBins(palette_luma)
    assert (bins.count_below(lumas) == np.searchsorted(palette_luma, lumas)).all()


def test_ycbcr_of_packed_equals_to_ycbcr():
    rgb = np.random.default_rng(2).integers(0, 256, (500, 3), dtype=np.uint8)
    assert np.array_equal(np.stack(ycbcr_of_packed(pack_rgb(rgb)), axis=-1), to_ycbcr(rgb))


def test_squares_cover_each_square_of_a_framed_image():
    rng = np.random.default_rng(4)
    image = np.zeros((9, 12), dtype=np.int64)  # a frame of 2 zeros around 5x8 values
    image[2:-2, 2:-2] = rng.integers(1, 100, (5, 8))
    flat, stride = image.reshape(-1), image.shape[1]
    for radius in (1, 2):
        got = squares(flat, radius, np.maximum, stride)
        for y in range(2, 7):
            for x in range(2, 10):
                square = image[y - radius : y + radius + 1, x - radius : x + radius + 1]
                assert got[(y - radius) * stride + x - radius] == square.max()
    assert (runs(np.arange(10), 1, np.minimum) == np.arange(8)).all()  # each run of 3 starts at its minimum
