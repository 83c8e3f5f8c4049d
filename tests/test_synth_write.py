"""Tests for writing synthetic pairs: layout and encoding, exact labels beside them, determinism, errors, CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from cityseg.classes import class_set, color_to_label_id
from cityseg.cli import main
from cityseg.errors import CitysegError
from cityseg.synth import SynthSummary, render_scene, train_class_shares, write_scenes


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Path, SynthSummary]:
    """Four scenes, the last one in val: shared by the layout and label tests."""
    out = tmp_path_factory.mktemp("synth")
    return out, write_scenes(out, count=4, seed=7, val_fraction=0.25)


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
        distance = np.sqrt(((mask - class_set("labelids").colorize(truth)) ** 2).sum(-1))
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


def test_train_class_shares_merge_ids_and_drop_void():
    pixels = np.zeros(34, dtype=np.int64)
    pixels[[7, 8, 0, 11]] = [50, 20, 20, 10]  # road, sidewalk, unlabeled, building
    shares = train_class_shares(pixels)
    assert list(shares) == ["road", "sidewalk", "building"]  # largest first, void left out
    assert shares["road"] == pytest.approx(0.5) and sum(shares.values()) == pytest.approx(0.8)
