"""Label images that hold their classes exactly: label ids, train ids and colours, read into any class set."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cityseg.classes import IGNORE_INDEX, class_set
from cityseg.errors import CitysegError
from cityseg.label_formats import LABEL_FORMATS, read_label_file, sniff_format
from cityseg.synth import render_scene
from cityseg.synth.labelled import write_label_file


@pytest.fixture(scope="module")
def scene_ids():
    return render_scene(np.random.default_rng([9, 0]), (48, 96))[1]


@pytest.mark.parametrize("name", ["labelids", "trainids", "color"])
@pytest.mark.parametrize("classes", ["train19", "categories", "labelids"])
def test_every_format_reads_back_the_classes_of_the_exact_ids(tmp_path, scene_ids, name, classes):
    path = tmp_path / f"label-{name}.png"
    write_label_file(path, scene_ids, name)
    chosen = class_set(classes)
    expected = chosen.from_label_ids(scene_ids)
    if name == "trainids":  # train ids keep only the 19 training classes: the others are void in them
        expected = np.where(class_set("train19").from_label_ids(scene_ids) == IGNORE_INDEX, IGNORE_INDEX, expected)
    np.testing.assert_array_equal(read_label_file(path, name, chosen), expected)


def test_train_ids_read_into_categories_through_their_label_ids(tmp_path):
    path = tmp_path / "train.png"
    Image.fromarray(np.array([[0, 13, 18, 255]], dtype=np.uint8)).save(path)  # road, car, bicycle, ignored
    assert read_label_file(path, "trainids", class_set("categories")).tolist() == [[0, 6, 6, IGNORE_INDEX]]


def _ids_image(path, values, counts):
    pixels = np.repeat(np.array(values, dtype=np.uint8), counts)
    Image.fromarray(pixels.reshape(1, -1)).save(path)
    return path


def test_an_id_the_format_lacks_names_the_file_the_value_and_its_pixels(tmp_path):
    path = _ids_image(tmp_path / "kitti_40.png", [7, 40, 26], [10, 37, 5])
    with pytest.raises(CitysegError) as error:
        read_label_file(path, "labelids", class_set("train19"))
    message = str(error.value)
    assert str(path) in message and "value 40 on 37 pixels" in message and "0-33" in message
    assert "\n" not in message


def test_255_in_label_ids_points_at_train_ids_and_the_reverse(tmp_path):
    train_ids = _ids_image(tmp_path / "looks-like-train-ids.png", [0, 13, 255], [4, 4, 4])
    with pytest.raises(CitysegError, match=r"value 255 on 4 pixels .*--label-format \(data.label_format\) trainids"):
        read_label_file(train_ids, "labelids", class_set("train19"))
    label_ids = _ids_image(tmp_path / "looks-like-label-ids.png", [7, 26, 33], [4, 4, 4])
    with pytest.raises(CitysegError, match=r"value 26 on 4 pixels .* labelids"):
        read_label_file(label_ids, "trainids", class_set("train19"))


def test_a_jpeg_colour_label_is_refused_with_the_reason(tmp_path, scene_ids):
    path = tmp_path / "colours.png"
    Image.fromarray(class_set("labelids").colorize(scene_ids)).save(path, format="JPEG")  # a JPEG named .png
    with pytest.raises(CitysegError, match=r"is a JPEG; .* lossless \(PNG\): JPEG changes the colours"):
        read_label_file(path, "color", class_set("train19"))
    ids = tmp_path / "ids.jpg"
    Image.fromarray(scene_ids).save(ids)
    with pytest.raises(CitysegError, match="JPEG changes the values"):
        read_label_file(ids, "labelids", class_set("train19"))


def test_a_colour_of_no_class_and_the_wrong_kind_of_image_are_named(tmp_path, scene_ids):
    colours = class_set("labelids").colorize(scene_ids)
    colours[:3, :4] = (1, 2, 3)
    path = tmp_path / "odd.png"
    Image.fromarray(colours).save(path)
    with pytest.raises(CitysegError, match=r"odd.png: colour \(1, 2, 3\) on 12 pixels is no class colour"):
        read_label_file(path, "color", class_set("train19"))
    with pytest.raises(CitysegError, match="RGB pixels, but label ids are one value per pixel; colour labels"):
        read_label_file(path, "labelids", class_set("train19"))
    grey = _ids_image(tmp_path / "grey.png", [7], [4])
    with pytest.raises(CitysegError, match="L pixels, not colours; label ids"):
        read_label_file(grey, "color", class_set("train19"))


def test_a_class_table_reads_its_own_ids_indices_and_colours(tmp_path):
    table = class_set(
        {
            "ignore": [0, 9],
            "ignore_color": [0, 0, 0],
            "classes": [{"name": "soil", "id": 4, "color": [120, 80, 20]}, {"name": "crop", "ids": [5, 6]}],
        }
    )
    ids = _ids_image(tmp_path / "ids.png", [4, 5, 6, 0, 9], [1, 1, 1, 1, 1])
    assert read_label_file(ids, "labelids", table).tolist() == [[0, 1, 1, IGNORE_INDEX, IGNORE_INDEX]]
    indices = _ids_image(tmp_path / "indices.png", [0, 1, 9], [1, 1, 1])
    assert read_label_file(indices, "trainids", table).tolist() == [[0, 1, IGNORE_INDEX]]
    with pytest.raises(CitysegError, match=r"value 7 on 2 pixels is not one of the ids of class table custom"):
        read_label_file(_ids_image(tmp_path / "seven.png", [4, 7], [1, 2]), "labelids", table)
    colours = tmp_path / "colours.png"
    Image.fromarray(np.array([[[120, 80, 20], [0, 0, 0]]], dtype=np.uint8)).save(colours)
    assert read_label_file(colours, "color", table).tolist() == [[0, IGNORE_INDEX]]


def test_sniffing_takes_rgb_for_colours_and_anything_else_for_label_ids(tmp_path, scene_ids):
    write_label_file(tmp_path / "c.png", scene_ids, "color")
    write_label_file(tmp_path / "i.png", scene_ids, "labelids")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    assert [sniff_format(tmp_path / n) for n in ("c.png", "i.png", "broken.png")] == ["color", "labelids", "labelids"]
    assert set(LABEL_FORMATS) == {"labelids", "trainids", "color"}
