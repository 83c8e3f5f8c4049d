"""The palette labeller (cityseg.labels.palette, with its steps in blends.py and fill.py)."""

from __future__ import annotations

import numpy as np
import pytest

from cityseg.classes import IGNORE_INDEX, class_set
from cityseg.errors import CitysegError
from cityseg.labels.colour_lookup import PALETTE_COLORS, PALETTE_IDS_BY_CODE, UNCERTAIN, to_ycbcr
from cityseg.labels.palette import PaletteLabeller


@pytest.fixture(scope="module")
def palette():
    return PaletteLabeller().prepare()  # builds the 16 MiB table once for the module


def test_exact_colours_give_exact_ids(palette, pair_images):
    drawable = np.array(pair_images.drawable_ids, dtype=np.uint8).reshape(-1, 1)
    ids = np.repeat(np.repeat(drawable, 6, 0), 36, 1)  # 6-row bands
    ids = np.ascontiguousarray(np.concatenate([ids, ids[::-1]], axis=1))  # (174, 72): every colour, two sides
    mask = pair_images.id_colours[ids]

    assert (palette.label_ids(mask) == ids).all()
    train19 = class_set("train19")
    assert (palette.label(mask) == train19.from_label_ids(ids)).all()
    assert (PaletteLabeller("labelids").label(mask) == ids).all()
    assert palette.label(mask).dtype == np.uint8


def test_bad_settings_are_one_line_errors():
    with pytest.raises(CitysegError, match="max_distance"):
        PaletteLabeller(max_distance=0)
    with pytest.raises(CitysegError, match="search_radius"):
        PaletteLabeller(search_radius=0)
    with pytest.raises(CitysegError, match="nonsense"):
        PaletteLabeller("nonsense")
    with pytest.raises(CitysegError, match=r"\(4, 4\) uint8"):
        PaletteLabeller().label(np.zeros((4, 4), np.uint8))


def agreement(labeller: PaletteLabeller, scenes, pair_images) -> float:
    train19 = class_set("train19")
    same = total = 0
    for photo, ids in scenes:
        got = labeller.label(pair_images.decode_mask(pair_images.encode(photo, ids)))
        same += int((got == train19.from_label_ids(ids)).sum())
        total += ids.size
    return same / total


def test_jpeg_synthetic_scenes_agree_with_exact_ids(palette, pair_images):
    synth = pytest.importorskip("cityseg.synth")
    rng = np.random.default_rng(7)
    scenes = [synth.render_scene(rng) for _ in range(8)]
    assert agreement(palette, scenes, pair_images) >= 0.995


def test_jpeg_drawn_masks_agree_with_exact_ids(palette, pair_images):
    rng = np.random.default_rng(3)
    scenes = [(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8), pair_images.draw(rng)) for _ in range(8)]
    result = agreement(palette, scenes, pair_images)
    assert result >= 0.995
    # the plain nearest colour (no slivers, no luma test) is measurably worse on the same masks
    plain = PaletteLabeller(max_distance=1000, luma_tolerance=None, slivers=False)
    assert agreement(plain, scenes, pair_images) < result


def test_blend_sliver_is_not_a_third_class(palette, pair_images):
    ids = np.zeros((32, 32), dtype=np.uint8)  # black (unlabeled) above a car
    ids[16:] = 26
    mask = pair_images.id_colours[ids].copy()
    mask[15:17] = (0, 0, 71)  # two rows of the car|black blend, nearest to truck (0, 0, 70)
    got = palette.label_ids(mask)
    assert not (got == 27).any()
    assert (got[:14] == 0).all() and (got[18:] == 26).all()


def test_unknown_colour_is_an_error(palette, pair_images):
    mask = pair_images.id_colours[np.full((64, 64), 7, dtype=np.uint8)].copy()
    mask[:16, :16] = (255, 255, 255)  # 6% of the mask in a colour of no class
    with pytest.raises(CitysegError) as error:
        palette.label(mask, source="pairs/7.jpg")
    assert "pairs/7.jpg" in str(error.value) and "(255, 255, 255)" in str(error.value)
    assert palette.unknown_share(mask) == pytest.approx(16 * 16 / 64**2)
    mask[:] = pair_images.id_colours[7]
    mask[:8, :8] = (255, 255, 255)  # 1.6%: too small to be another palette's class, labelled from neighbours
    assert (palette.label_ids(mask) == 7).all()


def test_photo_instead_of_mask_is_an_error(palette):
    photo = np.zeros((64, 64, 3), dtype=np.uint8)
    photo[:32] = (135, 206, 235)  # a light blue sky, no Cityscapes colour
    photo[32:] = (90, 90, 90)
    with pytest.raises(CitysegError, match="mask-side"):
        palette.label(photo, source="x.jpg")


def test_pickled_labeller_leaves_its_tables_behind(palette):
    import pickle

    again = pickle.loads(pickle.dumps(palette))
    assert again._traps is None and again.key() == palette.key()
    assert again.blend_traps().triples == palette.blend_traps().triples


def reference_label_ids(labeller: PaletteLabeller, mask: np.ndarray) -> np.ndarray:
    """The palette labeller's rules written plainly, pixel by pixel on whole images (slow, no frame, no tricks)."""
    colours = len(PALETTE_COLORS)
    packed = (mask[..., 0].astype(np.int64) << 16) | (mask[..., 1].astype(np.int64) << 8) | mask[..., 2]
    code = labeller.color_table()[packed]
    height, width = code.shape
    if labeller.border and min(height, width) > 2:
        code[[0, -1], :] |= UNCERTAIN
        code[:, [0, -1]] |= UNCERTAIN

    def colour_bits(code):
        return np.where(code < colours, np.left_shift(1, np.minimum(code, 60).astype(np.int64)), 0)

    def near(bits, radius, y, x):  # colours in the square around (y, x), cut at the border
        return int(
            np.bitwise_or.reduce(bits[max(y - radius, 0) : y + radius + 1, max(x - radius, 0) : x + radius + 1], None)
        )

    traps = set(labeller.blend_traps().triples)
    bits = colour_bits(code)
    slivers = []
    for y, x in zip(*np.nonzero(code < colours), strict=True) if labeller.slivers else ():
        c = code[y, x]
        if (code[max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2] == c).all():
            continue  # not an edge
        around = [a for a in range(colours) if near(bits, labeller.blend_radius, y, x) >> a & 1 and a != c]
        if any((c, a, b) in traps for a in around for b in around if a < b):
            slivers.append((y, x))
    for y, x in slivers:
        code[y, x] |= UNCERTAIN
    bits = colour_bits(code)
    pixels = to_ycbcr(mask)  # (H, W, 3) float32
    palette = to_ycbcr(PALETTE_COLORS)  # sorted by luma

    def choose(y, x, candidates):
        present = [i for i in range(colours) if candidates >> i & 1]
        darker = [i for i in present if palette[i, 0] < pixels[y, x, 0]]
        brighter = [i for i in present if palette[i, 0] >= pixels[y, x, 0]]
        if not darker or not brighter:
            return darker[-1] if darker else brighter[0] if brighter else None

        def cost(i):
            d = pixels[y, x] - palette[i]
            return d[0] ** 2 + labeller.chroma_weight * (d[1] ** 2 + d[2] ** 2)

        return brighter[0] if cost(brighter[0]) < cost(darker[-1]) else darker[-1]

    filled, alone = code.copy(), np.zeros(code.shape, dtype=bool)
    for y, x in zip(*np.nonzero(code >= UNCERTAIN), strict=True):
        best = choose(y, x, near(bits, labeller.search_radius, y, x))
        if best is None:
            best = choose(y, x, near(bits, 3 * labeller.search_radius, y, x))
        if best is None:
            alone[y, x] = True
        else:
            filled[y, x] = best
    if alone.any():
        from scipy import ndimage

        filled = filled[tuple(ndimage.distance_transform_edt(alone, return_distances=False, return_indices=True))]
    return PALETTE_IDS_BY_CODE[filled]


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"border": False, "search_radius": 1},
        {"search_radius": 2, "blend_radius": 1, "luma_tolerance": None},
        {"slivers": False, "max_distance": 35, "chroma_weight": 0.5},
    ],
)
def test_palette_labeller_follows_its_rules(options, pair_images):
    rng = np.random.default_rng(11)
    photo = rng.integers(0, 255, (72, 72, 3), np.uint8)
    masks = [pair_images.decode_mask(pair_images.encode(photo, pair_images.draw(rng, 72)))]
    lonely = pair_images.id_colours[np.full((64, 64), 7, dtype=np.uint8)].copy()
    lonely[20:28, 40:48] = (255, 255, 255)  # no class colour 4 pixels deep: 1.6%, not another palette
    lonely[:, :16] = pair_images.id_colours[26]
    masks += [lonely, np.ascontiguousarray(masks[0][5:8, :, :]), masks[0][:, ::2]]  # thin, and a strided view
    labeller = PaletteLabeller(**options)
    for mask in masks:
        assert (labeller.label_ids(mask) == reference_label_ids(labeller, mask)).all()


def test_real_pairs_are_plausible(palette, real_pairs):
    from cityseg.pairs import read_pair

    counts = np.zeros(256, dtype=np.int64)
    for i in range(1, 13):
        _, mask = read_pair(real_pairs / f"{i}.jpg")
        assert palette.unknown_share(mask) < 0.01  # no colour of another palette
        counts += np.bincount(palette.label(mask).ravel(), minlength=256)
    share = counts / counts.sum()
    assert share[:19].argmax() == 0  # road is the most common class
    assert share[IGNORE_INDEX] < 0.25 and share[19:IGNORE_INDEX].sum() == 0  # only classes or void
    assert (share[[0, 2, 8, 13]] > 0.02).all()  # road, building, vegetation, car all clearly present
