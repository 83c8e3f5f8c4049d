"""Annotation tools' exports: written by synth --layout, recognised, read with their own classes, trained on."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from cityseg.class_lists import VOC_CLASSES, is_cityscapes_list, read_class_list, voc_color
from cityseg.classes import class_set
from cityseg.cli import main
from cityseg.coco import rasterise
from cityseg.config import Config
from cityseg.errors import CitysegError
from cityseg.labelled_folders import dataset_classes, label_source, open_labelled
from cityseg.layouts import LAYOUTS, find_layout
from cityseg.pairs import discover
from cityseg.synth import write_layout
from cityseg.synth.exports import EXPORT_NAMES

EXPORTS = ("split-folders", "voc", "cvat-cityscapes", "roboflow", "coco", "coco-panoptic")


@pytest.mark.parametrize("name", EXPORTS)
def test_each_export_trains_a_step_and_evaluates_with_its_own_classes(layouts, name, tmp_path, tiny_config_for, capsys):
    from cityseg.training import train

    root = layouts[name]
    run = train(tiny_config_for(root, tmp_path, train__max_epochs=1, train__max_steps=1))
    printed = capsys.readouterr().out
    assert f"{root} is {LAYOUTS[name].title}" in printed  # the line saying what was recognised
    saved = Config.from_yaml(run / "config.yaml")
    assert saved.labels.classes == dataset_classes(root)  # auto, resolved and recorded
    expected = class_set(saved.labels.classes).names
    assert expected == (EXPORT_NAMES[1:] if name == "coco-panoptic" else EXPORT_NAMES if "/" in saved.labels.classes
                        else class_set("train19").names)  # fmt: skip
    assert json.loads((run / "model" / "cityseg.json").read_text())["names"] == list(expected)
    assert main(["evaluate", str(run), "--data", str(root), "--split", "all"]) == 0
    assert "mIoU" in capsys.readouterr().out


def test_classes_given_win_over_the_exports_list(layouts, tmp_path, tiny_config_for):
    from cityseg.datasets import prepare_labels

    config = tiny_config_for(layouts["cvat-cityscapes"], tmp_path, labels__classes="categories")
    splits = discover(config.data.root)
    _, cache, _ = prepare_labels(config, splits, progress=False)
    assert config.labels.classes == "categories" and cache.labeller.class_set.num_classes == 7
    voc = tiny_config_for(layouts["voc"], tmp_path / "voc")
    prepare_labels(voc, discover(voc.data.root), progress=False)
    assert voc.labels.classes == str(layouts["voc"] / "labelmap.txt")


def test_the_class_lists_read_as_the_tools_write_them(tmp_path):
    labelmap = tmp_path / "labelmap.txt"
    labelmap.write_text("# label:color_rgb:parts:actions\nbackground:0,0,0::\nroad:128,64,128::\ncar:0,0,142::\n")
    table = class_set(str(labelmap))
    assert table.names == ("background", "road", "car") and table.class_to_id == (0, 1, 2)
    assert table.color_lookup()[(0, 0, 142)] == 2 and table.color_lookup()[(224, 224, 192)] == 255  # VOC's border
    csv_file = tmp_path / "train" / "_classes.csv"
    csv_file.parent.mkdir()
    csv_file.write_text("Pixel Value, Class\n0, background\n3, pothole\n")
    assert class_set(str(csv_file)).from_label_ids(np.array([0, 3, 1])).tolist() == [0, 1, 255]
    colors = tmp_path / "label_colors.txt"
    colors.write_text("0 0 0 background\n128 64 128 road\n")
    assert not is_cityscapes_list(read_class_list(colors)) and class_set(str(colors)).names == ("background", "road")
    assert class_set("voc21").names[1] == "aeroplane" and voc_color(15) == (192, 128, 128)  # person
    assert VOC_CLASSES["classes"][20]["color"] == [0, 64, 128]


def test_coco_instances_rasterise_polygons_and_rle_and_ignore_overlaps():
    from pycocotools import mask as coco_mask

    square = {"id": 1, "category_id": 3, "segmentation": [[2, 2, 6, 2, 6, 6, 2, 6]]}
    cell = np.zeros((8, 10), dtype=np.uint8)
    cell[5:8, 5:8] = 1
    rle = coco_mask.encode(np.asfortranarray(cell))
    other = {"id": 2, "category_id": 5, "segmentation": {"size": [8, 10], "counts": rle["counts"].decode()}}
    values = rasterise([square, other], 8, 10, "test.json")
    assert values[3, 3] == 3 and values[7, 7] == 5 and values[0, 0] == 0
    assert values[5, 5] == 255  # both categories claim it: ignored
    same = rasterise([square, {**square, "id": 3}], 8, 10, "test.json")
    assert same[3, 3] == 3  # one category's overlapping instances keep it
    uncompressed = {"id": 4, "category_id": 7, "segmentation": {"size": [8, 10], "counts": [5, 3, 72]}}
    assert (rasterise([uncompressed], 8, 10, "t").T.ravel()[5:8] == 7).all()  # column-major runs


def test_label_folders_may_be_called_masks_and_splits_valid(layouts, tmp_path):
    root = shutil.copytree(layouts["images"], tmp_path / "own")
    (root / "labels").rename(root / "masks")
    assert find_layout(root).label_folder("labelids") == "masks" and set(discover(root)) == {"train", "val"}
    split = shutil.copytree(layouts["split-folders"], tmp_path / "split")
    (split / "val").rename(split / "valid")
    (split / "train" / "labels").rename(split / "train" / "annotations")
    (split / "valid" / "labels").rename(split / "valid" / "gt")
    assert set(discover(split)) == {"train", "val"}


def _one_line_error(argv: list[str], capsys, named: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and named in err and "Traceback" not in err, err
    return err


def test_a_mask_value_the_class_list_lacks_names_the_file_value_and_pixels(layouts, tmp_path, capsys):
    root = shutil.copytree(layouts["roboflow"], tmp_path / "rf")
    mask = next((root / "train").glob("*_mask.png"))
    values = np.array(Image.open(mask))
    values[:2, :3] = 40
    Image.fromarray(values).save(mask)
    err = _one_line_error(["label", str(root), "--workers", "1"], capsys, mask.name)
    assert "value 40 on 6 pixels" in err


def test_an_image_list_naming_a_missing_photo_is_one_line_or_skipped(layouts, tmp_path, capsys):
    root = shutil.copytree(layouts["voc"], tmp_path / "voc")
    listing = root / "ImageSets" / "Segmentation" / "train.txt"
    listing.write_text(listing.read_text() + "2026_999999\n")
    err = _one_line_error(["label", str(root)], capsys, "train.txt line 5")
    assert "2026_999999" in err
    assert sum(len(v) for v in open_labelled(root, skip_bad=True).splits.values()) == 6


def test_a_polygon_outside_its_image_and_a_category_without_a_class(layouts, tmp_path, capsys):
    root = shutil.copytree(layouts["coco"], tmp_path / "coco")
    file = root / "annotations" / "instances_train.json"
    data = json.loads(file.read_text())
    data["annotations"][0]["segmentation"] = [[0, 0, 500, 0, 500, 10]]
    file.write_text(json.dumps(data))
    err = _one_line_error(["label", str(root), "--workers", "1"], capsys, "instances_train.json")
    assert "(500, 0) is outside its 128x64 image" in err
    data["annotations"][0]["segmentation"] = [[0, 0, 5, 0, 5, 5]]
    file.write_text(json.dumps(data))
    table = tmp_path / "two.yaml"
    table.write_text("classes:\n  - {name: background, id: 0}\n  - {name: road, id: 1}\n")
    err = _one_line_error(["label", str(root), "--classes", str(table), "--workers", "1"], capsys, "instances_")
    assert "is not one of the ids of class table two" in err


def test_a_jpeg_mask_and_a_missing_coco_photo_are_one_line(layouts, tmp_path, capsys):
    root = shutil.copytree(layouts["roboflow"], tmp_path / "rf")
    mask = next((root / "train").glob("*_mask.png"))
    Image.open(mask).save(mask.with_suffix(".jpg"), quality=95)
    mask.unlink()
    _one_line_error(["label", str(root), "--workers", "1"], capsys, "is a JPEG")
    coco = shutil.copytree(layouts["coco"], tmp_path / "coco")
    next((coco / "images" / "val").iterdir()).unlink()
    _one_line_error(["label", str(coco)], capsys, "instances_val.json names 1 image(s) not found")
    assert main(["label", str(coco), "--skip-bad", "--workers", "1"]) == 0


def test_panoptic_void_is_ignored_and_the_exports_read_through_label_sources(layouts):
    root = layouts["coco-panoptic"]
    classes = class_set(dataset_classes(root))
    source = label_source(root)
    photo = discover(root)["train"][0]
    _, labels = source.read(photo, classes, need_photo=False)
    assert 255 in labels and labels.max() == 255 and classes.names[0] == "road"


def test_synth_writes_each_export_and_refuses_formats_it_cannot(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "voc"), "--layout", "voc", "--count", "3", "--label-format", "color"]) == 0
    assert "Pascal VOC segmentation" in capsys.readouterr().out
    mask = next((tmp_path / "voc" / "SegmentationClass").iterdir())
    assert Image.open(mask).mode == "RGB" and open_labelled(tmp_path / "voc").label_format == "color"
    with pytest.raises(CitysegError, match="drop --label-format"):
        write_layout(tmp_path / "coco", "coco", count=1, label_format="color")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    with pytest.raises(CitysegError, match="is not empty"):
        write_layout(tmp_path / "full", "roboflow", count=1)
