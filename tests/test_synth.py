"""Tests for the synthetic street scenes: layout and encoding, exact labels, determinism, coverage, errors, CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from cityseg.classes import NUM_LABEL_IDS, class_set, color_to_label_id
from cityseg.cli import main
from cityseg.errors import CitysegError
from cityseg.synth import DRAWN_IDS, ID_COLORS, SynthSummary, colorize_label_ids, render_scene, write_scenes


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Path, SynthSummary]:
    """Four scenes, the last one in val: shared by the layout and label tests."""
    out = tmp_path_factory.mktemp("synth")
    return out, write_scenes(out, count=4, seed=7, val_fraction=0.25)


def test_render_scene_returns_photo_and_official_ids():
    photo, ids = render_scene(np.random.default_rng(0))
    assert photo.shape == (256, 256, 3) and photo.dtype == np.uint8
    assert ids.shape == (256, 256) and ids.dtype == np.uint8
    assert set(np.unique(ids).tolist()) <= set(DRAWN_IDS)
    assert ids.max() < NUM_LABEL_IDS

    photo, ids = render_scene(np.random.default_rng(0), size=(64, 96))
    assert photo.shape == (64, 96, 3) and ids.shape == (64, 96)


def test_drawn_ids_survive_a_round_trip_through_their_colours():
    # a mask decoded by colour gives back exactly the ids that were drawn
    to_id = color_to_label_id()
    for label_id in DRAWN_IDS:
        assert to_id[tuple(ID_COLORS[label_id].tolist())] == label_id


def test_photo_is_textured_not_a_palette_fill():
    photo, ids = render_scene(np.random.default_rng(3))
    mask = colorize_label_ids(ids)
    assert np.abs(photo.astype(int) - mask.astype(int)).mean() > 25  # materials, not the mask colours
    road = photo[ids == 7].astype(float)  # official id 7: road, in every scene
    assert road.shape[0] > 1000
    assert road.std(axis=0).min() > 3  # noise and shading, not a flat fill


def test_layout_sizes_and_encoding(written):
    out, summary = written
    assert (summary.train, summary.val) == (3, 1)
    expected = {out / "train" / f"{n}.jpg" for n in (1, 2, 3)} | {out / "val" / "1.jpg"}
    assert set(out.glob("*/*.jpg")) == expected
    for path in expected:
        with Image.open(path) as image:
            assert image.format == "JPEG" and image.mode == "RGB" and image.size == (512, 256)
            assert JpegImagePlugin.get_sampling(image) == 2  # 4:2:0 chroma, like the real pairs
        with Image.open(path.with_name(f"{path.stem}_labelIds.png")) as ids:
            assert ids.format == "PNG" and ids.mode == "L" and ids.size == (256, 256)
    assert not list(out.rglob(".*tmp*"))  # atomic writes leave no temporary files


def _interior(ids: np.ndarray) -> np.ndarray:
    """Pixels whose 5x5 neighbourhood holds one label: beyond the reach of 4:2:0 chroma blur at the edges."""
    padded = np.pad(ids, 2, mode="edge")
    h, w = ids.shape
    same = np.ones(ids.shape, dtype=bool)
    for dy in range(5):
        for dx in range(5):
            same &= padded[dy : dy + h, dx : dx + w] == ids
    return same


def test_label_png_is_the_rendered_truth_and_matches_the_mask(written):
    out, _ = written
    palette = np.array(sorted(color_to_label_id()), dtype=float)  # (K, 3) every official colour
    palette_ids = np.array([color_to_label_id()[tuple(c)] for c in palette.astype(int).tolist()])
    # scene i of seed 7 (train first, then val) is render_scene(default_rng([7, i]))
    for index, path in enumerate([out / "train" / f"{n}.jpg" for n in (1, 2, 3)] + [out / "val" / "1.jpg"]):
        _, truth = render_scene(np.random.default_rng([7, index]))
        ids = np.asarray(Image.open(path.with_name(f"{path.stem}_labelIds.png")))
        np.testing.assert_array_equal(ids, truth)
        mask = np.asarray(Image.open(path).convert("RGB"))[:, 256:].astype(float)
        distance = np.sqrt(((mask - colorize_label_ids(truth)) ** 2).sum(-1))
        interior = _interior(truth)
        assert interior.mean() > 0.7
        assert (distance[interior] <= 20).mean() > 0.99  # exact colours, only JPEG-rounded, away from edges
        nearest = palette_ids[((mask[:, :, None, :] - palette) ** 2).sum(-1).argmin(-1)]
        assert (nearest == truth).mean() > 0.95  # per-pixel palette decoding; the misses sit on edges


def test_same_seed_same_bytes_different_seed_different(tmp_path):
    def files(folder: Path) -> dict[str, bytes]:
        return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}

    write_scenes(tmp_path / "a", count=3, seed=11, val_fraction=0.34)
    write_scenes(tmp_path / "b", count=3, seed=11, val_fraction=0.34)
    write_scenes(tmp_path / "c", count=3, seed=12, val_fraction=0.34)
    a, b, c = files(tmp_path / "a"), files(tmp_path / "b"), files(tmp_path / "c")
    assert len(a) == 6 and a == b
    assert a.keys() == c.keys()
    assert all(a[name] != c[name] for name in a)


def test_rerun_into_the_same_folder_overwrites_its_own_pairs(tmp_path):
    write_scenes(tmp_path, count=2, seed=1)
    first = (tmp_path / "train" / "2.jpg").read_bytes()
    write_scenes(tmp_path, count=2, seed=1)
    assert (tmp_path / "train" / "2.jpg").read_bytes() == first


def test_at_least_twelve_train_classes_in_100_scenes():
    train19 = class_set("train19")
    seen = set()
    for index in range(100):  # half size: the same scenes at a quarter of the cost
        _, ids = render_scene(np.random.default_rng([0, index]), size=(128, 128))
        seen |= {int(c) for c in train19.from_label_ids(np.unique(ids)) if c < train19.num_classes}
    assert len(seen) >= 12, [train19.names[c] for c in sorted(seen)]


def test_unwritable_output_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(CitysegError, match="a-file"):
        write_scenes(blocker / "out", count=1)


def test_refuses_to_mix_with_other_images(tmp_path):
    (tmp_path / "train").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "train" / "1.jpg")  # not ours: no labelIds beside it
    with pytest.raises(CitysegError, match="did not write"):
        write_scenes(tmp_path, count=1)

    other = tmp_path / "other"
    write_scenes(other, count=3, seed=0)
    with pytest.raises(CitysegError, match="larger earlier run"):
        write_scenes(other, count=2, seed=0)


@pytest.mark.parametrize(("count", "seed", "val_fraction"), [(0, 0, 0.0), (2, -1, 0.0), (2, 0, 1.0), (2, 0, -0.1)])
def test_bad_arguments(tmp_path, count, seed, val_fraction):
    with pytest.raises(CitysegError):
        write_scenes(tmp_path, count=count, seed=seed, val_fraction=val_fraction)


def test_summary_says_what_was_written(written):
    out, summary = written
    text = str(summary)
    assert "4 synthetic pairs" in text and str(out / "train") in text and str(out / "val") in text
    assert "scenes/s" in text and "road" in text
    assert summary.class_shares and abs(sum(summary.class_shares.values()) - 1) < 0.15  # the rest is void
    assert list(summary.class_shares.values()) == sorted(summary.class_shares.values(), reverse=True)


def test_cli_synth(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "out"), "--count", "2", "--seed", "5"]) == 0
    assert "2 synthetic pairs" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "out" / "train").iterdir()) == [
        "1.jpg",
        "1_labelIds.png",
        "2.jpg",
        "2_labelIds.png",
    ]

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["synth", str(blocker / "out"), "--count", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cityseg: error:") and len(err.strip().splitlines()) == 1


def test_synth_does_not_import_torch():
    code = "import sys, cityseg.cli, cityseg.synth; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
