"""Colours to classes: palette and K-Means labellers, the label cache, labelling a dataset, ``cityseg label``."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from cityseg import labels
from cityseg.classes import IGNORE_INDEX, LABEL_BY_ID, class_set, color_to_label_id
from cityseg.cli import main
from cityseg.config import LabelConfig
from cityseg.errors import CitysegError
from cityseg.labels import (
    KMeansLabeller,
    LabelCache,
    PaletteLabeller,
    label_dataset,
    labeller_from_dict,
    load_labeller,
    make_labeller,
    nearest_color_table,
)

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cityscapes_pairs" / "train"
ID_COLOURS = np.zeros((256, 3), dtype=np.uint8)
for _id in range(34):
    ID_COLOURS[_id] = LABEL_BY_ID[_id].color
DRAWABLE_IDS = sorted(set(color_to_label_id().values()))  # ids whose colour maps back to them


@pytest.fixture(scope="module")
def palette():
    return PaletteLabeller().prepare()  # builds the 16 MiB table once for the module


def encode_pair(photo: np.ndarray, label_ids: np.ndarray) -> bytes:
    """A pair JPEG as the real ones are stored: quality 95, 4:2:0 chroma."""
    pair = np.concatenate([photo, ID_COLOURS[label_ids]], axis=1)
    buffer = io.BytesIO()
    Image.fromarray(pair).save(buffer, "JPEG", quality=95, subsampling=2)
    return buffer.getvalue()


def decode_mask(data: bytes) -> np.ndarray:
    pair = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    return np.ascontiguousarray(pair[:, pair.shape[1] // 2 :])


def drawn_scene(rng: np.random.Generator, size: int = 128) -> np.ndarray:
    """Label ids of a scene of many shapes and edges: sky, road, then 25 random shapes of random classes."""
    image = Image.new("L", (size, size), 23)
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, size // 2, size, size], fill=7)
    for _ in range(25):
        label_id = int(rng.choice(DRAWABLE_IDS))
        x, y = rng.integers(0, size - 8, 2)
        w, h = rng.integers(6, size // 3, 2)
        if rng.random() < 0.5:
            draw.rectangle([x, y, x + w, y + h], fill=label_id)
        else:
            draw.ellipse([x, y, x + w, y + h], fill=label_id)
    return np.asarray(image)


def write_pairs(folder: Path, count: int, seed: int = 0, size: int = 64) -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(1, count + 1):
        ids = drawn_scene(rng, size)
        photo = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        path = folder / f"{i}.jpg"
        path.write_bytes(encode_pair(photo, ids))
        paths.append(path)
    return paths


# ---- palette labeller ---------------------------------------------------------------------------


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
        expected = np.where(distance.min(1) <= inner**2, nearest, nearest | labels.UNCERTAIN)
        if tolerance is not None:
            expected = np.where(unsure, expected | labels.UNCERTAIN, expected)
        expected = np.where(distance.min(1) <= (outer or inner) ** 2, expected, labels.FAR)
        got = table[(rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]]
        assert (got == expected)[clear].all()


def test_exact_colours_give_exact_ids(palette):
    ids = np.repeat(np.repeat(np.array(DRAWABLE_IDS, dtype=np.uint8).reshape(-1, 1), 6, 0), 36, 1)  # 6-row bands
    ids = np.ascontiguousarray(np.concatenate([ids, ids[::-1]], axis=1))  # (174, 72): every colour, two sides
    mask = ID_COLOURS[ids]

    assert (palette.label_ids(mask) == ids).all()
    train19 = class_set("train19")
    assert (palette.label(mask) == train19.from_label_ids(ids)).all()
    assert (PaletteLabeller("labelids").label(mask) == ids).all()
    assert palette.label(mask).dtype == np.uint8


def agreement(labeller: PaletteLabeller, scenes) -> float:
    train19 = class_set("train19")
    same = total = 0
    for photo, ids in scenes:
        got = labeller.label(decode_mask(encode_pair(photo, ids)))
        same += int((got == train19.from_label_ids(ids)).sum())
        total += ids.size
    return same / total


def test_jpeg_synthetic_scenes_agree_with_exact_ids(palette):
    synth = pytest.importorskip("cityseg.synth")
    rng = np.random.default_rng(7)
    scenes = [synth.render_scene(rng) for _ in range(8)]
    assert agreement(palette, scenes) >= 0.995


def test_jpeg_drawn_masks_agree_with_exact_ids(palette):
    rng = np.random.default_rng(3)
    scenes = [(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8), drawn_scene(rng)) for _ in range(8)]
    result = agreement(palette, scenes)
    assert result >= 0.995
    # the plain nearest colour (no slivers, no luma test) is measurably worse on the same masks
    assert agreement(PaletteLabeller(max_distance=1000, luma_tolerance=None, slivers=False), scenes) < result


def test_blend_sliver_is_not_a_third_class(palette):
    ids = np.zeros((32, 32), dtype=np.uint8)  # black (unlabeled) above a car
    ids[16:] = 26
    mask = ID_COLOURS[ids].copy()
    mask[15:17] = (0, 0, 71)  # two rows of the car|black blend, nearest to truck (0, 0, 70)
    got = palette.label_ids(mask)
    assert not (got == 27).any()
    assert (got[:14] == 0).all() and (got[18:] == 26).all()


def test_unknown_colour_is_an_error(palette):
    mask = ID_COLOURS[np.full((64, 64), 7, dtype=np.uint8)].copy()
    mask[:16, :16] = (255, 255, 255)  # 6% of the mask in a colour of no class
    with pytest.raises(CitysegError) as error:
        palette.label(mask, source="pairs/7.jpg")
    assert "pairs/7.jpg" in str(error.value) and "(255, 255, 255)" in str(error.value)
    assert palette.unknown_share(mask) == pytest.approx(16 * 16 / 64**2)
    mask[:] = ID_COLOURS[7]
    mask[:8, :8] = (255, 255, 255)  # 1.6%: too small to be another palette's class, labelled from neighbours
    assert (palette.label_ids(mask) == 7).all()


def test_photo_instead_of_mask_is_an_error(palette):
    photo = np.zeros((64, 64, 3), dtype=np.uint8)
    photo[:32] = (135, 206, 235)  # a light blue sky, no Cityscapes colour
    photo[32:] = (90, 90, 90)
    with pytest.raises(CitysegError, match="mask-side"):
        palette.label(photo, source="x.jpg")


def reference_label_ids(labeller: PaletteLabeller, mask: np.ndarray) -> np.ndarray:
    """The palette labeller's rules written plainly, pixel by pixel on whole images (slow, no frame, no tricks)."""
    colours = len(labels.PALETTE_COLORS)
    packed = (mask[..., 0].astype(np.int64) << 16) | (mask[..., 1].astype(np.int64) << 8) | mask[..., 2]
    code = labeller._table()[packed]
    height, width = code.shape
    if labeller.border and min(height, width) > 2:
        code[[0, -1], :] |= labels.UNCERTAIN
        code[:, [0, -1]] |= labels.UNCERTAIN

    def colour_bits(code):
        return np.where(code < colours, np.left_shift(1, np.minimum(code, 60).astype(np.int64)), 0)

    def near(bits, radius, y, x):  # colours in the square around (y, x), cut at the border
        return int(
            np.bitwise_or.reduce(bits[max(y - radius, 0) : y + radius + 1, max(x - radius, 0) : x + radius + 1], None)
        )

    traps = set(labeller._trap_triples())
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
        code[y, x] |= labels.UNCERTAIN
    bits = colour_bits(code)
    pixels = labels._to_ycbcr(mask)  # (H, W, 3) float32
    palette = labels._to_ycbcr(labels.PALETTE_COLORS)  # sorted by luma

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
    for y, x in zip(*np.nonzero(code >= labels.UNCERTAIN), strict=True):
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
    return labels.PALETTE_IDS_BY_CODE[filled]


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"border": False, "search_radius": 1},
        {"search_radius": 2, "blend_radius": 1, "luma_tolerance": None},
        {"slivers": False, "max_distance": 35, "chroma_weight": 0.5},
    ],
)
def test_palette_labeller_follows_its_rules(options):
    rng = np.random.default_rng(11)
    masks = [decode_mask(encode_pair(rng.integers(0, 255, (72, 72, 3), np.uint8), drawn_scene(rng, 72)))]
    lonely = ID_COLOURS[np.full((64, 64), 7, dtype=np.uint8)].copy()
    lonely[20:28, 40:48] = (255, 255, 255)  # no class colour 4 pixels deep: 1.6%, not another palette
    lonely[:, :16] = ID_COLOURS[26]
    masks += [lonely, np.ascontiguousarray(masks[0][5:8, :, :]), masks[0][:, ::2]]  # thin, and a strided view
    labeller = PaletteLabeller(**options)
    for mask in masks:
        assert (labeller.label_ids(mask) == reference_label_ids(labeller, mask)).all()


def test_pack_and_bit_helpers_match_plain_arithmetic():
    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)
    plain = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    read_only = rgb.copy()
    read_only.flags.writeable = False
    for packed, expected in [
        (labels._pack(rgb), plain),
        (labels._pack(read_only), plain),
        (labels._pack(rgb[:, ::2]), plain[:, ::2]),  # not contiguous
        (labels._pack(rgb[:1, :1]), plain[:1, :1]),  # one pixel
    ]:
        assert packed.dtype == np.uint32 and (packed == expected).all()

    words = np.concatenate([rng.integers(0, 2**32, 2000, dtype=np.uint64), [0, 1, 2**24 - 1, 2**25 - 1, 2**32 - 1]])
    words = words.astype(np.uint32)
    highest = np.array([int(w).bit_length() - 1 for w in words])
    lowest = np.array([(int(w) & -int(w)).bit_length() - 1 for w in words])
    assert (labels._highest_bit(words) == highest).all() and (labels._lowest_bit(words) == lowest).all()

    palette_luma = labels._to_ycbcr(labels.PALETTE_COLORS)[:, 0]
    lumas = np.concatenate(
        [rng.uniform(0, 255, 5000), palette_luma, np.nextafter(palette_luma, 0), np.arange(256)]
    ).astype(np.float32)
    bins = labels._LumaBins(palette_luma)
    assert (bins.count_below(lumas) == np.searchsorted(palette_luma, lumas)).all()


# ---- K-Means labeller ----------------------------------------------------------------------------


def test_kmeans_is_deterministic_and_named(tmp_path):
    paths = write_pairs(tmp_path, 6, size=64)
    first = KMeansLabeller.fit(paths, k=6, seed=1, pixels=6000)
    second = KMeansLabeller.fit(paths, k=6, seed=1, pixels=6000)
    mask = decode_mask(paths[0].read_bytes())

    assert np.allclose(first.centers, second.centers)
    assert (first.label(mask) == second.label(mask)).all()
    assert first.class_set.name == "kmeans" and first.class_set.num_classes == 6
    official = {label.name for label in LABEL_BY_ID.values()}
    assert all(name.split(" (")[0] in official for name in first.class_set.names)
    assert len(set(first.class_set.names)) == 6  # repeated names are numbered
    assert first.label(mask).max() < 6


def test_kmeans_names_absorbed_and_save_load(tmp_path):
    road, sidewalk, car = (128, 64, 128), (244, 35, 232), (0, 0, 142)
    labeller = KMeansLabeller([road, (130, 60, 130), sidewalk, car])

    assert labeller.class_set.names == ("road", "road (2)", "sidewalk", "car")
    absorbed = labeller.absorbed()
    assert "sidewalk" in absorbed[2] and "car" in absorbed[3] and "truck" in absorbed[3]
    assert sorted(n for names in absorbed.values() for n in names) == sorted(
        LABEL_BY_ID[i].name for i in color_to_label_id().values()
    )  # every official colour goes to exactly one cluster

    path = labeller.save(tmp_path / "kmeans.json")
    loaded = KMeansLabeller.load(path)
    mask = ID_COLOURS[np.array([[7, 8], [26, 27]], dtype=np.uint8)]
    assert (loaded.label(mask) == labeller.label(mask)).all() and loaded.key() == labeller.key()
    assert (labeller.label(mask) == [[0, 2], [3, 3]]).all()


def test_make_labeller_reuses_fitted_kmeans(tmp_path, monkeypatch):
    paths = write_pairs(tmp_path / "data", 4, size=32)
    config = LabelConfig(method="kmeans", k=4, kmeans_pixels=2000)
    first = make_labeller(config, paths, cache_dir=tmp_path / "cache")
    monkeypatch.setattr(KMeansLabeller, "fit", lambda *a, **k: pytest.fail("refitted"))
    again = make_labeller(config, paths, cache_dir=tmp_path / "cache")
    assert again.key() == first.key()
    with pytest.raises(CitysegError, match="unknown labelling method"):
        make_labeller(LabelConfig(method="magic"), paths)


def test_palette_labeller_round_trips_through_json(tmp_path):
    labeller = PaletteLabeller("categories", max_distance=20)
    again = load_labeller(labeller.save(tmp_path / "palette.json"))
    assert again.key() == labeller.key() and again.class_set.name == "categories"
    assert labeller_from_dict(labeller.to_dict()).key() == labeller.key()
    assert PaletteLabeller(max_distance=21).key() != labeller.key()


# ---- the cache ----------------------------------------------------------------------------------


class CountingLabeller(PaletteLabeller):
    calls = 0

    def label(self, mask_rgb, source=""):
        type(self).calls += 1
        return super().label(mask_rgb, source)


def test_cache_reuses_and_recomputes(tmp_path):
    path = write_pairs(tmp_path / "data", 1)[0]
    CountingLabeller.calls = 0
    cache = LabelCache(CountingLabeller(), tmp_path / "cache")

    first = cache.get(path)
    second = cache.get(path)
    assert CountingLabeller.calls == 1 and (first == second).all()

    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))  # the file changed
    cache.get(path)
    assert CountingLabeller.calls == 2

    cache.get(path, mask_side="left")  # another half of the image
    assert CountingLabeller.calls == 3
    other = LabelCache(CountingLabeller(max_distance=20), tmp_path / "cache")  # another parameter
    other.get(path)
    assert CountingLabeller.calls == 4
    photo, labels_again = cache.pair(path)
    assert CountingLabeller.calls == 4 and photo.shape == (64, 64, 3) and (labels_again == first).all()

    leftovers = [p for p in (tmp_path / "cache").rglob("*") if p.is_file() and ".tmp" in p.name]
    assert leftovers == []


def test_cache_write_is_atomic(tmp_path, monkeypatch):
    path = write_pairs(tmp_path / "data", 1)[0]
    cache = LabelCache(PaletteLabeller(), tmp_path / "cache")

    def broken_save(file, array):
        Path(file).write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "save", broken_save)
    with pytest.raises(CitysegError, match="cannot write label cache"):
        cache.get(path)
    assert [p for p in cache.folder.iterdir()] == []  # no partial entry, no temp file
    monkeypatch.undo()
    cache.entry(path).write_bytes(b"garbage")  # a damaged entry is recomputed, not trusted
    assert cache.get(path).shape == (64, 64)


def test_unwritable_cache_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    with pytest.raises(CitysegError) as error:
        LabelCache(PaletteLabeller(), blocker / "cache")
    assert str(blocker) in str(error.value)


# ---- labelling a dataset ------------------------------------------------------------------------


def test_label_dataset_counts_and_workers(tmp_path):
    paths = write_pairs(tmp_path / "data", 5)
    labeller = PaletteLabeller()
    one = label_dataset(paths, labeller, cache_dir=tmp_path / "c1", workers=1, progress=False)
    two = label_dataset(paths, labeller, cache_dir=tmp_path / "c2", workers=2, progress=False)

    expected = np.zeros(256, dtype=np.int64)
    for path in paths:
        expected += np.bincount(labeller.label(decode_mask(path.read_bytes())).ravel(), minlength=256)
    assert one.count == 5 and one.skipped == []
    assert (one.pixel_counts == expected[:19]).all() and one.ignored_pixels == expected[19:].sum()
    assert (two.pixel_counts == one.pixel_counts).all() and (two.image_counts == one.image_counts).all()
    assert one.total_pixels == 5 * 64 * 64 and "road" in one.table()


def test_label_dataset_bad_files(tmp_path):
    paths = write_pairs(tmp_path / "data", 3)
    bad = tmp_path / "data" / "4.jpg"
    bad.write_bytes(b"")
    with pytest.raises(CitysegError, match=r"4\.jpg"):
        label_dataset([*paths, bad], PaletteLabeller(), use_cache=False, progress=False)
    report = label_dataset([*paths, bad], PaletteLabeller(), use_cache=False, skip_bad=True, progress=False, workers=2)
    assert report.count == 3 and [p for p, _ in report.skipped] == [bad] and "empty" in report.skipped[0][1]


# ---- cityseg label ------------------------------------------------------------------------------


def test_cli_label(tmp_path, capsys):
    write_pairs(tmp_path / "data" / "train", 3)
    (tmp_path / "data" / "train" / "9.jpg").write_text("not an image")
    args = ["label", str(tmp_path / "data"), "--cache-dir", str(tmp_path / "cache"), "--workers", "1"]

    assert main(args) == 2
    assert "9.jpg" in capsys.readouterr().err

    figure = tmp_path / "figure.png"
    assert main([*args, "--skip-bad", "--show", "2", "--out", str(figure), "--set", "labels.max_distance=40"]) == 0
    out = capsys.readouterr().out
    assert "skipped 1" in out and "9.jpg" in out and "road" in out and "-d40-" in out
    assert Image.open(figure).size[0] > 100

    assert main([*args, "--skip-bad", "--classes", "categories"]) == 0
    assert "flat" in capsys.readouterr().out

    blocked = tmp_path / "blocker"
    blocked.write_text("")
    assert main([*args, "--skip-bad", "--show", "1", "--out", str(blocked / "f.png")]) == 2
    assert "cannot write figure" in capsys.readouterr().err


def test_cli_label_does_not_import_torch(tmp_path):
    import subprocess
    import sys

    write_pairs(tmp_path / "data", 2)
    code = (
        "import sys; from cityseg.cli import main; "
        f"main(['label', {str(tmp_path / 'data')!r}, '--no-cache', '--workers', '1']); "
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


# ---- real pairs ---------------------------------------------------------------------------------


@pytest.mark.skipif(not REAL_DATA.is_dir(), reason="real Cityscapes pairs not found at ../shared/data/cityscapes_pairs")
def test_real_pairs_are_plausible(palette):
    from cityseg.pairs import read_pair

    counts = np.zeros(256, dtype=np.int64)
    for i in range(1, 13):
        _, mask = read_pair(REAL_DATA / f"{i}.jpg")
        assert palette.unknown_share(mask) < 0.01  # no colour of another palette
        counts += np.bincount(palette.label(mask).ravel(), minlength=256)
    share = counts / counts.sum()
    assert share[:19].argmax() == 0  # road is the most common class
    assert share[IGNORE_INDEX] < 0.25 and share[19:IGNORE_INDEX].sum() == 0  # only classes or void
    assert (share[[0, 2, 8, 13]] > 0.02).all()  # road, building, vegetation, car all clearly present


def test_interrupted_labelling_resumes_with_the_missing_images(tmp_path):
    """A labelling run stopped part-way left whole cache files (atomic writes); the next run computes only the rest."""
    from cityseg.pairs import list_images
    from cityseg.synth import write_scenes

    write_scenes(tmp_path / "data", count=8, seed=5)
    paths = list_images(tmp_path / "data" / "train")
    labeller = PaletteLabeller()
    cache = tmp_path / "cache"
    label_dataset(paths[:3], labeller, cache_dir=cache, workers=1, progress=False)  # the interrupted run
    kept = {entry: entry.stat().st_mtime_ns for entry in cache.rglob("*.npy")}
    assert len(kept) == 3
    report = label_dataset(paths, labeller, cache_dir=cache, workers=2, progress=False)
    assert (report.count, report.cached) == (8, 3)
    assert {entry: entry.stat().st_mtime_ns for entry in kept} == kept  # the earlier labels were not redone
    assert len(list(cache.rglob("*.npy"))) == 8
    again = label_dataset(paths, labeller, cache_dir=cache, workers=2, progress=False)
    assert again.cached == 8 and np.array_equal(again.pixel_counts, report.pixel_counts)
