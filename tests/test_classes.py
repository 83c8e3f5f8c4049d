"""The Cityscapes class table and the class sets built from it: ids, train ids, categories, colours."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from cityseg.classes import (
    CATEGORIES,
    CATEGORY_COLORS,
    CLASS_SETS,
    IGNORE_INDEX,
    LABEL_BY_ID,
    LABEL_BY_NAME,
    LABELS,
    NUM_LABEL_IDS,
    class_set,
    color_to_label_id,
)

TRAIN19 = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)  # fmt: skip


def test_the_table_has_34_label_ids_and_the_license_plate():
    assert NUM_LABEL_IDS == 34 and len(LABELS) == 35
    assert sorted(label.id for label in LABELS) == [-1, *range(34)]
    assert sorted(LABEL_BY_ID) == list(range(34)) and len(LABEL_BY_NAME) == 35
    assert LABEL_BY_ID[26].name == "car" and LABEL_BY_NAME["license plate"].id == -1


def test_19_train_ids_each_once_in_the_official_order():
    trained = sorted((lab for lab in LABELS if 0 <= lab.train_id < IGNORE_INDEX), key=lambda lab: lab.train_id)
    assert [lab.train_id for lab in trained] == list(range(19))
    assert tuple(lab.name for lab in trained) == TRAIN19
    assert all(lab.ignore_in_eval == (lab.train_id in (IGNORE_INDEX, -1)) for lab in LABELS)
    train19 = class_set("train19")
    assert train19.names == TRAIN19 and train19.num_classes == 19
    assert train19.class_to_id == (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)


def test_8_categories_and_their_ids():
    assert CATEGORIES == ("void", "flat", "construction", "object", "nature", "sky", "human", "vehicle")
    assert all(lab.category_id == CATEGORIES.index(lab.category) for lab in LABELS)
    assert set(CATEGORY_COLORS) == set(CATEGORIES)
    categories = class_set("categories")
    assert categories.names == CATEGORIES[1:]  # void is ignored, as in the official category evaluation
    assert categories.from_label_ids(np.array([0, 4, 7, 11, 17, 21, 23, 24, 33])).tolist() == [
        IGNORE_INDEX, IGNORE_INDEX, 0, 1, 2, 3, 4, 5, 6,
    ]  # fmt: skip


def test_colours_are_shared_only_where_the_specification_shares_them():
    ids_by_colour = defaultdict(list)
    for label in LABELS:
        ids_by_colour[label.color].append(label.id)
    shared = {colour: ids for colour, ids in ids_by_colour.items() if len(ids) > 1}
    assert shared == {(0, 0, 0): [0, 1, 2, 3, 4], (153, 153, 153): [17, 18], (0, 0, 142): [26, -1]}
    for name in ("train19", "categories"):  # what a model predicts must be drawn in distinct colours
        colours = class_set(name).colors
        assert len(set(colours)) == len(colours), name
    assert len(set(CATEGORY_COLORS.values())) == len(CATEGORIES)


def test_a_shared_colour_decodes_to_the_label_a_user_expects():
    mapping = color_to_label_id()
    assert len(mapping) == len({label.color for label in LABELS})
    assert mapping[(0, 0, 0)] == 0 and mapping[(153, 153, 153)] == 17 and mapping[(0, 0, 142)] == 26
    assert all(mapping[label.color] == label.id for label in LABELS if label.id in (7, 11, 23, 24, 33))


def test_label_ids_map_to_train19():
    train19 = class_set("train19")
    ids = np.array([[7, 26, 0, 1], [8, 24, 33, 4]], dtype=np.uint8)
    expected = np.array([[0, 13, IGNORE_INDEX, IGNORE_INDEX], [1, 11, 18, IGNORE_INDEX]], dtype=np.uint8)
    np.testing.assert_array_equal(train19.from_label_ids(ids), expected)
    assert train19.from_label_ids(np.array([34, 200, 255], dtype=np.uint8)).tolist() == [IGNORE_INDEX] * 3


@pytest.mark.parametrize("name", CLASS_SETS)
def test_palette_and_colorize_round_trip(name):
    classes = class_set(name)
    palette = classes.palette()
    assert palette.shape == (256, 3) and palette.dtype == np.uint8
    assert palette[IGNORE_INDEX].tolist() == [0, 0, 0] and not palette[classes.num_classes :].any()
    indices = np.arange(classes.num_classes, dtype=np.uint8).reshape(1, -1)
    drawn = classes.colorize(indices)
    assert drawn.shape == (1, classes.num_classes, 3)
    assert [tuple(rgb) for rgb in drawn[0].tolist()] == list(classes.colors)
    if len(set(classes.colors)) == classes.num_classes:  # unique colours: a drawing decodes back to its classes
        index_of = {colour: i for i, colour in enumerate(classes.colors)}
        assert [index_of[tuple(rgb)] for rgb in drawn[0].tolist()] == indices[0].tolist()


@pytest.mark.parametrize("name", CLASS_SETS)
def test_label_ids_round_trip(name):
    classes = class_set(name)
    indices = np.array([[*range(classes.num_classes), IGNORE_INDEX]], dtype=np.uint8)
    ids = classes.to_label_ids(indices)
    assert ids[0, -1] == 0  # ignored pixels are written as unlabeled
    np.testing.assert_array_equal(classes.from_label_ids(ids)[0, :-1], indices[0, :-1])
    # unlabeled is void, ignored, except in the labelids set, where every id is a class
    assert classes.from_label_ids(ids)[0, -1] == (0 if name == "labelids" else IGNORE_INDEX)
    assert classes.id_to_class.shape == (NUM_LABEL_IDS,) and classes.id_to_class.dtype == np.uint8


def test_unknown_class_set_names_the_valid_ones():
    with pytest.raises(ValueError, match="auto, train19, categories, labelids, voc21, kmeans"):
        class_set("train20")


def test_the_table_matches_cityscapes_scripts():
    official = pytest.importorskip(
        "cityscapesscripts.helpers.labels", reason="cityscapesscripts (the official table) is not installed"
    )
    ours = [tuple(label) for label in LABELS]
    theirs = [
        (lab.name, lab.id, lab.trainId, lab.category, lab.categoryId, lab.hasInstances, lab.ignoreInEval, lab.color)
        for lab in official.labels
    ]
    assert ours == theirs
