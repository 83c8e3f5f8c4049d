"""cityseg synth --layout: scenes written as KITTI, BDD100K, ACDC, Dark Zurich or images/ + labels/ keep them."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cityseg.cli import main
from cityseg.errors import CitysegError
from cityseg.layouts import LAYOUTS
from cityseg.synth import write_labelled
from cityseg.synth.labelled import scene_paths


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*.*")}


def test_the_command_writes_a_layout_and_the_same_seed_the_same_bytes(tmp_path, capsys):
    argv = ["synth", "--layout", "kitti", "--count", "3", "--size", "40x128", "--seed", "2"]
    assert main([*argv[:1], str(tmp_path / "a"), *argv[1:]]) == 0
    assert "wrote 3 synthetic scenes as KITTI semantics" in capsys.readouterr().out
    assert main([*argv[:1], str(tmp_path / "b"), *argv[1:]]) == 0
    written = _digests(tmp_path / "a")
    assert written == _digests(tmp_path / "b") and len(written) == 6
    photo = Image.open(tmp_path / "a" / "training" / "image_2" / "000002_10.png")
    assert (
        photo.size == (128, 40) and Image.open(tmp_path / "a" / "training" / "semantic" / "000002_10.png").mode == "L"
    )


@pytest.mark.parametrize("name", [name for name, layout in LAYOUTS.items() if layout.annotations == "images"])
def test_every_layout_names_photos_and_labels_as_the_dataset_does(name):
    photo, label = scene_paths(LAYOUTS[name], "train", 9, LAYOUTS[name].label_format, flat=False)
    expected = {
        "kitti": ("training/image_2/000009_10.png", "training/semantic/000009_10.png"),
        "bdd100k": ("images/10k/train/00000009-5ca1ab1e.jpg", "labels/sem_seg/masks/train/00000009-5ca1ab1e.png"),
        "acdc": (
            "rgb_anon/night/train/GOPR0001/GOPR0001_frame_000009_rgb_anon.png",
            "gt/night/train/GOPR0001/GOPR0001_frame_000009_gt_labelIds.png",
        ),
        "darkzurich": (
            "rgb_anon/train/night/GOPR0001/GOPR0001_frame_000009_rgb_anon.png",
            "gt/train/night/GOPR0001/GOPR0001_frame_000009_gt_labelIds.png",
        ),
        "images": ("images/train/00009.png", "labels/train/00009.png"),
        "voc": ("JPEGImages/2026_000009.jpg", "SegmentationClass/2026_000009.png"),
        "cvat-cityscapes": (
            "imgsFine/leftImg8bit/train/synth/synth_000000_000009_leftImg8bit.png",
            "gtFine/train/synth/synth_000000_000009_gtFine_labelIds.png",
        ),
        "roboflow": ("train/00009_png.rf.00000009.jpg", "train/00009_png.rf.00000009_mask.png"),
        "split-folders": ("train/images/00009.png", "train/labels/00009.png"),
    }
    assert (photo, label) == expected[name]


def test_other_label_formats_are_written_where_the_dataset_keeps_them(tmp_path):
    summary = write_labelled(tmp_path / "acdc", "acdc", count=2, size=(32, 64), label_format="color")
    labels = sorted((tmp_path / "acdc" / "gt").rglob("*.png"))
    assert summary.label_format == "color" and [p.name.endswith("_gt_labelColor.png") for p in labels] == [True] * 2
    assert Image.open(labels[0]).mode == "RGB"
    write_labelled(tmp_path / "bdd", "bdd100k", count=2, size=(32, 64), label_format="color")
    assert len(list((tmp_path / "bdd" / "labels" / "sem_seg" / "colormaps" / "train").glob("*.png"))) == 2
    write_labelled(tmp_path / "bdd-ids", "bdd100k", count=2, size=(32, 64))
    train_ids = np.asarray(Image.open(next((tmp_path / "bdd-ids" / "labels").rglob("*.png"))))
    assert train_ids.max() == 255 and set(np.unique(train_ids)) - {255} <= set(range(19))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--layout", "kitti", "--val-fraction", "0.5"], "KITTI semantics has no val folder"),
        (["--layout", "kitti", "--label-format", "trainids"], "KITTI semantics has no trainids labels"),
        (["--size", "64x64"], "--size and --label-format are for a drive or a --layout"),
        (["--layout", "images", "--count", "0"], "--count must be at least 1"),
    ],
)
def test_bad_synth_layout_options_are_one_line(tmp_path, capsys, argv, message):
    assert main(["synth", str(tmp_path / "out"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_photos_folder_that_is_not_empty_is_not_written_into(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "mine.png").write_bytes(b"x")
    with pytest.raises(CitysegError, match="is not empty; choose an empty output folder"):
        write_labelled(tmp_path, "images", count=1)
