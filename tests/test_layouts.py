"""Labelled folders: the known layouts recognised by their folder names, photos matched to labels by name."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cityseg.classes import class_set
from cityseg.cli import main
from cityseg.config import Config
from cityseg.errors import CitysegError
from cityseg.labelled_folders import LabelSource, dataset_classes, label_source, open_labelled
from cityseg.layouts import LAYOUTS, NAME_SUFFIXES, find_layout, name_key
from cityseg.pairs import discover
from cityseg.splits import split_dataset
from cityseg.synth.labelled import write_label_file

EXPORTS_WITH_CLASSES = ("voc", "roboflow", "coco", "coco-panoptic")  # cvat-cityscapes lists Cityscapes' own


def _number(layout: str, photo: Path) -> int:
    """The scene number in a photo's name, as cityseg synth --layout wrote it."""
    stem = name_key(photo.name)[0]
    if layout == "bdd100k":
        return int(stem.split("-")[0], 16)
    if layout in ("acdc", "darkzurich", "voc", "cvat-cityscapes"):
        return int(stem.rsplit("_", 1)[1])
    return int(stem.split("_")[0])


def in_train19(classes) -> np.ndarray:
    """(256,) a class set's indices -> train19's, by name (a class train19 lacks, background say: ignored)."""
    train19 = class_set("train19")
    lookup = np.full(256, 255, dtype=np.uint8)
    for index, name in enumerate(classes.names):
        lookup[index] = train19.names.index(name) if name in train19.names else 255
    return lookup


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_each_layout_is_recognised_and_reads_the_exact_classes(layouts, name, layout_truth, layout_scene_count):
    root = layouts[name]
    assert find_layout(root).name == name
    found = discover(root)
    expected_splits = {"all"} if name == "kitti" else {"train", "val"}
    assert set(found) == expected_splits and sum(len(v) for v in found.values()) == layout_scene_count
    source = label_source(root)
    classes = class_set(dataset_classes(root))  # an export's own class list, else train19
    assert (classes.name == "train19") == (name not in EXPORTS_WITH_CLASSES)
    train19 = class_set("train19")
    for split, photos in found.items():
        for photo_path in photos:
            photo, labels = source.read(photo_path, classes)
            exact_photo, exact_ids = layout_truth(name, split, _number(name, photo_path))
            np.testing.assert_array_equal(in_train19(classes)[labels], train19.from_label_ids(exact_ids))
            if photo_path.suffix == ".png":
                np.testing.assert_array_equal(photo, exact_photo)
            else:  # JPEG photos (BDD100K, VOC, Roboflow, COCO)
                assert np.abs(photo.astype(int) - exact_photo).mean() < 4


def test_layouts_need_their_folders_and_tell_acdc_from_dark_zurich(tmp_path):
    (tmp_path / "rgb_anon" / "fog").mkdir(parents=True)
    assert find_layout(tmp_path) is None  # photos without labels
    (tmp_path / "gt").mkdir()
    assert find_layout(tmp_path).name == "acdc"
    shutil.rmtree(tmp_path / "rgb_anon" / "fog")
    (tmp_path / "rgb_anon" / "val").mkdir()
    assert find_layout(tmp_path).name == "darkzurich"
    assert find_layout(tmp_path / "nowhere") is None and label_source(tmp_path, "pairs") is None


def test_the_suffix_table_strips_the_known_suffixes():
    assert name_key("aachen_000000_000019_leftImg8bit.png") == ("aachen_000000_000019", "photo")
    assert name_key("GOPR0475_frame_000041_rgb_anon.png") == ("GOPR0475_frame_000041", "photo")
    assert name_key("GOPR0475_frame_000041_gt_labelIds.png") == ("GOPR0475_frame_000041", "labelids")
    assert name_key("a_gtFine_labelTrainIds.png") == ("a", "trainids")
    assert name_key("a_gtFine_color.png") == ("a", "color") and name_key("a_gtFine_instanceIds.png")[1] == "other"
    assert name_key("_labelIds.png") == ("_labelIds", None)  # nothing would be left of the name
    assert len({suffix.lower() for suffix, _ in NAME_SUFFIXES}) == len(NAME_SUFFIXES)


def _plain(root: Path, names: list[str], labels: dict[str, np.ndarray], size=(32, 48)) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.fromarray(np.full((*size, 3), 90, np.uint8)).save(root / "images" / name)
    for name, ids in labels.items():
        path = root / "labels" / name
        write_label_file(path, ids, "color" if "_color" in name else "labelids")
    return root


def test_cityscapes_names_match_and_other_annotations_are_passed_over(tmp_path):
    ids = np.full((32, 48), 7, np.uint8)
    labels = {"a_gtFine_labelIds.png": ids, "a_gtFine_color.png": ids, "a_gtFine_instanceIds.png": ids}
    root = _plain(tmp_path, ["a_leftImg8bit.png"], labels)
    folder = open_labelled(root)
    photo = root / "images" / "a_leftImg8bit.png"
    assert folder.label_format == "labelids" and folder.truth(photo).name == "a_gtFine_labelIds.png"
    assert not folder.orphans  # the colour and instance files are not labels without a photo
    assert open_labelled(root, "color").truth(photo).name == "a_gtFine_color.png"


def test_unmatched_photos_and_labels_are_listed_or_skipped(tmp_path, caplog):
    ids = np.full((32, 48), 7, np.uint8)
    root = _plain(tmp_path, ["1.png", "2.png", "3.png"], {"1.png": ids, "2.png": ids, "9.png": ids})
    with pytest.raises(CitysegError) as error:
        open_labelled(root)
    message = str(error.value)
    assert "1 photo without a label" in message and "3.png" in message
    assert "1 label without a photo" in message and "9.png" in message and "--skip-bad" in message
    with caplog.at_level(logging.WARNING, logger="cityseg.labelled_folders"):
        folder = open_labelled(root, skip_bad=True)
    assert [p.name for p in folder.splits["all"]] == ["1.png", "2.png"]
    assert "skipped" in caplog.text and "3.png: no label" in caplog.text and "9.png: no photo" in caplog.text


def test_the_label_command_names_unmatched_files_in_one_line_and_goes_on_with_skip_bad(tmp_path, capsys):
    ids = np.full((32, 48), 7, np.uint8)
    root = _plain(tmp_path / "data", ["1.png", "2.png"], {"1.png": ids})
    assert main(["label", str(root), "--cache-dir", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("cityseg: error: ") and "2.png" in err
    assert main(["label", str(root), "--cache-dir", str(tmp_path / "cache"), "--skip-bad"]) == 0
    assert "labelled 1 of 1 images" in capsys.readouterr().out


def test_a_split_without_labels_is_left_out_and_twice_named_labels_refused(tmp_path):
    ids = np.full((32, 48), 7, np.uint8)
    root = _plain(tmp_path, [], {})
    for split in ("train", "val", "test"):
        (root / "images" / split).mkdir()
        Image.fromarray(np.zeros((32, 48, 3), np.uint8)).save(root / "images" / split / "1.png")
    for split in ("train", "val"):
        (root / "labels" / split).mkdir()
        write_label_file(root / "labels" / split / "1.png", ids, "labelids")
    folder = open_labelled(root)
    assert set(folder.splits) == {"train", "val"} and folder.left_out == {"test": 1}
    write_label_file(root / "labels" / "train" / "1_labelIds.png", ids, "labelids")
    with pytest.raises(CitysegError, match=r"two labels for one name: .*1.png and .*1_labelIds.png"):
        open_labelled(root)


def test_a_label_of_another_size_names_both_files(tmp_path):
    root = _plain(tmp_path, ["1.png"], {"1.png": np.full((30, 48), 7, np.uint8)})
    for need_photo in (True, False):
        with pytest.raises(CitysegError, match=r"1.png is 48x30 but its photo .*1.png is 48x32"):
            LabelSource(str(root)).read(root / "images" / "1.png", class_set("train19"), need_photo=need_photo)


def test_formats_that_do_not_fit_the_layout_are_refused(layouts, tiny_pairs, tiny_release):
    with pytest.raises(CitysegError, match="KITTI semantics: photos and label images, not pair images"):
        discover(layouts["kitti"], label_format="pairs")
    with pytest.raises(CitysegError, match="KITTI semantics has no trainids labels; it ships labelids"):
        discover(layouts["kitti"], label_format="trainids")
    with pytest.raises(CitysegError, match="holds no photos and labels folders"):
        discover(tiny_pairs, label_format="labelids")
    with pytest.raises(CitysegError, match="Cityscapes release, whose gtFine labels are label ids"):
        discover(tiny_release, label_format="color")


def test_splits_of_a_labelled_folder_seeded_and_by_blocks(layouts):
    config = Config()
    config.data.root = str(layouts["kitti"])
    splits, note = split_dataset(config.override(["data.val_fraction=0.2", "data.test_fraction=0.2"]))
    assert [len(splits[name]) for name in ("train", "val", "test")] == [4, 1, 1] and "no val folder" in note
    config.data.root = str(layouts["acdc"])
    config.override(["data.split=blocks", "data.val_fraction=0.25", "data.block_size=1"])
    splits, note = split_dataset(config)  # whole blocks held out for validation; the val folder is the test set
    assert len(splits["test"]) == 2 and [len(splits["train"]), len(splits["val"])] == [3, 1] and "runs of 1" in note
